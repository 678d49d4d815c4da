"""Errors a user can act on: each says what went wrong and where."""

from __future__ import annotations

from dataclasses import dataclass


class EthdashError(Exception):
    """An error with a message meant for the user (the CLI prints it and exits non-zero)."""


@dataclass(frozen=True)
class Problem:
    source: str
    message: str
    line: int | None = None
    field: str | None = None
    unit: str = "line"  # "row" in tabular files (Parquet, Arrow), counted from 1

    def __str__(self) -> str:
        if self.line is None:
            where = self.source
        else:
            where = f"{self.source}:{self.line}" if self.unit == "line" else f"{self.source}, {self.unit} {self.line}"
        what = f"field '{self.field}': {self.message}" if self.field else self.message
        return f"{where}: {what}"


class DataError(EthdashError):
    """Input data that failed validation. Nothing was written to the store."""

    MAX_SHOWN = 20

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        shown = "\n".join(f"  {p}" for p in self.problems[: self.MAX_SHOWN])
        more = len(self.problems) - self.MAX_SHOWN
        tail = f"\n  ... and {more} more" if more > 0 else ""
        n = len(self.problems)
        super().__init__(f"{n} problem{'s' if n != 1 else ''} in the input; nothing was imported:\n{shown}{tail}")


class StoreBusyError(EthdashError):
    """Another process kept the store locked for longer than the lock timeout."""


class StoreDamagedError(EthdashError):
    """The store's file cannot be read as a DuckDB database."""
