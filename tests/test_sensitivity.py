"""Prompt sensitivity (issue 17, part 2): the shipped paraphrases, the consistency of a model across templates
against direct computations, and `ethdash evaluate --also-template` on real scores."""

from __future__ import annotations

import re
from itertools import combinations

import numpy as np
import pandas as pd
import pytest

from ethdash import orders, templates
from ethdash.evaluation import sensitivity

from .conftest import DILEMMAS_DEV, run_cli
from .helpers import MODEL

VIEWS = [("dilemmas", "worse"), ("anecdotes", "binarized"), ("anecdotes", "classes")]


@pytest.mark.parametrize("dataset, view", VIEWS)
def test_each_built_in_view_ships_the_studys_template_first_and_three_paraphrases(dataset, view):
    names = templates.for_view(dataset, view)
    assert names[0] == f"{dataset}-{view}" and len(names) >= 4, names
    shipped = [templates.get(n) for n in names]
    assert len({t.user for t in shipped}) == len(shipped)  # different wording, every one
    assert any(t.answers[0].token == "1" for t in shipped)  # digits where the view allows them
    for t in shipped:
        assert t.description and sorted(a.option for a in t.answers) == sorted({a.option for a in t.answers})


def test_consistency_is_the_mean_pairwise_total_variation_and_argmax_agreement():
    rng = np.random.default_rng(0)
    by_template = {name: rng.dirichlet(np.ones(3), 50) for name in ("a", "b", "c")}
    pairs = list(combinations(by_template.values(), 2))
    tv = np.mean([[0.5 * np.abs(x[i] - y[i]).sum() for i in range(50)] for x, y in pairs])
    agree = np.mean([[x[i].argmax() == y[i].argmax() for i in range(50)] for x, y in pairs])
    c = sensitivity.consistency(by_template)
    assert (c.total_variation, c.argmax_agreement, c.items) == (pytest.approx(tv), pytest.approx(agree), 50)
    same = sensitivity.consistency({"a": by_template["a"], "b": by_template["a"].copy()})
    assert same.total_variation == 0 and same.argmax_agreement == 1
    items = pd.DataFrame({"split": "dev", "item_id": [f"x{i}" for i in range(50)]})
    top = sensitivity.most_sensitive(items, by_template, ("A", "B", "C"), top=5)
    per_item = np.mean([0.5 * np.abs(x - y).sum(axis=1) for x, y in pairs], axis=0)
    assert list(top["item_id"]) == [f"x{i}" for i in np.argsort(-per_item)[:5]]
    with pytest.raises(ValueError, match="two templates or more"):
        sensitivity.consistency({"a": by_template["a"]})


@pytest.mark.model
def test_evaluate_compares_the_base_model_through_two_templates(shared_data, tmp_path):
    assert run_cli("data", "import", str(DILEMMAS_DEV)).returncode == 0
    for template in ("dilemmas-worse", "dilemmas-worse-numbers"):
        done = run_cli("score", "--template", template, "--dataset", "dilemmas", "--split", "dev", "--limit", "6")
        assert done.returncode == 0, done.stderr
    args = ["--template", "dilemmas-worse", "--also-template", "dilemmas-worse-numbers", "--dataset", "dilemmas"]
    done = run_cli("evaluate", *args, "--split", "dev", "--resamples", "100")
    assert done.returncode == 0, done.stderr
    assert f"{MODEL} (base) · dilemmas-worse-numbers" in done.stdout  # each template a system

    # The consistency from the stored scores, computed here: both orders averaged per template.
    from ethdash.store import Store

    with Store().connect() as con:
        rows = con.execute(
            "SELECT template, item_id, item_order, probs FROM scores WHERE adapter IS NULL ORDER BY 1, 2, 3"
        ).df()
    by_template = {}
    for template, group in rows.groupby("template"):
        ab, ba = group[group["item_order"] == "ab"], group[group["item_order"] == "ba"]
        by_template[template] = orders.combine(np.stack(ab["probs"].to_numpy()), np.stack(ba["probs"].to_numpy()))
    tv = 0.5 * np.abs(by_template["dilemmas-worse"] - by_template["dilemmas-worse-numbers"]).sum(axis=1).mean()
    line = re.search(rf"{re.escape(MODEL)} \(base\)\s+2\s+6\s+([\d.]+)\s+([\d.]+)", done.stdout)
    assert line, done.stdout
    assert float(line.group(1)) == pytest.approx(tv, abs=5e-5)

    wrong = run_cli("evaluate", *args[:2], "--also-template", "anecdotes-classes", "--dataset", "dilemmas")
    assert wrong.returncode == 1 and "does not ask about dilemmas's 'worse' view" in wrong.stderr
