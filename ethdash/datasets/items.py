"""The domain: datasets, their label views, and items with human vote counts. Pure: no I/O.

Every dataset, Scruples or brought by a researcher, becomes the same `Item`s. An item carries
vote counts per *label view* (a set of answer options), and optionally a second, independent
human sample of the same view (dilemmas' `human_perf_annotations`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from ethdash.votes import anecdote_controversial, unanimous

DILEMMAS = "dilemmas"
ANECDOTES = "anecdotes"
SCRUPLES_DATASETS = (DILEMMAS, ANECDOTES)

# Dilemma votes count the action judged WORSE (the crowd was asked "which is worse?").
DILEMMA_VIEW = "worse"
DILEMMA_OPTIONS = ("action 1", "action 2")
ANECDOTE_VIEW = "classes"
ANECDOTE_CLASSES = ("AUTHOR", "OTHER", "EVERYBODY", "NOBODY", "INFO")
BINARIZED_VIEW = "binarized"
BINARIZED_CLASSES = ("RIGHT", "WRONG")
CUSTOM_VIEW = "votes"

# What a view's numbers are. COUNTS: whole votes. SHARES: a distribution per item (shares or weights,
# normalised on import) with no number of respondents: metrics that need counts do not apply. RESPONDENTS:
# shares times each item's declared number of respondents (exact, so not always whole numbers): metrics that
# need counts use them rounded to whole votes.
COUNTS = "counts"
SHARES = "shares"
RESPONDENTS = "shares of respondents"
JUDGMENTS = (COUNTS, SHARES, RESPONDENTS)

GOLD = "gold"
SECOND = "second"  # an independent second human sample of the same view


@dataclass(frozen=True)
class LabelView:
    name: str
    options: tuple[str, ...]
    description: str = ""
    judgments: str = COUNTS  # one of JUDGMENTS
    ordered: bool = False  # the options are a scale, in this order (Wasserstein-1 applies)

    @property
    def has_counts(self) -> bool:
        """Whether metrics that need whole votes (Dirichlet score, posterior intervals, BEST) apply."""
        return self.judgments != SHARES


SCRUPLES_VIEWS: dict[str, tuple[LabelView, ...]] = {
    DILEMMAS: (LabelView(DILEMMA_VIEW, DILEMMA_OPTIONS, "which of the two actions is less ethical (5 crowd votes)"),),
    ANECDOTES: (
        LabelView(ANECDOTE_VIEW, ANECDOTE_CLASSES, "who is in the wrong: community votes, 5 classes"),
        LabelView(BINARIZED_VIEW, BINARIZED_CLASSES, "RIGHT = OTHER + NOBODY, WRONG = AUTHOR + EVERYBODY"),
    ),
}


@dataclass(frozen=True)
class Dataset:
    name: str
    kind: str  # "dilemmas", "anecdotes" or "custom"
    views: tuple[LabelView, ...]
    description: str = ""

    def view(self, name: str) -> LabelView:
        for v in self.views:
            if v.name == name:
                return v
        raise KeyError(name)


def scruples_dataset(kind: str) -> Dataset:
    return Dataset(kind, kind, SCRUPLES_VIEWS[kind], f"Scruples {kind.upper()}")


@dataclass(frozen=True)
class Item:
    dataset: str
    split: str
    item_id: str
    votes: dict[str, tuple[float, ...]]  # view name -> counts (or shares, see JUDGMENTS), in option order
    title: str | None = None
    text: str | None = None
    actions: tuple[str, ...] = ()
    post_type: str | None = None
    controversial: bool | None = None  # as released, where the data says so
    second_votes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    # One row per judgment: (annotator, chosen option, line) behind the votes, kept per annotator.
    labels: tuple[tuple[str, str, int], ...] = ()
    source: str = ""
    line: int | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.dataset, self.split, self.item_id)

    def content_hash(self) -> str:
        """A digest of everything that defines the item (not where it was read from)."""
        content = {
            "dataset": self.dataset,
            "split": self.split,
            "id": self.item_id,
            "title": self.title,
            "text": self.text,
            "actions": list(self.actions),
            "post_type": self.post_type,
            "controversial": self.controversial,
            "votes": {k: list(v) for k, v in sorted(self.votes.items())},
            "second_votes": {k: list(v) for k, v in sorted(self.second_votes.items())},
            "meta": self.meta,
        }
        if self.labels:  # who chose what is content too (absent otherwise, so that older hashes hold)
            content["labels"] = [[annotator, option] for annotator, option, _ in self.labels]
        blob = json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def binarize(classes: dict[str, int]) -> tuple[int, int]:
    """Scruples' binarization of anecdote votes: (RIGHT, WRONG); INFO is dropped."""
    right = classes["OTHER"] + classes["NOBODY"]
    wrong = classes["AUTHOR"] + classes["EVERYBODY"]
    return right, wrong


def is_controversial(item: Item) -> bool:
    """Dilemmas: as released (the gold votes were not unanimous); anecdotes and custom data:
    a vote margin below 0.5 (of the binarized votes, for anecdotes)."""
    if item.dataset == DILEMMAS:
        if item.controversial is not None:
            return item.controversial
        return not bool(unanimous(item.votes[DILEMMA_VIEW])[0])
    counts = item.votes[BINARIZED_VIEW] if item.dataset == ANECDOTES else next(iter(item.votes.values()))
    if sum(counts) == 0:
        return False
    return bool(anecdote_controversial(counts)[0])
