"""Items in the store, read for views and statistics (the importer writes them)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ethdash.datasets.items import COUNTS, Dataset, LabelView
from ethdash.errors import EthdashError
from ethdash.recent import Recent
from ethdash.store import Store, query_frame


def datasets(store: Store) -> list[Dataset]:
    with store.connect() as con:
        rows = con.execute("SELECT name, kind, description FROM datasets ORDER BY name").fetchall()
        views = con.execute(
            "SELECT dataset, view, options, description, judgments, ordered FROM label_views ORDER BY dataset, position"
        ).fetchall()
    by_dataset: dict[str, list[LabelView]] = {}
    for dataset, view, options, description, judgments, ordered in views:
        label_view = LabelView(view, tuple(options), description or "", judgments, ordered)
        by_dataset.setdefault(dataset, []).append(label_view)
    return [Dataset(name, kind, tuple(by_dataset.get(name, ())), description or "") for name, kind, description in rows]


def label_view(store: Store, dataset: str, view: str | None = None) -> LabelView:
    """A dataset's view by name (default: its first); unknown names are clear errors."""
    known = {d.name: d for d in datasets(store)}
    if dataset not in known:
        raise EthdashError(f"unknown dataset '{dataset}': the store has {', '.join(sorted(known)) or 'none'}")
    views = known[dataset].views
    chosen = views[0] if view is None and views else next((v for v in views if v.name == view), None)
    if chosen is None:
        raise EthdashError(f"dataset '{dataset}' has no view '{view}' (views: {', '.join(v.name for v in views)})")
    return chosen


def ordered(store: Store, dataset: str, view: str) -> bool:
    """Whether a dataset's view declares its options a scale (in their order)."""
    with store.connect() as con:
        row = con.execute("SELECT ordered FROM label_views WHERE dataset = ? AND view = ?", [dataset, view]).fetchall()
    return bool(row and row[0][0])


def judgments(store: Store, dataset: str, view: str) -> str:
    """What the numbers of a dataset's view are (items.JUDGMENTS): vote counts unless imported as shares."""
    with store.connect() as con:
        row = con.execute(
            "SELECT judgments FROM label_views WHERE dataset = ? AND view = ?", [dataset, view]
        ).fetchall()
    return row[0][0] if row else COUNTS


def splits(store: Store, dataset: str) -> list[str]:
    with store.connect() as con:
        rows = con.execute("SELECT DISTINCT split FROM items WHERE dataset = ?", [dataset]).fetchall()
    order = {"train": 0, "train-extra": 1, "dev": 2, "test": 3}
    return sorted((r[0] for r in rows), key=lambda s: (order.get(s, 9), s))


def count_items(store: Store) -> int:
    with store.connect() as con:
        return con.execute("SELECT count(*) FROM items").fetchone()[0]


def items_version(store: Store) -> tuple:
    """A fingerprint of the items and votes the store holds: every import that writes or replaces items
    records itself in `imports` (the only writer of items and votes), so this changes with them."""
    return store.state("imports")


# The last few splits read whole (the pages read the split shown on every rerun; at corpus scale that
# read costs about 0.5 s). Bounded by count, so memory follows the splits shown, not the store.
_SPLITS: Recent[pd.DataFrame] = Recent(kept=4)


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
    with store.connect():
        if limit is not None:
            return _read_items(store, dataset, split, view, limit, item_ids)
        key = (items_version(store), dataset, split, view)
        if item_ids is None:
            return _SPLITS.get_or_compute(key, lambda: _read_items(store, dataset, split, view)).copy(deep=False)
        whole = _SPLITS.get(key)
        if whole is None:  # a few items of a split not read whole: read only them
            return _read_items(store, dataset, split, view, None, item_ids)
        return whole[whole["item_id"].isin(list(item_ids))].reset_index(drop=True)


def _read_items(
    store: Store,
    dataset: str,
    split: str | None,
    view: str,
    limit: int | None = None,
    item_ids: Sequence[str] | None = None,
) -> pd.DataFrame:
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
        frame = query_frame(con, query, [view, dataset, split, split, wanted, wanted, limit])
    # Items without a second human sample: None, not a missing-value marker that arrays can't hold.
    frame["second_counts"] = [c if isinstance(c, (list, np.ndarray)) else None for c in frame["second_counts"]]
    return frame


def records(items: pd.DataFrame) -> list[dict]:
    """The rows as dicts, as templates read an item: `to_dict("records")`'s values (a missing value of a
    nullable column is None, not <NA>, whose truth raises), built column by column (pandas boxes each cell
    there: 2.5x slower on 27,766 items)."""
    columns = list(items.columns)
    return [dict(zip(columns, row)) for row in zip(*(_values(items[c]) for c in columns))]


def records_by_id(items: pd.DataFrame) -> dict[str, dict]:
    """`records` by item id."""
    return dict(zip(items["item_id"].tolist(), records(items)))


def _values(column: pd.Series) -> list:
    values = column.tolist()
    if getattr(column.dtype, "na_value", None) is pd.NA and column.hasnans:
        return [None if v is pd.NA else v for v in values]
    return values


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
