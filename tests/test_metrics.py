"""The metrics against independent computations: scipy, brute force, properties, and the
reference values for the official dev counts (../shared/DESIGN.md §3)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import optimize, spatial, special
from scipy import stats as sps
from sklearn.metrics import balanced_accuracy_score, f1_score

from ethdash import metrics as m
from ethdash.votes import majority
from tests import reference_bootstrap

from .conftest import META

# ---------------------------------------------------------------- strategies


@st.composite
def votes_and_probs(draw, k_min: int = 2, k_max: int = 5, n_max: int = 12):
    k = draw(st.integers(k_min, k_max))
    n_items = draw(st.integers(1, n_max))
    counts = np.array(
        [
            draw(st.lists(st.integers(0, 20), min_size=k, max_size=k).filter(lambda v: sum(v) > 0))
            for _ in range(n_items)
        ],
        dtype=float,
    )
    raw = np.array([draw(st.lists(st.floats(0.01, 1.0), min_size=k, max_size=k)) for _ in range(n_items)])
    return counts, raw / raw.sum(axis=1, keepdims=True)


def random_case(seed: int, n_items: int = 200, k: int = 3, informed: bool = False):
    """Votes drawn from per-item truths; p is unrelated noise, or (informed) a noisy copy of the truth."""
    rng = np.random.default_rng(seed)
    truth = rng.dirichlet(np.ones(k) * 0.8, n_items)
    counts = np.array([rng.multinomial(rng.integers(3, 30), t) for t in truth], dtype=float)
    counts[counts.sum(axis=1) == 0, 0] = 1
    if informed:
        return counts, np.array([rng.dirichlet(20 * t + 0.5) for t in truth])
    return counts, rng.dirichlet(np.ones(k) * 2, n_items)


# ---------------------------------------------------------------- proper scores


@given(votes_and_probs())
def test_soft_xent_matches_scipy_entropy_plus_kl(case):
    counts, p = case
    y = counts / counts.sum(axis=1, keepdims=True)
    expected = [sps.entropy(yi) + sps.entropy(yi, pi) for yi, pi in zip(y, p)]
    np.testing.assert_allclose(m.soft_xent_items(counts, p), expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(m.kl_items(counts, p), [sps.entropy(yi, pi) for yi, pi in zip(y, p)], atol=1e-12)


@given(votes_and_probs())
def test_soft_xent_is_minimised_at_the_human_distribution(case):
    counts, p = case
    y = counts / counts.sum(axis=1, keepdims=True)
    assert np.all(m.soft_xent_items(counts, p) >= m.soft_xent_items(counts, y) - 1e-12)
    np.testing.assert_allclose(m.kl_items(counts, y), 0.0, atol=1e-12)


def test_zero_share_classes_add_nothing_even_where_p_is_zero():
    assert m.soft_xent([[3, 0]], [[1.0, 0.0]]) == 0.0
    assert m.soft_xent([[3, 1]], [[1.0, 0.0]]) == np.inf


@given(votes_and_probs())
def test_brier_matches_a_loop(case):
    counts, p = case
    expected = [sum((pk - nk / sum(n)) ** 2 for nk, pk in zip(n, pi)) for n, pi in zip(counts, p)]
    np.testing.assert_allclose(m.brier_items(counts, p), expected, atol=1e-12)


@given(votes_and_probs(k_max=4))
def test_total_variation_is_the_largest_difference_over_events(case):
    _, p = case
    q = p[::-1]
    k = p.shape[1]
    events = [e for r in range(k + 1) for e in itertools.combinations(range(k), r)]
    expected = [max(abs(pi[list(e)].sum() - qi[list(e)].sum()) for e in events) for pi, qi in zip(p, q)]
    np.testing.assert_allclose(m.total_variation(p, q), expected, atol=1e-12)


# ---------------------------------------------------------------- Dirichlet-multinomial


def _scipy_dm_nll_without_coefficient(n, alpha):
    total = int(n.sum())
    logpmf = sps.dirichlet_multinomial.logpmf(n.astype(int), alpha, total)
    coefficient = special.gammaln(total + 1) - special.gammaln(n + 1).sum()
    return -(logpmf - coefficient)


@given(votes_and_probs(), st.floats(0.1, 50.0))
def test_dirichlet_multinomial_nll_matches_scipy(case, c):
    counts, p = case
    expected = [_scipy_dm_nll_without_coefficient(n, c * pi) for n, pi in zip(counts, p)]
    np.testing.assert_allclose(m.dirichlet_multinomial_nll_items(counts, c * p), expected, rtol=1e-8)
    assert m.dirichlet_score(counts, p, c) == pytest.approx(np.mean(expected), rel=1e-8)


def test_dirichlet_from_logits_uses_alpha_exp_z():
    counts, p = random_case(1, 50)
    z = np.log(p) + 1.3
    expected = np.mean([_scipy_dm_nll_without_coefficient(n, np.exp(zi)) for n, zi in zip(counts, z)])
    assert m.dirichlet_nll_from_logits(counts, z) == pytest.approx(expected, rel=1e-9)


def test_fitted_concentration_is_the_grid_minimum():
    counts, p = random_case(2)
    c = m.fit_concentration(counts, p)
    grid = np.exp(np.linspace(np.log(0.01), np.log(1000), 4001))
    losses = [m.dirichlet_score(counts, p, g) for g in grid]
    best = grid[int(np.argmin(losses))]
    assert c == pytest.approx(best, rel=0.01)
    assert m.dirichlet_score(counts, p, c) <= min(losses) + 1e-9


# ---------------------------------------------------------------- temperature


def test_fitted_temperature_is_the_grid_minimum_and_never_worse_than_t1():
    counts, p = random_case(3, informed=True)
    sharp = m.temper(p, 0.4)  # an over-confident system
    t = m.fit_temperature(counts, sharp)
    grid = np.exp(np.linspace(np.log(0.05), np.log(20), 3001))
    losses = [m.calibrated_xent(counts, sharp, g) for g in grid]
    assert t == pytest.approx(grid[int(np.argmin(losses))], rel=0.01)
    assert m.calibrated_xent(counts, sharp, t) <= m.soft_xent(counts, sharp) + 1e-12
    assert t > 1.0  # flattening an over-confident system helps


def test_temper_matches_power_and_renormalise():
    _, p = random_case(4, 20)
    expected = p ** (1 / 2.5) / (p ** (1 / 2.5)).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(m.temper(p, 2.5), expected, rtol=1e-10)


# ---------------------------------------------------------------- accuracy and calibration


@given(votes_and_probs())
def test_accuracy_leaves_out_tied_majorities(case):
    counts, p = case
    hits = scored = tied = 0
    for n, pi in zip(counts, p):
        top = [k for k in range(len(n)) if n[k] == max(n)]
        if len(top) > 1:
            tied += 1
            continue
        scored += 1
        hits += int(np.argmax(pi) == top[0])
    result = m.accuracy(counts, p)
    assert (result.n_scored, result.n_tied) == (scored, tied)
    if scored:
        assert result.value == pytest.approx(hits / scored)
    else:
        assert np.isnan(result.value)


@given(votes_and_probs(n_max=40))
@settings(max_examples=60)
def test_ece_matches_a_brute_force_loop(case):
    counts, p = case
    y = counts / counts.sum(axis=1, keepdims=True)
    bins: dict[int, list[tuple[float, float]]] = {}
    for yi, pi in zip(y, p):
        conf = float(pi.max())
        b = min(int(conf * 10), 9)  # equal-width bins of 0.1, the top one closed
        bins.setdefault(b, []).append((conf, float(yi[int(pi.argmax())])))
    expected = sum(len(v) * abs(np.mean([c for c, _ in v]) - np.mean([o for _, o in v])) for v in bins.values())
    expected /= len(y)
    assert m.ece(counts, p) == pytest.approx(expected, abs=1e-12)
    rb = m.reliability_bins(counts, p)
    assert rb.count.sum() == len(y)
    assert [int(c) for c in rb.count] == [len(bins.get(b, [])) for b in range(10)]


def test_a_perfectly_calibrated_system_has_zero_ece():
    counts = np.array([[7, 3], [7, 3], [2, 8]], dtype=float)
    p = counts / counts.sum(axis=1, keepdims=True)
    assert m.ece(counts, p) == pytest.approx(0.0, abs=1e-12)


# ---------------------------------------------------------------- references


def test_dirichlet_prior_fit_matches_a_generic_optimiser_on_scipy_likelihoods():
    rng = np.random.default_rng(5)
    true_alpha = np.array([0.6, 1.8, 0.3])
    theta = rng.dirichlet(true_alpha, 400)
    counts = np.array([rng.multinomial(8, t) for t in theta], dtype=float)

    def negloglik(log_a):
        a = np.exp(log_a)
        return -sum(sps.dirichlet_multinomial.logpmf(n.astype(int), a, int(n.sum())) for n in counts)

    reference = np.exp(
        optimize.minimize(
            negloglik, np.zeros(3), method="Nelder-Mead", options={"xatol": 1e-8, "fatol": 1e-10, "maxiter": 4000}
        ).x
    )
    fitted = m.fit_dirichlet_prior(counts)
    np.testing.assert_allclose(fitted, reference, rtol=2e-3)
    np.testing.assert_allclose(fitted, true_alpha, rtol=0.25)  # and it recovers the truth roughly


def test_best_matches_a_per_item_dirichlet_sampler():
    counts, _ = random_case(6, 150)
    alpha = m.fit_dirichlet_prior(counts)
    rng = np.random.default_rng(99)
    draws = []
    for _ in range(300):
        theta = np.array([rng.dirichlet(alpha + n) for n in counts])
        draws.append(m.soft_xent(counts, theta))
    assert m.best_score(counts, n_draws=300, seed=1) == pytest.approx(np.mean(draws), abs=0.01)


def _dev_counts(name: str) -> np.ndarray:
    path = META / f"dev.scruples-{name}_label-counts.json"
    if not path.exists():
        pytest.skip("the official dev counts are not beside the project (../shared/data)")
    return np.array(json.loads(path.read_text()), dtype=float)


REFERENCE = {
    # name: (uniform, class prior, BEST, fitted alpha) from ../shared/DESIGN.md §3
    "anecdotes": (1.6094, 1.1370, 0.734, [0.503, 1.547, 0.193, 0.317, 0.166]),
    "binarized": (0.6931, 0.5653, 0.354, [1.141, 0.427]),
    "dilemmas": (0.6931, 0.6930, 0.494, [0.978, 0.949]),
}


@pytest.mark.parametrize("name", list(REFERENCE))
def test_reference_scores_on_the_official_dev_counts(name):
    counts = _dev_counts("dilemmas" if name == "dilemmas" else "anecdotes")
    if name == "binarized":
        counts = np.stack([counts[:, 1] + counts[:, 3], counts[:, 0] + counts[:, 2]], axis=1)
    uniform, prior, best, alpha = REFERENCE[name]
    ref = m.reference_scores(counts)
    assert round(ref.uniform_xent, 4) == uniform
    assert round(ref.class_prior_xent, 4) == prior
    assert ref.best_xent == pytest.approx(best, abs=0.01)
    np.testing.assert_allclose(ref.prior_alpha, alpha, atol=0.01)


def test_scoring_the_posterior_mean_instead_of_draws_gives_the_wrong_lower_value():
    counts = _dev_counts("anecdotes")
    alpha = m.fit_dirichlet_prior(counts)
    posterior_mean = (alpha + counts) / (alpha + counts).sum(axis=1, keepdims=True)
    assert m.soft_xent(counts, posterior_mean) == pytest.approx(0.664, abs=0.005)
    assert m.best_score(counts, alpha=alpha) > m.soft_xent(counts, posterior_mean) + 0.05


# ---------------------------------------------------------------- bootstrap


def test_bootstrap_matches_an_explicit_resampling_loop():
    counts, p = random_case(7, 120)
    result = reference_bootstrap.bootstrap(m.soft_xent, [counts, p], n_resamples=300, seed=11)
    rng = np.random.default_rng(11)
    values = []
    for _ in range(300):
        idx = rng.integers(0, len(counts), len(counts))
        values.append(
            np.mean([sps.entropy(n / n.sum()) + sps.entropy(n / n.sum(), q) for n, q in zip(counts[idx], p[idx])])
        )
    assert result.estimate == pytest.approx(m.soft_xent(counts, p))
    assert result.low == pytest.approx(np.percentile(values, 2.5), rel=1e-9)
    assert result.high == pytest.approx(np.percentile(values, 97.5), rel=1e-9)


def test_bootstrap_of_a_mean_agrees_with_scipy():
    x = np.random.default_rng(8).normal(3.0, 2.0, 400)
    ours = reference_bootstrap.bootstrap(np.mean, [x], n_resamples=2000, seed=0)
    theirs = sps.bootstrap((x,), np.mean, n_resamples=2000, method="percentile", random_state=0).confidence_interval
    width = theirs.high - theirs.low
    assert ours.low == pytest.approx(theirs.low, abs=0.1 * width)
    assert ours.high == pytest.approx(theirs.high, abs=0.1 * width)


def test_paired_bootstrap_resamples_the_same_items_for_both_systems():
    counts, p_a = random_case(9, 150)
    p_b = m.temper(p_a, 0.5)
    paired = reference_bootstrap.paired_bootstrap(m.soft_xent, counts, p_a, p_b, n_resamples=500, seed=3)
    # The mean is linear, so the paired interval is the interval of per-item differences.
    diff = m.soft_xent_items(counts, p_a) - m.soft_xent_items(counts, p_b)
    direct = reference_bootstrap.bootstrap(np.mean, [diff], n_resamples=500, seed=3)
    assert (paired.estimate, paired.low, paired.high) == pytest.approx((direct.estimate, direct.low, direct.high))
    assert paired.high < 0  # the sharpened system is clearly worse here
    same = reference_bootstrap.paired_bootstrap(m.soft_xent, counts, p_a, p_a, n_resamples=200)
    assert same.low == same.high == 0.0


# ---------------------------------------------------------------- the field's metrics


@given(votes_and_probs())
def test_jensen_shannon_is_the_square_of_scipys_distance(case):
    counts, p = case
    y = counts / counts.sum(axis=1, keepdims=True)
    expected = spatial.distance.jensenshannon(y, p, axis=1) ** 2  # natural log: the divergence in nats
    np.testing.assert_allclose(m.jensen_shannon_items(counts, p), expected, atol=1e-12)
    assert (m.jensen_shannon_items(counts, p) <= np.log(2) + 1e-12).all()


@given(votes_and_probs())
def test_wasserstein_matches_scipy_on_options_one_unit_apart(case):
    counts, p = case
    y = counts / counts.sum(axis=1, keepdims=True)
    positions = np.arange(p.shape[1])
    expected = [sps.wasserstein_distance(positions, positions, y[i], p[i]) for i in range(len(p))]
    np.testing.assert_allclose(m.wasserstein1_items(counts, p), expected, atol=1e-12)


def resamples(n_items: int, seed: int, n_resamples: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Rows of item indices and the same resamples as rows of counts per item."""
    idx = np.random.default_rng(seed).integers(0, n_items, (n_resamples, n_items))
    return idx, np.stack([np.bincount(row, minlength=n_items) for row in idx]).astype(float)


