"""The comparison core against independent computations: ethdash.metrics (itself tested against scipy and
brute force), and the generic bootstrap drawn with the same seed."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from scipy.special import softmax

from ethdash import metrics
from ethdash.evaluation import measures, statistics
from tests import reference_bootstrap

from .conftest import DILEMMAS_DEV, ROOT


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
    pred = statistics.with_fit("sys", p, 12.0, 1.7, first, "given")
    table = statistics.metric_table(real_votes, [pred], n_resamples=300, seed=7).set_index("metric")
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
    accuracy = lambda counts, p: metrics.accuracy(counts, p).value  # noqa: E731 (ties left out: a NaN per tie)
    for name, fn in (
        ("xent", metrics.soft_xent),
        ("ece", metrics.ece),
        ("brier", metrics.brier),
        ("accuracy", accuracy),
    ):
        generic = reference_bootstrap.bootstrap(fn, [real_votes, p], n_resamples=300, seed=7)
        assert (table.loc[name, "low"], table.loc[name, "high"]) == pytest.approx((generic.low, generic.high))
    assert table.loc["dirichlet", "c"] == 12.0 and table.loc["calibrated_xent", "T"] == 1.7


def test_the_bootstrap_in_many_chunks_equals_each_resample_computed_alone(real_votes, monkeypatch):
    """`measures.resampled` weighs chunks of resamples, every system's means and weighted sums in one product:
    each resample's metrics equal the metrics of the resampled items themselves (drawn again, duplicates and
    all), for two systems at once, the entropy ρ against scipy's Spearman."""
    monkeypatch.setattr(measures, "_WEIGHT_CELLS", 7 * len(real_votes))  # 7 resamples a chunk: 9 chunks
    n = len(real_votes)
    systems = []
    for seed in (5, 6):
        p, _ = predictions(real_votes, seed)
        first = np.random.default_rng(seed).uniform(0.3, 0.9, n)
        inputs = measures.Inputs(real_votes, p, np.full(n, 9.0), np.full(n, 1.3), first, np.full(n, 0.01))
        systems.append(([m for m in measures.METRICS if m.applies(inputs)], inputs))
    idx = np.random.default_rng(8).integers(0, n, (60, n))
    found = measures.resampled([(tuple(chosen), inputs) for chosen, inputs in systems], idx)
    for (chosen, inputs), values in zip(systems, found):
        assert set(values) == {m.name for m in chosen}
        for r, rows in enumerate(idx):
            alone = inputs.subset(rows)
            for metric in chosen:
                assert values[metric.name][r] == pytest.approx(metric.value(alone), rel=1e-9, nan_ok=True), metric.name
            human = metrics.entropy_items(metrics.shares(real_votes[rows]))
            rho = sps.spearmanr(human, metrics.entropy_items(inputs.p[rows])).statistic
            assert values["entropy_rho"][r] == pytest.approx(rho, rel=1e-9)


def test_accuracy_with_tied_items_equals_the_generic_bootstrap(real_votes):
    """Tied items have no majority: they are left out of each resample's accuracy (the mean over the rest),
    and a resample of tied items alone has none."""
    tied = real_votes.copy()
    tied[::3] = [2.0, 2.0]  # every third item tied
    p, _ = predictions(tied, 4)
    table = statistics.metric_table(tied, [statistics.with_fit("sys", p, 10.0, 1.0)], n_resamples=300, seed=3)
    row = table.set_index("metric").loc["accuracy"]
    generic = reference_bootstrap.bootstrap(lambda c, q: metrics.accuracy(c, q).value, [tied, p], 300, seed=3)
    assert (row["estimate"], row["low"], row["high"]) == pytest.approx((generic.estimate, generic.low, generic.high))


def test_paired_differences_equal_the_paired_bootstrap(real_votes):
    noisy, constant = predictions(real_votes, 3)
    a = statistics.with_fit("noisy", noisy, 10.0, 1.0)
    b = statistics.with_fit("constant", constant, 10.0, 1.0)
    paired = statistics.paired_differences(real_votes, a, b, n_resamples=400, seed=11).set_index("metric")
    generic = reference_bootstrap.paired_bootstrap(
        metrics.soft_xent, real_votes, noisy, constant, n_resamples=400, seed=11
    )
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
    knows = statistics.with_fit("knows", (counts + 0.5) / 6.0, 10.0, 1.0)
    constant = statistics.with_fit("constant", np.full(counts.shape, 0.5), 10.0, 1.0)
    paired = statistics.paired_differences(counts, knows, constant, n_resamples=200).set_index("metric")
    assert paired.loc["xent", "favours"] == "knows" and paired.loc["accuracy", "favours"] == "knows"


