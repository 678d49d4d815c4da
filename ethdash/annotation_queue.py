"""Which item to annotate next: the items a person has not judged yet, most informative first. Pure: frames
in, item ids out.

Orders: where the model disagrees most with the humans (total variation between the vote shares and the
model's probabilities), where the model is least sure (the entropy of its probabilities, relative to the most
it can be), or at random with a seed (the same order on every visit, whatever the filters). Items the model
has not scored come after the scored ones, in the list's order.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from ethdash.metrics import entropy_items, total_variation
from ethdash.votes import shares

ORDERS = {
    "disagreement": "model–human disagreement (total variation), largest first",
    "uncertainty": "model uncertainty (entropy of its probabilities), largest first",
    "random": "random, seeded (the same order on every visit)",
}


def queue(
    items: pd.DataFrame,
    counts: np.ndarray,
    done: set[tuple[str, str]],
    order: str,
    probs: pd.DataFrame | None = None,
    seed: int = 0,
) -> list[tuple[str, str]]:
    """(split, item_id) of the items not in `done`, in the chosen order. `items` has split and item_id, in
    the list's order, `counts` its human votes; `probs` a system's per-item p (split, item_id, p)."""
    if order not in ORDERS:
        raise ValueError(f"unknown order '{order}': choose from {', '.join(ORDERS)}")
    keys = list(zip(items["split"], items["item_id"]))
    if order == "random":
        key = [hashlib.sha256(f"{seed}\t{s}\t{i}".encode()).hexdigest() for s, i in keys]
        ranked = [keys[j] for j in np.argsort(key, kind="stable")]
        return [k for k in ranked if k not in done]
    by_key = {} if probs is None else {(s, i): p for s, i, p in zip(probs["split"], probs["item_id"], probs["p"])}
    scored = [j for j, k in enumerate(keys) if k in by_key]
    value = np.full(len(keys), np.nan)
    if scored:
        p = np.stack([by_key[keys[j]] for j in scored])
        if order == "disagreement":
            value[scored] = total_variation(shares(counts[scored]), p)
        else:
            value[scored] = entropy_items(p) / np.log(p.shape[1])
    # Scored items by their value, largest first (ties in the list's order); unscored ones after them.
    ranked = sorted(range(len(keys)), key=lambda j: (np.isnan(value[j]), -np.nan_to_num(value[j]), j))
    return [keys[j] for j in ranked if keys[j] not in done]
