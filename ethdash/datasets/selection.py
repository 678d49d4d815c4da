"""Item selection: the item table of a dataset split and view, its filters and a fixed sample, and the
columns that filters read (tags, disagreement with a model). Pure functions over frames, plus one loader."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ethdash.datasets import catalog
from ethdash.datasets.items import SHARES
from ethdash.recent import Recent
from ethdash.store import Store
from ethdash.votes import majority, shares, vote_margin

# The last few item tables (every rerun of a page shows one), until the store's items change.
_TABLES: Recent[pd.DataFrame] = Recent(kept=4)


def item_table(store: Store, dataset: str, split: str | None, view: str, options: tuple[str, ...]) -> pd.DataFrame:
    """The items of one dataset, split and view, with the columns the table shows and filters use."""
    with store.connect():
        key = (catalog.items_version(store), dataset, split, view, options)
        compute = lambda: _item_table(store, dataset, split, view, options)  # noqa: E731
        return _TABLES.get_or_compute(key, compute).copy(deep=False)


def _item_table(store: Store, dataset: str, split: str | None, view: str, options: tuple[str, ...]) -> pd.DataFrame:
    frame = catalog.items_frame(store, dataset, split, view)
    if frame.empty:
        return frame
    counts = catalog.counts_matrix(frame)
    maj = majority(counts)
    frame["summary"] = [_summary(t, a, x) for t, a, x in zip(frame["title"], frame["actions"], frame["text"])]
    frame["margin"] = vote_margin(counts)
    frame["majority"] = [options[m] if m >= 0 else "tie" for m in maj]
    if catalog.judgments(store, dataset, view) == SHARES:  # a distribution, no number of respondents
        frame["n_votes"] = np.nan
        frame["split_text"] = [" · ".join(f"{s:.0%}" for s in row) for row in shares(counts)]
    else:  # votes, or shares of respondents shown as the (rounded) votes they stand for
        frame["n_votes"] = np.rint(counts.sum(axis=1)).astype(int)
        frame["split_text"] = [" · ".join(f"{c:g}" for c in row) for row in np.round(counts, 1)]
    return frame


SUMMARY_CHARS = 120


def _summary(title: str | None, actions: object, text: str | None) -> str:
    """What the item list shows of an item: its title, else its actions, else the start of its text (a
    dataset of survey vignettes has neither title nor actions)."""
    if title:
        return title
    acts = [a for a in (list(actions) if actions is not None else []) if a]
    if acts:
        return "  vs.  ".join(acts)
    flat = " ".join((text or "").split())
    return flat if len(flat) <= SUMMARY_CHARS else flat[: SUMMARY_CHARS - 1].rstrip() + "…"


@dataclass(frozen=True)
class Filters:
    controversial: bool | None = None  # None: both
    margin: tuple[float, float] = (0.0, 1.0)
    search: str = ""
    post_types: tuple[str, ...] = ()  # empty: all
    tags: tuple[str, ...] = ()  # items annotated with any of these tags (empty: all)
    min_disagreement: float | None = None  # items where the "disagreement" column exceeds this
    # At most this many of the items that pass, a fixed pseudo-random choice: the same items on every
    # run and machine (chosen by a hash of split and id), so that a quick look is cached like any other.
    sample: int | None = None


def apply_filters(frame: pd.DataFrame, f: Filters) -> pd.DataFrame:
    if frame.empty:
        return frame
    keep = (frame["margin"] >= f.margin[0] - 1e-12) & (frame["margin"] <= f.margin[1] + 1e-12)
    if f.controversial is not None:
        keep &= frame["controversial"] == f.controversial
    if f.post_types:
        keep &= frame["post_type"].isin(f.post_types)
    if f.search.strip():
        needle = f.search.strip().lower()
        haystack = (
            frame["summary"].fillna("")
            + "\n"
            + frame["text"].fillna("")
            + "\n"
            + frame["actions"].map(lambda a: " ".join(a) if a is not None else "")
        )
        keep &= haystack.str.lower().str.contains(needle, regex=False)
    if f.tags:
        wanted = set(f.tags)
        keep &= frame["tags"].map(lambda t: bool(wanted.intersection(t)))
    if f.min_disagreement is not None:
        keep &= frame["disagreement"].fillna(-1.0) > f.min_disagreement
    kept = frame[keep]
    if f.sample is not None and len(kept) > f.sample:
        rank = [hashlib.sha256(f"{s}/{i}".encode()).hexdigest() for s, i in zip(kept["split"], kept["item_id"])]
        chosen = sorted(range(len(kept)), key=rank.__getitem__)[: f.sample]
        kept = kept.iloc[sorted(chosen)]
    return kept


def with_tags(frame: pd.DataFrame, current: pd.DataFrame) -> pd.DataFrame:
    """Add each item's annotation tags (of every annotator's current annotation) as a `tags` column."""
    tags: dict[tuple[str, str], set[str]] = {}
    # Columns as lists, not rows: at 20,000 annotations, building row tuples (their times included) cost 0.2 s.
    for split, item_id, these in zip(current["split"].tolist(), current["item_id"].tolist(), current["tags"].tolist()):
        if these is not None and len(these):
            tags.setdefault((split, item_id), set()).update(these)
    out = frame.copy(deep=False)
    none: tuple[str, ...] = ()
    out["tags"] = [
        tuple(sorted(tags[k])) if k in tags else none for k in zip(out["split"].tolist(), out["item_id"].tolist())
    ]
    return out


def with_disagreement(frame: pd.DataFrame, probs: pd.DataFrame) -> pd.DataFrame:
    """Add the total variation between humans and a system's per-item probabilities (NaN where unscored)."""
    by_key = {(s, i): p for s, i, p in zip(probs["split"], probs["item_id"], probs["p"])}
    out = frame.copy()
    y = shares(catalog.counts_matrix(out)) if len(out) else np.empty((0, 0))
    out["disagreement"] = [
        float(0.5 * np.abs(row - by_key[k]).sum()) if k in by_key else np.nan
        for row, k in zip(y, zip(out["split"], out["item_id"]))
    ]
    return out
