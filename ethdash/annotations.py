"""A researcher's own judgments of items: an option, a confidence, free tags and a note.

Saved at once, one row per save (the history is kept; the latest row per annotator and item is the
current annotation), so reruns, reloads and concurrent annotators never lose a record.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

import pandas as pd

from ethdash.errors import EthdashError
from ethdash.migrations import utc_now
from ethdash.recent import Recent
from ethdash.store import Store

ANNOTATOR = re.compile(r"^[\w .@-]{1,64}$")


@dataclass(frozen=True)
class Annotation:
    dataset: str
    split: str
    item_id: str
    annotator: str
    judgment: str | None
    confidence: float | None
    tags: tuple[str, ...] = ()
    note: str = ""


def parse_tags(text: str) -> tuple[str, ...]:
    """Comma-separated tags, trimmed, without duplicates, in the order given."""
    seen: list[str] = []
    for tag in (t.strip() for t in text.split(",")):
        if tag and tag not in seen:
            seen.append(tag)
    return tuple(seen)


def save(store: Store, annotation: Annotation, options: tuple[str, ...]) -> str:
    a = annotation
    if not ANNOTATOR.match(a.annotator.strip()):
        raise EthdashError("give an annotator name (letters, digits, spaces, . @ - _; up to 64)")
    if a.judgment is not None and a.judgment not in options:
        raise EthdashError(f"judgment '{a.judgment}' is not one of {', '.join(options)}")
    if a.confidence is not None and not 0.0 <= a.confidence <= 1.0:
        raise EthdashError("confidence is between 0 and 1")
    annotation_id = uuid.uuid4().hex
    with store.transaction() as con:
        con.execute(
            "INSERT INTO annotations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                annotation_id,
                a.dataset,
                a.split,
                a.item_id,
                a.annotator.strip(),
                a.judgment,
                a.confidence,
                list(a.tags),
                a.note,
                utc_now(),
            ],
        )
    return annotation_id


def history(store: Store, dataset: str, split: str, item_id: str) -> pd.DataFrame:
    """Every save for the item, newest first, each with what it changed from the annotator's save before."""
    with store.connect() as con:
        frame = con.execute(
            "SELECT annotator, judgment, confidence, tags, note, created_at FROM annotations "
            "WHERE dataset = ? AND split = ? AND item_id = ? ORDER BY created_at, annotation_id",
            [dataset, split, item_id],
        ).df()
    before: dict[str, dict] = {}
    changed = []
    for row in frame.to_dict("records"):
        changed.append(describe_change(before.get(row["annotator"]), row))
        before[row["annotator"]] = row
    return frame.assign(changed=changed).iloc[::-1].reset_index(drop=True)


def latest(store: Store, dataset: str, split: str, item_id: str, annotator: str) -> dict | None:
    """One annotator's current annotation of one item (judgment, confidence, tags, note, created_at)."""
    with store.connect() as con:
        row = con.execute(
            "SELECT judgment, confidence, tags, note, created_at FROM annotations "
            "WHERE dataset = ? AND split = ? AND item_id = ? AND annotator = ? "
            "ORDER BY created_at DESC, annotation_id LIMIT 1",
            [dataset, split, item_id, annotator.strip()],
        ).fetchone()
    if row is None:
        return None
    return dict(zip(("judgment", "confidence", "tags", "note", "created_at"), row))


def describe_change(before: dict | None, after: dict) -> str:
    """What a save changed, in words ("judgment: none → action 1; tags: + money"); "first save" when
    the annotator had none before."""
    if before is None:
        return "first save"
    parts = []
    if before["judgment"] != after["judgment"]:
        parts.append(f"judgment: {before['judgment'] or 'none'} → {after['judgment'] or 'none'}")
    if not _same_number(before["confidence"], after["confidence"]):
        parts.append(f"confidence: {_number(before['confidence'])} → {_number(after['confidence'])}")
    old_tags, new_tags = list(_tags(before["tags"])), list(_tags(after["tags"]))
    added = [t for t in new_tags if t not in old_tags]
    removed = [t for t in old_tags if t not in new_tags]
    if added or removed:
        parts.append("tags: " + " ".join([*(f"+ {t}" for t in added), *(f"− {t}" for t in removed)]))
    if (before["note"] or "") != (after["note"] or ""):
        parts.append("note edited")
    return "; ".join(parts) or "no change"


