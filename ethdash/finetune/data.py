"""Training data: items chosen by the run's filters, a seeded held-out part, and prompt examples."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ethdash.datasets import catalog
from ethdash.scoring.prompting import Prompter
from ethdash.store import Store
from ethdash.templates import Template
from ethdash.votes import vote_margin


def select_items(store: Store, config, template: Template) -> pd.DataFrame:
    frame = catalog.items_frame(store, config.dataset, config.split, template.view)
    if frame.empty:
        return frame
    margin = vote_margin(catalog.counts_matrix(frame))
    keep = (margin >= config.min_margin - 1e-12) & (margin <= config.max_margin + 1e-12)
    if config.controversial is not None:
        keep &= frame["controversial"].to_numpy() == config.controversial
    frame = frame[keep].reset_index(drop=True)
    frame, _ = evaluation_part(frame, config.eval_fraction, config.eval_seed)
    return frame.head(config.limit) if config.limit is not None else frame


def evaluation_part(frame: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rest, evaluation part): a seeded fraction of the items, in their original order, set aside for
    evaluation where a dataset has no evaluation split. The same (items, fraction, seed) give the same parts."""
    if fraction <= 0 or frame.empty:
        return frame, frame.iloc[:0]
    order = np.random.default_rng([seed, 2_0_8_0]).permutation(len(frame))
    n_eval = max(1, int(round(len(frame) * fraction)))
    chosen = np.zeros(len(frame), dtype=bool)
    chosen[order[:n_eval]] = True
    return frame[~chosen].reset_index(drop=True), frame[chosen].reset_index(drop=True)


def heldout_split(n_items: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, held-out): a seeded permutation, so a run and its resume agree."""
    order = np.random.default_rng(seed).permutation(n_items)
    n_heldout = int(round(n_items * fraction))
    if fraction > 0:
        n_heldout = min(max(n_heldout, 1), n_items - 1)
    return np.sort(order[n_heldout:]), np.sort(order[:n_heldout])


@dataclass(frozen=True)
class Example:
    item_id: str
    order: str
    prompt_ids: tuple[int, ...]
    answer_counts: tuple[float, ...]  # the human votes per answer token (shares where no votes are known)


def examples(
    items: pd.DataFrame, template: Template, options: tuple[str, ...], prompter: Prompter, order: str = "both"
) -> list[Example]:
    out = []
    for row in items.itertuples():
        for o in template.orders(order):
            counts = template.answer_counts(np.asarray(row.counts, dtype=float), options, o)
            out.append(
                Example(
                    row.item_id, o, prompter.prompt_ids(template, row._asdict(), o), tuple(float(c) for c in counts)
                )
            )
    return out
