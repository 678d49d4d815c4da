"""Importing the real Scruples files, idempotence, and every bad input of the issue: each gets a
clear error naming the file and the line (or field), a non-zero exit, and an unchanged store."""

from __future__ import annotations

import html
import io
import json
import re
import tarfile
from pathlib import Path

import pytest

from ethdash.datasets import catalog, importer
from ethdash.datasets.importer import import_paths
from ethdash.datasets.readers.scruples import identify
from ethdash.errors import DataError
from ethdash.settings import demo_dir

from .conftest import ANECDOTE_SAMPLE, DILEMMAS_DEV, DILEMMAS_TEST, run_cli, snapshot


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_real_scruples_import_matches_the_files(store, shared_data):
    report = import_paths(store, [shared_data / "scruples"])
    assert report.per_split == {("dilemmas", "dev"): 2340, ("dilemmas", "test"): 2360, ("anecdotes", "sample"): 559}
    assert (report.new, report.changed) == (5259, 0)

    for path, split in ((DILEMMAS_DEV, "dev"), (DILEMMAS_TEST, "test")):
        raw = {r["id"]: r for r in read_jsonl(path)}
        frame = catalog.items_frame(store, "dilemmas", split, "worse")
        assert len(frame) == len(raw)
        for row in frame.itertuples():
            r = raw[row.item_id]
            assert list(row.counts) == r["gold_annotations"]
            assert list(row.second_counts) == r["human_perf_annotations"]
            assert list(row.actions) == [a["description"] for a in r["actions"]]
            assert row.controversial == r["controversial"]
        # Asking for some items by id gives exactly those rows of the full frame (the dashboard's per-item reads).
        some = list(frame["item_id"].sample(7, random_state=1)) + ["no-such-id"]
        picked = catalog.items_frame(store, "dilemmas", split, "worse", item_ids=some)
        expected = frame[frame["item_id"].isin(some)].reset_index(drop=True)
        assert list(picked["item_id"]) == list(expected["item_id"]) and len(picked) == 7
        assert [list(c) for c in picked["counts"]] == [list(c) for c in expected["counts"]]

    raw = {r["id"]: r for r in read_jsonl(ANECDOTE_SAMPLE)}
    classes = catalog.items_frame(store, "anecdotes", "sample", "classes")
    binarized = catalog.items_frame(store, "anecdotes", "sample", "binarized").set_index("item_id")
    assert len(classes) == 559
    escaped = 0
    for row in classes.itertuples():
        r = raw[row.item_id]
        order = ["AUTHOR", "OTHER", "EVERYBODY", "NOBODY", "INFO"]
        assert list(row.counts) == [r["label_scores"][c] for c in order]
        b = r["binarized_label_scores"]
        assert list(binarized.loc[row.item_id, "counts"]) == [b["RIGHT"], b["WRONG"]]
        # HTML entities are unescaped once, on import
        assert row.text == html.unescape(r["text"]) and row.title == html.unescape(r["title"])
        escaped += "&amp;" in r["text"]
        assert "&amp;" not in row.text
        margin = abs(b["RIGHT"] - b["WRONG"]) / (b["RIGHT"] + b["WRONG"])
        assert row.controversial == (margin < 0.5)
    assert escaped > 0  # the sample does contain escaped text


def test_import_is_idempotent_and_sees_changes(store, tmp_path):
    first = import_paths(store, [demo_dir()])
    assert first.new == 36
    before = snapshot(store)
    again = import_paths(store, [demo_dir()])
    assert (again.new, again.changed, again.unchanged) == (0, 0, 36)
    assert snapshot(store) == before

    records = read_jsonl(demo_dir() / "demo.scruples-dilemmas.jsonl")
    records[0]["gold_annotations"] = [5, 0]
    changed = tmp_path / "demo.scruples-dilemmas.jsonl"
    changed.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    report = import_paths(store, [changed])
    assert (report.new, report.changed, report.unchanged) == (0, 1, 23)
    frame = catalog.items_frame(store, "dilemmas", "demo", "worse").set_index("item_id")
    assert list(frame.loc[records[0]["id"], "counts"]) == [5, 0]


