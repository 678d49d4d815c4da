"""`ethdash data stats` on the real data, against numbers computed straight from the files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from .conftest import ANECDOTE_SAMPLE, DILEMMAS_DEV, run_cli


def test_stats_on_the_real_data(store, shared_data):
    assert run_cli("data", "import", str(shared_data / "scruples")).returncode == 0
    result = run_cli("data", "stats", "--json")
    assert result.returncode == 0, result.stderr
    rows = {(r["dataset"], r["split"], r["view"]): r for r in json.loads(result.stdout)}
    assert set(rows) == {
        ("dilemmas", "dev", "worse"),
        ("dilemmas", "test", "worse"),
        ("anecdotes", "sample", "classes"),
        ("anecdotes", "sample", "binarized"),
    }

    # Dilemmas dev is complete: its references are the official ones (DESIGN §3).
    dev = rows[("dilemmas", "dev", "worse")]
    raw = [json.loads(line) for line in DILEMMAS_DEV.read_text().splitlines()]
    assert dev["items"] == 2340 and dev["votes"] == sum(sum(r["gold_annotations"]) for r in raw)
    assert dev["controversial_share"] == pytest.approx(np.mean([r["controversial"] for r in raw]))
    labels = np.bincount([r["gold_label"] for r in raw])  # five votes over two options: never tied
    assert dev["majority_class_share"] == pytest.approx(labels.max() / labels.sum())
    assert dev["tied_items"] == 0
    refs = dev["references"]
    assert round(refs["uniform_xent"], 4) == 0.6931 and round(refs["class_prior_xent"], 4) == 0.6930
    assert refs["best_xent"] == pytest.approx(0.494, abs=0.01)

    # The anecdote sample was selected for agreement bands: computed from its own counts.
    sample = [json.loads(line) for line in ANECDOTE_SAMPLE.read_text().splitlines()]
    counts = np.array([list(r["label_scores"].values()) for r in sample], dtype=float)
    y = counts / counts.sum(axis=1, keepdims=True)
    prior = y.mean(axis=0)
    classes = rows[("anecdotes", "sample", "classes")]
    assert classes["votes"] == int(counts.sum())
    assert classes["references"]["class_prior_xent"] == pytest.approx(
        float(np.mean(-(np.where(y > 0, y * np.log(prior), 0)).sum(axis=1))), abs=1e-9
    )
    assert classes["majority_class"] == "OTHER"
    binary = rows[("anecdotes", "sample", "binarized")]
    right_wrong = np.array(
        [[r["binarized_label_scores"]["RIGHT"], r["binarized_label_scores"]["WRONG"]] for r in sample], dtype=float
    )
    assert binary["items"] == int((right_wrong.sum(axis=1) > 0).sum())
    margin = np.abs(right_wrong[:, 0] - right_wrong[:, 1]) / right_wrong.sum(axis=1)
    assert binary["controversial_share"] == pytest.approx(np.mean(margin < 0.5))

    table = run_cli("data", "stats", "--draws", "20")
    assert table.returncode == 0
    assert "dilemmas   dev" in table.stdout and "0.6931" in table.stdout


def test_an_empty_store_falls_back_to_the_demo_sample(store):
    result = run_cli("data", "stats", "--json")
    assert result.returncode == 0 and "imported the demo sample" in result.stderr
    rows = {(r["dataset"], r["split"], r["view"]): r["items"] for r in json.loads(result.stdout)}
    assert rows == {
        ("dilemmas", "demo", "worse"): 24,
        ("anecdotes", "demo", "classes"): 12,
        ("anecdotes", "demo", "binarized"): 12,
    }
