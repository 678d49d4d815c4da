"""Compare systems with the humans on one selection of items (formulas: the README, Metrics). Pure: arrays in,
frames out.

Every metric but ECE is a mean of per-item values, so a bootstrap resample is a mean over resampled
rows. The fitted c and T* are per item and held fixed inside the bootstrap: fitted on other data
(a calibration split, or a run's held-out part) or cross-fitted, so that no item's score uses a c or
T* fitted on that item.
"""

from __future__ import annotations

import collections
import contextvars
import functools
import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from ethdash import metrics
from ethdash.evaluation import measures
from ethdash.votes import as_counts, shares, whole_votes

HUMAN_CEILING = "humans (second sample)"

# Fewer compared items than this and the metrics, their intervals and the fitted c and T* swing with
# every item added (T* went 50 → 0.19 → 100 over 20, 21, 53 real dilemmas): they are flagged.
SMALL_SAMPLE = 30
# Where c and T* are searched (ethdash.metrics): a fit at an end of its range did not find an optimum.
FIT_RANGES: dict[str, tuple[float, float]] = {
    "c": tuple(float(np.exp(b)) for b in metrics.LOG_C_BOUNDS),
    "T*": tuple(float(np.exp(b)) for b in metrics.LOG_T_BOUNDS),
}


@dataclass(frozen=True)
class Predictions:
    """A system's distributions over the selected items, with the c and T* each item is scored with."""

    label: str
    p: np.ndarray  # items x options, vote order (both option orders averaged for dilemmas)
    c: np.ndarray  # per item: Dirichlet concentration
    t: np.ndarray  # per item: temperature
    first: np.ndarray | None = None  # per item: mean P(first-listed option) over both orders (dilemmas)
    calibration: str = ""  # where c and T* come from, said in the table
    outside: np.ndarray | None = None  # per item: probability outside the answers (models only)

    def inputs(self, counts: np.ndarray, ordered: bool = False) -> measures.Inputs:
        return measures.Inputs(counts, self.p, self.c, self.t, self.first, self.outside, ordered)

    def subset(self, keep: np.ndarray) -> Predictions:
        first = None if self.first is None else self.first[keep]
        outside = None if self.outside is None else self.outside[keep]
        return Predictions(self.label, self.p[keep], self.c[keep], self.t[keep], first, self.calibration, outside)


def fitted(counts: object, p: object, has_counts: bool = True) -> tuple[float, float]:
    """(c, T*) fitted on these items: use on other items only. c needs whole votes: NaN for shares with no
    number of respondents (`has_counts` False)."""
    c = metrics.fit_concentration(whole_votes(counts), p) if has_counts else np.nan
    return c, metrics.fit_temperature(counts, p)


def with_fit(
    label: str, p: np.ndarray, c: float, t: float, first=None, calibration: str = "", outside=None
) -> Predictions:
    n = len(p)
    return Predictions(label, np.asarray(p, float), np.full(n, c), np.full(n, t), first, calibration, outside)


def cross_fitted(
    label: str,
    counts: object,
    p: object,
    first=None,
    folds: int = 2,
    seed: int = 0,
    has_counts: bool = True,
    outside=None,
) -> Predictions:
    """c and T* for each item fitted on the other folds (seeded): honest when no held-out data exists."""
    n, pp = as_counts(counts), np.asarray(p, dtype=float)
    fold = np.random.default_rng(seed).permutation(len(n)) % folds
    c, t = np.empty(len(n)), np.empty(len(n))
    for f in range(folds):
        inside = fold == f
        if inside.all():  # a single item: nothing else to fit on
            c[inside], t[inside] = np.nan, np.nan
            continue
        c[inside], t[inside] = fitted(n[~inside], pp[~inside], has_counts)
    return Predictions(label, pp, c, t, first, f"cross-fitted ({folds} folds)", outside)


def human_ceiling(second_counts: object) -> np.ndarray:
    """The second human sample as a prediction: its posterior mean under a uniform prior, (1 + n) / (N + K),
    so that an option nobody in the small sample chose does not get probability 0."""
    n = as_counts(second_counts)
    return (n + 1.0) / (n.sum(axis=1, keepdims=True) + n.shape[1])


def at_bound(value: float, bounds: tuple[float, float], tolerance: float = 1e-3) -> str | None:
    """Which end ("lower", "upper") of its search range a fitted value sits at, or None. "At" is within
    `tolerance` of the range's width on the log scale: where the objective flattens toward an end (c of a
    system the votes do not tell from a multinomial), the bounded search stops just short of it."""
    if not np.isfinite(value) or value <= 0:
        return None
    low, high = np.log(bounds[0]), np.log(bounds[1])
    for end, bound in (("lower", low), ("upper", high)):
        if abs(np.log(value) - bound) <= tolerance * (high - low):
            return end
    return None


