"""The generic importer: any dataset with vote counts, described by a mapping file or CLI flags."""

from __future__ import annotations

import json

import pytest

from ethdash import names
from ethdash.datasets import catalog
from ethdash.datasets.importer import import_paths
from ethdash.datasets.readers.mapping import Mapping
from ethdash.datasets.selection import item_table
from ethdash.errors import DataError

from .conftest import run_cli, snapshot

CSV = """uid,headline,scenario,n_yes,n_no,part
q1,Lying,"Is it wrong to lie to protect a friend's feelings, even &amp; especially at work?",12,30,dev
q2,Stealing,A starving man steals bread.,3,40,dev
q3,Promise,"Breaking a promise to help a stranger.

It was raining.",20,22,test
"""

MAPPING = """
dataset = "my-survey"
options = ["YES", "NO"]
votes = ["n_yes", "n_no"]
text = "scenario"
title = "headline"
id = "uid"
split_column = "part"
"""


def test_a_csv_with_a_mapping_file_imports_like_scruples_items(store, tmp_path):
    (tmp_path / "survey.csv").write_text(CSV)
    (tmp_path / "survey.toml").write_text(MAPPING)
    result = run_cli("data", "import", str(tmp_path / "survey.csv"), "--mapping", str(tmp_path / "survey.toml"))
    assert result.returncode == 0, result.stderr
    [dataset] = catalog.datasets(store)
    assert (dataset.name, dataset.kind, dataset.views[0].options) == ("my-survey", "custom", ("YES", "NO"))
    assert catalog.splits(store, "my-survey") == ["dev", "test"]
    table = item_table(store, "my-survey", None, "votes", ("YES", "NO")).set_index("item_id")
    assert list(table.loc["q1", "counts"]) == [12, 30]
    assert table.loc["q1", "text"] == "Is it wrong to lie to protect a friend's feelings, even & especially at work?"
    assert table.loc["q3", "text"] == "Breaking a promise to help a stranger.\n\nIt was raining."
    assert table.loc["q3", "majority"] == "NO" and table.loc["q2", "margin"] == pytest.approx(37 / 43)
    # controversial for custom data: a vote margin below 0.5
    assert list(table["controversial"]) == [True, False, True]


def test_jsonl_with_cli_flags_and_line_numbers_as_ids(store, tmp_path):
    path = tmp_path / "votes.jsonl"
    path.write_text("\n".join(json.dumps({"story": f"story {i}", "a": i, "b": 3, "c": 1}) for i in range(4)))
    result = run_cli(
        "data",
        "import",
        str(path),
        "--dataset",
        "stories",
        "--text-column",
        "story",
        "--option",
        "A=a",
        "--option",
        "B=b",
        "--option",
        "C=c",
        "--split",
        "pilot",
    )
    assert result.returncode == 0, result.stderr
    frame = catalog.items_frame(store, "stories", "pilot", "votes")
    assert list(frame["item_id"]) == ["line-1", "line-2", "line-3", "line-4"]
    assert [list(c) for c in frame["counts"]] == [[i, 3, 1] for i in range(4)]


def test_a_mapping_that_names_a_missing_column(store, tmp_path):
    (tmp_path / "survey.csv").write_text(CSV)
    (tmp_path / "bad.toml").write_text(MAPPING.replace('"n_no"', '"n_nope"'))
    before = snapshot(store)
    result = run_cli("data", "import", str(tmp_path / "survey.csv"), "--mapping", str(tmp_path / "bad.toml"))
    assert result.returncode == 1
    assert f"{tmp_path / 'survey.csv'}:1: the mapping names 'n_nope', which the file does not have" in result.stderr
    assert snapshot(store) == before

    jsonl = tmp_path / "x.jsonl"
    jsonl.write_text(json.dumps({"scenario": "s", "n_yes": 1, "n_no": 2}) + "\n")
    mapping = Mapping.from_dict(
        {"dataset": "x", "options": ["Y", "N"], "votes": ["n_yes", "n_missing"], "text": "scenario"}
    )
    with pytest.raises(DataError, match=r"x.jsonl:1: the mapping names 'n_missing'"):
        import_paths(store, [jsonl], mapping)


