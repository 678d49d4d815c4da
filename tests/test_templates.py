"""Templates: parsing, validation, and how answer probabilities map onto the votes."""

from __future__ import annotations

import re

import numpy as np
import pytest

from ethdash import models, templates
from ethdash.datasets.items import ANECDOTE_CLASSES, BINARIZED_CLASSES, DILEMMA_OPTIONS, scruples_dataset
from ethdash.templates import TemplateError

from .conftest import run_cli

DILEMMA = {
    "name": "t",
    "version": 1,
    "dataset": "dilemmas",
    "view": "worse",
    "user": "A. {first}\nB. {second}",
    "answers": [{"token": "A", "option": "first"}, {"token": "B", "option": "second"}],
}


def test_shipped_templates_load_and_fit_their_datasets():
    found = templates.available()
    assert {"dilemmas-worse", "anecdotes-classes", "anecdotes-binarized"} <= set(found)
    for t in found.values():
        templates.check_dataset(t, scruples_dataset(t.dataset))


@pytest.mark.parametrize(
    "polarity, order, expected",
    [
        ("worse", "ab", [0.8, 0.2]),  # A names action 1 as worse
        ("worse", "ba", [0.2, 0.8]),  # A names action 2 (listed first) as worse
        ("better", "ab", [0.2, 0.8]),  # A names action 1 as better: action 2 is worse
        ("better", "ba", [0.8, 0.2]),
    ],
)
def test_dilemma_answers_map_onto_the_worse_votes(polarity, order, expected):
    t = templates.parse({**DILEMMA, "polarity": polarity}, "test")
    np.testing.assert_allclose(t.to_votes(np.array([0.8, 0.2]), DILEMMA_OPTIONS, order), expected)


def test_the_prompt_lists_the_actions_in_the_scored_order():
    t = templates.parse(DILEMMA, "test")
    item = {"actions": ["lying", "stealing"]}
    assert t.messages(item, "ab")[-1]["content"] == "A. lying\nB. stealing"
    assert t.messages(item, "ba")[-1]["content"] == "A. stealing\nB. lying"


def test_anecdote_answers_map_by_option_name():
    t = templates.get("anecdotes-binarized")
    answers = [a.option for a in t.answers]
    p = np.array([0.7, 0.3])
    votes = t.to_votes(p, BINARIZED_CLASSES)
    assert votes[BINARIZED_CLASSES.index(answers[0])] == pytest.approx(0.7)
    classes = templates.get("anecdotes-classes")
    assert sorted(a.option for a in classes.answers) == sorted(ANECDOTE_CLASSES)


def test_braces_in_scenario_text_are_kept_verbatim():
    t = templates.get("anecdotes-classes")
    text = t.messages({"title": "AITA {for} this?", "text": "I said {name} & left", "actions": []})[-1]["content"]
    assert "AITA {for} this?" in text and "I said {name} & left" in text


@pytest.mark.parametrize(
    "change, words",
    [
        ({"user": "A. {first} {third}"}, "unknown placeholders ['third']"),
        ({"answers": [{"token": "A", "option": "first"}]}, "at least two"),
        ({"answers": [{"token": "A", "option": "first"}, {"token": "A", "option": "second"}]}, "distinct"),
        ({"answers": [{"token": "A", "option": "action 1"}, {"token": "B", "option": "second"}]}, "'first'"),
        ({"polarity": "nicer"}, "polarity"),
        ({"colour": "red"}, "unknown keys"),
        # Only plain placeholders (issue 16): no format specs, conversions, attributes or indexing.
        ({"user": "A. {first:{second.__class__.__name__[0]}} B. {second}"}, "only plain placeholders"),
        ({"user": "A. {first!r:{second.__len__}} B. {second}"}, "placeholder {first!r:{second.__len__}}"),
        ({"user": "A. {first:>20000000} B. {second}"}, "placeholder {first:>20000000}"),
        ({"user": "A. {first.upper} B. {second}"}, "placeholder {first.upper}"),
        ({"user": "A. {first[0]} B. {second}"}, "placeholder {first[0]}"),
        ({"user": "A. {first} B. {second"}, "not a valid template"),
        ({"name": "../evil"}, "the template name '../evil' is not allowed: use letters"),
        ({"name": 3}, "'name' must be a string"),
        ({"version": "one"}, "'version' must be an integer"),
    ],
)
def test_invalid_templates_are_refused(change, words):
    with pytest.raises(TemplateError, match=re.escape(words)):
        templates.parse({**DILEMMA, **change}, "my.toml")


def test_an_unknown_template_name():
    with pytest.raises(TemplateError, match="unknown template 'nope': choose from"):
        templates.get("nope")


