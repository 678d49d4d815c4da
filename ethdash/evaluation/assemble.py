"""Evaluate systems on a selection of items from the store: what Compare shows and `reproduce` reports.

Loads each system's stored probabilities, keeps the items every system has scored, sets each system's
c and T* (fitted on a calibration split, or cross-fitted on the compared items), and computes the
metric table, references, human ceiling, reliability and per-item disagreements through ethdash.evaluation.statistics.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ethdash import votes
from ethdash.datasets import catalog, selection
from ethdash.datasets.items import COUNTS, RESPONDENTS, SHARES
from ethdash.evaluation import statistics
from ethdash.evaluation.aligned import Aligned, align, probabilities, training_overlap
from ethdash.scoring import System, service
from ethdash.store import Store

CROSS_FIT = None  # calibration: cross-fitted on the compared items


@dataclass
class Evaluation:
    systems: list[System]
    aligned: Aligned
    predictions: list[statistics.Predictions]  # one per system, then the human ceiling where there is one
    coverage: pd.DataFrame  # system, scored, items
    overlap: dict[str, int]  # adapter label → evaluated items it was trained on
    calibration: dict[str, str] = field(default_factory=dict)  # label → where c and T* come from
    judgments: str = COUNTS  # what the view's numbers are (items.JUDGMENTS)
    ordered: bool = False  # the view's options are a scale (Wasserstein-1 applies)
    censored: dict[str, int] = field(default_factory=dict)  # label → compared items with a censored answer
    censored_left_out: int = 0  # items left out because some system's answer was censored there

    def censored_note(self) -> str | None:
        """Which systems' answers an API left outside its top-k, and how the metrics treat them."""
        hit = {label: n for label, n in self.censored.items() if n}
        if not hit and not self.censored_left_out:
            return None
        who = ", ".join(f"{label}: {n}" for label, n in hit.items())
        if self.censored_left_out:
            return (
                f"{self.censored_left_out} items where an answer was outside the API's top-k (censored) are left "
                "out, for every system alike."
            )
        return (
            f"Items with a censored answer (outside the API's top-k; {who}) count it at its bound, the k-th "
            "log-probability, renormalised: an upper bound on that answer's probability."
        )

    @property
    def has_counts(self) -> bool:
        """Whether metrics that need whole votes apply (not for shares with no number of respondents)."""
        return self.judgments != SHARES

    @property
    def rounding(self) -> float:
        """The largest change of a share that rounding to whole votes makes, for those metrics."""
        return votes.rounding(self.counts) if self.judgments == RESPONDENTS else 0.0

    def judgments_note(self) -> str | None:
        """What the human judgments are, where they are not vote counts, and what that means for metrics."""
        if self.judgments == SHARES:
            return (
                "The human judgments are shares with no number of respondents: the Dirichlet score (and its c) "
                "and BEST do not apply, since they count whole votes. Soft xent, calibrated xent, KL, Brier, ECE "
                "and accuracy use the exact shares (the majority is the largest share)."
            )
        if self.judgments == RESPONDENTS:
            return (
                "The human judgments are shares of each item's respondents: the Dirichlet score (and its c) and "
                "BEST use them rounded to whole votes (which moves a share by at most "
                f"{self.rounding:.4f}); the other metrics use the exact shares."
            )
        return None

    @property
    def counts(self) -> np.ndarray:
        return self.aligned.counts

    def table(self, n_resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
        return statistics.metric_table(self.counts, self.predictions, n_resamples, seed, ordered=self.ordered)

    def references(self, n_draws: int = 200, seed: int = 0) -> pd.DataFrame:
        return statistics.references(self.counts, n_draws, seed, self.has_counts)

    def paired(self, a: str, b: str, n_resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
        by_label = {p.label: p for p in self.predictions}
        return statistics.paired_differences(
            self.counts, by_label[a], by_label[b], n_resamples, seed, ordered=self.ordered
        )

    def model_predictions(self) -> list[statistics.Predictions]:
        return [p for p in self.predictions if p.label != statistics.HUMAN_CEILING]

    TEXTS = ("title", "text", "actions", "meta")

    def without_texts(self) -> Evaluation:
        """The same evaluation, its items without their texts (each row keeps its summary): what a cache keeps
        (at corpus scale the texts were most of the 60 MB a cached evaluation took to copy on every rerun)."""
        items = self.aligned.items.drop(columns=[c for c in self.TEXTS if c in self.aligned.items])
        return dataclasses.replace(self, aligned=Aligned(items, self.aligned.probs))


def evaluate(
    store: Store,
    systems: list[System],
    dataset: str,
    split: str | None,
    view: str,
    options: tuple[str, ...],
    filters: selection.Filters | None = None,
    calibration_split: str | None = CROSS_FIT,
    via: service.Via = service.LOCAL,
    fits: dict[str, tuple[float, float]] | None = None,
    keep: set[tuple[str, str]] | None = None,
    fits_source: str = "given",
    leave_out_censored: bool = False,
) -> Evaluation:
    """fits: c and T* per system label fitted elsewhere (a run's held-out part); they win over
    calibration_split, which wins over cross-fitting. leave_out_censored: compare only the items where no
    system's answer was censored (the same rule for every system, so paired differences stay paired)."""
    with store.connect():  # one unit of work for every read
        judgments, ordered = catalog.judgments(store, dataset, view), catalog.ordered(store, dataset, view)
        table, per_system, coverage = load(store, systems, dataset, split, view, options, filters, via, keep)
        aligned = align(table, per_system)
        censored = {s.label: int(aligned.censored(s.label).sum()) for s in systems}
        left_out = 0
        if leave_out_censored and any(censored.values()):
            drop = np.any([aligned.censored(s.label) for s in systems], axis=0)
            aligned, left_out = aligned.without(drop), int(drop.sum())
        overlap = {s.label: training_overlap(store, s.adapter, dataset, aligned.items) for s in systems if s.adapter}
        cal_fits = dict(fits or {})
        if calibration_split is not None:
            for system in systems:
                if system.label not in cal_fits:
                    fit = fit_on(store, system, dataset, calibration_split, view, options, via)
                    if fit is not None:
                        cal_fits[system.label] = fit
    predictions, sources = [], {}
    if len(aligned.items) == 0:
        return Evaluation(
            systems, aligned, predictions, coverage, overlap, sources, judgments, ordered, censored, left_out
        )
    counts = aligned.counts
    for system in systems:
        p, first, outside = aligned.p(system.label), aligned.first(system.label), aligned.outside(system.label)
        if system.label in cal_fits:
            c, t = cal_fits[system.label]
            source = fits_source if fits and system.label in fits else f"fitted on {calibration_split}"
            predictions.append(statistics.with_fit(system.label, p, c, t, first, source, outside))
        else:
            has_counts = judgments != SHARES
            predictions.append(
                statistics.cross_fitted(system.label, counts, p, first, has_counts=has_counts, outside=outside)
            )
        sources[system.label] = predictions[-1].calibration
    ceiling = human_ceiling(aligned)
    if ceiling is not None:
        predictions.append(ceiling)
    return Evaluation(systems, aligned, predictions, coverage, overlap, sources, judgments, ordered, censored, left_out)


def load(
    store: Store,
    systems: list[System],
    dataset: str,
    split: str | None,
    view: str,
    options: tuple[str, ...],
    filters: selection.Filters | None = None,
    via: service.Via = service.LOCAL,
    keep: set[tuple[str, str]] | None = None,
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame], pd.DataFrame]:
    """(the selected items, each system's per-item probabilities on them, coverage per system: scored and
    items among the selected, and split_scored and split_items over the whole split, before filters).

    keep: only these (split, item id), e.g. a seeded evaluation part."""
    with store.connect():
        table = selection.item_table(store, dataset, split, view, options)
        split_items = len(table)
        if filters is not None and not table.empty:
            table = selection.apply_filters(table, filters)
        if keep is not None and not table.empty:
            table = table[[k in keep for k in zip(table["split"], table["item_id"])]].reset_index(drop=True)
        keys = pd.MultiIndex.from_arrays([table["split"], table["item_id"]]) if not table.empty else None
        per_system, coverage = {}, []
        for system in systems:
            _, probs = probabilities(store, system, dataset, split, via)
            split_scored = len(probs)
            if len(probs) and keys is None:  # nothing passes the filters
                probs = probs.iloc[:0]
            elif len(probs) and len(table) < split_items:  # filtered: only the rows still in the table
                probs = probs.loc[pd.MultiIndex.from_arrays([probs["split"], probs["item_id"]]).isin(keys)]
            per_system[system.label] = probs
            coverage.append(
                {
                    "system": system.label,
                    "scored": len(probs),
                    "items": len(table),
                    "split_scored": split_scored,
                    "split_items": split_items,
                }
            )
    return table, per_system, pd.DataFrame(coverage)


def human_ceiling(aligned: Aligned) -> statistics.Predictions | None:
    """The second human sample as a system, on the items that have one (None if no item has)."""
    if len(aligned.items) == 0 or aligned.items["second_counts"].isna().any():
        return None
    second = catalog.counts_matrix(aligned.items, "second_counts")
    return statistics.cross_fitted(statistics.HUMAN_CEILING, aligned.counts, statistics.human_ceiling(second))


def fit_on(
    store: Store,
    system: System,
    dataset: str,
    split: str,
    view: str,
    options: tuple[str, ...],
    via: service.Via = service.LOCAL,
    keep: set[tuple[str, str]] | None = None,
) -> tuple[float, float] | None:
    """(c, T*) fitted on another split's scored items (or only `keep` of them); None when there are
    fewer than two."""
    table, probs, _ = load(store, [system], dataset, split, view, options, None, via, keep)
    aligned = align(table, probs)
    if len(aligned.items) < 2:
        return None
    return statistics.fitted(aligned.counts, aligned.p(system.label), catalog.judgments(store, dataset, view) != SHARES)
