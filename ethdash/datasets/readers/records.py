"""Line-by-line decoding and field validation shared by every reader."""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterator
from typing import Any

from ethdash.errors import Problem

# Stop collecting problems in one file past this: the first ones say enough.
MAX_PROBLEMS_PER_FILE = 50


class ProblemLog:
    def __init__(self, source: str, unit: str = "line"):
        self.source, self.unit = source, unit
        self.problems: list[Problem] = []

    def add(self, message: str, line: int | None = None, field: str | None = None) -> None:
        self.problems.append(Problem(self.source, message, line, field, self.unit))

    @property
    def full(self) -> bool:
        return len(self.problems) >= MAX_PROBLEMS_PER_FILE


def decode_lines(data: bytes, log: ProblemLog) -> Iterator[tuple[int, str]]:
    """Yield (line number, text) of non-blank lines; bytes that are not UTF-8 are a problem."""
    if not data.strip():
        log.add("the file is empty")
        return
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if log.full:
            return
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            log.add(f"not valid UTF-8 (byte {exc.start + 1} of the line)", number)
            continue
        if number == 1:
            text = text.removeprefix("\ufeff")
        if text.strip():
            yield number, text


def json_records(data: bytes, log: ProblemLog) -> Iterator[tuple[int, Any]]:
    for number, text in decode_lines(data, log):
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            log.add(f"malformed JSON ({exc.msg} at column {exc.colno})", number)
            continue
        if not isinstance(record, dict):
            log.add(f"expected a JSON object, found {type(record).__name__}", number)
            continue
        yield number, record


_MISSING = object()


class Record:
    """One record with its line, reporting field problems to the log instead of raising."""

    def __init__(self, obj: dict, line: int, log: ProblemLog, last_line: int | None = None):
        # line: where the record starts, which problems name; last_line: where it ends (a CSV record can
        # span lines), which default item ids have always used.
        self.obj, self.line, self.log = obj, line, log
        self.last_line = line if last_line is None else last_line
        self.ok = True

    def problem(self, message: str, field: str | None = None) -> None:
        self.ok = False
        self.log.add(message, self.line, field)

    def get(
        self,
        field: str,
        kind: type | tuple[type, ...],
        required: bool = True,
        where: dict | None = None,
        label: str | None = None,
    ) -> Any:
        source = self.obj if where is None else where
        name = label or field
        value = source.get(field, _MISSING)
        if value is _MISSING or value is None:
            if required:
                self.problem("missing", name)
            return None
        # bool is an int in Python; a vote count of `true` is a type error.
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
            expected = " or ".join(t.__name__ for t in _as_tuple(kind))
            self.problem(f"expected {expected}, found {type(value).__name__} {json.dumps(value)[:40]}", name)
            return None
        return value

    def text(
        self, field: str, required: bool = True, where: dict | None = None, label: str | None = None
    ) -> str | None:
        value = self.get(field, str, required, where, label)
        return None if value is None else html.unescape(value)

    def counts(self, values: list[Any], field: str, require_votes: bool = True) -> tuple[int, ...] | None:
        """Validate a list of vote counts: integers, not negative, and (usually) not all zero."""
        out = []
        for value in values:
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int):
                self.problem(f"vote counts must be integers, found {json.dumps(value)[:40]}", field)
                return None
            if value < 0:
                self.problem(f"vote counts must not be negative, found {value}", field)
                return None
            out.append(value)
        if require_votes and sum(out) == 0:
            self.problem("the item has no votes (all counts are zero)", field)
            return None
        return tuple(out)

    def shares(self, cells: list[tuple[str, Any]]) -> tuple[float, ...] | None:
        """Validate one item's shares or weights, (column, value) per option: numbers, not negative, not all
        zero. Returns them normalised to sum 1."""
        out = []
        for field, value in cells:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                self.problem(f"shares must be numbers, found {json.dumps(value)[:40]}", field)
                return None
            if value < 0:
                self.problem(f"shares must not be negative, found {value}", field)
                return None
            out.append(float(value))
        if sum(out) == 0:
            self.problem("the item has no judgment (all shares are zero)", ", ".join(f for f, _ in cells))
            return None
        total = sum(out)
        return tuple(v / total for v in out)

    def respondents(self, value: Any, field: str) -> int | None:
        """A number of respondents: a whole number above zero."""
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            self.problem(
                f"the number of respondents must be a whole number above 0, found {json.dumps(value)[:40]}", field
            )
            return None
        return value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def check_unique_ids(items: list, log: ProblemLog) -> None:
    first_line: dict[tuple[str, str], int | None] = {}
    for item in items:
        key = (item.split, item.item_id)
        if key in first_line:
            log.add(f"duplicate id '{item.item_id}' (first at line {first_line[key]})", item.line, "id")
        else:
            first_line[key] = item.line