def test_a_tarball_imports_like_the_plain_files(store, tmp_path, shared_data):
    archive = tmp_path / "dilemmas.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(DILEMMAS_DEV, arcname="dilemmas/dev.scruples-dilemmas.jsonl")
        readme = b"Scruples dilemmas\n"
        info = tarfile.TarInfo("dilemmas/README")
        info.size = len(readme)
        tar.addfile(info, io.BytesIO(readme))
    from_tar = import_paths(store, [archive])
    assert from_tar.per_split == {("dilemmas", "dev"): 2340}
    from_plain = import_paths(store, [DILEMMAS_DEV])
    assert (from_plain.new, from_plain.changed, from_plain.unchanged) == (0, 0, 2340)


@pytest.mark.parametrize("member", ["../dev.scruples-dilemmas.jsonl", "/tmp/dev.scruples-dilemmas.jsonl"])
def test_an_archive_member_whose_path_leaves_the_archive_is_refused(store, tmp_path, member):
    archive = tmp_path / "evil.tar.gz"
    data = DILEMMAS_DEV.read_bytes()[:20000].rsplit(b"\n", 1)[0] + b"\n"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo(member)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(DataError, match=re.escape(f"archive member '{member}' is refused: its path leaves")):
        import_paths(store, [archive])
    assert catalog.count_items(store) == 0


@pytest.mark.parametrize(
    "name, expected",
    [
        ("train.scruples-dilemmas.jsonl", ("dilemmas", "train")),
        ("train-extra.scruples-dilemmas.jsonl", ("dilemmas", "train-extra")),
        ("test.scruples-anecdotes.jsonl", ("anecdotes", "test")),
        ("dev.scruples-anecdote.jsonl", None),
        ("scruples-dilemmas.jsonl", None),
        ("dev.scruples-dilemmas.json", None),
    ],
)
def test_official_file_names_give_dataset_and_split(name, expected):
    assert identify(name) == expected


def test_a_failure_while_writing_rolls_everything_back(store, monkeypatch, tmp_path):
    # A disk or database failure in the middle of a write cannot be produced on demand, so this
    # one fault is injected: the insert fails after the changed items were already deleted.
    import_paths(store, [demo_dir()])
    before = snapshot(store)
    records = read_jsonl(demo_dir() / "demo.scruples-dilemmas.jsonl")
    for r in records:
        r["gold_annotations"] = [2, 3]
    changed = lines_file(tmp_path, "demo.scruples-dilemmas.jsonl", records)

    def failing_insert(*args):
        raise OSError("disk full (injected)")

    monkeypatch.setattr(importer, "_insert", failing_insert)
    with pytest.raises(OSError, match="injected"):
        import_paths(store, [changed])
    assert snapshot(store) == before


# ---------------------------------------------------------------- bad input


def dilemma(i: int, **change) -> dict:
    record = {
        "id": f"d{i}",
        "actions": [{"id": "a", "description": f"doing thing {i}"}, {"id": "b", "description": f"not doing thing {i}"}],
        "gold_annotations": [3, 2],
        "gold_label": 0,
        "controversial": True,
    }
    record.update(change)
    return record


def anecdote(i: int, **change) -> dict:
    record = {
        "id": f"a{i}",
        "post_id": f"p{i}",
        "title": f"AITA {i}",
        "text": "text",
        "post_type": "HISTORICAL",
        "action": None,
        "label_scores": {"AUTHOR": 1, "OTHER": 4, "EVERYBODY": 0, "NOBODY": 0, "INFO": 1},
    }
    record.update(change)
    return record


def lines_file(folder: Path, name: str, lines: list) -> Path:
    path = folder / name
    path.write_bytes(b"\n".join(x if isinstance(x, bytes) else json.dumps(x).encode() for x in lines) + b"\n")
    return path


DILEMMA_FILE = "dev.scruples-dilemmas.jsonl"
ANECDOTE_FILE = "dev.scruples-anecdotes.jsonl"

