"""Every metric, declared once: its name, label, unit, direction, what it needs, and how it is computed,
either per item (the metric is the mean, and a bootstrap resample is a mean over resampled items) or over
the whole corpus (ECE, recomputed on each resample). Compare, the reproduction report, fine-tune
evaluation, the seed spread and the pages iterate `METRICS`; a new metric is one entry here (its formula
in `ethdash.metrics`) plus its tests.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import special

from ethdash import metrics
from ethdash.votes import as_counts, majority, whole_votes


@dataclass(frozen=True)
class Inputs:
    """What a metric may read, over the same items: human votes, a system's distributions, the fitted
    Dirichlet concentration c and temperature T* per item, and P(first-listed option) for dilemmas."""

    counts: np.ndarray  # items x options
    p: np.ndarray  # items x options, vote order
    c: np.ndarray  # per item
    t: np.ndarray  # per item
    first: np.ndarray | None = None  # per item; None where option order does not exist

    def subset(self, idx: np.ndarray) -> Inputs:
        first = None if self.first is None else self.first[idx]
        return Inputs(self.counts[idx], self.p[idx], self.c[idx], self.t[idx], first)


@dataclass(frozen=True)
class Metric:
    name: str
    label: str
    unit: str  # "nats", or "" for a share or a probability difference
    lower_is_better: bool
    per_item: Callable[[Inputs], np.ndarray] | None = None  # NaN where undefined for an item
    corpus: Callable[[Inputs], float] | None = None  # when the metric is not a mean over items
    needs_order: bool = False  # dilemmas only: read from P(first-listed)
    signed: bool = False  # best at 0, either side: two systems are compared by its size
    compared: bool = True  # a row of the comparison tables (KL is not: its differences are soft xent's)

    def value(self, inputs: Inputs) -> float:
        """The metric over these items (NaN where it is undefined on all of them)."""
        if self.corpus is not None:
            return float(self.corpus(inputs))
        column = self.per_item(inputs)
        if np.isnan(column).all():
            return float("nan")
        return float(np.nanmean(column))

    def applies(self, inputs: Inputs) -> bool:
        return not self.needs_order or inputs.first is not None


def _tempered(x: Inputs) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return special.softmax(np.log(x.p) / x.t[:, None], axis=1)


def _hit(x: Inputs) -> np.ndarray:
    """1 where argmax p is the majority option, 0 where not, NaN where the majority is tied."""
    maj = majority(x.counts)
    return np.where(maj >= 0, (x.p.argmax(axis=1) == maj).astype(float), np.nan)


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
    Metric("ece", "ECE", "", True, corpus=lambda x: metrics.ece(x.counts, x.p)),
    Metric("position_bias", "position bias", "", True, per_item=_position_bias, needs_order=True, signed=True),
    Metric("kl", "KL", "nats", True, per_item=lambda x: metrics.kl_items(x.counts, x.p), compared=False),
)
BY_NAME: dict[str, Metric] = {m.name: m for m in METRICS}
COMPARED: tuple[Metric, ...] = tuple(m for m in METRICS if m.compared)


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


def resampled(metric: Metric, inputs: Inputs, idx: np.ndarray) -> np.ndarray:
    """The metric on every bootstrap resample (rows of item indices)."""
    if metric.corpus is not None:
        return np.array([metric.corpus(inputs.subset(i)) for i in idx])
    column = metric.per_item(inputs)
    with warnings.catch_warnings():  # a resample with only tied items has no accuracy
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(column[idx], axis=1)


def fitted_inputs(counts: object, p: object, first: np.ndarray | None = None, has_counts: bool = True) -> Inputs:
    """Inputs with c and T* fitted on these same items (a run's held-out evaluation); c (from whole votes)
    is NaN for shares with no number of respondents."""
    n, pp = as_counts(counts), np.asarray(p, dtype=float)
    c = metrics.fit_concentration(whole_votes(n), pp) if has_counts else np.nan
    t = metrics.fit_temperature(n, pp)
    return Inputs(n, pp, np.full(len(n), c), np.full(len(n), t), first)
