"""Human judgments published as shares (issue 15): imported exactly, with or without a number of respondents;
metrics that count whole votes apply only where that number is declared; the others use the exact shares."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from scipy import special

from ethdash.datasets import catalog
from ethdash.datasets.items import RESPONDENTS, SHARES
from ethdash.datasets.readers.mapping import Mapping
from ethdash.errors import DataError
from ethdash.evaluation import paper
from ethdash.finetune.config import ConfigError, RunConfig, validate
from ethdash.models import DEFAULT_MODEL as MODEL

from .conftest import run_cli, snapshot

# Survey vignettes: the share of respondents who approve, no title, no option order, no second sample.
SURVEY = """vignette,story,approve,disapprove,n
v1,A nurse lies to a dying patient about a relative's death.,0.866666666666667,0.133333333333333,60
v2,A manager takes credit for an intern's idea.,0.1,0.9,40
v3,A student reports a friend who cheated on an exam.,0.55,0.45,20
v4,A neighbour keeps a parcel delivered to the wrong door.,0.25,0.75,48
v5,A driver runs a red light to get a sick child to hospital.,0.9166666666666666,0.0833333333333333,36
v6,A chef reuses food a customer left untouched.,0.3,0.7,30
"""
FLAGS = ["--dataset", "survey", "--text-column", "story", "--id-column", "vignette", "--shares"]
FLAGS += ["--option", "APPROVE=approve", "--option", "DISAPPROVE=disapprove"]


def given_shares() -> pd.DataFrame:
    return pd.read_csv(io.StringIO(SURVEY)).set_index("vignette")


def test_shares_import_exactly_with_or_without_respondents(store, tmp_path):
    (tmp_path / "survey.csv").write_text(SURVEY)
    assert run_cli("data", "import", str(tmp_path / "survey.csv"), *FLAGS).returncode == 0
    weighted = FLAGS[:1] + ["counted"] + FLAGS[2:] + ["--respondents", "n"]
    assert run_cli("data", "import", str(tmp_path / "survey.csv"), *weighted).returncode == 0
    given = given_shares()
    exact = given[["approve", "disapprove"]].to_numpy()
    exact = exact / exact.sum(axis=1, keepdims=True)
    for name, kind, scale in (("survey", SHARES, 1.0), ("counted", RESPONDENTS, given["n"].to_numpy()[:, None])):
        assert catalog.judgments(store, name, "votes") == kind
        frame = catalog.items_frame(store, name, None, "votes").set_index("item_id").loc[given.index]
        np.testing.assert_allclose(catalog.counts_matrix(frame), exact * scale, rtol=1e-12)

    stats = run_cli("data", "stats").stdout.splitlines()
    survey_row = next(line.split() for line in stats if line.startswith("survey "))
    counted_row = next(line.split() for line in stats if line.startswith("counted "))
    assert survey_row[4] == "shares" and survey_row[-1] == "n/a"  # no votes to count, no BEST
    assert int(counted_row[4]) == given["n"].sum() and counted_row[-1] != "n/a"

    # Unnormalised weights are shares once normalised: the same stored judgment.
    weights = SURVEY.replace("0.866666666666667,0.133333333333333", "13,2")
    (tmp_path / "weights.csv").write_text(weights)
    assert run_cli("data", "import", str(tmp_path / "weights.csv"), "--dataset", "weights", *FLAGS[2:]).returncode == 0
    frame = catalog.items_frame(store, "weights", None, "votes").set_index("item_id")
    np.testing.assert_allclose(list(frame.loc["v1", "counts"]), [13 / 15, 2 / 15], rtol=1e-12)


@pytest.mark.parametrize(
    "row, words",
    [
        ("v9,A story.,-0.1,1.1,10", "shares must not be negative"),
        ("v9,A story.,half,0.5,10", "shares must be numbers, found 'half'"),
        ("v9,A story.,0,0,10", "all shares are zero"),
        ("v9,A story.,0.5,0.5,0", "whole number above 0, found 0"),
        ("v9,A story.,0.5,0.5,2.5", "whole number above 0, found 2.5"),
    ],
)
def test_bad_shares_are_refused_with_file_and_line_and_nothing_stored(store, tmp_path, row, words):
    before = snapshot(store)
    path = tmp_path / "bad.csv"
    path.write_text(SURVEY + row + "\n")
    done = run_cli("data", "import", str(path), *FLAGS, "--respondents", "n")
    assert done.returncode == 1 and f"{path}:8: field '" in done.stderr and words in done.stderr, done.stderr
    assert snapshot(store) == before


@pytest.mark.parametrize(
    "raw, words",
    [
        ({"votes": ["a", "b"], "shares": ["a", "b"]}, "give one of"),
        ({"votes": ["a", "b"], "respondents": 10}, "goes with share columns"),
        ({"shares": ["a", "b"], "respondents": 0}, "a whole number above 0"),
        ({"shares": ["a", "b"], "second_votes": ["c", "d"]}, "goes with vote-count columns"),
    ],
)
def test_mappings_that_mix_kinds_of_judgment_are_refused(raw, words):
    with pytest.raises(DataError, match=words):
        Mapping.from_dict({"dataset": "x", "options": ["A", "B"], "text": "t", **raw})


def stored(store, dataset: str) -> tuple[np.ndarray, np.ndarray]:
    with store.connect() as con:
        rows = con.execute(
            "SELECT s.probs, v.counts FROM scores s JOIN votes v USING (dataset, split, item_id) "
            "WHERE s.dataset = ? ORDER BY s.item_id",
            [dataset],
        ).fetchall()
    return np.array([r[0] for r in rows]), np.array([r[1] for r in rows], dtype=float)


@pytest.mark.model
def test_metrics_use_the_exact_shares_and_count_votes_only_where_respondents_are_declared(store, tmp_path):
    (tmp_path / "survey.csv").write_text(SURVEY)
    weighted = FLAGS[:1] + ["counted"] + FLAGS[2:] + ["--respondents", "n"]
    for flags in (FLAGS, weighted):
        assert run_cli("data", "import", str(tmp_path / "survey.csv"), *flags).returncode == 0
        name = flags[1]
        assert run_cli("templates", "new", "--dataset", name).returncode == 0
        scored = run_cli("score", "--template", f"{name}-votes", "--dataset", name)
        assert scored.returncode == 0, scored.stderr
    out = {}
    for name in ("survey", "counted"):
        done = run_cli(
            "evaluate", "--template", f"{name}-votes", "--dataset", name, "--out", str(tmp_path / name), "--no-figures"
        )
        assert done.returncode == 0, done.stderr
        out[name] = (done, pd.read_csv(tmp_path / name / "metrics.csv").set_index(["system", "metric"])["estimate"])
    base = f"{MODEL} (base)"

    # Independent computations from the stored probabilities and the published shares.
    p, _ = stored(store, "survey")
    given = given_shares()
    y = given[["approve", "disapprove"]].to_numpy()
    y = y / y.sum(axis=1, keepdims=True)
    xent = float(np.mean(-(y * np.log(p)).sum(axis=1)))
    brier = float(np.mean(((p - y) ** 2).sum(axis=1)))
    hits = [p[i].argmax() == y[i].argmax() for i in range(len(y)) if y[i, 0] != y[i, 1]]
    for name in ("survey", "counted"):
        table = out[name][1]
        assert table[base, "xent"] == pytest.approx(xent, rel=1e-9)  # the exact shares, not rounded votes
        assert table[base, "brier"] == pytest.approx(brier, rel=1e-9)
        assert table[base, "accuracy"] == pytest.approx(np.mean(hits), rel=1e-9)

    # Shares alone: no Dirichlet score, no BEST, and the output says why.
    survey_done, survey_table = out["survey"]
    assert "dirichlet" not in {m for _, m in survey_table.index}
    assert "shares with no number of respondents" in survey_done.stdout + survey_done.stderr
    refs = pd.read_csv(tmp_path / "survey" / "references.csv").set_index("reference")["xent"]
    assert np.isnan(refs["BEST"]) and refs["uniform"] == pytest.approx(np.log(2))

    # Shares of declared respondents: the Dirichlet score of the votes rounded to whole numbers.
    counted_done, counted_table = out["counted"]
    assert "rounded to whole votes" in counted_done.stdout + counted_done.stderr
    n = np.rint(y * given["n"].to_numpy()[:, None])
    assert (n.sum(axis=1) == given["n"].to_numpy()).all()
    ev, _ = paper.compare(store, MODEL, [], "counted-votes", "counted", None)
    pred = next(q for q in ev.predictions if q.label == base)
    order = [list(ev.aligned.items["item_id"]).index(i) for i in given.index]
    alpha = pred.c[order][:, None] * p  # each item's cross-fitted c, items in the stored order (v1..v6)
    nll = -(
        special.gammaln(alpha.sum(1))
        - special.gammaln(alpha.sum(1) + n.sum(1))
        + (special.gammaln(alpha + n) - special.gammaln(alpha)).sum(1)
    )
    assert counted_table[base, "dirichlet"] == pytest.approx(float(np.mean(nll)), rel=1e-9)
    assert ev.rounding == pytest.approx(float(np.max(np.abs(n / n.sum(1, keepdims=True) - y))))


def test_the_dirichlet_loss_refuses_shares_without_respondents(store, tmp_path):
    (tmp_path / "survey.csv").write_text(SURVEY)
    assert run_cli("data", "import", str(tmp_path / "survey.csv"), *FLAGS).returncode == 0
    assert run_cli("templates", "new", "--dataset", "survey").returncode == 0
    config = RunConfig(name="r", template="survey-votes", dataset="survey", split="all", loss="dirichlet")
    with pytest.raises(ConfigError, match="the Dirichlet loss needs vote counts"):
        validate(config, store)
    assert validate(RunConfig(name="r", template="survey-votes", dataset="survey", split="all"), store) == 6