@pytest.mark.parametrize("seed", range(4))
def test_weighted_corpus_metrics_equal_each_resample_computed_alone(seed):
    """Every resample's value from one weight matrix equals the metric computed on that resample's rows by an
    independent implementation: scikit-learn (macro-F1, balanced accuracy), scipy (Spearman), the loop ECE."""
    counts, p = random_case(seed, n_items=150, k=3 if seed % 2 else 2, informed=bool(seed % 2))
    counts[:5] = counts[0]  # repeated vote splits: ties in the humans' entropy
    idx, weights = resamples(len(p), seed)
    ones = np.ones((1, len(p)))
    for rows, w in [(np.arange(len(p)), ones), *zip(idx, weights[:, None, :])]:
        c, q = counts[rows], p[rows]
        maj = majority(c)
        kept = maj >= 0
        truth, guess = maj[kept], q[kept].argmax(axis=1)
        assert m.macro_f1_weighted(counts, p, w)[0] == pytest.approx(f1_score(truth, guess, average="macro"))
        assert m.balanced_accuracy_weighted(counts, p, w)[0] == pytest.approx(balanced_accuracy_score(truth, guess))
        assert m.ece_weighted(counts, p, w)[0] == pytest.approx(m.ece(c, q))
        human, model = m.entropy_items(c / c.sum(axis=1, keepdims=True)), m.entropy_items(q)
        rho = sps.spearmanr(human, model).statistic
        assert m.entropy_correlation_weighted(counts, p, w)[0] == pytest.approx(rho)
    # Every resample at once (one weight matrix, as the bootstrap computes them), ties in both variables.
    tied = np.round(p, 1)
    human_all = m.entropy_items(counts / counts.sum(axis=1, keepdims=True))
    stacked = m.spearman_weighted(m.entropy_items(tied), human_all, weights)
    for rows, value in zip(idx, stacked):
        c, q = counts[rows], tied[rows]
        human, model = m.entropy_items(c / c.sum(axis=1, keepdims=True)), m.entropy_items(q)
        assert value == pytest.approx(sps.spearmanr(model, human).statistic)


def test_entropy_correlation_is_undefined_for_a_constant_system():
    counts, _ = random_case(0, n_items=40)
    assert np.isnan(m.entropy_correlation_weighted(counts, np.full(counts.shape, 1 / 3), np.ones((1, 40))))[0]


def test_a_system_that_hesitates_where_people_disagree_has_a_high_entropy_correlation():
    counts, p = random_case(1, n_items=300, informed=True)
    informed = m.entropy_correlation_weighted(counts, p, np.ones((1, 300)))[0]
    noise = m.entropy_correlation_weighted(counts, random_case(2, n_items=300)[1], np.ones((1, 300)))[0]
    assert informed > 0.3 and abs(noise) < 0.2, (informed, noise)
