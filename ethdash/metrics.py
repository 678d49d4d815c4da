"""The study's metrics (formulas: the README, Metrics). Pure: numpy and scipy, no I/O.

Conventions: `counts` is items x options of human votes n (N = row sums, ȳ = n / N); `p` is
items x options of model probabilities (rows sum to 1). Per-item functions end in `_items`;
the plain names return the mean over items, in nats.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special

from ethdash.votes import as_counts, majority, shares

# ---------------------------------------------------------------- proper scores


def soft_xent_items(counts: object, p: object) -> np.ndarray:
    """−Σ_k ȳ_k log p_k per item; a class with ȳ_k = 0 adds 0 (even where p_k = 0)."""
    y = shares(counts)
    pp = as_counts(p)
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(y > 0, y * np.log(pp), 0.0).sum(axis=1)


def soft_xent(counts: object, p: object) -> float:
    return float(soft_xent_items(counts, p).mean())


def kl_items(counts: object, p: object) -> np.ndarray:
    """KL(ȳ ‖ p) per item."""
    y = shares(counts)
    pp = as_counts(p)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(y > 0, y * (np.log(y) - np.log(pp)), 0.0)
    return terms.sum(axis=1)


def kl(counts: object, p: object) -> float:
    return float(kl_items(counts, p).mean())


def brier_items(counts: object, p: object) -> np.ndarray:
    return ((as_counts(p) - shares(counts)) ** 2).sum(axis=1)


def brier(counts: object, p: object) -> float:
    return float(brier_items(counts, p).mean())


def total_variation(p: object, q: object) -> np.ndarray:
    """Disagreement between two distributions per item: ½ Σ_k |p_k − q_k|."""
    return 0.5 * np.abs(as_counts(p) - as_counts(q)).sum(axis=1)


def jensen_shannon_items(counts: object, p: object) -> np.ndarray:
    """The Jensen–Shannon divergence ½ KL(ȳ ‖ m) + ½ KL(p ‖ m), m = (ȳ + p) / 2, per item, in nats (the
    divergence: scipy's `jensenshannon` is its square root, a distance). Bounded by ln 2."""
    y, pp = shares(counts), as_counts(p)
    m = 0.5 * (y + pp)
    with np.errstate(divide="ignore", invalid="ignore"):
        half_y = np.where(y > 0, y * (np.log(y) - np.log(m)), 0.0).sum(axis=1)
        half_p = np.where(pp > 0, pp * (np.log(pp) - np.log(m)), 0.0).sum(axis=1)
    return 0.5 * (half_y + half_p)


def wasserstein1_items(counts: object, p: object) -> np.ndarray:
    """Wasserstein-1 (earth mover's) distance between ȳ and p over ordered options one unit apart:
    Σ_k |F_ȳ(k) − F_p(k)| over the first K − 1 cumulative shares. Only for options with an order."""
    y, pp = shares(counts), as_counts(p)
    return np.abs(np.cumsum(y - pp, axis=1)[:, :-1]).sum(axis=1)


def entropy_items(p: object) -> np.ndarray:
    """Shannon entropy per row, in nats (0 log 0 = 0)."""
    pp = as_counts(p)
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(pp > 0, pp * np.log(pp), 0.0).sum(axis=1)


# ---------------------------------------------------------------- Dirichlet-multinomial


def dirichlet_multinomial_nll_items(counts: object, alpha: object) -> np.ndarray:
    """−log DirMult(n | α) per item, without the multinomial coefficient (as Scruples)."""
    n = as_counts(counts)
    a = np.broadcast_to(as_counts(alpha), n.shape)
    a_sum = a.sum(axis=1)
    loglik = (
        special.gammaln(a_sum)
        - special.gammaln(a_sum + n.sum(axis=1))
        + (special.gammaln(a + n) - special.gammaln(a)).sum(axis=1)
    )
    return -loglik


def dirichlet_nll_from_logits(counts: object, logits: object) -> float:
    """The training-loss form: α = exp(z) on the answer-token logits (mean nats per item)."""
    return float(dirichlet_multinomial_nll_items(counts, np.exp(as_counts(logits))).mean())


# The concentration is fitted on log c within these bounds; c at a bound is reported as such.
LOG_C_BOUNDS = (np.log(1e-3), np.log(1e6))


def fit_concentration(counts: object, p: object) -> float:
    """c maximising the Dirichlet-multinomial likelihood of the votes with α = c·p.

    Fit it on held-out data, never on the split being evaluated.
    """
    n, pp = as_counts(counts), as_counts(p)

    def objective(log_c: float) -> float:
        return float(dirichlet_multinomial_nll_items(n, np.exp(log_c) * pp).sum())

    res = optimize.minimize_scalar(objective, bounds=LOG_C_BOUNDS, method="bounded", options={"xatol": 1e-6})
    return float(np.exp(res.x))


def dirichlet_score(counts: object, p: object, c: float) -> float:
    """Mean Dirichlet-multinomial NLL with α = c·p, in nats per item."""
    return float(dirichlet_multinomial_nll_items(counts, c * as_counts(p)).mean())


# ---------------------------------------------------------------- temperature calibration


def temper(p: object, temperature: float) -> np.ndarray:
    """softmax(log p / T)."""
    with np.errstate(divide="ignore"):
        logp = np.log(as_counts(p))
    return special.softmax(logp / temperature, axis=1)


LOG_T_BOUNDS = (np.log(0.01), np.log(100.0))


def fit_temperature(counts: object, p: object) -> float:
    """T* = argmin_T xent(ȳ, softmax(log p / T)). Fit on held-out data only."""
    n, pp = as_counts(counts), as_counts(p)

    y = shares(n)
    voted = y > 0
    with np.errstate(divide="ignore"):
        logp = np.log(pp)  # once, not at each step of the search (the same values as `temper`'s)

    def objective(log_t: float) -> float:
        z = logp / float(np.exp(log_t))
        z -= z.max(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_q = z - np.log(np.exp(z).sum(axis=1, keepdims=True))  # log softmax(log p / T)
            return float(-np.where(voted, y * log_q, 0.0).sum(axis=1).mean())

    res = optimize.minimize_scalar(objective, bounds=LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-6})
    return float(np.exp(res.x))


def calibrated_xent(counts: object, p: object, temperature: float) -> float:
    return soft_xent(counts, temper(p, temperature))


# ---------------------------------------------------------------- accuracy and calibration


@dataclass(frozen=True)
class Accuracy:
    value: float  # NaN when no item has a strict majority
    n_scored: int
    n_tied: int  # items left out because their majority is tied


def accuracy(counts: object, p: object) -> Accuracy:
    """argmax p against the majority label; items whose majority is tied are left out."""
    maj = majority(counts)
    keep = maj >= 0
    hits = as_counts(p)[keep].argmax(axis=1) == maj[keep]
    value = float(hits.mean()) if keep.any() else float("nan")
    return Accuracy(value, int(keep.sum()), int((~keep).sum()))


@dataclass(frozen=True)
class ReliabilityBins:
    edges: np.ndarray  # n_bins + 1 edges on [0, 1]
    count: np.ndarray  # items per bin
    confidence: np.ndarray  # mean max_k p_k per bin (NaN where empty)
    observed: np.ndarray  # mean ȳ of the predicted class per bin (NaN where empty)

    @property
    def ece(self) -> float:
        used = self.count > 0
        gaps = np.abs(self.confidence[used] - self.observed[used])
        return float((gaps * self.count[used]).sum() / self.count.sum())


def _bin_index(confidence: np.ndarray, n_bins: int) -> np.ndarray:
    """Each confidence's bin: [k/n, (k+1)/n), the last one closed (confidence 1.0 falls in the top bin). From
    k = floor(confidence · n), not from the edges: linspace's 0.6 is 0.6000000000000001, which put a
    confidence of exactly 0.6 in the bin below."""
    index = np.floor(np.nan_to_num(confidence, nan=1.0) * n_bins)  # NaN in the top bin, as before: ECE NaN
    return np.clip(index, 0, n_bins - 1).astype(int)


def reliability_bins(counts: object, p: object, n_bins: int = 10) -> ReliabilityBins:
    """Equal-width bins of confidence = max_k p_k; the same bins draw the reliability diagram."""
    y, pp = shares(counts), as_counts(p)
    predicted = pp.argmax(axis=1)
    confidence = pp.max(axis=1)
    observed = y[np.arange(len(y)), predicted]
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = _bin_index(confidence, n_bins)
    count = np.bincount(index, minlength=n_bins).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf_mean = np.bincount(index, confidence, minlength=n_bins) / count
        obs_mean = np.bincount(index, observed, minlength=n_bins) / count
    return ReliabilityBins(edges, count.astype(int), conf_mean, obs_mean)


def ece(counts: object, p: object, n_bins: int = 10) -> float:
    return reliability_bins(counts, p, n_bins).ece


# ---------------------------------------------------------------- corpus-level, weighted
# Metrics that are not a mean over items, computed for many weightings of the items at once: `weights` is
# resamples x items (how often each item is drawn), one row of ones for the items as they are. A bootstrap
# is then one matrix product instead of a loop over resamples.


def resample_weights(idx: np.ndarray, n_items: int) -> np.ndarray:
    """How often each item is drawn in each resample (rows of item indices → rows of counts)."""
    rows = np.arange(len(idx))[:, None] * n_items
    return np.bincount((idx + rows).ravel(), minlength=len(idx) * n_items).reshape(len(idx), n_items).astype(float)


def ece_columns(counts: object, p: object, n_bins: int = 10) -> np.ndarray:
    """Per item and bin of `reliability_bins`: confidence − observed in the item's bin, 0 in the others.
    ECE is `ece_from_sums` of these columns' weighted sums: the bootstrap takes all resamples in one product."""
    y, pp = shares(counts), as_counts(p)
    confidence = pp.max(axis=1)
    observed = y[np.arange(len(y)), pp.argmax(axis=1)]
    index = _bin_index(confidence, n_bins)
    gaps = np.zeros((len(pp), n_bins))
    gaps[np.arange(len(pp)), index] = confidence - observed
    return gaps


def ece_from_sums(sums: np.ndarray, total: np.ndarray) -> np.ndarray:
    """ECE per row of weights from (weights @ `ece_columns`) and the weights' sums."""
    return np.abs(sums).sum(axis=1) / total


def ece_weighted(counts: object, p: object, weights: object, n_bins: int = 10) -> np.ndarray:
    """ECE per row of weights: Σ_b |Σ_{i in b} w_i (confidence_i − observed_i)| / Σ_i w_i, the bins of
    `reliability_bins` (per bin, |mean confidence − mean observed| times its share of the items)."""
    w = np.atleast_2d(np.asarray(weights, dtype=float))
    return ece_from_sums(w @ ece_columns(counts, p, n_bins), w.sum(axis=1))


def class_tally_columns(counts: object, p: object) -> np.ndarray:
    """Per item, three indicator blocks of one column per option: a hit (argmax p is the majority and that
    option), a prediction of the option, the option as the majority; items with a tied majority are 0
    everywhere. Their weighted sums are the class tallies of macro-F1 and balanced accuracy."""
    n, pp = as_counts(counts), as_counts(p)
    maj, options = majority(n), np.arange(n.shape[1])
    kept = (maj >= 0)[:, None]
    actual = (maj[:, None] == options) & kept
    predicted = (pp.argmax(axis=1)[:, None] == options) & kept
    return np.hstack([actual & predicted, predicted, actual]).astype(float)


def _tallies(sums: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(hits, predictions, majorities) per row and option, from weights @ `class_tally_columns`."""
    k = sums.shape[1] // 3
    return sums[:, :k], sums[:, k : 2 * k], sums[:, 2 * k :]


def _mean_where(values: np.ndarray, defined: np.ndarray) -> np.ndarray:
    """Row means over the defined entries; NaN for a row with none."""
    count = defined.sum(axis=1)
    total = np.where(defined, values, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def macro_f1_from_tallies(sums: np.ndarray, total: np.ndarray | None = None) -> np.ndarray:
    """Macro-F1 per row of (weights @ `class_tally_columns`)."""
    hits, predicted, actual = _tallies(sums)
    present = predicted + actual > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = 2.0 * hits / (predicted + actual)
    return _mean_where(f1, present)


def balanced_accuracy_from_tallies(sums: np.ndarray, total: np.ndarray | None = None) -> np.ndarray:
    """Balanced accuracy per row of (weights @ `class_tally_columns`)."""
    hits, _, actual = _tallies(sums)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = hits / actual
    return _mean_where(recall, actual > 0)


def macro_f1_weighted(counts: object, p: object, weights: object) -> np.ndarray:
    """Macro-F1 of argmax p against the majority (tied items left out), averaged over the options that
    are a majority or a prediction at least once (an option never predicted but present scores 0)."""
    w = np.atleast_2d(np.asarray(weights, dtype=float))
    return macro_f1_from_tallies(w @ class_tally_columns(counts, p))


def balanced_accuracy_weighted(counts: object, p: object, weights: object) -> np.ndarray:
    """Mean recall over the options that are the majority of at least one item (tied items left out)."""
    w = np.atleast_2d(np.asarray(weights, dtype=float))
    return balanced_accuracy_from_tallies(w @ class_tally_columns(counts, p))


# How each variable sorts (its order, and where its ties are), by content: a comparison's systems' entropies
# and the humans' are the same arrays for every chunk of resamples (sorting them again cost 0.6 s at corpus
# scale). A few entries: the humans' and each system's of one comparison.
_SORTINGS: collections.deque[tuple[np.ndarray, tuple]] = collections.deque(maxlen=8)


def _sorting(x: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
    """(x's stable sorting order, None without ties, else each tie group's last position and each sorted
    item's group)."""
    for entry in list(_SORTINGS):
        if entry[0].shape == x.shape and np.array_equal(entry[0], x):
            return entry[1]
    order = np.argsort(x, kind="stable")
    sorted_x = x[order]
    starts = np.r_[True, sorted_x[1:] != sorted_x[:-1]]  # where each distinct value starts
    ties = None
    if not starts.all():
        first = np.flatnonzero(starts)
        ties = (np.r_[first[1:], len(x)] - 1, np.cumsum(starts) - 1)
    found = (order, ties)
    _SORTINGS.append((x.copy(), found))
    return found


def _centred_ranks(x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x's sorting order, the weights in that order, the ranks in that order minus their mean), per row of
    weights: each item's rank in the sample that repeats item i w_i times (ties: the mean of the ranks they
    span, as scipy's rankdata), so that weighted moments of ranks are those of that sample. Midranks of a
    sample of N average (N + 1) / 2 whatever the ties: centring is exact, and no sum of ranks is needed."""
    order, ties = _sorting(x)
    sorted_w = np.take(w, order, axis=1)
    cumulative = np.cumsum(sorted_w, axis=1)
    centre = (cumulative[:, -1:] + 1.0) / 2.0
    if ties is None:  # each item spans its own w_i ranks: the midrank is cumulative − (w_i − 1) / 2
        ranks = cumulative
        ranks -= 0.5 * sorted_w
        ranks += 0.5 - centre
    else:
        last, group = ties
        end = cumulative[:, last]
        start = np.concatenate([np.zeros((len(w), 1)), end[:, :-1]], axis=1)
        ranks = ((start + end + 1.0) / 2.0)[:, group]
        ranks -= centre
    return order, sorted_w, ranks


# The last few shared sides of a correlation: (x, the weights object, (w · centred ranks of x in item order,
# Σ w · ranks²)). Systems compared on the same items are resampled with the same weights (see
# ethdash.evaluation.measures.resampled) and the humans' side is the same for each: computed once per chunk.
# Only equal x for the very same weights object is reused, so a race between Streamlit's threads can only
# cost a recomputation.
_RECENT_SIDES: collections.deque[tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]] = collections.deque(
    maxlen=4
)


def _weighted_side(x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    for entry in list(_RECENT_SIDES):
        if entry[1] is w and np.array_equal(entry[0], x):
            return entry[2]
    order, sorted_w, ranks = _centred_ranks(x, w)
    weighted_ranks = sorted_w * ranks
    in_item_order = np.empty_like(ranks)
    in_item_order[:, order] = weighted_ranks
    found = (in_item_order, np.einsum("ij,ij->i", weighted_ranks, ranks))
    _RECENT_SIDES.append((x.copy(), w, found))
    return found


def spearman_weighted(x: object, y: object, weights: object) -> np.ndarray:
    """Spearman's rank correlation of x and y per row of weights (NaN where either is constant). x is the
    side that several calls share (the humans'): its ranks are remembered for the same weights."""
    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    w = np.atleast_2d(np.asarray(weights, dtype=float))
    total = w.sum(axis=1)
    # Centred moments in y's sorted order, x's weighted ranks taken into that order: no ranks are written
    # back to item order and no sums of ranks computed (2.7x faster than that at corpus scale).
    weighted_x, vx = _weighted_side(xa, w)
    order, sorted_w, ry = _centred_ranks(ya, w)
    cov = np.einsum("ij,ij->i", ry, np.take(weighted_x, order, axis=1))
    vy = np.einsum("ij,ij->i", sorted_w * ry, ry)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = cov / np.sqrt(vx * vy)
    # A constant variable has no ranks to correlate; rounding can leave a tiny variance instead of 0.
    constant = (vx <= 1e-12 * total**3) | (vy <= 1e-12 * total**3)
    return np.where(constant, np.nan, rho)


def entropy_correlation_weighted(counts: object, p: object, weights: object) -> np.ndarray:
    """Spearman correlation, over items, of the humans' entropy with the system's: does the system hesitate
    where people disagree?"""
    return spearman_weighted(entropy_items(shares(counts)), entropy_items(p), weights)


# ---------------------------------------------------------------- references


def class_prior(counts: object) -> np.ndarray:
    """The best constant prediction: the mean of the items' vote distributions."""
    return shares(counts).mean(axis=0)


def fit_dirichlet_prior(counts: object) -> np.ndarray:
    """One Dirichlet prior α̂ over all items, by maximum Dirichlet-multinomial likelihood."""
    n = as_counts(counts)
    totals = n.sum(axis=1)

    def negloglik_and_grad(log_a: np.ndarray) -> tuple[float, np.ndarray]:
        a = np.exp(log_a)
        value = dirichlet_multinomial_nll_items(n, a).sum()
        a_sum = a.sum()
        grad_a = -(
            special.digamma(a_sum) * len(n)
            - special.digamma(a_sum + totals).sum()
            + (special.digamma(a + n) - special.digamma(a)).sum(axis=0)
        )
        return float(value), grad_a * a  # chain rule for the log parametrisation

    start = np.log(np.maximum(class_prior(n), 1e-3))
    res = optimize.minimize(negloglik_and_grad, start, jac=True, method="L-BFGS-B")
    return np.exp(res.x)


def best_score(
    counts: object,
    metric: Callable[[np.ndarray, np.ndarray], float] = soft_xent,
    n_draws: int = 200,
    seed: int = 0,
    alpha: np.ndarray | None = None,
) -> float:
    """BEST: the expected metric when predicting with θ_i ~ Dir(α̂ + n_i), averaged over draws.

    An estimate of the best score achievable given the noise of finite votes.
    """
    n = as_counts(counts)
    a = fit_dirichlet_prior(n) if alpha is None else np.asarray(alpha, dtype=float)
    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(n_draws):
        g = rng.standard_gamma(a + n)
        theta = g / g.sum(axis=1, keepdims=True)
        scores.append(metric(n, theta))
    return float(np.mean(scores))


@dataclass(frozen=True)
class References:
    n_items: int
    uniform_xent: float
    class_prior_xent: float
    best_xent: float
    prior_alpha: tuple[float, ...]


def reference_scores(counts: object, n_draws: int = 200, seed: int = 0) -> References:
    n = as_counts(counts)
    k = n.shape[1]
    alpha = fit_dirichlet_prior(n)
    return References(
        n_items=len(n),
        uniform_xent=soft_xent(n, np.full(n.shape, 1.0 / k)),
        class_prior_xent=soft_xent(n, np.broadcast_to(class_prior(n), n.shape)),
        best_xent=best_score(n, soft_xent, n_draws=n_draws, seed=seed, alpha=alpha),
        prior_alpha=tuple(float(a) for a in alpha),
    )


def judgment_references(counts: object, has_counts: bool = True, n_draws: int = 200, seed: int = 0) -> References:
    """`reference_scores` of human judgments that may be shares: uniform and class prior of the exact shares;
    BEST, which draws from the posterior of whole votes, of the shares times respondents rounded to whole
    votes, and NaN for shares alone (`has_counts` False)."""
    n = as_counts(counts)
    ref = reference_scores(n, n_draws=n_draws, seed=seed)
    if not has_counts:
        return dataclasses.replace(ref, best_xent=float("nan"))
    whole = np.rint(n)
    if not np.array_equal(whole, n):
        return dataclasses.replace(ref, best_xent=reference_scores(whole, n_draws=n_draws, seed=seed).best_xent)
    return ref
