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


FLAGS = ["--dataset", "tab", "--text-column", "scenario", "--id-column", "uid", "--option", "YES=n_yes"]
FLAGS += ["--option", "NO=n_no"]
ROWS = {
    "uid": ["t1", "t2", "t3", "t4"],
    "scenario": ["Lying to a friend.", "Keeping a found wallet.", "Skipping a wedding.", "Reporting a cheat."],
    "n_yes": [12, 3, 20, 7],
    "n_no": [30, 40, 22, 7],
}


def write_dataset_dict(root, splits: dict[str, dict]) -> None:
    """A Hugging Face DatasetDict as `save_to_disk` writes it: dataset_dict.json, and per split a folder
    with its Arrow file (IPC stream format), state.json and dataset_info.json."""
    import pyarrow as pa

    root.mkdir()
    (root / "dataset_dict.json").write_text(json.dumps({"splits": list(splits)}))
    for split, columns in splits.items():
        folder = root / split
        folder.mkdir()
        table = pa.table(columns)
        sink = pa.OSFile(str(folder / "data-00000-of-00001.arrow"), "wb")
        with sink, pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        state = {"_data_files": [{"filename": "data-00000-of-00001.arrow"}], "_split": split}
        (folder / "state.json").write_text(json.dumps(state))
        (folder / "dataset_info.json").write_text(json.dumps({"features": {c: {} for c in columns}}))


def test_parquet_imports_and_a_bad_row_is_named_by_its_row(store, tmp_path):
    import pandas as pd

    pd.DataFrame(ROWS).to_parquet(tmp_path / "survey.parquet")
    done = run_cli("data", "import", str(tmp_path / "survey.parquet"), *FLAGS)
    assert done.returncode == 0, done.stderr
    table = item_table(store, "tab", None, "votes", ("YES", "NO")).set_index("item_id")
    assert {k: list(v) for k, v in table["counts"].items()} == {
        u: [y, n] for u, y, n in zip(ROWS["uid"], ROWS["n_yes"], ROWS["n_no"])
    }
    assert table.loc["t2", "text"] == "Keeping a found wallet."

    before = snapshot(store)
    pd.DataFrame({**ROWS, "uid": ["u1", "u2", "u3", "u4"], "n_yes": [1, -2, 3, 4]}).to_parquet(tmp_path / "bad.parquet")
    refused = run_cli("data", "import", str(tmp_path / "bad.parquet"), *FLAGS)
    assert refused.returncode == 1 and "bad.parquet, row 2: field 'n_yes'" in refused.stderr, refused.stderr
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    broken = run_cli("data", "import", str(tmp_path / "broken.parquet"), *FLAGS)
    assert broken.returncode == 1 and "broken.parquet: not a readable Parquet file" in broken.stderr
    assert snapshot(store) == before


def test_a_hugging_face_dataset_dict_on_disk_imports_with_its_splits(store, tmp_path):
    half = {k: v[:2] for k, v in ROWS.items()}
    rest = {k: v[2:] for k, v in ROWS.items()}
    write_dataset_dict(tmp_path / "hf", {"train": half, "test": rest})
    done = run_cli("data", "import", str(tmp_path / "hf"), *FLAGS)
    assert done.returncode == 0, done.stderr
    assert sorted(catalog.splits(store, "tab")) == ["test", "train"]
    test = item_table(store, "tab", "test", "votes", ("YES", "NO")).set_index("item_id")
    assert sorted(test.index) == ["t3", "t4"] and list(test.loc["t4", "counts"]) == [7, 7]

    before = snapshot(store)
    write_dataset_dict(tmp_path / "bad", {"train": {**half, "n_no": [None, 5]}})
    refused = run_cli("data", "import", str(tmp_path / "bad"), *FLAGS)
    assert refused.returncode == 1 and "data-00000-of-00001.arrow, row 1: field 'n_no'" in refused.stderr, (
        refused.stderr
    )
    assert snapshot(store) == before


@pytest.mark.model
def test_your_own_parquet_from_file_to_evaluate(store, tmp_path):
    """The README's path for your own data: import, a template of your own, scoring with the embedded model,
    `ethdash evaluate`; its metrics equal a recomputation from the stored probabilities and the votes."""
    import numpy as np
    import pandas as pd

    from ethdash import metrics

    pd.DataFrame(ROWS).to_parquet(tmp_path / "survey.parquet")
    assert run_cli("data", "import", str(tmp_path / "survey.parquet"), *FLAGS).returncode == 0
    assert run_cli("templates", "new", "--dataset", "tab").returncode == 0
    scored = run_cli("score", "--template", "tab-votes", "--dataset", "tab")
    assert scored.returncode == 0, scored.stderr
    done = run_cli(
        "evaluate", "--template", "tab-votes", "--dataset", "tab", "--out", str(tmp_path / "out"), "--no-figures"
    )
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(tmp_path / "out" / "metrics.csv").set_index(["system", "metric"])["estimate"]
    with store.connect() as con:
        rows = con.execute(
            "SELECT s.item_id, s.probs, v.counts FROM scores s JOIN votes v USING (dataset, split, item_id) "
            "WHERE s.dataset = 'tab' ORDER BY s.item_id"
        ).fetchall()
    p = np.array([r[1] for r in rows])
    counts = np.array([r[2] for r in rows], dtype=float)
    base = "smollm2-135m-instruct (base)"
    assert table[base, "xent"] == pytest.approx(metrics.soft_xent(counts, p), rel=1e-9)
    assert table[base, "brier"] == pytest.approx(metrics.brier(counts, p), rel=1e-9)
    assert "position_bias" not in {m for _, m in table.index}  # no option order in this dataset
    assert "humans (second sample)" not in {s for s, _ in table.index}  # and no second sample