def small_sample_warning(n_items: int) -> str | None:
    if n_items >= SMALL_SAMPLE:
        return None
    return (
        f"only {n_items} items (fewer than {SMALL_SAMPLE}): the metrics, their intervals and the fitted c and T* "
        "are unreliable"
    )


def fit_warnings(pred: Predictions) -> dict[str, str]:
    """Per metric ("dirichlet", "calibrated_xent"): a warning when the system's c or T* (any fold's) is
    at an end of its search range."""
    out = {}
    for metric, name, values in (("dirichlet", "c", pred.c), ("calibrated_xent", "T*", pred.t)):
        low, high = FIT_RANGES[name]
        # Per item, but one value per fold: each distinct value once (27,766 calls cost 0.3 s at corpus scale).
        hits = sorted({(end, float(v)) for v in np.unique(values) if (end := at_bound(float(v), (low, high)))})
        if hits:
            end, value = hits[-1]
            out[metric] = (
                f"{pred.label}: {name} = {value:.3g} is at the {end} end of its search range [{low:g}, {high:g}]: "
                f"the fit has no optimum inside it, so its {measures.label(metric)} rests on an arbitrary value"
            )
    return out


def fit_summary(pred: Predictions) -> str:
    """c and T* as the table uses them: one value, or one per fold when cross-fitted folds differ."""

    def values(v: np.ndarray) -> list[str]:
        finite = np.unique(np.asarray(v, dtype=float))  # sorted, one per fold
        return list(dict.fromkeys(f"{x:.3g}" for x in finite[np.isfinite(finite)])) or ["none"]

    c, t = values(pred.c), values(pred.t)
    per_fold = " (per fold)" if len(c) > 1 or len(t) > 1 else ""
    return f"c={' / '.join(c)}, T*={' / '.join(t)}{per_fold}"


def table_warnings(table: pd.DataFrame) -> list[str]:
    """The distinct warnings of a metric table, in order (for the page, a manifest, a caption)."""
    if "warning" not in table:
        return []
    out: list[str] = []
    for cell in table["warning"]:
        for warning in filter(None, str(cell).split("; ")) if cell else ():
            if warning not in out:
                out.append(warning)
    return out


def item_metrics(counts: object, pred: Predictions, ordered: bool = False) -> pd.DataFrame:
    """Per-item values of every mean metric that applies (accuracy: 1/0, NaN where the majority is tied)."""
    inputs = pred.inputs(as_counts(counts), ordered)
    return pd.DataFrame(
        {m.name: m.per_item(inputs) for m in measures.METRICS if m.per_item is not None and m.applies(inputs)}
    )


@functools.lru_cache(maxsize=2)
def resample_indices(n_items: int, n_resamples: int, seed: int) -> np.ndarray:
    """Item indices per resample, drawn exactly as metrics.bootstrap draws them (read-only: the same array is
    shared by every caller; drawing it costs as much as a metric at corpus scale). Kept as 32-bit integers:
    111 MB at 1,000 resamples of 27,766 items instead of 222."""
    rng = np.random.default_rng(seed)
    idx = np.stack([rng.integers(0, n_items, n_items).astype(np.int32) for _ in range(n_resamples)])
    idx.flags.writeable = False
    return idx


def _interval(estimate: float, resampled: np.ndarray, level: float) -> tuple[float, float, float]:
    if np.isnan(resampled).all():
        return estimate, np.nan, np.nan
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.nanpercentile(resampled, [tail, 100.0 - tail])
    return float(estimate), float(low), float(high)


PerMetric = dict[str, tuple[float, np.ndarray]]  # metric → (estimate, its value on every resample)


# A system's resampled metrics, by the content they are computed from: the metric table, the paired
# differences and the best system of one comparison need each system's several times.
_RESAMPLED: collections.OrderedDict[bytes, PerMetric] = collections.OrderedDict()
_RESAMPLED_KEPT = 256  # about 100 KB each: people tables add one per person and system
_RESAMPLED_LOCK = threading.Lock()  # Streamlit runs each session's script in its own thread


def _content_key(counts: np.ndarray, pred: Predictions, n_resamples: int, seed: int, ordered: bool) -> bytes:
    digest = hashlib.blake2b(repr((n_resamples, seed, ordered, counts.shape, pred.p.shape)).encode())
    for array in (counts, pred.p, pred.c, pred.t, pred.first, pred.outside):
        digest.update(b"-" if array is None else np.ascontiguousarray(array, dtype=float).tobytes())
    return digest.digest()


