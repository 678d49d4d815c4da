"""Vote arithmetic for one or many items. Pure: numpy and scipy only.

`counts` is an (items x options) array of non-negative vote counts; for survey data, shares times each
item's number of respondents (exact, so not always whole), or plain shares where that number is unknown.
"""

from __future__ import annotations

import numpy as np
from scipy import special  # not scipy.stats: its import costs 0.4 s of every command

# An anecdote is "controversial" when the binarized vote margin is below this.
ANECDOTE_CONTROVERSIAL_MARGIN = 0.5


def as_counts(counts: object) -> np.ndarray:
    arr = np.asarray(counts, dtype=float)
    if arr.ndim == 1:
        arr = arr[None, :]
    return arr


def shares(counts: object) -> np.ndarray:
    """The human distribution ȳ = n / N per item."""
    arr = as_counts(counts)
    return arr / arr.sum(axis=1, keepdims=True)


def whole_votes(counts: object) -> np.ndarray:
    """The counts as whole votes, for what counts votes (Dirichlet score, posterior intervals, BEST): vote
    counts unchanged, shares times respondents rounded to the nearest whole vote."""
    return np.rint(as_counts(counts))


def rounding(counts: object) -> float:
    """The largest change of a share that rounding to whole votes makes (0 for vote counts)."""
    n = as_counts(counts)
    if n.size == 0:
        return 0.0
    whole = whole_votes(n)
    totals = np.where(whole.sum(axis=1, keepdims=True) > 0, whole.sum(axis=1, keepdims=True), 1.0)
    return float(np.max(np.abs(whole / totals - shares(n))))


def vote_margin(counts: object) -> np.ndarray:
    """Top vote share minus the second."""
    s = np.sort(shares(counts), axis=1)
    return s[:, -1] - s[:, -2]


def majority(counts: object) -> np.ndarray:
    """Index of the majority option per item, or -1 where the top count is tied."""
    arr = as_counts(counts)
    top = arr.max(axis=1, keepdims=True)
    tied = (arr == top).sum(axis=1) > 1
    return np.where(tied, -1, arr.argmax(axis=1))


def unanimous(counts: object) -> np.ndarray:
    arr = as_counts(counts)
    return (arr > 0).sum(axis=1) <= 1


def anecdote_controversial(binarized_counts: object) -> np.ndarray:
    return vote_margin(binarized_counts) < ANECDOTE_CONTROVERSIAL_MARGIN


def posterior_interval(counts: object, level: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """Equal-tailed interval of each option's share under the Dirichlet posterior α = 1 + n.

    The marginal of a Dirichlet is Beta(α_k, Σα − α_k). Returns (low, high), each items x options.
    """
    alpha = as_counts(counts) + 1.0
    rest = alpha.sum(axis=1, keepdims=True) - alpha
    tail = (1.0 - level) / 2.0
    return special.betaincinv(alpha, rest, tail), special.betaincinv(alpha, rest, 1.0 - tail)  # Beta quantiles