def test_a_user_template_is_found_in_the_home_folder(isolated_home):
    folder = isolated_home / "templates"
    folder.mkdir(parents=True)
    text = (templates.SHIPPED / "dilemmas-worse.toml").read_text().replace('name = "dilemmas-worse"', 'name = "mine"')
    (folder / "mine.toml").write_text(text.replace("less ethical", "worse"))
    mine = templates.get("mine")
    assert mine.content_hash != templates.get("dilemmas-worse").content_hash  # edited text, new identity


@pytest.mark.model
def test_answer_tokens_must_be_single_tokens_for_the_model():
    from ethdash.scoring.prompting import Prompter

    prompter = Prompter(models.get(models.DEFAULT_MODEL))
    assert prompter.answer_ids(templates.parse(DILEMMA, "t")) == (49, 50)
    multi = templates.parse(
        {**DILEMMA, "answers": [{"token": "Definitely first", "option": "first"}, {"token": "B", "option": "second"}]},
        "multi.toml",
    )
    with pytest.raises(TemplateError, match=r"answer token 'Definitely first' is \d tokens for model"):
        prompter.answer_ids(multi)


def test_position_bias_and_combined_orders():
    from ethdash import orders

    p_ab = np.array([[0.9, 0.1], [0.6, 0.4]])  # first-listed: 0.9, 0.6
    p_ba = np.array([[0.3, 0.7], [0.2, 0.8]])  # first-listed is action 2: 0.7, 0.8
    np.testing.assert_allclose(orders.combine(p_ab, p_ba), [[0.6, 0.4], [0.4, 0.6]])
    assert orders.position_bias(p_ab, p_ba) == pytest.approx(np.mean([0.9, 0.6, 0.7, 0.8]) - 0.5)
    blind = np.array([[0.7, 0.3]])
    assert orders.position_bias(blind, blind) == pytest.approx(0.0)


SURVEY = (
    "uid,vignette,approve,disapprove,unsure\n"
    "v1,A nurse tells a comforting lie.,7,3,1\n"
    "v2,A student reports a cheat.,4,6,0\n"
)


def import_survey(tmp_path) -> None:
    (tmp_path / "survey.csv").write_text(SURVEY)
    args = ["--dataset", "vig", "--text-column", "vignette", "--id-column", "uid"]
    options = ["--option", "APPROVE=approve", "--option", "DISAPPROVE=disapprove", "--option", "UNSURE=unsure"]
    assert run_cli("data", "import", str(tmp_path / "survey.csv"), *args, *options).returncode == 0


def test_templates_new_writes_a_template_for_your_dataset_and_show_renders_it(store, tmp_path):
    """Before: what a template for your own data may use was learnt from error messages."""
    import_survey(tmp_path)
    made = run_cli("templates", "new", "--dataset", "vig")
    assert made.returncode == 0, made.stderr
    written = templates.get("vig-votes")  # in $ETHDASH_HOME/templates, and it parses
    assert (written.dataset, written.view) == ("vig", "votes")
    assert [(a.token, a.option) for a in written.answers] == [("A", "APPROVE"), ("B", "DISAPPROVE"), ("C", "UNSURE")]
    assert "{text}" in written.user and "{title}" not in written.user  # this dataset has no titles
    shown = run_cli("templates", "show", "vig-votes", "--item", "v2")
    assert shown.returncode == 0, shown.stderr
    assert "A student reports a cheat." in shown.stdout and "A nurse" not in shown.stdout
    assert "C. UNSURE" in shown.stdout and "'C' → UNSURE" in shown.stdout

    again = run_cli("templates", "new", "--dataset", "vig")
    assert again.returncode == 1 and "exists" in again.stderr
    for args, words in (
        (["new", "--dataset", "nope"], "unknown dataset 'nope'"),
        (["new", "--dataset", "vig", "--name", "../x"], "template name '../x' is not allowed: use letters"),
        (["new", "--dataset", "vig", "--view", "worse"], "has no view 'worse'"),
        (["show", "vig-votes", "--item", "v9"], "no item 'v9'"),
    ):
        refused = run_cli("templates", *args)
        assert refused.returncode == 1 and words in refused.stderr and "Traceback" not in refused.stderr, args


@pytest.mark.model
def test_a_new_template_scores_with_the_embedded_model(store, tmp_path):
    import_survey(tmp_path)
    assert run_cli("templates", "new", "--dataset", "vig").returncode == 0
    scored = run_cli("score", "--template", "vig-votes", "--dataset", "vig")
    assert scored.returncode == 0, scored.stderr
    assert "2 to compute" in scored.stderr