class Kept(Protocol):
    """Where bootstrap results outlive the process (the store: `ethdash.evaluation.kept`)."""

    def load(self, keys: list[bytes]) -> dict[bytes, PerMetric]: ...

    def save(self, results: dict[bytes, PerMetric]) -> None: ...


_KEPT: contextvars.ContextVar[Kept | None] = contextvars.ContextVar("bootstrap_kept", default=None)
# Smaller comparisons are bootstrapped in a few milliseconds: not worth a place among the few kept (people
# tables compare each annotator's few hundred items).
KEPT_FROM_ITEMS = 300


def keep_in(kept: Kept | None) -> contextvars.Token:
    """Bootstrap results of large comparisons made in this thread (a page's script run, a command) are looked
    up in and saved to `kept`; None: kept in this process only."""
    return _KEPT.set(kept)


@contextmanager
def kept_in(kept: Kept | None) -> Iterator[None]:
    token = keep_in(kept)
    try:
        yield
    finally:
        _KEPT.reset(token)


def _per_metric(
    counts: np.ndarray, preds: list[Predictions], n_resamples: int, seed: int, ordered: bool
) -> list[PerMetric]:
    """For each system, each compared metric's estimate and its value on every resample (none where it is
    undefined); remembered by content, so that a system's bootstrap is computed once per comparison, and
    those not remembered computed together (see `measures.resampled`). A large comparison's are also looked
    up in and saved to where `keep_in` says, so that they are computed once, not once per process."""
    keys = [_content_key(counts, pred, n_resamples, seed, ordered) for pred in preds]
    with _RESAMPLED_LOCK:
        found = {key: _RESAMPLED[key] for key in keys if key in _RESAMPLED}
        for key in found:
            _RESAMPLED.move_to_end(key)
    kept = _KEPT.get() if len(counts) >= KEPT_FROM_ITEMS else None
    if kept is not None and len(found) < len(keys):
        loaded = kept.load([key for key in keys if key not in found])
        found.update(loaded)
        _remember(loaded)
    missing = {key: pred for key, pred in zip(keys, preds) if key not in found}
    if missing:
        chosen, estimates = [], []
        for pred in missing.values():
            inputs = pred.inputs(counts, ordered)
            values = {m: m.value(inputs) for m in measures.COMPARED if m.applies(inputs)}
            # Undefined on these items (entropy ρ of a constant system, accuracy of ties): no row.
            chosen.append((tuple(m for m, v in values.items() if not np.isnan(v)), inputs))
            estimates.append(values)
        idx = resample_indices(len(counts), n_resamples, seed)
        computed = {}
        for key, (metrics_, _), values, resampled in zip(missing, chosen, estimates, measures.resampled(chosen, idx)):
            computed[key] = {m.name: (values[m], resampled[m.name]) for m in metrics_}
        found.update(computed)
        _remember(computed)
        if kept is not None:
            kept.save(computed)
    return [found[key] for key in keys]


def _remember(results: dict[bytes, PerMetric]) -> None:
    with _RESAMPLED_LOCK:
        _RESAMPLED.update(results)
        while len(_RESAMPLED) > _RESAMPLED_KEPT:
            _RESAMPLED.popitem(last=False)


def metric_table(
    counts: object,
    preds: list[Predictions],
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    ordered: bool = False,
) -> pd.DataFrame:
    """One row per (system, metric): estimate and percentile bootstrap interval over items, and a warning
    where the sample is small or the row's fitted c or T* is at an end of its search range. `ordered`: the
    options are a scale (the dataset says so), where distances along it apply."""
    n = as_counts(counts)
    small = small_sample_warning(len(n))
    rows = []
    for pred, per_metric in zip(preds, _per_metric(n, preds, n_resamples, seed, ordered)):
        at_ends = fit_warnings(pred)
        for name, (estimate, resampled) in per_metric.items():
            est, low, high = _interval(estimate, resampled, level)
            row = _row(pred.label, name, est, low, high, len(n), pred)
            row["warning"] = "; ".join(filter(None, (small, at_ends.get(name))))
            rows.append(row)
    return pd.DataFrame(rows)


def _row(system: str, name: str, est: float, low: float, high: float, n_items: int, pred: Predictions) -> dict:
    return {
        "system": system,
        "metric": name,
        "estimate": est,
        "low": low,
        "high": high,
        "items": n_items,
        "c": float(np.nanmedian(pred.c)) if name == "dirichlet" else np.nan,
        "T": float(np.nanmedian(pred.t)) if name == "calibrated_xent" else np.nan,
        "calibration": pred.calibration if name in ("dirichlet", "calibrated_xent") else "",
    }


