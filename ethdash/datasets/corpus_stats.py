"""Corpus statistics per dataset, split and label view, with the reference scores."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ethdash import metrics
from ethdash.datasets import catalog
from ethdash.store import Store
from ethdash.votes import majority, whole_votes


@dataclass(frozen=True)
class SplitStats:
    dataset: str
    split: str
    view: str
    items: int
    votes: int | None  # None: shares with no number of respondents
    median_votes: float | None
    controversial_share: float
    majority_class: str  # the most frequent majority label
    majority_class_share: float  # its share among items with a strict majority
    tied_items: int
    references: metrics.References


def corpus_stats(store: Store, n_draws: int = 200, seed: int = 0) -> list[SplitStats]:
    out = []
    for dataset in catalog.datasets(store):
        for split in catalog.splits(store, dataset.name):
            for view in dataset.views:
                frame = catalog.items_frame(store, dataset.name, split, view.name)
                if frame.empty:
                    continue
                counts = catalog.counts_matrix(frame)
                out.append(
                    _stats(
                        dataset.name,
                        split,
                        view.name,
                        view.options,
                        counts,
                        frame["controversial"].to_numpy(),
                        n_draws,
                        seed,
                        view.has_counts,
                    )
                )
    return out


def _stats(
    dataset: str,
    split: str,
    view: str,
    options: tuple[str, ...],
    counts: np.ndarray,
    controversial: np.ndarray,
    n_draws: int,
    seed: int,
    has_counts: bool = True,
) -> SplitStats:
    """BEST draws from the posterior of whole votes: shares of respondents are rounded to them, and shares
    alone have none (NaN)."""
    maj = majority(counts)
    strict = maj[maj >= 0]
    by_class = np.bincount(strict, minlength=len(options))
    top = int(by_class.argmax())
    return SplitStats(
        dataset=dataset,
        split=split,
        view=view,
        items=len(counts),
        votes=int(whole_votes(counts).sum()) if has_counts else None,
        median_votes=float(np.median(whole_votes(counts).sum(axis=1))) if has_counts else None,
        controversial_share=float(controversial.mean()),
        majority_class=options[top],
        majority_class_share=float(by_class[top] / max(len(strict), 1)),
        tied_items=int((maj < 0).sum()),
        references=metrics.judgment_references(counts, has_counts, n_draws, seed),
    )
