"""The generic percentile bootstrap: the reference that ethdash's own resampling (ethdash.evaluation.statistics,
which resamples per-item values) is checked against. It lives with the tests on purpose: the library has one
bootstrap, and this independent one is what the tests compare it with."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ethdash.votes import as_counts


@dataclass(frozen=True)
class Interval:
    estimate: float  # the statistic on the full data
    low: float
    high: float
    level: float = 0.95


def _percentile_interval(estimate: float, resampled: np.ndarray, level: float) -> Interval:
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.nanpercentile(resampled, [tail, 100.0 - tail])
    return Interval(float(estimate), float(low), float(high), level)


def bootstrap(
    statistic: Callable[..., float],
    arrays: Sequence[object],
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> Interval:
    """Percentile bootstrap over items: every array is resampled with the same item indices.

    Anything fitted (c, T*) must be held fixed inside `statistic`.
    """
    data = [np.asarray(a) for a in arrays]
    n_items = len(data[0])
    rng = np.random.default_rng(seed)
    resampled = np.empty(n_resamples)
    for r in range(n_resamples):
        idx = rng.integers(0, n_items, n_items)
        resampled[r] = statistic(*(a[idx] for a in data))
    return _percentile_interval(statistic(*data), resampled, level)


def paired_bootstrap(
    statistic: Callable[[np.ndarray, np.ndarray], float],
    counts: object,
    p_a: object,
    p_b: object,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> Interval:
    """Interval of statistic(counts, p_a) − statistic(counts, p_b), resampling the same items."""

    def difference(n: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
        return statistic(n, a) - statistic(n, b)

    return bootstrap(difference, [as_counts(counts), as_counts(p_a), as_counts(p_b)], n_resamples, seed, level)