@pytest.mark.parametrize(
    "raw, words",
    [
        ({"dataset": "dilemmas", "options": ["A", "B"], "votes": ["a", "b"], "text": "t"}, "not allowed"),
        ({"dataset": "../x", "options": ["A", "B"], "votes": ["a", "b"], "text": "t"}, "not allowed"),
        ({"dataset": "x", "options": ["A", "B"], "votes": ["a"], "text": "t"}, "one column per option"),
        ({"dataset": "x", "options": ["A"], "votes": ["a"], "text": "t"}, "at least two options"),
        ({"dataset": "x", "options": ["A", "B"], "votes": ["a", "b"]}, "field 'text': required"),
        ({"dataset": "x", "options": ["A", "B"], "votes": ["a", "b"], "text": "t", "colour": "red"}, "unknown key"),
    ],
)
def test_invalid_mappings_are_refused(raw, words):
    with pytest.raises(DataError, match=words):
        Mapping.from_dict(raw)


@pytest.mark.parametrize(
    "name, ok",
    [
        ("blue.house", True), ("Study_2", True), ("run-3", True), ("a" * 64, True),
        ("../x", False), ("a..b", False), (".hidden", False), ("-x", False), ("a/b", False), ("a b", False),
        ("a" * 65, False), ("", False), ("ü", False),
    ],
)  # fmt: skip
def test_one_name_rule_everywhere(name, ok):
    assert names.valid(name) is ok


def test_split_names_from_a_column_follow_the_stated_rule(store, tmp_path):
    """Before: "'blue.house' is not a valid split name", 54 times, with no rule given."""
    (tmp_path / "survey.csv").write_text(CSV.replace(",dev\n", ",blue.house\n").replace(",test\n", ",../up\n"))
    (tmp_path / "survey.toml").write_text(MAPPING)
    with pytest.raises(DataError) as refused:
        import_paths(store, [tmp_path / "survey.csv"], Mapping.from_file(tmp_path / "survey.toml"))
    assert "survey.csv:4: field 'part': the split name '../up' is not allowed: use letters, digits" in str(
        refused.value
    )
    assert "blue.house" not in str(refused.value) and catalog.count_items(store) == 0
    (tmp_path / "survey.csv").write_text(CSV.replace(",dev\n", ",blue.house\n"))
    import_paths(store, [tmp_path / "survey.csv"], Mapping.from_file(tmp_path / "survey.toml"))
    assert sorted(catalog.splits(store, "my-survey")) == ["blue.house", "test"]


def test_a_record_over_several_lines_is_named_by_its_first_line_and_keeps_its_default_id(store, tmp_path):
    mapping = Mapping.from_dict(
        {"dataset": "s", "options": ["YES", "NO"], "votes": ["n_yes", "n_no"], "text": "scenario"}
    )
    (tmp_path / "survey.csv").write_text(CSV)
    import_paths(store, [tmp_path / "survey.csv"], mapping)
    assert list(catalog.items_frame(store, "s", None, "votes")["item_id"]) == ["line-2", "line-3", "line-6"]
    (tmp_path / "bad.csv").write_text(CSV.replace("20,22", "twenty,22"))
    with pytest.raises(DataError, match=r"bad.csv:4: field 'n_yes'"):  # q3 spans lines 4-6
        import_paths(store, [tmp_path / "bad.csv"], mapping)


def test_bad_vote_cells_name_the_csv_line(store, tmp_path):
    (tmp_path / "survey.csv").write_text(CSV.replace("3,40", "three,40"))
    (tmp_path / "survey.toml").write_text(MAPPING)
    with pytest.raises(DataError, match=r"survey.csv:3: field 'n_yes': vote counts must be integers"):
        import_paths(store, [tmp_path / "survey.csv"], Mapping.from_file(tmp_path / "survey.toml"))
    assert catalog.count_items(store) == 0


def test_reimporting_a_dataset_with_other_options_is_refused(store, tmp_path):
    (tmp_path / "survey.csv").write_text(CSV)
    mapping = Mapping.from_dict(
        {"dataset": "s", "options": ["YES", "NO"], "votes": ["n_yes", "n_no"], "text": "scenario", "id": "uid"}
    )
    import_paths(store, [tmp_path / "survey.csv"], mapping)
    before = snapshot(store)
    other = Mapping.from_dict(
        {"dataset": "s", "options": ["NO", "YES"], "votes": ["n_no", "n_yes"], "text": "scenario", "id": "uid"}
    )
    with pytest.raises(DataError, match="already exists with other options"):
        import_paths(store, [tmp_path / "survey.csv"], other)
    assert snapshot(store) == before