def paired_differences(
    counts: object,
    a: Predictions,
    b: Predictions,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    ordered: bool = False,
) -> pd.DataFrame:
    """metric(a) − metric(b) per metric, both systems scored on the same resampled items."""
    n = as_counts(counts)
    ma, mb = _per_metric(n, [a, b], n_resamples, seed, ordered)
    rows = []
    for metric in measures.COMPARED:
        name = metric.name
        if name in ma and name in mb:
            (ea, ra), (eb, rb) = ma[name], mb[name]
            if metric.signed:  # best at 0: compare its size
                ea, ra, eb, rb = abs(ea), np.abs(ra), abs(eb), np.abs(rb)
            est, low, high = _interval(ea - eb, ra - rb, level)
            rows.append(
                {
                    "metric": f"|{name}|" if metric.signed else name,
                    "difference": est,
                    "low": low,
                    "high": high,
                    "favours": _favours(low, high, metric.lower_is_better, a.label, b.label),
                }
            )
    return pd.DataFrame(rows)


def best_systems(
    counts: object,
    preds: list[Predictions],
    table: pd.DataFrame,
    n_resamples: int = 1000,
    seed: int = 0,
    ordered: bool = False,
) -> dict[str, str | None]:
    """Per compared metric, the system with the best estimate (the smallest size for a signed metric) when
    its paired interval against the runner-up excludes 0, else None. Only the systems in `preds` compete
    (pass the models, not the human ceiling)."""
    labels = {p.label for p in preds}
    by_label = {p.label: p for p in preds}
    shown = table[table["system"].isin(labels)]
    best: dict[str, str | None] = {}
    pairs: dict[tuple[str, str], pd.DataFrame] = {}
    for metric in measures.COMPARED:
        rows = shown[shown["metric"] == metric.name].dropna(subset=["estimate"])
        if len(rows) < 2:
            continue
        key = rows["estimate"].abs() if metric.signed else rows["estimate"]
        ranked = rows.assign(key=key if metric.lower_is_better else -key).sort_values("key", kind="stable")
        first, runner_up = ranked["system"].iloc[0], ranked["system"].iloc[1]
        if (first, runner_up) not in pairs:
            pairs[first, runner_up] = paired_differences(
                counts, by_label[first], by_label[runner_up], n_resamples, seed, ordered=ordered
            ).set_index("metric")
        name = f"|{metric.name}|" if metric.signed else metric.name
        diff = pairs[first, runner_up].loc[name]
        best[metric.name] = first if diff["favours"] == first else None
    return best


def _favours(low: float, high: float, lower_is_better: bool, a: str, b: str) -> str:
    if np.isnan(low) or low <= 0 <= high:
        return "neither (interval covers 0)"
    a_lower = high < 0
    return a if a_lower == lower_is_better else b


def references(counts: object, n_draws: int = 200, seed: int = 0, has_counts: bool = True) -> pd.DataFrame:
    """Uniform, class prior and BEST soft xent, recomputed on these items. BEST draws from the posterior of
    whole votes: NaN for shares with no number of respondents."""
    ref = metrics.judgment_references(counts, has_counts, n_draws, seed)
    best = ref.best_xent
    return pd.DataFrame(
        {"reference": ["uniform", "class prior", "BEST"], "xent": [ref.uniform_xent, ref.class_prior_xent, best]}
    )


def reliability(counts: object, preds: list[Predictions], n_bins: int = 10) -> pd.DataFrame:
    """The reliability diagram's points per system (the ECE's bins)."""
    frames = []
    for pred in preds:
        bins = metrics.reliability_bins(counts, pred.p, n_bins)
        frames.append(
            pd.DataFrame(
                {
                    "system": pred.label,
                    "bin_low": bins.edges[:-1],
                    "bin_high": bins.edges[1:],
                    "items": bins.count,
                    "confidence": bins.confidence,
                    "observed": bins.observed,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def disagreements(counts: object, item_ids: object, preds: list[Predictions]) -> pd.DataFrame:
    """Per item: each system's total variation from the humans, and between every two systems."""
    y = shares(counts)
    out = pd.DataFrame({"item_id": list(item_ids)})
    for pred in preds:
        out[f"TV humans vs {pred.label}"] = metrics.total_variation(y, pred.p)
    for i, a in enumerate(preds):
        for b in preds[i + 1 :]:
            out[f"TV {a.label} vs {b.label}"] = metrics.total_variation(a.p, b.p)
    return out