BAD_INPUTS = {
    # case: (file name, lines, expected line, words the message must contain)
    "malformed json": (DILEMMA_FILE, [dilemma(1), dilemma(2), b'{"id": "d3", "actions": ['], 3, "malformed JSON"),
    "missing field": (
        DILEMMA_FILE,
        [dilemma(1), dilemma(2), {k: v for k, v in dilemma(3).items() if k != "gold_annotations"}],
        3,
        "field 'gold_annotations': missing",
    ),
    "mistyped field": (
        ANECDOTE_FILE,
        [anecdote(1), anecdote(2), anecdote(3, title=5)],
        3,
        "field 'title': expected str, found int",
    ),
    "mistyped vote": (
        DILEMMA_FILE,
        [dilemma(1), dilemma(2), dilemma(3, gold_annotations=["3", 2])],
        3,
        "vote counts must be integers",
    ),
    "three actions": (
        DILEMMA_FILE,
        [dilemma(1), dilemma(2), dilemma(3, actions=dilemma(3)["actions"] * 2)],
        3,
        "exactly two actions, found 4",
    ),
    "one action": (
        DILEMMA_FILE,
        [dilemma(1), dilemma(2), dilemma(3, actions=dilemma(3)["actions"][:1])],
        3,
        "exactly two actions, found 1",
    ),
    "negative votes": (
        ANECDOTE_FILE,
        [
            anecdote(1),
            anecdote(2),
            anecdote(3, label_scores={"AUTHOR": -1, "OTHER": 4, "EVERYBODY": 0, "NOBODY": 0, "INFO": 0}),
        ],
        3,
        "must not be negative",
    ),
    "zero votes": (DILEMMA_FILE, [dilemma(1), dilemma(2), dilemma(3, gold_annotations=[0, 0])], 3, "no votes"),
    "duplicate id": (DILEMMA_FILE, [dilemma(1), dilemma(2), dilemma(1)], 3, "duplicate id 'd1' (first at line 1)"),
    "not utf-8": (
        DILEMMA_FILE,
        [dilemma(1), dilemma(2), json.dumps(dilemma(3)).encode().replace(b"thing", b"th\xffng")],
        3,
        "not valid UTF-8",
    ),
    "empty file": (DILEMMA_FILE, [], None, "the file is empty"),
    "unknown file name": ("dev.jsonl", [dilemma(1)], None, "the file name says neither dataset"),
}


@pytest.fixture
def populated(store):
    """A store that already holds data, so that 'unchanged' means something."""
    import_paths(store, [demo_dir()])
    return store


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_refused_with_file_and_line_and_changes_nothing(case, populated, tmp_path):
    name, lines, line, words = BAD_INPUTS[case]
    path = tmp_path / name
    if lines:
        lines_file(tmp_path, name, lines)
    else:
        path.write_bytes(b"\n")
    (tmp_path / "good").mkdir()
    good = lines_file(tmp_path / "good", "dev.scruples-anecdotes.jsonl", [anecdote(10)])
    before = snapshot(populated)

    # the library: a DataError naming the file and line
    with pytest.raises(DataError) as info:
        import_paths(populated, [good, path])  # a good file beside the bad one is not imported either
    where = f"{path}:{line}" if line else str(path)
    assert any(str(p).startswith(where) and words in str(p) for p in info.value.problems), info.value
    assert snapshot(populated) == before

    # the CLI: the same message and a non-zero exit
    result = run_cli("data", "import", str(good), str(path))
    assert result.returncode == 1
    assert where in result.stderr and words in result.stderr and "nothing was imported" in result.stderr
    assert "Traceback" not in result.stderr
    assert snapshot(populated) == before


def test_corrupt_tarball(populated, tmp_path):
    archive = tmp_path / "dilemmas.tar.gz"
    with tarfile.open(tmp_path / "ok.tar.gz", "w:gz") as good:
        good.add(demo_dir() / "demo.scruples-dilemmas.jsonl", arcname="dilemmas/x.scruples-dilemmas.jsonl")
    archive.write_bytes((tmp_path / "ok.tar.gz").read_bytes()[:200])  # truncated
    (tmp_path / "junk.tar.gz").write_bytes(b"this is not gzip data at all")
    before = snapshot(populated)
    for bad in (archive, tmp_path / "junk.tar.gz"):
        result = run_cli("data", "import", str(bad))
        assert result.returncode == 1
        assert f"{bad}: not a readable .tar.gz archive" in result.stderr
        assert snapshot(populated) == before


def test_a_path_that_does_not_exist(populated, tmp_path):
    before = snapshot(populated)
    result = run_cli("data", "import", str(tmp_path / "nowhere.jsonl"))
    assert result.returncode == 1 and "nowhere.jsonl: no such file or folder" in result.stderr
    assert snapshot(populated) == before


def test_every_problem_in_a_file_is_listed(populated, tmp_path):
    path = lines_file(
        tmp_path, DILEMMA_FILE, [dilemma(1, gold_annotations=[-1, 2]), b"nope", dilemma(3, gold_annotations=[0, 0])]
    )
    with pytest.raises(DataError) as info:
        import_paths(populated, [path])
    assert [p.line for p in info.value.problems] == [1, 2, 3]
