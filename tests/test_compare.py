"""The comparison core against independent computations: ethdash.metrics (itself tested against scipy and
brute force), and the generic bootstrap drawn with the same seed."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.special import softmax

from ethdash import compare, metrics

from .conftest import DILEMMAS_DEV


@pytest.fixture(scope="module")
def real_votes() -> np.ndarray:
    """Vote counts of the first 300 real dev dilemmas."""
    if not DILEMMAS_DEV.is_file():
        pytest.skip("the real Scruples data is not beside the project")
    lines = DILEMMAS_DEV.read_text().splitlines()[:300]
    return np.array([json.loads(line)["gold_annotations"] for line in lines], dtype=float)


def predictions(counts: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two plausible systems: noisy versions of the human shares, and a constant."""
    rng = np.random.default_rng(seed)
    noisy = softmax(np.log((counts + 1) / (counts.sum(1, keepdims=True) + 2)) + rng.normal(0, 0.8, counts.shape), 1)
    constant = np.tile([0.7, 0.3], (len(counts), 1))
    return noisy, constant


def test_the_table_equals_the_metrics_and_the_generic_bootstrap(real_votes):
    p, _ = predictions(real_votes, 1)
    first = np.random.default_rng(2).uniform(0.3, 0.9, len(p))
    pred = compare.with_fit("sys", p, 12.0, 1.7, first, "given")
    table = compare.metric_table(real_votes, [pred], n_resamples=300, seed=7).set_index("metric")
    expected = {
        "xent": metrics.soft_xent(real_votes, p),
        "dirichlet": metrics.dirichlet_score(real_votes, p, 12.0),
        "calibrated_xent": metrics.calibrated_xent(real_votes, p, 1.7),
        "accuracy": metrics.accuracy(real_votes, p).value,
        "brier": metrics.brier(real_votes, p),
        "ece": metrics.ece(real_votes, p),
        "position_bias": first.mean() - 0.5,
    }
    for name, value in expected.items():
        assert table.loc[name, "estimate"] == pytest.approx(value, rel=1e-9), name
    for name, fn in (("xent", metrics.soft_xent), ("ece", metrics.ece), ("brier", metrics.brier)):
        generic = metrics.bootstrap(fn, [real_votes, p], n_resamples=300, seed=7)
        assert (table.loc[name, "low"], table.loc[name, "high"]) == pytest.approx((generic.low, generic.high))
    assert table.loc["dirichlet", "c"] == 12.0 and table.loc["calibrated_xent", "T"] == 1.7


def test_paired_differences_equal_the_paired_bootstrap(real_votes):
    noisy, constant = predictions(real_votes, 3)
    a = compare.with_fit("noisy", noisy, 10.0, 1.0)
    b = compare.with_fit("constant", constant, 10.0, 1.0)
    paired = compare.paired_differences(real_votes, a, b, n_resamples=400, seed=11).set_index("metric")
    generic = metrics.paired_bootstrap(metrics.soft_xent, real_votes, noisy, constant, n_resamples=400, seed=11)
    row = paired.loc["xent"]
    assert (row["difference"], row["low"], row["high"]) == pytest.approx((generic.estimate, generic.low, generic.high))
    # The interval says who is better only when it excludes 0.
    for _, r in paired.iterrows():
        if r["low"] <= 0 <= r["high"]:
            assert r["favours"].startswith("neither")
        else:
            assert r["favours"] in ("noisy", "constant")


def test_a_system_that_knows_the_votes_beats_a_constant():
    counts = np.array([[5, 0], [0, 5], [4, 1], [1, 4]] * 25, dtype=float)
    knows = compare.with_fit("knows", (counts + 0.5) / 6.0, 10.0, 1.0)
    constant = compare.with_fit("constant", np.full(counts.shape, 0.5), 10.0, 1.0)
    paired = compare.paired_differences(counts, knows, constant, n_resamples=200).set_index("metric")
    assert paired.loc["xent", "favours"] == "knows" and paired.loc["accuracy", "favours"] == "knows"


