"""Annotations: saved at once, history kept, never lost to reruns or to a concurrent annotator."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from ethdash import annotations
from ethdash.annotations import Annotation
from ethdash.datasets.importer import import_paths
from ethdash.errors import EthdashError
from ethdash.settings import demo_dir

from .conftest import ROOT, run_cli, snapshot
from .test_app import app_test

OPTIONS = ("action 1", "action 2")


def note(annotator: str, judgment: str | None, text: str = "") -> Annotation:
    return Annotation("dilemmas", "demo", "demo-dilemma-01", annotator, judgment, 0.8, ("family",), text)


def test_saves_keep_their_history_and_the_latest_is_current(store):
    import_paths(store, [demo_dir()])
    annotations.save(store, note("ada", "action 1", "first thought"), OPTIONS)
    annotations.save(store, note("ada", "action 2", "changed my mind"), OPTIONS)
    annotations.save(store, note("bob", None), OPTIONS)
    history = annotations.history(store, "dilemmas", "demo", "demo-dilemma-01")
    assert len(history) == 3 and history.iloc[0]["note"] in ("changed my mind", "")
    current = annotations.current(store).set_index("annotator")
    assert current.loc["ada", "judgment"] == "action 2" and pd.isna(current.loc["bob", "judgment"])
    assert list(current.loc["ada", "tags"]) == ["family"]


@pytest.mark.parametrize(
    "bad, words",
    [
        (note("", "action 1"), "give an annotator name"),
        (note("ada", "action 3"), "is not one of"),
        (Annotation("dilemmas", "demo", "demo-dilemma-01", "ada", None, 1.5), "between 0 and 1"),
    ],
)
def test_bad_annotations_are_refused_and_nothing_is_saved(store, bad, words):
    import_paths(store, [demo_dir()])
    before = snapshot(store)
    with pytest.raises(EthdashError, match=words):
        annotations.save(store, bad, OPTIONS)
    assert snapshot(store) == before


def test_tags_are_parsed_once_each():
    assert annotations.parse_tags(" family, money ,family,, ") == ("family", "money")


WRITER = """
import sys
from ethdash import annotations
from ethdash.store import Store
who = sys.argv[1]
for k in range(int(sys.argv[2])):
    annotations.save(Store(), annotations.Annotation("dilemmas", "demo", "demo-dilemma-01", who, "action 1",
                     0.5, (), f"{who} {k}"), ("action 1", "action 2"))
"""


def test_two_annotators_at_the_same_time_both_keep_every_record(store, tmp_path):
    import_paths(store, [demo_dir()])
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, who, "25"], cwd=ROOT, stderr=subprocess.PIPE, text=True)
        for who in ("ada", "bob")
    ]
    for w in writers:
        _, err = w.communicate(timeout=120)
        assert w.returncode == 0, err
    history = annotations.history(store, "dilemmas", "demo", "demo-dilemma-01")
    assert history["annotator"].value_counts().to_dict() == {"ada": 25, "bob": 25}
    assert set(history["note"]) == {f"{who} {k}" for who in ("ada", "bob") for k in range(25)}

    assert run_cli("annotations", "export", str(tmp_path / "a.csv")).returncode == 0
    assert run_cli("annotations", "export", str(tmp_path / "all.parquet"), "--all").returncode == 0
    assert len(pd.read_csv(tmp_path / "a.csv")) == 2  # the latest per annotator
    assert len(pd.read_parquet(tmp_path / "all.parquet")) == 50


@pytest.mark.model
def test_an_annotation_from_the_page_survives_a_rerun(store):
    import_paths(store, [demo_dir()])
    at = app_test()
    at.query_params["dataset"] = "dilemmas"
    at.query_params["annotator"] = "ada"
    at.run()
    next(r for r in at.radio if r.label == "Your judgment").set_value("action 2")
    next(t for t in at.text_input if t.label == "Tags").set_value("family, privacy")
    next(t for t in at.text_area if t.label == "Note").set_value("**not bold** <b>no</b>")
    at.button[-1].click().run()
    assert not at.exception and any("Saved for ada" in s.value for s in at.success)
    at.run()  # a rerun: the record is still there, from the store
    saved = annotations.current(store)
    assert len(saved) == 1 and saved.iloc[0]["judgment"] == "action 2"
    assert list(saved.iloc[0]["tags"]) == ["family", "privacy"] and saved.iloc[0]["note"] == "**not bold** <b>no</b>"
    assert at.dataframe[-1].value.iloc[0]["annotator"] == "ada"


def test_each_save_says_what_it_changed_and_latest_is_the_annotators_own(store):
    import_paths(store, [demo_dir()])
    item = ("dilemmas", "demo", "demo-dilemma-03")
    saves = [
        ("ada", "action 1", 0.8, ("family", "money"), "first"),
        ("bob", None, 0.5, (), ""),
        ("ada", "action 1", 0.8, ("family", "money", "honesty"), "first"),
        ("ada", "action 2", 0.6, ("money",), "second thoughts"),
    ]
    for who, judgment, confidence, tags, note in saves:
        annotations.save(
            store, annotations.Annotation(*item, who, judgment, confidence, tags, note), ("action 1", "action 2")
        )
    history = annotations.history(store, *item)
    assert list(history["annotator"]) == ["ada", "ada", "bob", "ada"]  # newest first
    assert list(history["changed"]) == [
        "judgment: action 1 → action 2; confidence: 0.80 → 0.60; tags: − family − honesty; note edited",
        "tags: + honesty",
        "first save",
        "first save",
    ]
    mine = annotations.latest(store, *item, "ada")
    assert (mine["judgment"], mine["confidence"], list(mine["tags"]), mine["note"]) == (
        "action 2",
        pytest.approx(0.6),
        ["money"],
        "second thoughts",
    )
    assert annotations.latest(store, *item, "carol") is None
    unchanged = {"judgment": "action 2", "confidence": 0.6, "tags": ("money",), "note": "second thoughts"}
    assert annotations.describe_change(mine, unchanged) == "no change"
