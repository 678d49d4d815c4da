"""Readers for the official Scruples v1.0 files: `{split}.scruples-{anecdotes|dilemmas}.jsonl`."""

from __future__ import annotations

import re
from typing import Any

from ethdash.datasets.items import (
    ANECDOTE_CLASSES,
    ANECDOTE_VIEW,
    ANECDOTES,
    BINARIZED_CLASSES,
    BINARIZED_VIEW,
    DILEMMA_VIEW,
    DILEMMAS,
    Item,
    binarize,
)
from ethdash.datasets.readers.records import ProblemLog, Record, check_unique_ids, json_records

FILE_NAME = re.compile(r"^(?P<split>[A-Za-z0-9][A-Za-z0-9_-]*)\.scruples-(?P<kind>anecdotes|dilemmas)\.jsonl$")
EXPECTED_NAME = "{split}.scruples-{anecdotes|dilemmas}.jsonl"


def identify(file_name: str) -> tuple[str, str] | None:
    """(dataset, split) from an official file name, or None if it names neither dataset."""
    match = FILE_NAME.match(file_name)
    return (match["kind"], match["split"]) if match else None


def read_scruples(data: bytes, source: str, dataset: str, split: str, log: ProblemLog) -> list[Item]:
    parse = _dilemma if dataset == DILEMMAS else _anecdote
    items = []
    for line, obj in json_records(data, log):
        record = Record(obj, line, log)
        item = parse(record, split, source)
        if item is not None and record.ok:
            items.append(item)
    check_unique_ids(items, log)
    return items


def _pair(record: Record, field: str) -> tuple[int, ...] | None:
    values = record.get(field, list, required=field == "gold_annotations")
    if values is None:
        return None
    if len(values) != 2:
        record.problem(f"a dilemma has exactly two vote counts, found {len(values)}", field)
        return None
    return record.counts(values, field)


def _dilemma(record: Record, split: str, source: str) -> Item | None:
    item_id = record.get("id", str)
    actions = record.get("actions", list)
    descriptions: list[str] = []
    action_ids: list[Any] = []
    if actions is not None:
        if len(actions) != 2:
            record.problem(f"a dilemma has exactly two actions, found {len(actions)}", "actions")
        else:
            for k, action in enumerate(actions):
                if not isinstance(action, dict):
                    record.problem("expected an object with a description", f"actions[{k}]")
                    continue
                text = record.text("description", where=action, label=f"actions[{k}].description")
                descriptions.append(text or "")
                action_ids.append(action.get("id"))
    gold = _pair(record, "gold_annotations")
    second = _pair(record, "human_perf_annotations")
    controversial = record.get("controversial", bool, required=False)
    if not record.ok or item_id is None or gold is None:
        return None
    return Item(
        dataset=DILEMMAS,
        split=split,
        item_id=item_id,
        actions=tuple(descriptions),
        controversial=controversial,
        votes={DILEMMA_VIEW: gold},
        second_votes={DILEMMA_VIEW: second} if second is not None else {},
        meta={"action_ids": action_ids},
        source=source,
        line=record.line,
    )


def _class_counts(record: Record, field: str, classes: tuple[str, ...], required: bool) -> tuple[int, ...] | None:
    scores = record.get(field, dict, required=required)
    if scores is None:
        return None
    missing = [c for c in classes if c not in scores]
    if missing:
        record.problem(f"missing classes {', '.join(missing)}", field)
        return None
    # The binarized view may legitimately have no votes (a post with only INFO votes).
    return record.counts([scores[c] for c in classes], field, require_votes=field == "label_scores")


def _anecdote(record: Record, split: str, source: str) -> Item | None:
    item_id = record.get("id", str)
    title = record.text("title")
    text = record.text("text")
    post_type = record.get("post_type", str, required=False)
    action = record.get("action", dict, required=False)
    description = record.text("description", where=action, label="action.description") if action else None
    classes = _class_counts(record, "label_scores", ANECDOTE_CLASSES, required=True)
    binary = _class_counts(record, "binarized_label_scores", BINARIZED_CLASSES, required=False)
    if not record.ok or item_id is None or classes is None:
        return None
    if binary is None:
        binary = binarize(dict(zip(ANECDOTE_CLASSES, classes)))
    meta = {k: record.obj[k] for k in ("post_id",) if record.obj.get(k) is not None}
    if action:
        meta["action"] = {k: v for k, v in action.items() if k != "description"}
    return Item(
        dataset=ANECDOTES,
        split=split,
        item_id=item_id,
        title=title,
        text=text,
        actions=(description,) if description else (),
        post_type=post_type,
        votes={ANECDOTE_VIEW: classes, BINARIZED_VIEW: binary},
        meta=meta,
        source=source,
        line=record.line,
    )
