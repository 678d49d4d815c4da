"""Every metric, declared once: its name, label, unit, direction, what it needs, and how it is computed,
either per item (the metric is the mean, and a bootstrap resample is a mean over resampled items) or over
the whole corpus (ECE, macro-F1, balanced accuracy, the entropy correlation: computed for a matrix of item
weights, so that all bootstrap resamples are one matrix product). Compare, the reproduction report,
fine-tune evaluation, the seed spread and the pages iterate `METRICS`; a new metric is one entry here (its
formula in `ethdash.metrics`) plus its tests.

Two families: the study's metrics (arXiv 2410.07826) and the field's (shared tasks on learning with
disagreement, distributional alignment), shown as two tables where space is short.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import special

from ethdash import metrics
from ethdash.votes import as_counts, majority, shares, whole_votes


@dataclass(frozen=True)
class Inputs:
    """What a metric may read, over the same items: human votes, a system's distributions, the fitted
    Dirichlet concentration c and temperature T* per item, P(first-listed option) for dilemmas, the
    probability the system put outside the answers, and whether the options are ordered (a scale)."""

    counts: np.ndarray  # items x options
    p: np.ndarray  # items x options, vote order
    c: np.ndarray  # per item
    t: np.ndarray  # per item
    first: np.ndarray | None = None  # per item; None where option order does not exist
    outside: np.ndarray | None = None  # per item; None where not measured (people, the human ceiling)
    ordered: bool = False  # the options are a scale (declared by the dataset): Wasserstein-1 applies

    def subset(self, idx: np.ndarray) -> Inputs:
        first = None if self.first is None else self.first[idx]
        outside = None if self.outside is None else self.outside[idx]
        return Inputs(self.counts[idx], self.p[idx], self.c[idx], self.t[idx], first, outside, self.ordered)


@dataclass(frozen=True)
class Weighted:
    """A corpus metric that is a function of weighted sums over items: `finish(w @ columns(x), Σ w)` per row of
    item weights w. The bootstrap computes every such metric of every system in one matrix product per chunk
    of resamples; metrics with the same `columns` function (macro-F1, balanced accuracy) share their sums."""

    columns: Callable[[Inputs], np.ndarray]  # items x k
    finish: Callable[[np.ndarray, np.ndarray], np.ndarray]  # (rows x k sums, rows' total weight) -> rows


@dataclass(frozen=True)
class Metric:
    name: str
    label: str
    unit: str  # "nats", or "" for a share or a probability difference
    lower_is_better: bool
    per_item: Callable[[Inputs], np.ndarray] | None = None  # NaN where undefined for an item
    # When the metric is not a mean over items: its value per row of item weights (resamples x items), or
    # the weighted sums it is computed from.
    corpus: Callable[[Inputs, np.ndarray], np.ndarray] | Weighted | None = None
    needs_order: bool = False  # dilemmas only: read from P(first-listed)
    needs_outside: bool = False  # read from the mass outside the answers, which only models have
    needs_scale: bool = False  # only where the dataset declares its options ordered
    signed: bool = False  # best at 0, either side: two systems are compared by its size
    compared: bool = True  # a row of the comparison tables (KL is not: its differences are soft xent's)
    family: str = "study"  # "study" (the paper's) or "field" (the field's), one table each where space is short

    def value(self, inputs: Inputs) -> float:
        """The metric over these items (NaN where it is undefined on all of them)."""
        if self.corpus is not None:
            return float(self.weighted(inputs, np.ones((1, len(inputs.p))))[0])
        column = self.per_item(inputs)
        if np.isnan(column).all():
            return float("nan")
        return float(np.nanmean(column))

    def weighted(self, inputs: Inputs, weights: np.ndarray) -> np.ndarray:
        """A corpus metric's value per row of item weights."""
        if isinstance(self.corpus, Weighted):
            return self.corpus.finish(weights @ self.corpus.columns(inputs), weights.sum(axis=1))
        return self.corpus(inputs, weights)

    def applies(self, inputs: Inputs) -> bool:
        return (
            (not self.needs_order or inputs.first is not None)
            and (not self.needs_outside or inputs.outside is not None)
            and (not self.needs_scale or inputs.ordered)
        )


def _tempered(x: Inputs) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return special.softmax(np.log(x.p) / x.t[:, None], axis=1)


