"""Import files into the store: read and validate everything first (`sources`, `readers/`), then write the
items in one transaction (new ones inserted, changed ones replaced, identical ones skipped)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd

from ethdash import settings
from ethdash.datasets import catalog
from ethdash.datasets.items import CUSTOM_VIEW, GOLD, SECOND, Dataset, is_controversial
from ethdash.datasets.readers.mapping import Mapping
from ethdash.datasets.sources import ReadResult, read_paths
from ethdash.errors import DataError, Problem
from ethdash.migrations import utc_now
from ethdash.store import Store


def import_paths(store: Store, paths: list[Path], mapping: Mapping | None = None) -> ImportReport:
    """Idempotent (the same files twice change nothing) and atomic (a bad file writes nothing)."""
    return write_items(store, read_paths(paths, mapping))


def import_demo_if_empty(store: Store) -> ImportReport | None:
    """Fall back to the demo sample the project ships when the store has no items at all."""
    if catalog.count_items(store) > 0:
        return None
    return import_paths(store, [settings.demo_dir()])


@dataclass(frozen=True)
class ImportReport:
    new: int
    changed: int
    unchanged: int
    per_split: dict[tuple[str, str], int]  # (dataset, split) -> items read
    long_fields: list[str] = field(default_factory=list)  # "source:line: field of N characters", for a warning

    @property
    def changed_anything(self) -> bool:
        return self.new + self.changed > 0


def write_items(store: Store, result: ReadResult) -> ImportReport:
    """Insert new items, replace changed ones, skip identical ones: all in one transaction."""
    hashes = {i.key: i.content_hash() for i in result.items}
    per_split: dict[tuple[str, str], int] = {}
    for item in result.items:
        per_split[(item.dataset, item.split)] = per_split.get((item.dataset, item.split), 0) + 1
    with store.transaction() as con:
        for dataset in result.datasets.values():
            _ensure_dataset(con, dataset)
        existing = _existing_hashes(con, per_split)
        fresh = [i for i in result.items if i.key not in existing]
        changed = [i for i in result.items if i.key in existing and existing[i.key] != hashes[i.key]]
        if changed:
            keys = pd.DataFrame([i.key for i in changed], columns=["dataset", "split", "item_id"])
            con.register("changed_keys", keys)
            for table in ("items", "votes", "annotator_labels"):
                con.execute(
                    f"DELETE FROM {table} t USING changed_keys k "
                    "WHERE t.dataset = k.dataset AND t.split = k.split AND t.item_id = k.item_id"
                )
            con.unregister("changed_keys")
        to_write = fresh + changed
        if to_write:
            _insert(con, to_write, hashes)
            # Every write of items is logged: the log is also what tells readers the items changed
            # (catalog.items_version), so a write with no source file is logged too.
            for source in result.sources or [None]:
                con.execute(
                    "INSERT INTO imports VALUES (?, ?, ?, ?, ?)",
                    [source.name if source else "(no file)", source.sha256 if source else "", len(fresh),
                     len(changed), utc_now()],
                )  # fmt: skip
    unchanged = len(result.items) - len(to_write)
    return ImportReport(len(fresh), len(changed), unchanged, per_split, long_fields(result.items))


LONG_FIELD = 100_000  # characters: such a text makes a prompt no model can score


def long_fields(items: list) -> list[str]:
    """Where a title, text or action is longer than LONG_FIELD characters (imported, but worth a warning)."""
    out = []
    for item in items:
        for name, value in (("title", item.title), ("text", item.text), *(("action", a) for a in item.actions)):
            if value and len(value) > LONG_FIELD:
                out.append(f"{item.source}:{item.line}: {name} of {len(value):,} characters")
    return out


def _ensure_dataset(con: duckdb.DuckDBPyConnection, dataset: Dataset) -> None:
    row = con.execute("SELECT kind FROM datasets WHERE name = ?", [dataset.name]).fetchone()
    stored = {
        v: (list(o), j, ordered)
        for v, o, j, ordered in con.execute(
            "SELECT view, options, judgments, ordered FROM label_views WHERE dataset = ?", [dataset.name]
        ).fetchall()
    }
    wanted = {v.name: (list(v.options), v.judgments, v.ordered) for v in dataset.views}
    if row is not None:
        if row[0] != dataset.kind or stored != wanted:
            raise DataError(
                [
                    Problem(
                        dataset.name,
                        f"the dataset already exists with other options, judgments or order {stored}; "
                        f"this import has {wanted}: use another dataset name",
                    )
                ]
            )
        return
    con.execute("INSERT INTO datasets VALUES (?, ?, ?)", [dataset.name, dataset.kind, dataset.description])
    for position, view in enumerate(dataset.views):
        con.execute(
            "INSERT INTO label_views (dataset, view, options, position, description, judgments, ordered) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [dataset.name, view.name, list(view.options), position, view.description, view.judgments, view.ordered],
        )


def _existing_hashes(con: duckdb.DuckDBPyConnection, splits: dict[tuple[str, str], int]) -> dict[tuple, str]:
    out = {}
    for dataset, split in splits:
        rows = con.execute(
            "SELECT item_id, content_hash FROM items WHERE dataset = ? AND split = ?", [dataset, split]
        ).fetchall()
        out.update({(dataset, split, item_id): h for item_id, h in rows})
    return out


def _insert(con: duckdb.DuckDBPyConnection, items: list, hashes: dict) -> None:
    rows = pd.DataFrame(
        {
            "dataset": [i.dataset for i in items],
            "split": [i.split for i in items],
            "item_id": [i.item_id for i in items],
            "title": [i.title for i in items],
            "text": [i.text for i in items],
            "actions": [list(i.actions) for i in items],
            "post_type": [i.post_type for i in items],
            "controversial": [is_controversial(i) for i in items],
            "meta": [json.dumps(i.meta, ensure_ascii=False) for i in items],
            "content_hash": [hashes[i.key] for i in items],
            "source": [i.source for i in items],
            "source_line": [i.line for i in items],
        }
    )
    votes = pd.DataFrame(
        [
            (i.dataset, i.split, i.item_id, view, sample, list(counts))
            for i in items
            for sample, by_view in ((GOLD, i.votes), (SECOND, i.second_votes))
            for view, counts in by_view.items()
        ],
        columns=["dataset", "split", "item_id", "view", "sample", "counts"],
    )
    con.register("new_items", rows)
    con.register("new_votes", votes)
    con.execute(
        """
        INSERT INTO items SELECT dataset, split, item_id, title, text, CAST(actions AS VARCHAR[]), post_type,
            controversial, CAST(meta AS JSON), content_hash, source, source_line, ?
        FROM new_items""",
        [utc_now()],
    )
    con.execute(
        "INSERT INTO votes SELECT dataset, split, item_id, view, sample, CAST(counts AS DOUBLE[]) FROM new_votes"
    )
    con.unregister("new_items")
    con.unregister("new_votes")
    labels = [
        (i.dataset, i.split, i.item_id, CUSTOM_VIEW, annotator, option, line)
        for i in items
        for annotator, option, line in i.labels
    ]
    if labels:
        con.executemany("INSERT INTO annotator_labels VALUES (?, ?, ?, ?, ?, ?, ?)", labels)


# ---------------------------------------------------------------- reading