def test_cross_fitting_never_uses_an_items_own_votes(real_votes):
    p, _ = predictions(real_votes, 4)
    pred = compare.cross_fitted("sys", real_votes, p, folds=2, seed=5)
    fold = np.random.default_rng(5).permutation(len(p)) % 2
    for f in (0, 1):
        outside = fold != f
        c = metrics.fit_concentration(real_votes[outside], p[outside])
        t = metrics.fit_temperature(real_votes[outside], p[outside])
        assert np.allclose(pred.c[fold == f], c) and np.allclose(pred.t[fold == f], t)
    assert not np.isclose(pred.c[fold == 0][0], pred.c[fold == 1][0])


def test_the_human_ceiling_and_references():
    second = np.array([[5, 0], [2, 3]])
    assert compare.human_ceiling(second) == pytest.approx(np.array([[6 / 7, 1 / 7], [3 / 7, 4 / 7]]))
    counts = np.array([[3, 2], [5, 0], [1, 4], [2, 3]] * 10, dtype=float)
    refs = compare.references(counts, n_draws=50).set_index("reference")["xent"]
    expected = metrics.reference_scores(counts, n_draws=50)
    assert refs["uniform"] == pytest.approx(expected.uniform_xent)
    assert refs["class prior"] == pytest.approx(expected.class_prior_xent)
    assert refs["BEST"] == pytest.approx(expected.best_xent)


def test_disagreements_and_reliability(real_votes):
    noisy, constant = predictions(real_votes, 6)
    a, b = compare.with_fit("a", noisy, 1.0, 1.0), compare.with_fit("b", constant, 1.0, 1.0)
    frame = compare.disagreements(real_votes, range(len(noisy)), [a, b])
    y = real_votes / real_votes.sum(1, keepdims=True)
    assert frame["TV humans vs a"].to_numpy() == pytest.approx(np.abs(y[:, 0] - noisy[:, 0]))
    assert frame["TV a vs b"].to_numpy() == pytest.approx(np.abs(noisy[:, 0] - constant[:, 0]))
    points = compare.reliability(real_votes, [a])
    bins = metrics.reliability_bins(real_votes, noisy)
    assert points["items"].sum() == len(noisy) and np.array_equal(points["items"], bins.count)


def test_per_item_probabilities_average_the_two_orders():
    from ethdash.scored import per_item

    scores = pd.DataFrame(
        {
            "split": ["dev"] * 3,
            "item_id": ["x", "x", "y"],
            "item_order": ["ab", "ba", "ab"],  # y has one order only: left out
            "probs": [[0.8, 0.2], [0.6, 0.4], [0.5, 0.5]],
            "outside_mass": [0.1, 0.3, 0.0],
        }
    )
    out = per_item(scores)
    assert list(out["item_id"]) == ["x"]
    assert out["p"][0] == pytest.approx([0.7, 0.3])
    assert out["first"][0] == pytest.approx(0.5 * (0.8 + 0.4))  # ab: action 1 first; ba: action 2 first
    assert out["outside_mass"][0] == pytest.approx(0.2)


def test_the_evaluation_part_is_seeded_disjoint_and_kept_out_of_training():
    from ethdash.finetune.data import evaluation_part

    frame = pd.DataFrame({"split": "sample", "item_id": [f"i{k}" for k in range(50)]})
    rest, held = evaluation_part(frame, 0.2, seed=0)
    again_rest, again_held = evaluation_part(frame, 0.2, seed=0)
    assert len(held) == 10 and len(rest) == 40
    assert set(held["item_id"]).isdisjoint(rest["item_id"])
    assert list(held["item_id"]) == list(again_held["item_id"]) and list(rest["item_id"]) == list(again_rest["item_id"])
    assert list(evaluation_part(frame, 0.2, seed=1)[1]["item_id"]) != list(held["item_id"])
    assert evaluation_part(frame, 0.0, seed=0)[1].empty
