"""A generic reader for any dataset of scenarios with human vote counts (JSONL, CSV, Parquet, or the Arrow
files of a Hugging Face dataset saved with `save_to_disk`).

A small mapping says which columns hold the id, the text and the votes of each option:

    dataset = "trolley"          # a new dataset name (see ethdash.names for the rule)
    options = ["YES", "NO"]      # the answer options, in order
    votes = ["n_yes", "n_no"]    # one vote-count column per option
    text = "scenario"            # the column with the scenario text
    id = "uid"                   # optional: default is the line number
    title = "headline"           # optional
    split = "test"               # optional fixed split (default "all"), or:
    split_column = "part"        # a column that names each record's split
    second_votes = ["y2", "n2"]  # optional: an independent second human sample
    ordered = true               # optional: the options are a scale, in this order (a Likert item);
                                 # distances along it (Wasserstein-1) then apply

or, for a judgment published as a distribution (survey shares, or weights), instead of `votes`:

    shares = ["p_yes", "p_no"]   # one column per option: shares, or weights (normalised per item)
    respondents = "n"            # optional: a column with each item's number of respondents, or a
                                 # number for every item (respondents = 60); without it, metrics that
                                 # need vote counts do not apply

or, for one row per judgment (per-annotator data), instead of `votes`:

    label = "choice"             # the column with the option an annotator chose
    annotator = "worker"         # the column with the annotator's id (id is then required)

as a TOML or JSON file, or as CLI flags. Imported items look like Scruples items everywhere.
"""

from __future__ import annotations

import csv
import io
import json
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from ethdash import names
from ethdash.datasets.items import COUNTS, CUSTOM_VIEW, RESPONDENTS, SCRUPLES_DATASETS, SHARES, Item
from ethdash.datasets.readers.records import ProblemLog, Record, check_unique_ids, decode_lines, json_records
from ethdash.errors import DataError, Problem


