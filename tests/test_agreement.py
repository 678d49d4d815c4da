"""Agreement among annotators (issue 17, part 4) against an independent implementation: the `krippendorff`
package (Castro's implementation of Krippendorff's α), and direct counts for pairwise agreement."""

from __future__ import annotations

import re

import krippendorff
import numpy as np
import pandas as pd
import pytest

from ethdash import agreement, annotations, metrics
from ethdash.evaluation import people, statistics

from .conftest import run_cli


def random_labels(seed: int, n_items: int = 60, n_people: int = 5, k: int = 3, coverage: float = 0.6) -> pd.DataFrame:
    """People who agree with a per-item truth 70% of the time; each labels a random part of the items."""
    rng = np.random.default_rng(seed)
    rows = []
    for item in range(n_items):
        truth = rng.integers(0, k)
        for person in range(n_people):
            if rng.random() < coverage:
                label = truth if rng.random() < 0.7 else rng.integers(0, k)
                rows.append((f"i{item}", f"p{person}", "ABCDE"[label]))
    return pd.DataFrame(rows, columns=["item", "annotator", "label"])


def package_alpha(labels: pd.DataFrame) -> float:
    wide = labels.pivot_table(index="annotator", columns="item", values="label", aggfunc="first")
    data = wide.apply(lambda column: column.map(lambda v: np.nan if pd.isna(v) else "ABCDE".index(v)))
    return float(krippendorff.alpha(reliability_data=data.to_numpy(dtype=float), level_of_measurement="nominal"))


@pytest.mark.parametrize("seed, k, coverage", [(0, 3, 0.6), (1, 2, 0.4), (2, 5, 0.8), (3, 2, 1.0)])
def test_alpha_equals_the_krippendorff_package(seed, k, coverage):
    labels = random_labels(seed, k=k, coverage=coverage)
    estimate = agreement.krippendorff_alpha(labels, n_resamples=200)
    assert estimate.value == pytest.approx(package_alpha(labels), abs=1e-12)
    assert estimate.low < estimate.value < estimate.high
    assert estimate.items == int((labels.groupby("item").size() >= 2).sum())


def test_each_bootstrap_resample_is_alpha_on_the_resampled_items():
    """The vectorised resamples equal α computed by the package on each resample's items (an item drawn
    twice counts twice), drawn as the module draws them."""
    labels = random_labels(4, n_items=30)
    pairable = sorted(labels.groupby("item").filter(lambda g: len(g) >= 2)["item"].unique())
    resampled = agreement._resampled(
        lambda w: agreement._alpha_from(w @ agreement._coincidences(labels)[0], 3), len(pairable), 5, seed=9
    )
    rng = np.random.default_rng(9)
    draws = rng.integers(0, len(pairable), (5, len(pairable)))
    for value, draw in zip(resampled, draws):
        copies = [labels[labels["item"] == pairable[i]].assign(item=f"copy{n}") for n, i in enumerate(draw)]
        assert value == pytest.approx(package_alpha(pd.concat(copies)), abs=1e-12)


def test_pairwise_agreement_counts_the_items_both_labelled():
    labels = random_labels(5)
    table = agreement.pairwise(labels, n_resamples=200).set_index(["annotator", "other"])
    wide = labels.pivot_table(index="item", columns="annotator", values="label", aggfunc="first")
    for (a, b), row in table.iterrows():
        both = wide[[a, b]].dropna()
        assert row["items"] == len(both)
        assert row["agreement"] == pytest.approx((both[a] == both[b]).mean())
        assert row["low"] <= row["agreement"] <= row["high"]


def test_perfect_agreement_and_too_little_to_say():
    same = pd.DataFrame(
        {"item": ["a", "a", "b", "b"], "annotator": ["x", "y", "x", "y"], "label": ["A", "A", "B", "B"]}
    )
    assert agreement.krippendorff_alpha(same, n_resamples=50).value == pytest.approx(1.0)
    one_item = same[same["item"] == "a"]
    assert np.isnan(agreement.krippendorff_alpha(one_item).value)  # one pairable item: no α


JUDGMENTS = """item,scenario,worker,choice
j1,Lying to a friend.,w1,YES
j1,Lying to a friend.,w2,NO
j1,Lying to a friend.,w3,NO
j2,Keeping a found wallet.,w1,NO
j2,Keeping a found wallet.,w2,NO
j3,Breaking a promise to help a stranger.,w1,YES
j3,Breaking a promise to help a stranger.,w3,YES
"""


