"""`ethdash reproduce` end to end on the real data in its reduced form (profile smoke: a few items, two
training steps): interrupted with SIGKILL, resumed without redoing finished work, and its report's
numbers equal to those computed independently from the stored scores."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from scipy import spatial

from ethdash import metrics, orders, settings
from ethdash.datasets.importer import import_paths
from ethdash.finetune import runs
from ethdash.models import DEFAULT_MODEL

from .conftest import ROOT
from .helpers import wait_until

pytestmark = pytest.mark.model
FIRST_RUN = "r-smollm2-135m-instruct-smoke-dil-xent-s0"


def reproduce(out, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "ethdash", "reproduce", "--profile", "smoke", "--out", str(out)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=os.environ.copy(),
        **kwargs,
    )


def score_rows(store) -> list[tuple]:
    with store.connect() as con:
        return con.execute("SELECT score_key, created_at FROM scores ORDER BY score_key").fetchall()


def shortest_anecdotes(source, folder, n: int = 40):
    """The n shortest real anecdotes, in their file's order, as a file of their own: the pipeline is the
    same, and long posts (a few seconds each on one thread) would only make the test slower."""
    lines = source.read_text().splitlines()
    keep = sorted(sorted(range(len(lines)), key=lambda i: len(json.loads(lines[i])["text"]))[:n])
    target = folder / source.name
    folder.mkdir()
    target.write_text("".join(lines[i] + "\n" for i in keep))
    return target


def test_reproduce_resumes_and_reports_what_the_store_holds(store, shared_data, tmp_path):
    scruples = shared_data / "scruples"
    anecdotes = shortest_anecdotes(scruples / "anecdotes" / "sample.scruples-anecdotes.jsonl", tmp_path / "anecdotes")
    import_paths(store, [scruples / "dilemmas", anecdotes])
    out = tmp_path / "report"

    first = reproduce(out)
    wait_until(lambda: (settings.runs_dir() / FIRST_RUN / "adapter").is_dir() or first.poll() is not None, 600)
    wait_until(lambda: runs.get(FIRST_RUN).status().get("state") == "succeeded" or first.poll() is not None, 600)
    first.send_signal(signal.SIGKILL)  # interrupted after its first fine-tune finished
    first.wait(timeout=30)
    assert not (out / "REPORT.md").exists()
    trained = (runs.get(FIRST_RUN).metrics_path).read_text()
    before = dict(score_rows(store))

    second = reproduce(out)
    log, _ = second.communicate(timeout=900)
    assert second.returncode == 0, log
    assert f"fine-tuning {FIRST_RUN}" not in log  # finished stages are not redone
    assert runs.get(FIRST_RUN).metrics_path.read_text() == trained
    after = dict(score_rows(store))
    assert all(after[k] == v for k, v in before.items())  # stored scores are kept, not recomputed

    third = reproduce(out)
    log, _ = third.communicate(timeout=600)
    assert third.returncode == 0, log
    assert dict(score_rows(store)) == after and "scoring" not in log and "fine-tuning" not in log

    # The report's numbers against an independent computation from the stored scores.
    results = json.loads((out / "results.json").read_text())
    report = (out / "REPORT.md").read_text()
    with store.connect() as con:
        rows = con.execute(
            """SELECT s.item_id, s.item_order, s.probs, v.counts FROM scores s
               JOIN votes v ON v.dataset = s.dataset AND v.split = s.split AND v.item_id = s.item_id
                    AND v.view = 'worse' AND v.sample = 'gold'
               WHERE s.dataset = 'dilemmas' AND s.split = 'test' AND s.adapter IS NULL ORDER BY 1, 2"""
        ).df()
    ab, ba = rows[rows["item_order"] == "ab"], rows[rows["item_order"] == "ba"]
    p = orders.combine(np.stack(ab["probs"].to_numpy()), np.stack(ba["probs"].to_numpy()))
    counts = np.stack(ab["counts"].to_numpy()).astype(float)
    dilemmas = results["dilemmas"]
    assert dilemmas["items"] == len(counts) == 8
    reported = {(m["system"], m["metric"]): m for m in dilemmas["metrics"]}
    base = f"{DEFAULT_MODEL} (base)"
    xent = metrics.soft_xent(counts, p)
    assert reported[(base, "xent")]["estimate"] == pytest.approx(xent)
    assert reported[(base, "accuracy")]["estimate"] == pytest.approx(metrics.accuracy(counts, p).value)
    assert reported[(base, "position_bias")]["estimate"] == pytest.approx(
        orders.position_bias(np.stack(ab["probs"].to_numpy()), np.stack(ba["probs"].to_numpy()))
    )
    assert f"| {base} | {xent:.3f} [" in report
    # The field's metrics too, in their own table: scipy's Jensen–Shannon distance, squared.
    y = counts / counts.sum(axis=1, keepdims=True)
    jsd = float(np.mean(spatial.distance.jensenshannon(y, p, axis=1) ** 2))
    assert reported[(base, "jsd")]["estimate"] == pytest.approx(jsd)
    assert "The field's metrics" in report and f"| {base} | {jsd:.3f} [" in report
    uniform = next(r["xent"] for r in dilemmas["references"] if r["reference"] == "uniform")
    assert uniform == pytest.approx(np.log(2))
    for figure in ("dilemmas-reliability-single.png", "anecdotes-binarized-scatter-single.png"):
        assert (out / "figures" / figure).read_bytes()[:4] == b"\x89PNG" and f"figures/{figure}" in report
    for width in ("single", "double"):  # for a paper: PDF at both column widths
        assert (out / "figures" / f"dilemmas-scatter-{width}.pdf").read_bytes()[:5] == b"%PDF-"
    for claim in ("Poor initial alignment", "Fine-tuning improves both metrics", "Mistral-7B reaches GPT-4o"):
        assert claim in report
    assert "dilemmas-worse" in report and "Q4_1" in report and "heldout_fraction" in report