JUDGMENTS = """item,scenario,worker,choice
j1,Lying to a friend.,w1,YES
j1,Lying to a friend.,w2,NO
j1,Lying to a friend.,w3,NO
j2,Keeping a found wallet.,w1,NO
j2,Keeping a found wallet.,w4,NO
"""
PER_ANNOTATOR = ["--dataset", "judged", "--text-column", "scenario", "--id-column", "item"]
PER_ANNOTATOR += ["--label-column", "choice", "--annotator-column", "worker", "--option", "YES", "--option", "NO"]


def test_one_row_per_judgment_is_counted_and_each_annotators_label_kept(store, tmp_path):
    import pandas as pd

    (tmp_path / "judgments.csv").write_text(JUDGMENTS)
    done = run_cli("data", "import", str(tmp_path / "judgments.csv"), *PER_ANNOTATOR)
    assert done.returncode == 0, done.stderr
    rows = pd.read_csv(tmp_path / "judgments.csv")
    expected = {
        item: [int((group["choice"] == o).sum()) for o in ("YES", "NO")] for item, group in rows.groupby("item")
    }
    table = item_table(store, "judged", None, "votes", ("YES", "NO")).set_index("item_id")
    assert {k: list(v) for k, v in table["counts"].items()} == expected
    with store.connect() as con:
        kept = con.execute(
            "SELECT item_id, annotator, option, source_line FROM annotator_labels ORDER BY 1, 2"
        ).fetchall()
        app_annotations = con.execute("SELECT count(*) FROM annotations").fetchone()[0]
    assert kept == [
        (r.item, r.worker, r.choice, i + 2) for i, r in enumerate(rows.sort_values(["item", "worker"]).itertuples())
    ]
    assert app_annotations == 0  # kept apart from the annotations made in the app

    again = run_cli("data", "import", str(tmp_path / "judgments.csv"), *PER_ANNOTATOR)
    assert "0 new, 0 changed" in again.stdout  # idempotent

    before = snapshot(store)
    bad = (
        JUDGMENTS
        + "j2,Keeping a found wallet.,w4,YES\nj3,Skipping a wedding.,w1,MAYBE\nj1,Lying to a stranger.,w5,NO\n"
    )
    (tmp_path / "bad.csv").write_text(bad)
    refused = run_cli("data", "import", str(tmp_path / "bad.csv"), *PER_ANNOTATOR)
    assert refused.returncode == 1
    for words in (
        "bad.csv:7: field 'worker': annotator 'w4' labels item 'j2' twice",
        "bad.csv:8: field 'choice': 'MAYBE' is not an option (YES, NO)",
        "bad.csv:9: field 'text': item 'j1' has another text at line 2",
    ):
        assert words in refused.stderr, refused.stderr
    assert snapshot(store) == before


LIKERT = """uid,scenario,disagree,neutral,agree
l1,Returning a lost wallet without the cash.,30,5,2
l2,Telling a white lie at a funeral.,8,10,9
"""


def test_a_scale_declared_on_import_is_kept_and_a_reimport_that_drops_it_is_refused(store, tmp_path):
    """`ordered` (mapping) / --ordered (CLI): the options are a scale, so that Wasserstein-1 applies."""
    (tmp_path / "likert.csv").write_text(LIKERT)
    flags = ["--dataset", "likert", "--text-column", "scenario", "--id-column", "uid"]
    flags += [f"--option={o.upper()}={o}" for o in ("disagree", "neutral", "agree")]
    done = run_cli("data", "import", str(tmp_path / "likert.csv"), *flags, "--ordered")
    assert done.returncode == 0, done.stderr
    [dataset] = catalog.datasets(store)
    assert dataset.views[0].ordered and catalog.ordered(store, "likert", "votes")
    before = snapshot(store)
    again = run_cli("data", "import", str(tmp_path / "likert.csv"), *flags)  # the same file, not a scale
    assert again.returncode == 1 and "other options, judgments or order" in again.stderr
    assert snapshot(store) == before

    (tmp_path / "plain.toml").write_text(MAPPING.replace('"my-survey"', '"plain"'))
    (tmp_path / "survey.csv").write_text(CSV)
    plain = run_cli("data", "import", str(tmp_path / "survey.csv"), "--mapping", str(tmp_path / "plain.toml"))
    assert plain.returncode == 0, plain.stderr
    assert not catalog.ordered(store, "plain", "votes")  # unless declared, options are no scale
    with pytest.raises(DataError, match="field 'ordered': true or false"):
        Mapping.from_dict({"dataset": "x", "options": ["A", "B"], "votes": ["a", "b"], "text": "t", "ordered": "yes"})