def test_the_cli_measures_imported_labels_and_ethdash_annotations_together(store, tmp_path):
    (tmp_path / "judgments.csv").write_text(JUDGMENTS)
    flags = ["--dataset", "judged", "--text-column", "scenario", "--id-column", "item"]
    flags += ["--label-column", "choice", "--annotator-column", "worker", "--option", "YES", "--option", "NO"]
    assert run_cli("data", "import", str(tmp_path / "judgments.csv"), *flags).returncode == 0
    # A researcher annotates two items in ethdash; "no judgment" does not count.
    for item, judgment in (("j1", "NO"), ("j2", "YES"), ("j3", None)):
        annotations.save(store, annotations.Annotation("judged", "all", item, "Ada", judgment, 0.8), ("YES", "NO"))

    done = run_cli("annotations", "agreement", "--dataset", "judged", "--resamples", "200")
    assert done.returncode == 0, done.stderr
    expected = pd.read_csv(tmp_path / "judgments.csv").rename(columns={"worker": "annotator", "choice": "label"})
    expected = pd.concat([expected, pd.DataFrame({"item": ["j1", "j2"], "annotator": "Ada", "label": ["NO", "YES"]})])
    letters = expected.assign(label=expected["label"].map({"YES": "A", "NO": "B"}))
    assert "9 labels by 4 annotators of 3 items of judged" in done.stdout
    shown = float(re.search(r"Krippendorff's α \(nominal\): (-?[\d.]+)", done.stdout).group(1))
    assert shown == pytest.approx(package_alpha(letters[["item", "annotator", "label"]]), abs=5e-4)
    pair = re.search(r"Ada\s+w1\s+([\d.]+)\s+\S+\s+\S+\s+(\d+)", done.stdout)
    assert pair and float(pair.group(1)) == 0.0 and pair.group(2) == "2"  # Ada and w1 share j1, j2: both differ

    alone = run_cli("annotations", "agreement", "--dataset", "judged", "--split", "nothing")
    assert alone.returncode == 1 and "needs two annotators or more" in alone.stderr
    unknown = run_cli("annotations", "agreement", "--dataset", "nope")
    assert unknown.returncode == 1 and "unknown dataset 'nope'" in unknown.stderr


# ---------------------------------------------------------------- people as systems


def test_a_judgment_becomes_its_confidence_on_the_chosen_option():
    p = people.judgment_distribution(np.array([0, 1, 2]), np.array([0.8, np.nan, 0.1]), 3)
    eps = people.SMOOTHING
    expected = np.array([[0.8, 0.1, 0.1], [0.0, 1.0, 0.0], [1 / 3, 1 / 3, 1 / 3]]) * (1 - eps) + eps / 3
    np.testing.assert_allclose(p, expected)  # no confidence: 1; below 1/K: uniform
    np.testing.assert_allclose(p.sum(axis=1), 1.0)


def test_people_are_scored_on_their_items_beside_the_models_on_the_same_items():
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 6, (40, 2)).astype(float) + np.eye(2)[rng.integers(0, 2, 40)]
    items = pd.DataFrame({"split": "test", "item_id": [f"d{i}" for i in range(40)]})
    model = statistics.with_fit("base", rng.dirichlet([2, 2], 40), 10.0, 1.0)
    mine = [3, 7, 8, 20, 31]
    labels = pd.DataFrame(
        {
            "split": "test",
            "item_id": [f"d{i}" for i in mine] + ["d3", "d9", "elsewhere"],
            "annotator": ["Ada"] * 5 + ["Bo", "Bo", "Bo"],
            "label": ["A", "B", "A", "A", "B", "B", "A", "A"],
            "confidence": [0.9, 0.6, np.nan, 0.7, 1.0, 0.8, 0.8, 0.8],
        }
    )
    table = people.people_table(counts, items, [model], labels, ("A", "B"), n_resamples=200)
    assert set(table["person"]) == {"Ada", "Bo", people.POOLED}  # Bo's third item is not compared
    ada = table[table["person"] == "Ada"].set_index(["system", "metric"])
    chosen = np.array([0, 1, 0, 0, 1])
    p_ada = people.judgment_distribution(chosen, np.array([0.9, 0.6, np.nan, 0.7, 1.0]), 2)
    assert ada.loc[("Ada", "xent"), "estimate"] == pytest.approx(metrics.soft_xent(counts[mine], p_ada))
    assert ada.loc[("base", "xent"), "estimate"] == pytest.approx(metrics.soft_xent(counts[mine], model.p[mine]))
    assert (ada["items"] == 5).all()
    pooled = table[(table["person"] == people.POOLED) & (table["system"] == people.POOLED)].set_index("metric")
    union = [3, 7, 8, 9, 20, 31]
    bo = people.judgment_distribution(np.array([1, 0]), np.array([0.8, 0.8]), 2)
    p_pooled = {i: p for i, p in zip(mine, p_ada)}
    p_pooled[3] = (p_ada[0] + bo[0]) / 2  # both labelled d3: the mean of the two distributions
    p_pooled[9] = bo[1]
    expected = metrics.soft_xent(counts[union], np.stack([p_pooled[i] for i in union]))
    assert pooled.loc["xent", "estimate"] == pytest.approx(expected)