def _hit(x: Inputs) -> np.ndarray:
    """1 where argmax p is the majority option, 0 where not, NaN where the majority is tied."""
    maj = majority(x.counts)
    return np.where(maj >= 0, (x.p.argmax(axis=1) == maj).astype(float), np.nan)


def _calibration_gaps(x: Inputs) -> np.ndarray:
    return metrics.ece_columns(x.counts, x.p)


def _class_tallies(x: Inputs) -> np.ndarray:
    return metrics.class_tally_columns(x.counts, x.p)


def _position_bias(x: Inputs) -> np.ndarray:
    return np.full(len(x.p), np.nan) if x.first is None else x.first - 0.5


METRICS: tuple[Metric, ...] = (
    Metric("xent", "soft xent", "nats", True, per_item=lambda x: metrics.soft_xent_items(x.counts, x.p)),
    Metric(
        "dirichlet",
        "Dirichlet score",
        "nats",
        True,
        per_item=lambda x: metrics.dirichlet_multinomial_nll_items(whole_votes(x.counts), x.c[:, None] * x.p),
    ),
    Metric(
        "calibrated_xent",
        "calibrated xent",
        "nats",
        True,
        per_item=lambda x: metrics.soft_xent_items(x.counts, _tempered(x)),
    ),
    Metric("accuracy", "accuracy", "", False, per_item=_hit),
    Metric("brier", "Brier", "", True, per_item=lambda x: metrics.brier_items(x.counts, x.p)),
    Metric("ece", "ECE", "", True, corpus=Weighted(_calibration_gaps, metrics.ece_from_sums)),
    Metric("position_bias", "position bias", "", True, per_item=_position_bias, needs_order=True, signed=True),
    Metric("kl", "KL", "nats", True, per_item=lambda x: metrics.kl_items(x.counts, x.p), compared=False),
    # The field's: distances between distributions, classification against the majority, and more.
    Metric(
        "jsd",
        "JS divergence",
        "nats",
        True,
        per_item=lambda x: metrics.jensen_shannon_items(x.counts, x.p),
        family="field",
    ),
    Metric(
        "tv",
        "total variation",
        "",
        True,
        per_item=lambda x: metrics.total_variation(shares(x.counts), x.p),
        family="field",
    ),
    Metric(
        "wasserstein",
        "Wasserstein-1",
        "",
        True,
        per_item=lambda x: metrics.wasserstein1_items(x.counts, x.p),
        needs_scale=True,
        family="field",
    ),
    Metric(
        "macro_f1",
        "macro-F1",
        "",
        False,
        corpus=Weighted(_class_tallies, metrics.macro_f1_from_tallies),
        family="field",
    ),
    Metric(
        "balanced_accuracy",
        "balanced accuracy",
        "",
        False,
        corpus=Weighted(_class_tallies, metrics.balanced_accuracy_from_tallies),
        family="field",
    ),
    Metric(
        "entropy_rho",
        "entropy ρ",
        "",
        False,
        corpus=lambda x, w: metrics.entropy_correlation_weighted(x.counts, x.p, w),
        family="field",
    ),
    Metric(
        "outside", "mass outside answers", "", True, per_item=lambda x: x.outside, needs_outside=True, family="field"
    ),
)
BY_NAME: dict[str, Metric] = {m.name: m for m in METRICS}
COMPARED: tuple[Metric, ...] = tuple(m for m in METRICS if m.compared)
FAMILIES: dict[str, str] = {"study": "The study's metrics", "field": "The field's metrics"}


def compared(family: str | None = None) -> tuple[Metric, ...]:
    """The compared metrics, in the registry's order; those of one family when given."""
    return tuple(m for m in COMPARED if family is None or m.family == family)


def label(name: str, with_unit: bool = False) -> str:
    metric = BY_NAME[name]
    return f"{metric.label} ({metric.unit})" if with_unit and metric.unit else metric.label


def readable(name: str) -> str:
    """A metric name as tables print it: its label, "|label|" for the size of a signed metric."""
    inner = name.strip("|")
    return f"|{BY_NAME[inner].label}|" if name.startswith("|") else BY_NAME[name].label


def values(inputs: Inputs, chosen: tuple[Metric, ...] = METRICS) -> dict[str, float]:
    """Each applicable metric's value over these items."""
    return {m.name: m.value(inputs) for m in chosen if m.applies(inputs)}