@dataclass(frozen=True)
class Mapping:
    dataset: str
    options: tuple[str, ...]
    votes: tuple[str, ...]
    text: str
    id: str | None = None
    title: str | None = None
    split: str = "all"
    split_column: str | None = None
    second_votes: tuple[str, ...] | None = None
    format: str | None = None  # a name in FORMATS; default: from the file's extension
    label: str | None = None  # per-annotator rows: the column naming the chosen option (instead of votes)
    annotator: str | None = None  # ... and the column with the annotator's id
    shares: tuple[str, ...] = ()  # instead of votes: a distribution per item (shares or weights)
    respondents: str | int | None = None  # with shares: a column of respondents per item, or one number
    ordered: bool = False  # the options are a scale, in the order given
    source: str = "mapping"

    @property
    def judgments(self) -> str:
        if not self.shares:
            return COUNTS
        return SHARES if self.respondents is None else RESPONDENTS

    def judgments_description(self) -> str:
        return {
            COUNTS: "human votes",
            SHARES: "human judgments as shares (no number of respondents)",
            RESPONDENTS: "human judgments as shares of each item's respondents",
        }[self.judgments]

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "mapping") -> Mapping:
        problems: list[Problem] = []

        def bad(field: str, message: str) -> None:
            problems.append(Problem(source, message, field=field))

        known = {f.name for f in fields(cls)} - {"source"}
        for key in raw:
            if key not in known:
                bad(key, f"unknown key (known: {', '.join(sorted(known))})")
        per_annotator = raw.get("label") is not None or raw.get("annotator") is not None
        for key in ("dataset", "options", "text", *(("label", "annotator", "id") if per_annotator else ())):
            if raw.get(key) in (None, "", []):
                bad(key, "required" + (" for one row per judgment (label and annotator)" if per_annotator else ""))
        given = [k for k in ("votes", "shares") if raw.get(k)] + (["label"] if per_annotator else [])
        if len(given) != 1:
            bad(
                "votes",
                "give one of: vote-count columns (votes), share columns (shares), or one row per judgment "
                f"(label and annotator){'; this mapping gives ' + ', '.join(given) if given else ''}",
            )
        if raw.get("second_votes") and not raw.get("votes"):
            bad("second_votes", "a second sample of vote counts goes with vote-count columns (votes)")
        respondents = raw.get("respondents")
        if respondents is not None:
            if not raw.get("shares"):
                bad("respondents", "goes with share columns (shares): vote counts already say how many voted")
            elif isinstance(respondents, bool) or not (
                isinstance(respondents, str) or (isinstance(respondents, int) and respondents > 0)
            ):
                bad("respondents", "a column name, or a whole number above 0 for every item")
        if not isinstance(raw.get("ordered", False), bool):
            bad("ordered", "true or false: whether the options are a scale, in the order given")
        for key in ("dataset", "text", "id", "title", "split", "split_column", "format", "label", "annotator"):
            if raw.get(key) is not None and not isinstance(raw[key], str):
                bad(key, "expected a string")
        for key in ("options", "votes", "second_votes", "shares"):
            value = raw.get(key)
            if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                bad(key, "expected a list of strings")
        if not problems:
            name = raw["dataset"]
            if not names.valid(name) or name in SCRUPLES_DATASETS:
                bad("dataset", f"{names.refusal('the name', name)}, and not {' or '.join(SCRUPLES_DATASETS)}")
            if not names.valid(raw.get("split", "all")):
                bad("split", names.refusal("the split name", raw["split"]))
            n = len(raw["options"])
            if n < 2:
                bad("options", "at least two options are needed")
            if len(set(raw["options"])) != n:
                bad("options", "option names must be distinct")
            for key in ("votes", "second_votes", "shares"):
                if raw.get(key) and len(raw[key]) != n:
                    bad(key, f"one column per option: {n} options, {len(raw[key])} columns")
            if raw.get("format") not in (None, *FORMATS):
                bad("format", f"must be {' or '.join(map(repr, FORMATS))}")
        if problems:
            raise DataError(problems)
        tuples = {k: tuple(raw[k]) for k in ("options", "votes", "second_votes", "shares") if raw.get(k)}
        return cls(**{"votes": (), **raw, **tuples, "source": source})

    @classmethod
    def from_file(cls, path: Path) -> Mapping:
        source = str(path)
        try:
            text = path.read_text(encoding="utf-8")
            raw = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
            raise DataError([Problem(source, f"cannot read the mapping: {exc}")]) from exc
        if not isinstance(raw, dict):
            raise DataError([Problem(source, "a mapping is an object of keys")])
        return cls.from_dict(raw, source)

    def columns(self) -> list[str]:
        named = [self.text, self.id, self.title, self.split_column, *self.votes, *(self.second_votes or ())]
        named += [*self.shares, self.respondents if isinstance(self.respondents, str) else None]
        return [c for c in named + [self.label, self.annotator] if c]

    def file_format(self, file_name: str) -> str | None:
        if self.format:
            return self.format
        lower = file_name.lower()
        return next((f.name for f in FORMATS.values() if lower.endswith(f.extensions)), None)


def read_mapped(data: bytes, source: str, mapping: Mapping, log: ProblemLog) -> list[Item]:
    fmt = mapping.file_format(source)
    if fmt is None:
        names = " or ".join(map(repr, FORMATS))
        log.add(f"cannot tell the format from the file name: give format = {names} in the mapping")
        return []
    log.unit = FORMATS[fmt].unit
    split = _dataset_dict_split(source) if fmt == "arrow" else None
    if split and mapping.split == "all" and not mapping.split_column:
        mapping = replace(mapping, split=split)
    records = FORMATS[fmt].records(data, mapping, log)
    if mapping.label:
        items = judged_items(records, mapping, source)
    else:
        items = [item for item in (_item(r, mapping, source) for r in records) if item is not None]
    check_unique_ids(items, log)
    return items


def _dataset_dict_split(source: str) -> str | None:
    """A Hugging Face DatasetDict saved with `save_to_disk` keeps each split in a folder of its name (beside
    a dataset_dict.json): that name is the split of the Arrow files inside."""
    folder = Path(source).parent
    if (folder / "state.json").is_file() and (folder.parent / "dataset_dict.json").is_file():
        return folder.name if names.valid(folder.name) else None
    return None


def _table_records(table: Any, mapping: Mapping, log: ProblemLog) -> Iterator[Record]:
    """Records of a pyarrow table, numbered by row from 1."""
    missing = [c for c in mapping.columns() if c not in table.column_names]
    if missing:
        quoted = ", ".join(f"'{c}'" for c in missing)
        log.add(f"the mapping names {quoted}, which the file does not have (columns: {', '.join(table.column_names)})")
        return
    for row, obj in enumerate(table.select(mapping.columns()).to_pylist(), start=1):
        if log.full:
            return
        yield Record(obj, row, log)