def test_cross_fitting_never_uses_an_items_own_votes(real_votes):
    p, _ = predictions(real_votes, 4)
    pred = statistics.cross_fitted("sys", real_votes, p, folds=2, seed=5)
    fold = np.random.default_rng(5).permutation(len(p)) % 2
    for f in (0, 1):
        outside = fold != f
        c = metrics.fit_concentration(real_votes[outside], p[outside])
        t = metrics.fit_temperature(real_votes[outside], p[outside])
        assert np.allclose(pred.c[fold == f], c) and np.allclose(pred.t[fold == f], t)
    assert not np.isclose(pred.c[fold == 0][0], pred.c[fold == 1][0])


def test_the_human_ceiling_and_references():
    second = np.array([[5, 0], [2, 3]])
    assert statistics.human_ceiling(second) == pytest.approx(np.array([[6 / 7, 1 / 7], [3 / 7, 4 / 7]]))
    counts = np.array([[3, 2], [5, 0], [1, 4], [2, 3]] * 10, dtype=float)
    refs = statistics.references(counts, n_draws=50).set_index("reference")["xent"]
    expected = metrics.reference_scores(counts, n_draws=50)
    assert refs["uniform"] == pytest.approx(expected.uniform_xent)
    assert refs["class prior"] == pytest.approx(expected.class_prior_xent)
    assert refs["BEST"] == pytest.approx(expected.best_xent)


def test_disagreements_and_reliability(real_votes):
    noisy, constant = predictions(real_votes, 6)
    a, b = statistics.with_fit("a", noisy, 1.0, 1.0), statistics.with_fit("b", constant, 1.0, 1.0)
    frame = statistics.disagreements(real_votes, range(len(noisy)), [a, b])
    y = real_votes / real_votes.sum(1, keepdims=True)
    assert frame["TV humans vs a"].to_numpy() == pytest.approx(np.abs(y[:, 0] - noisy[:, 0]))
    assert frame["TV a vs b"].to_numpy() == pytest.approx(np.abs(noisy[:, 0] - constant[:, 0]))
    points = statistics.reliability(real_votes, [a])
    bins = metrics.reliability_bins(real_votes, noisy)
    assert points["items"].sum() == len(noisy) and np.array_equal(points["items"], bins.count)


def test_per_item_probabilities_average_the_two_orders():
    from ethdash.evaluation.aligned import per_item

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


def test_fits_at_an_end_of_their_search_range_are_found():
    low, high = statistics.FIT_RANGES["T*"]
    assert (low, high) == pytest.approx((0.01, 100.0))
    assert statistics.FIT_RANGES["c"] == pytest.approx((1e-3, 1e6))
    assert statistics.at_bound(99.99993, (low, high)) == "upper"
    assert statistics.at_bound(0.0100002, (low, high)) == "lower"
    assert statistics.at_bound(998_690.0, statistics.FIT_RANGES["c"]) == "upper"  # where a flat objective stops
    for inside in (0.188, 1.0, 50.0, 95.0):
        assert statistics.at_bound(inside, (low, high)) is None
    assert statistics.at_bound(float("nan"), (low, high)) is None
    # Real fits: votes split 3-2 with probabilities that carry no signal flatten T* to its upper end;
    # probabilities that put the majority below 1/2 on every item send c to its lower end.
    counts = np.array([[5, 0], [0, 5]] * 10, dtype=float)
    wrong = np.where(counts > 0, 0.1, 0.9)
    assert statistics.at_bound(metrics.fit_temperature(counts, wrong), (low, high)) == "upper"
    assert statistics.at_bound(metrics.fit_concentration(counts, wrong), statistics.FIT_RANGES["c"]) == "lower"