# Resamples weighed at once: a chunk's weights are chunk x items floats.
_WEIGHT_CELLS = 1_000_000


@dataclass(frozen=True)
class _Layout:
    """Where one system's sums are in the columns that every system's metrics are weighed from."""

    inputs: Inputs
    per_item: list[Metric]  # their sums of defined values at `start`, the counts of defined values after
    start: int
    sums: list[tuple[Metric, slice]]  # `Weighted` corpus metrics and their columns
    other: list[Metric]  # corpus metrics computed from the weights themselves (the entropy correlation)


def resampled(systems: list[tuple[tuple[Metric, ...], Inputs]], idx: np.ndarray) -> list[dict[str, np.ndarray]]:
    """Each system's metrics on every bootstrap resample (rows of item indices), for several systems over the
    same items in one pass over chunks of resamples: each chunk's item weights (how often each item is
    drawn) are built once, and one matrix product with them gives every system's means of per-item metrics
    (NaN values left out, as `np.nanmean` of the resampled values) and the sums its `Weighted` corpus metrics
    are computed from; the others read the same weights (the humans' side of the entropy correlation is then
    ranked once per chunk). Gathering the resampled values metric by metric cost about 1.4 s per metric at
    28,000 items."""
    n_items = len(idx[0]) if len(idx) else 0
    blocks: list[np.ndarray] = []
    layouts = []
    width = 0
    for chosen, inputs in systems:
        per_item = [m for m in chosen if m.corpus is None]
        columns = np.column_stack([m.per_item(inputs) for m in per_item]) if per_item else np.empty((n_items, 0))
        defined = ~np.isnan(columns)
        blocks += [np.where(defined, columns, 0.0), defined.astype(float)]
        layout = _Layout(inputs, per_item, width, [], [])
        width += 2 * len(per_item)
        placed: dict[Callable, slice] = {}  # one block per columns function: metrics that share it share sums
        for metric in chosen:
            if isinstance(metric.corpus, Weighted):
                if metric.corpus.columns not in placed:
                    block = metric.corpus.columns(inputs)
                    blocks.append(block)
                    placed[metric.corpus.columns] = slice(width, width + block.shape[1])
                    width += block.shape[1]
                layout.sums.append((metric, placed[metric.corpus.columns]))
            elif metric.corpus is not None:
                layout.other.append(metric)
        layouts.append(layout)
    stacked = np.hstack(blocks) if blocks else np.empty((n_items, 0))

    def weigh(rows: slice) -> list[dict[str, np.ndarray]]:
        weights = metrics.resample_weights(idx[rows], n_items)
        sums, total = weights @ stacked, weights.sum(axis=1)
        found = []
        for layout in layouts:
            k, at = len(layout.per_item), layout.start
            count = sums[:, at + k : at + 2 * k]
            with np.errstate(invalid="ignore", divide="ignore"):  # a resample of tied items alone has no accuracy
                means = np.where(count > 0, sums[:, at : at + k] / count, np.nan)
            values = {metric.name: means[:, j] for j, metric in enumerate(layout.per_item)}
            values.update({metric.name: metric.corpus.finish(sums[:, cols], total) for metric, cols in layout.sums})
            values.update({metric.name: metric.corpus(layout.inputs, weights) for metric in layout.other})
            found.append(values)
        return found

    # (Two chunks on two threads gained 4% at corpus scale: cumsum, most of the entropy ρ, holds the GIL.)
    chunk = max(1, _WEIGHT_CELLS // max(n_items, 1))
    done = [weigh(slice(start, start + chunk)) for start in range(0, len(idx), chunk)]
    if not done:
        return [{} for _ in systems]
    return [
        {m.name: np.concatenate([chunk_values[s][m.name] for chunk_values in done]) for m in chosen}
        for s, (chosen, _) in enumerate(systems)
    ]


def fitted_inputs(counts: object, p: object, first: np.ndarray | None = None, has_counts: bool = True) -> Inputs:
    """Inputs with c and T* fitted on these same items (a run's held-out evaluation); c (from whole votes)
    is NaN for shares with no number of respondents."""
    n, pp = as_counts(counts), np.asarray(p, dtype=float)
    c = metrics.fit_concentration(whole_votes(n), pp) if has_counts else np.nan
    t = metrics.fit_temperature(n, pp)
    return Inputs(n, pp, np.full(len(n), c), np.full(len(n), t), first)