def _parquet_records(data: bytes, mapping: Mapping, log: ProblemLog) -> Iterator[Record]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        # ParquetFile reads synchronously; pq.read_table's dataset scanner could release the buffer that wraps
        # `data` on one of Arrow's threads during interpreter shutdown, which aborted the process (measured:
        # about 1 exit in 40 on a loaded machine, 'terminate called without an active exception').
        table = pq.ParquetFile(pa.BufferReader(data)).read()
    except (pa.ArrowException, OSError) as exc:
        log.add(f"not a readable Parquet file ({exc})")
        return
    yield from _table_records(table, mapping, log)


def _arrow_records(data: bytes, mapping: Mapping, log: ProblemLog) -> Iterator[Record]:
    """Arrow IPC, as Hugging Face `save_to_disk` writes it (the stream format), or the file format."""
    import pyarrow as pa

    try:
        table = pa.ipc.open_stream(pa.BufferReader(data)).read_all()
    except (pa.ArrowException, OSError):
        try:
            table = pa.ipc.open_file(pa.BufferReader(data)).read_all()
        except (pa.ArrowException, OSError) as exc:
            log.add(f"not a readable Arrow file ({exc})")
            return
    yield from _table_records(table, mapping, log)


def _jsonl_records(data: bytes, mapping: Mapping, log: ProblemLog) -> Iterator[Record]:
    for line, obj in json_records(data, log):
        record = Record(obj, line, log)
        for column in mapping.columns():
            if column not in obj:
                record.problem(
                    f"the mapping names '{column}', which this record does not have "
                    f"(it has: {', '.join(list(obj)[:12])})"
                )
        yield record


def _csv_records(data: bytes, mapping: Mapping, log: ProblemLog) -> Iterator[Record]:
    if not data.strip():
        log.add("the file is empty")
        return
    try:
        text = data.decode("utf-8-sig")  # whole, so that quoted cells keep their blank lines
    except UnicodeDecodeError:
        for _ in decode_lines(data, log):  # only to report the lines that are not UTF-8
            pass
        return
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    missing = [c for c in mapping.columns() if c not in header]
    if missing:
        names = ", ".join(f"'{c}'" for c in missing)
        log.add(f"the mapping names {names}, which the file does not have (columns: {', '.join(header)})", 1)
        return
    # CSV cells are strings: the vote, share and respondent columns become numbers here, bad ones reported.
    respondents = [mapping.respondents] if isinstance(mapping.respondents, str) else []
    numeric = (*mapping.votes, *(mapping.second_votes or ()), *mapping.shares, *respondents)
    expected = dict.fromkeys(mapping.shares, "shares must be numbers")
    expected.update(dict.fromkeys(respondents, "the number of respondents must be a whole number"))
    lines, end = text.split("\n"), reader.line_num  # the header is read
    for row in reader:
        start, end = end + 1, reader.line_num
        while start < end and not lines[start - 1].strip():  # blank lines the reader skipped
            start += 1
        record = Record(row, start, log, last_line=end)
        for column in numeric:
            cell = (row.get(column) or "").strip()
            try:
                row[column] = int(cell)
            except ValueError:
                try:
                    row[column] = float(cell)
                except ValueError:
                    what = expected.get(column, "vote counts must be integers")
                    record.problem(f"{what}, found '{cell[:40]}'", column)
        yield record


def _item(record: Record, mapping: Mapping, source: str) -> Item | None:
    if not record.ok:
        return None
    obj = record.obj
    item_id = str(obj[mapping.id]).strip() if mapping.id else f"line-{record.last_line}"
    if not item_id:
        record.problem("empty id", mapping.id)
    split = _split(record, mapping)
    text = record.text(mapping.text)
    title = record.text(mapping.title, required=False) if mapping.title else None
    votes = _judgments(record, mapping) if mapping.shares else _counts(record, mapping.votes, require_votes=True)
    second = _counts(record, mapping.second_votes, require_votes=False) if mapping.second_votes else None
    if not record.ok or votes is None:
        return None
    second_votes = {CUSTOM_VIEW: second} if second else {}
    return _custom_item(mapping, split, item_id, title, text, votes, source, record.line, second_votes=second_votes)


def _split(record: Record, mapping: Mapping) -> str:
    """The record's split: the mapping's, or its split column's (checked against the name rule)."""
    if not mapping.split_column:
        return mapping.split
    split = str(record.obj[mapping.split_column]).strip()
    if not names.valid(split):
        record.problem(names.refusal("the split name", split), mapping.split_column)
    return split


