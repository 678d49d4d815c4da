"""Items in the store: writing an import atomically, and reading items for views and statistics."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd

from ethdash.errors import DataError, Problem
from ethdash.items import GOLD, SECOND, Dataset, LabelView, is_controversial
from ethdash.migrations import utc_now
from ethdash.sources import ReadResult
from ethdash.store import Store


@dataclass(frozen=True)
class ImportReport:
    new: int
    changed: int
    unchanged: int
    per_split: dict[tuple[str, str], int]  # (dataset, split) -> items read

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
            for table in ("items", "votes"):
                con.execute(
                    f"DELETE FROM {table} t USING changed_keys k "
                    "WHERE t.dataset = k.dataset AND t.split = k.split AND t.item_id = k.item_id"
                )
            con.unregister("changed_keys")
        to_write = fresh + changed
        if to_write:
            _insert(con, to_write, hashes)
            for source in result.sources:
                con.execute(
                    "INSERT INTO imports VALUES (?, ?, ?, ?, ?)",
                    [source.name, source.sha256, len(fresh), len(changed), utc_now()],
                )
    return ImportReport(len(fresh), len(changed), len(result.items) - len(to_write), per_split)


def _ensure_dataset(con: duckdb.DuckDBPyConnection, dataset: Dataset) -> None:
    row = con.execute("SELECT kind FROM datasets WHERE name = ?", [dataset.name]).fetchone()
    stored = {
        v: list(o)
        for v, o in con.execute("SELECT view, options FROM label_views WHERE dataset = ?", [dataset.name]).fetchall()
    }
    wanted = {v.name: list(v.options) for v in dataset.views}
    if row is not None:
        if row[0] != dataset.kind or stored != wanted:
            raise DataError(
                [
                    Problem(
                        dataset.name,
                        f"the dataset already exists with other options {stored}; "
                        f"this import has {wanted}: use another dataset name",
                    )
                ]
            )
        return
    con.execute("INSERT INTO datasets VALUES (?, ?, ?)", [dataset.name, dataset.kind, dataset.description])
    for position, view in enumerate(dataset.views):
        con.execute(
            "INSERT INTO label_views VALUES (?, ?, ?, ?, ?)",
            [dataset.name, view.name, list(view.options), position, view.description],
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
        "INSERT INTO votes SELECT dataset, split, item_id, view, sample, CAST(counts AS INTEGER[]) FROM new_votes"
    )
    con.unregister("new_items")
    con.unregister("new_votes")


# ---------------------------------------------------------------- reading


def datasets(store: Store) -> list[Dataset]:
    with store.connect() as con:
        rows = con.execute("SELECT name, kind, description FROM datasets ORDER BY name").fetchall()
        views = con.execute(
            "SELECT dataset, view, options, description FROM label_views ORDER BY dataset, position"
        ).fetchall()
    by_dataset: dict[str, list[LabelView]] = {}
    for dataset, view, options, description in views:
        by_dataset.setdefault(dataset, []).append(LabelView(view, tuple(options), description or ""))
    return [Dataset(name, kind, tuple(by_dataset.get(name, ())), description or "") for name, kind, description in rows]


def splits(store: Store, dataset: str) -> list[str]:
    with store.connect() as con:
        rows = con.execute("SELECT DISTINCT split FROM items WHERE dataset = ?", [dataset]).fetchall()
    order = {"train": 0, "train-extra": 1, "dev": 2, "test": 3}
    return sorted((r[0] for r in rows), key=lambda s: (order.get(s, 9), s))


def count_items(store: Store) -> int:
    with store.connect() as con:
        return con.execute("SELECT count(*) FROM items").fetchone()[0]


def items_frame(
    store: Store,
    dataset: str,
    split: str | None,
    view: str,
    limit: int | None = None,
    item_ids: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One row per item with its votes in `view` (gold and, where present, the second sample);
    only the items named in `item_ids` when given.

    Items whose votes in this view are all zero (an anecdote with only INFO votes, in the
    binarized view) are left out: they carry no distribution.
    """
    query = """
        SELECT i.dataset, i.split, i.item_id, i.title, i.text, i.actions, i.post_type, i.controversial,
               i.meta, i.content_hash, i.source, i.source_line, g.counts AS counts, s.counts AS second_counts
        FROM items i
        JOIN votes g ON g.dataset = i.dataset AND g.split = i.split AND g.item_id = i.item_id
                    AND g.view = ? AND g.sample = 'gold'
        LEFT JOIN votes s ON s.dataset = i.dataset AND s.split = i.split AND s.item_id = i.item_id
                    AND s.view = g.view AND s.sample = 'second'
        WHERE i.dataset = ? AND (? IS NULL OR i.split = ?) AND list_sum(g.counts) > 0
              AND (?::VARCHAR[] IS NULL OR list_contains(?::VARCHAR[], i.item_id))
        ORDER BY i.split, i.source, i.source_line, i.item_id
        LIMIT ?"""
    wanted = None if item_ids is None else list(item_ids)
    with store.connect() as con:
        frame = con.execute(query, [view, dataset, split, split, wanted, wanted, limit]).df()
    # Items without a second human sample: None, not a missing-value marker that arrays can't hold.
    frame["second_counts"] = [c if isinstance(c, (list, np.ndarray)) else None for c in frame["second_counts"]]
    return frame


def counts_matrix(frame: pd.DataFrame, column: str = "counts") -> np.ndarray:
    """The vote counts of a frame from `items_frame` as an items x options array."""
    if frame.empty:
        return np.zeros((0, 0))
    return np.array([list(c) for c in frame[column]], dtype=float)


def post_types(store: Store, dataset: str) -> list[str]:
    """The post types present in a dataset (anecdotes: HISTORICAL, HYPOTHETICAL), sorted."""
    with store.connect() as con:
        rows = con.execute(
            "SELECT DISTINCT post_type FROM items WHERE dataset = ? AND post_type IS NOT NULL ORDER BY 1", [dataset]
        ).fetchall()
    return [r[0] for r in rows]