def _tags(value: object) -> tuple[str, ...]:
    return tuple(value) if value is not None else ()


def _same_number(a: object, b: object) -> bool:
    if a is None or b is None or pd.isna(a) or pd.isna(b):
        return (a is None or pd.isna(a)) and (b is None or pd.isna(b))
    return abs(float(a) - float(b)) < 1e-9


def _number(value: object) -> str:
    return "none" if value is None or pd.isna(value) else f"{float(value):.2f}"


def version(store: Store) -> tuple:
    """A fingerprint of the annotations: they are only ever added (a change is a new row, the history is
    kept), so their count and newest time change with every save. Imported labels come with items
    (`catalog.items_version`)."""
    return store.state("annotations")


# The current annotations of the last few datasets asked, until an annotation is saved (Browse reads them on
# every rerun for the tags and the queue: 30 ms at 20,000 annotations).
_CURRENT: Recent[pd.DataFrame] = Recent(kept=4)


def current(store: Store, dataset: str | None = None) -> pd.DataFrame:
    """The latest annotation of each annotator for each item (optionally of one dataset)."""
    with store.connect():
        found = _CURRENT.get_or_compute((version(store), dataset), lambda: _current(store, dataset))
    return found.copy(deep=False)


def _current(store: Store, dataset: str | None) -> pd.DataFrame:
    with store.connect() as con:
        return con.execute(
            """
            SELECT * EXCLUDE (rank) FROM (
                SELECT *, row_number() OVER (PARTITION BY dataset, split, item_id, annotator
                                             ORDER BY created_at DESC, annotation_id) AS rank
                FROM annotations WHERE ? IS NULL OR dataset = ?)
            WHERE rank = 1 ORDER BY dataset, split, item_id, annotator""",
            [dataset, dataset],
        ).df()


def export(store: Store, path, everything: bool = False) -> int:
    """Write the current annotations (or the whole history) to CSV or Parquet, by extension."""
    if everything:
        with store.connect() as con:
            frame = con.execute("SELECT * FROM annotations ORDER BY created_at").df()
    else:
        frame = current(store)
    if str(path).endswith(".parquet"):
        frame.to_parquet(path, index=False)
    else:
        frame = frame.assign(tags=[";".join(t) for t in frame["tags"]])
        frame.to_csv(path, index=False)
    return len(frame)


def labels(store: Store, dataset: str, view: str, options: tuple[str, ...], split: str | None = None) -> pd.DataFrame:
    """Every person's current label of a dataset's items in one view, for agreement and for scoring people as
    systems: the judgments saved in ethdash (the latest per annotator and item; "no judgment" left out, and a
    judgment that is not one of the view's options, made under another view, too), then the per-annotator
    labels imported with the dataset. Columns: split, item_id, item ("split/item_id"), annotator, label,
    confidence (NaN for imported labels), source ("ethdash" or "imported")."""
    saved = current(store, dataset)
    saved = saved[saved["judgment"].isin(options) & ((saved["split"] == split) if split else True)]
    with store.connect() as con:
        imported = con.execute(
            """SELECT split, item_id, annotator, option AS label FROM annotator_labels
               WHERE dataset = ? AND view = ? AND (? IS NULL OR split = ?) ORDER BY split, item_id, annotator""",
            [dataset, view, split, split],
        ).df()
    frame = pd.concat(
        [
            pd.DataFrame(
                {
                    "split": saved["split"],
                    "item_id": saved["item_id"],
                    "annotator": saved["annotator"],
                    "label": saved["judgment"],
                    "confidence": saved["confidence"].astype(float),
                    "source": "ethdash",
                }
            ),
            imported.assign(confidence=float("nan"), source="imported"),
        ],
        ignore_index=True,
    )
    # One label per person and item: where a name labelled an item in both sources, the ethdash judgment.
    frame = frame.drop_duplicates(["split", "item_id", "annotator"], keep="first")
    return frame.assign(item=frame["split"] + "/" + frame["item_id"]).reset_index(drop=True)
