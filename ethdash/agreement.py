"""Agreement among people who label the same items: Krippendorff's α (nominal) and pairwise agreement, with
percentile bootstrap intervals over items. Pure: numpy and pandas, no I/O.

`labels` is a long frame with one row per judgment: `item` (any hashable id), `annotator` and `label` (an
option's name). An item counts toward α where at least two people labelled it (its pairable values).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd

from ethdash.metrics import resample_weights


@dataclass(frozen=True)
class Estimate:
    value: float  # NaN where undefined (fewer than two pairable items, or one label only)
    low: float
    high: float
    items: int  # items that count (α: labelled by two people or more; a pair: labelled by both)


def _coincidences(labels: pd.DataFrame) -> tuple[np.ndarray, list]:
    """Per item with two or more labels, its contribution to the coincidence matrix, flattened: for every
    ordered pair of labels from different people, 1 / (m_u − 1), m_u the item's number of labels."""
    categories = sorted(labels["label"].unique())
    index = {c: i for i, c in enumerate(categories)}
    k = len(categories)
    rows, items = [], []
    for item, group in labels.groupby("item", sort=True):
        counts = np.bincount([index[v] for v in group["label"]], minlength=k).astype(float)
        m = counts.sum()
        if m < 2:
            continue
        o = (np.outer(counts, counts) - np.diag(counts)) / (m - 1.0)  # pairs of different people only
        rows.append(o.ravel())
        items.append(item)
    return (np.array(rows).reshape(len(rows), k * k), items)


def _alpha_from(o: np.ndarray, k: int) -> np.ndarray:
    """Nominal α per row of flattened coincidence matrices: 1 − (n − 1) Σ_{c≠k} o_ck / Σ_{c≠k} n_c n_k."""
    o = o.reshape(len(o), k, k)
    n_c = o.sum(axis=2)
    n = n_c.sum(axis=1)
    off = ~np.eye(k, dtype=bool)
    observed = o[:, off].sum(axis=1)
    expected = (n_c[:, :, None] * n_c[:, None, :])[:, off].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(expected > 0, 1.0 - (n - 1.0) * observed / expected, np.nan)


def _interval(value: float, resampled: np.ndarray, level: float) -> tuple[float, float]:
    if np.isnan(value) or np.isnan(resampled).all():
        return float("nan"), float("nan")
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.nanpercentile(resampled, [tail, 100.0 - tail])
    return float(low), float(high)


def _resampled(statistic, n_items: int, n_resamples: int, seed: int) -> np.ndarray:
    """statistic(weights) over bootstrap resamples of the items, drawn in chunks of about a million cells."""
    rng = np.random.default_rng(seed)
    chunk = max(1, 1_000_000 // max(n_items, 1))
    out = []
    for start in range(0, n_resamples, chunk):
        rows = min(chunk, n_resamples - start)
        out.append(statistic(resample_weights(rng.integers(0, n_items, (rows, n_items)), n_items)))
    return np.concatenate(out)


def krippendorff_alpha(labels: pd.DataFrame, n_resamples: int = 1000, seed: int = 0, level: float = 0.95) -> Estimate:
    """Krippendorff's α for nominal labels; its interval resamples items (with their labels)."""
    if labels.empty:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    o, items = _coincidences(labels)
    k = int(np.sqrt(o.shape[1])) if len(items) else 0
    if len(items) < 2 or k < 2:
        return Estimate(float("nan"), float("nan"), float("nan"), len(items))
    value = float(_alpha_from(o.sum(axis=0, keepdims=True), k)[0])
    resampled = _resampled(lambda w: _alpha_from(w @ o, k), len(items), n_resamples, seed)
    return Estimate(value, *_interval(value, resampled, level), len(items))


def pairwise(labels: pd.DataFrame, n_resamples: int = 1000, seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """Per pair of annotators: the share of the items both labelled on which they chose the same option, its
    interval (resampling those items), and how many items that is."""
    wide = labels.pivot_table(index="item", columns="annotator", values="label", aggfunc="first")
    rows = []
    for a, b in combinations(sorted(wide.columns), 2):
        both = wide[[a, b]].dropna()
        same = (both[a] == both[b]).to_numpy(dtype=float)
        if len(same) == 0:
            value, low, high = float("nan"), float("nan"), float("nan")
        else:
            value = float(same.mean())
            resampled = _resampled(lambda w, same=same: w @ same / len(same), len(same), n_resamples, seed)
            low, high = _interval(value, resampled, level)
        rows.append({"annotator": a, "other": b, "agreement": value, "low": low, "high": high, "items": len(same)})
    return pd.DataFrame(rows, columns=["annotator", "other", "agreement", "low", "high", "items"])