def _custom_item(
    mapping: Mapping, split: str, item_id: str, title, text, votes: tuple[int, ...], source: str, line: int, **extra
) -> Item:
    return Item(
        dataset=mapping.dataset,
        split=split,
        item_id=item_id,
        title=title,
        text=text,
        votes={CUSTOM_VIEW: votes},
        source=source,
        line=line,
        **extra,
    )


def judged_items(records: Iterator[Record], mapping: Mapping, source: str) -> list[Item]:
    """Items from one row per judgment: the rows of an item id are counted into votes per option, and each
    annotator's label is kept. An item's text, title and split come from its first row; a later row that
    says otherwise, a label that is not an option, or a second label from one annotator is a problem."""
    first: dict[str, tuple[Record, str, str | None, str]] = {}
    labels: dict[str, list[tuple[str, str, int]]] = {}
    for record in records:
        obj = record.obj
        item_id = str(obj[mapping.id]).strip()
        annotator = str(obj[mapping.annotator] if obj[mapping.annotator] is not None else "").strip()
        label = str(obj[mapping.label] if obj[mapping.label] is not None else "").strip()
        text = record.text(mapping.text)
        title = record.text(mapping.title, required=False) if mapping.title else None
        split = _split(record, mapping)
        if not item_id:
            record.problem("empty id", mapping.id)
        if not annotator:
            record.problem("empty annotator id", mapping.annotator)
        if label not in mapping.options:
            record.problem(f"'{label[:40]}' is not an option ({', '.join(mapping.options)})", mapping.label)
        if not record.ok:
            continue
        if item_id not in first:
            first[item_id] = (record, text, title, split)
        else:
            start, text0, title0, split0 = first[item_id]
            for what, mine, theirs in (("text", text, text0), ("title", title, title0), ("split", split, split0)):
                if mine != theirs:
                    record.problem(f"item '{item_id}' has another {what} at line {start.line}", what)
        seen = {a for a, _, _ in labels.get(item_id, [])}
        if annotator in seen:
            record.problem(f"annotator '{annotator}' labels item '{item_id}' twice", mapping.annotator)
        if record.ok:
            labels.setdefault(item_id, []).append((annotator, label, record.line))
    items = []
    for item_id, (record, text, title, split) in first.items():
        chosen = [label for _, label, _ in labels.get(item_id, [])]
        votes = tuple(chosen.count(option) for option in mapping.options)
        kept = tuple(sorted(labels.get(item_id, [])))
        items.append(_custom_item(mapping, split, item_id, title, text, votes, source, record.line, labels=kept))
    return items


def _judgments(record: Record, mapping: Mapping) -> tuple[float, ...] | None:
    """An item's shares, times its respondents where the mapping declares them."""
    shares = record.shares([(c, record.obj[c]) for c in mapping.shares])
    if shares is None or mapping.respondents is None:
        return shares
    if isinstance(mapping.respondents, int):
        n = mapping.respondents
    else:
        n = record.respondents(record.obj[mapping.respondents], mapping.respondents)
    return None if n is None else tuple(s * n for s in shares)


def _counts(record: Record, columns: tuple[str, ...], require_votes: bool) -> tuple[int, ...] | None:
    out: list[int] = []
    for column in columns:
        counts = record.counts([record.obj[column]], column, require_votes=False)
        if counts is None:
            return None
        out.extend(counts)
    if require_votes and sum(out) == 0:
        record.problem("the item has no votes (all counts are zero)", ", ".join(columns))
        return None
    return tuple(out)


@dataclass(frozen=True)
class Format:
    """A file format of records: the `format` name a mapping gives, the file endings that imply it, and the
    reader that turns a file's bytes into records (problems go to the log with their line)."""

    name: str
    extensions: tuple[str, ...]
    records: Callable[[bytes, Mapping, ProblemLog], Iterator[Record]]
    unit: str = "line"  # what a problem's number counts: "row" for tabular files


# A new format is one reader above and one entry here.
FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("jsonl", (".jsonl", ".ndjson"), _jsonl_records),
        Format("csv", (".csv",), _csv_records),
        Format("parquet", (".parquet",), _parquet_records, "row"),
        # A Hugging Face dataset saved with save_to_disk: import its folder (each split's folder in a
        # DatasetDict gives its items that split).
        Format("arrow", (".arrow",), _arrow_records, "row"),
    )
}