def test_small_samples_and_fits_at_a_bound_are_warned_about_in_the_table():
    counts = np.array([[5, 0], [0, 5]] * 10, dtype=float)  # 20 items
    wrong = statistics.cross_fitted("wrong", counts, np.where(counts > 0, 0.1, 0.9))
    fine = statistics.with_fit("fine", (counts + 1) / 7, 10.0, 1.0)
    table = statistics.metric_table(counts, [wrong, fine], n_resamples=50).set_index(["system", "metric"])
    small = "only 20 items (fewer than 30)"
    assert table["warning"].str.startswith(small).all()  # every row
    assert (
        "T* = 100 is at the upper end of its search range [0.01, 100]"
        in table.loc[("wrong", "calibrated_xent")]["warning"]
    )
    assert "c = 0.001 is at the lower end" in table.loc[("wrong", "dirichlet")]["warning"]
    assert "search range" not in table.loc[("wrong", "xent")]["warning"]
    assert table.xs("fine", level="system")["warning"].eq(statistics.small_sample_warning(20)).all()
    warnings = statistics.table_warnings(table.reset_index())
    assert warnings[0].startswith(small) and len(warnings) == 3  # the small sample once, then each fit
    assert [w.split(":")[0] for w in warnings[1:]] == ["wrong", "wrong"]

    many = np.tile(counts, (2, 1))  # 40 items: no sample warning, and fits inside their range
    table = statistics.metric_table(many, [statistics.with_fit("fine", (many + 1) / 7, 10.0, 1.0)], n_resamples=20)
    assert (table["warning"] == "").all() and statistics.table_warnings(table) == []
    assert statistics.small_sample_warning(29) and statistics.small_sample_warning(statistics.SMALL_SAMPLE) is None


def test_the_fit_summary_gives_each_folds_value_not_their_median():
    """A median over two folds at 0.19 and 100 read as T* = 50: a value no fold had."""
    pred = statistics.Predictions(
        "s", np.full((4, 2), 0.5), np.array([3.0, 3.0, 5.0, 5.0]), np.array([0.19, 100, 0.19, 100])
    )
    assert statistics.fit_summary(pred) == "c=3 / 5, T*=0.19 / 100 (per fold)"
    assert statistics.fit_summary(statistics.with_fit("s", np.full((4, 2), 0.5), 12.0, 1.7)) == "c=12, T*=1.7"


def test_a_table_export_carries_its_warnings_in_the_caption_the_manifest_and_a_column(tmp_path):
    from ethdash.evaluation import export

    counts = np.array([[5, 0], [0, 5]] * 10, dtype=float)
    table = statistics.metric_table(
        counts, [statistics.cross_fitted("s_1", counts, np.where(counts > 0, 0.1, 0.9))], 20
    )
    notes = statistics.table_warnings(table)
    paths = export.write_table(
        table, tmp_path, "metrics", {"what": "metric table", "warnings": notes}, "95% of 20 items"
    )
    tex = (tmp_path / "metrics.tex").read_text()
    assert "\\caption{95\\% of 20 items Warning: only 20 items (fewer than 30)" in tex  # escaped: % starts a comment
    assert "s\\_1: T* = 100 is at the upper end of its search range [0.01, 100]" in tex
    assert json.loads((tmp_path / "metrics.manifest.json").read_text())["warnings"] == notes
    assert pd.read_csv(tmp_path / "metrics.csv")["warning"].str.startswith("only 20 items").all()
    assert len(paths) == 4
    assert export.with_warnings("caption", []) == "caption"


def test_manifests_and_reports_name_the_checkout_commit():
    """Before: the commit was looked for beside the package, not the project, and every manifest and the
    reproduction report said "unknown"."""
    import subprocess

    from ethdash.evaluation import export

    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("not a git checkout")
    assert export.commit() == head.stdout.strip()


def test_wasserstein_is_compared_only_where_the_options_are_a_scale():
    rng = np.random.default_rng(3)
    counts = rng.integers(0, 8, (80, 4)).astype(float) + np.eye(4)[rng.integers(0, 4, 80)]
    p = rng.dirichlet(np.ones(4), 80)
    pred = statistics.with_fit("sys", p, 10.0, 1.0)
    unordered = statistics.metric_table(counts, [pred], n_resamples=50).set_index("metric")
    assert "wasserstein" not in unordered.index
    scale = statistics.metric_table(counts, [pred], n_resamples=50, ordered=True).set_index("metric")
    y = counts / counts.sum(axis=1, keepdims=True)
    expected = np.mean([sps.wasserstein_distance(range(4), range(4), y[i], p[i]) for i in range(80)])
    assert scale.loc["wasserstein", "estimate"] == pytest.approx(expected)
    assert scale.loc["wasserstein", "low"] < expected < scale.loc["wasserstein", "high"]
