"""The store: one DuckDB file under ETHDASH_HOME.

Who opens the file, and when (DuckDB allows one writing process at a time):
- Every ethdash process (a CLI command, each rerun of a Streamlit page, later the background
  runs) opens the file only for one unit of work, through `Store.connect()`, and closes it at
  once. No connection outlives the unit: nothing holds the file while idle, and the app never
  keeps a connection in `st.cache_resource`.
- All connections are read-write. DuckDB refuses to mix read-only and read-write connections to
  one file within a process, and units are short, so nothing is gained by read-only ones.
- When another process holds the file, `connect()` retries with backoff (jittered, up to
  ETHDASH_LOCK_TIMEOUT seconds) instead of failing with a lock error.
- Long jobs write in batches, each batch its own unit of work; background runs report progress
  through files in their own run folder, not through the store.
- Within one process, connections to the same file share one database instance, so threads
  (Streamlit's reruns) each take their own connection from `connect()`; nested `connect()` calls
  on one thread reuse the outer one.
- The schema is created and upgraded by the recorded, ordered migrations in `migrations.py`, run
  on the first connection a process makes to a file.
"""

from __future__ import annotations

import random
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa

from ethdash import settings
from ethdash.errors import EthdashError, StoreBusyError, StoreDamagedError
from ethdash.migrations import migrate

_LOCK_MESSAGES = ("Could not set lock", "Conflicting lock")
_migrated: set[Path] = set()
_migrate_lock = threading.Lock()
# DuckDB shares one database instance between the connections of a process; attaching and releasing
# it from several threads at once races ("Unique file handle conflict"), so those steps take turns.
_instance_lock = threading.Lock()
_open = threading.local()  # the connection of the unit of work in progress on this thread, per store path


def _is_lock_error(exc: Exception) -> bool:
    return any(m in str(exc) for m in _LOCK_MESSAGES)


def open_with_retry(path: Path, timeout_s: float | None = None) -> duckdb.DuckDBPyConnection:
    timeout_s = settings.lock_timeout_s() if timeout_s is None else timeout_s
    deadline = time.monotonic() + timeout_s
    delay = 0.02
    while True:
        if not _instance_lock.acquire(timeout=max(deadline - time.monotonic(), 0.1)):
            raise StoreBusyError(f"the store {path} could not be opened within {timeout_s:.0f} s")
        try:
            return duckdb.connect(str(path))
        except duckdb.Error as exc:
            if not _is_lock_error(exc):
                raise damaged(path, exc) from exc
            if time.monotonic() >= deadline:
                raise StoreBusyError(
                    f"the store {path} stayed locked by another process for {timeout_s:.0f} s; "
                    "try again when it has finished (or raise ETHDASH_LOCK_TIMEOUT)"
                ) from exc
        finally:
            _instance_lock.release()  # before sleeping: this process's other threads may close their units
        time.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 0.5)


def damaged(path: Path, exc: Exception) -> StoreDamagedError:
    """One clear message for a store that cannot be read: which file, what DuckDB said, what to do."""
    said = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
    return StoreDamagedError(
        f"the store {path} cannot be read ({said}): it is damaged or not an ethdash store. Restore a backup "
        f"(`ethdash store backup` makes them; the README's Backups says how), or move the file away to start a "
        f"new, empty store; `ethdash store check` reports what it can read."
    )


def query_frame(con: duckdb.DuckDBPyConnection, query: str, params: list | None = None) -> pd.DataFrame:
    """A query's rows as a DataFrame, through Arrow: DuckDB's `.df()` writes each string as a Python object
    that pandas then turns back into Arrow (3x slower for a split of 27,766 items).

    A missing text value is None (`.df()` gave None only where a whole column was missing, else NaN, which
    `item.get("title") or ""` read as true: templates wrote "nan" into the prompt of an item without a title
    when its split was read whole, and "" when the item was read alone). A missing integer or boolean is <NA>
    in a nullable column (Int64, boolean), as `.df()` gives. Meant for the store's own tables (text, numbers,
    lists of doubles, timestamps); other types come as Arrow converts them (a DATE as datetime.date)."""
    table = con.sql(query, params=params).to_arrow_table()
    frame = table.to_pandas()
    for field, column in zip(table.schema, table.columns):
        if column.null_count == 0:
            continue
        if pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
            values = frame[field.name]
            frame[field.name] = values.astype(object).where(values.notna(), None)
        elif pa.types.is_integer(field.type) or pa.types.is_boolean(field.type):
            nullable = "boolean" if pa.types.is_boolean(field.type) else "Int64"
            frame[field.name] = pd.array(column.to_pylist(), dtype=nullable)  # exact: no float on the way
    return frame


class Store:
    def __init__(self, path: Path | None = None):
        self.path = Path(path) if path is not None else settings.store_path()

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One unit of work: open (waiting for other processes), yield, close.

        Nested calls on one thread share the outer unit's connection (opening one costs ~10 ms).
        """
        open_here = getattr(_open, str(self.path), None)
        if open_here is not None:
            yield open_here
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = open_with_retry(self.path)
        setattr(_open, str(self.path), con)
        try:
            if self.path not in _migrated:
                with _migrate_lock:
                    try:
                        migrate(con)
                    except duckdb.Error as exc:  # a file that opens but whose catalog cannot be read
                        raise damaged(self.path, exc) from exc
                    _migrated.add(self.path)
            yield con
        finally:
            delattr(_open, str(self.path))
            with _instance_lock:
                con.close()

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A unit of work that commits entirely or not at all."""
        with self.connect() as con:
            con.begin()
            try:
                yield con
            except BaseException:
                con.rollback()
                raise
            con.commit()

    # Tables whose rows are only ever added, each with the column that times a row: their count and newest
    # time change with every write (see `state`).
    APPEND_ONLY = {"imports": "imported_at", "scores": "created_at", "annotations": "created_at"}

    def state(self, table: str) -> tuple:
        """A cheap fingerprint of an append-only table (this file, its row count, its newest time): what a
        result derived from the table is kept under, until the table changes."""
        with self.connect() as con:
            query = f"SELECT count(*), max({self.APPEND_ONLY[table]}) FROM {table}"  # names from the dict only
            return (str(self.path), table, *con.execute(query).fetchall()[0])

    def check(self) -> dict[str, int]:
        """Rows per table, reading every table through (a damaged page fails here, not later)."""
        with self.connect() as con:
            try:
                tables = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() ORDER BY 1").fetchall()]
                return {t: con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}
            except duckdb.Error as exc:
                raise damaged(self.path, exc) from exc

    def backup(self, target: Path) -> Path:
        """A consistent copy of the store at `target`: taken inside a unit of work (no other process writes
        meanwhile) after a checkpoint, then opened to prove it reads."""
        target = Path(target)
        if target.exists():
            raise EthdashError(f"{target} exists: choose another backup file")
        target.parent.mkdir(parents=True, exist_ok=True)
        with self.connect() as con:
            con.execute("CHECKPOINT")
            partial = target.with_name(target.name + ".partial")
            shutil.copyfile(self.path, partial)
        Store(partial).check()
        partial.replace(target)
        return target
