"""A system's stored probabilities over a selection of items, aligned for comparison.

A system is (model, adapter or base, template); its scores are looked up by their full keys, so a
changed adapter folder, template or weight file never reuses old numbers.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ethdash import adapters, orders
from ethdash.datasets import catalog
from ethdash.recent import Recent
from ethdash.scoring import System, jobs, service
from ethdash.store import Store

PER_ITEM_READS = ("split", "item_id", "item_order", "probs", "outside_mass", "censored")  # what per_item reads


def per_item(scores: pd.DataFrame) -> pd.DataFrame:
    """One row per item from stored scores: p in vote order (orders averaged for dilemmas), P(first-listed)
    for dilemmas, mean outside mass, and how many answers an API left outside its top-k (`censored`, both
    orders together). Dilemmas scored in only one order are left out: not comparable."""
    columns = ["split", "item_id", "p", "first", "outside_mass", "censored"]
    if scores.empty:
        return pd.DataFrame(columns=columns)
    scores = scores.assign(censored=scores["censored"].fillna(0).astype(int) if "censored" in scores else 0)
    if set(scores["item_order"]) <= {"-"}:
        out = scores[["split", "item_id", "outside_mass", "censored"]].copy()
        out["p"] = [np.asarray(v, dtype=float) for v in scores["probs"]]
        out["first"] = np.nan
        return out[columns].reset_index(drop=True)
    ab = scores[scores["item_order"] == "ab"].set_index(["split", "item_id"])
    ba = scores[scores["item_order"] == "ba"].set_index(["split", "item_id"])
    both = ab.index.intersection(ba.index)
    p_ab = np.stack([np.asarray(v, dtype=float) for v in ab.loc[both, "probs"]]) if len(both) else np.empty((0, 2))
    p_ba = np.stack([np.asarray(v, dtype=float) for v in ba.loc[both, "probs"]]) if len(both) else np.empty((0, 2))
    out = pd.DataFrame(
        {
            "split": both.get_level_values(0),
            "item_id": both.get_level_values(1),
            "p": list(orders.combine(p_ab, p_ba)),
            "first": 0.5 * (p_ab[:, 0] + p_ba[:, 1]),
            "outside_mass": 0.5 * (ab.loc[both, "outside_mass"].to_numpy() + ba.loc[both, "outside_mass"].to_numpy()),
            "censored": ab.loc[both, "censored"].to_numpy() + ba.loc[both, "censored"].to_numpy(),
        }
    )
    return out[columns]


# Each system's per-item probabilities over the last few splits asked (the pages ask for every chosen
# system on every rerun; planning 27,766 items' keys and reading their scores cost about 1 s per system),
# until the store's items or scores or anything in the scores' keys change.
_PROBABILITIES: Recent[tuple[int, pd.DataFrame]] = Recent(kept=16)


def probabilities(
    store: Store, system: System, dataset: str, split: str | None, via: service.Via = service.LOCAL
) -> tuple[int, pd.DataFrame]:
    """(items in the selection, per-item probabilities of those already scored by this backend)."""
    with store.connect():
        job = system.job(dataset, split, via.backend)
        connection = service.connect(job, via.server, top_k=via.top_k)
        backend_id = connection.identity()  # a server's: asked every time (it may serve other weights now)
        state = (catalog.items_version(store), jobs.scores_version(store))
        key = (*state, jobs.identity(store, job, connection.dtype, backend_id))

        def compute() -> tuple[int, pd.DataFrame]:
            prepared = service.Prepared(jobs.plan(store, job, connection.dtype, backend_id), connection)
            return len(prepared.plan.items), per_item(service.scores(store, prepared, PER_ITEM_READS))

        n_items, frame = _PROBABILITIES.get_or_compute(key, compute)
        return n_items, frame.copy(deep=False)


@dataclass(frozen=True)
class Aligned:
    """The items every chosen system has scored, in one order: votes and each system's probabilities."""

    items: pd.DataFrame  # the item table's rows
    probs: dict[str, pd.DataFrame]  # label → per_item rows, aligned with items

    @functools.cached_property
    def counts(self) -> np.ndarray:  # read by every section of Compare: built once, shared read-only
        counts = catalog.counts_matrix(self.items)
        counts.flags.writeable = False
        return counts

    def p(self, label: str) -> np.ndarray:
        return np.stack(self.probs[label]["p"].to_numpy())

    def outside(self, label: str) -> np.ndarray:
        """Per item, the probability the system put outside the answers (both orders' mean for dilemmas)."""
        return self.probs[label]["outside_mass"].to_numpy(dtype=float)

    def censored(self, label: str) -> np.ndarray:
        """Per item, whether an answer was outside the API's top-k (its probability then at its bound)."""
        return self.probs[label]["censored"].to_numpy(dtype=float) > 0

    def without(self, drop: np.ndarray) -> Aligned:
        """The same systems over the items not dropped."""
        keep = ~np.asarray(drop, dtype=bool)
        return Aligned(
            self.items[keep].reset_index(drop=True),
            {label: frame[keep].reset_index(drop=True) for label, frame in self.probs.items()},
        )

    def first(self, label: str) -> np.ndarray | None:
        first = self.probs[label]["first"].to_numpy(dtype=float)
        return None if np.isnan(first).all() else first


def align(items: pd.DataFrame, probs: dict[str, pd.DataFrame]) -> Aligned:
    keys = items.set_index(["split", "item_id"]).index
    for frame in probs.values():
        keys = keys.intersection(frame.set_index(["split", "item_id"]).index, sort=False)
    chosen = items.set_index(["split", "item_id"]).loc[keys].reset_index()
    aligned = {label: frame.set_index(["split", "item_id"]).loc[keys].reset_index() for label, frame in probs.items()}
    return Aligned(chosen, aligned)


def training_overlap(store: Store, adapter: str, dataset: str, items: pd.DataFrame) -> int:
    """How many of these items the adapter's fine-tune run trained on (its held-out part included)."""
    meta = adapters.meta(store, adapter)
    config = meta.get("config")
    if not config or config.get("dataset") != dataset:
        return 0
    from ethdash import templates
    from ethdash.finetune.config import RunConfig
    from ethdash.finetune.data import select_items

    run_config = RunConfig.from_dict(config)
    trained = select_items(store, run_config, templates.get(run_config.template))
    seen = set(zip(trained["split"], trained["item_id"]))
    return int(sum((s, i) in seen for s, i in zip(items["split"], items["item_id"])))
