"""People as systems: each annotator's judgments (and the annotators pooled) scored against the crowd with the
same metrics and intervals as the models, on the items that person labelled, beside the models on those same
items. Pure: frames and arrays in, frames out.

The rule that turns a judgment into a distribution: the chosen option gets the annotator's confidence c (1
for a label without one, such as an imported label; at least 1/K, where K is the number of options), the other
options share 1 − c equally, and the result is mixed with the uniform distribution at weight ε = 0.01, so
that a confident judgment against a crowd's minority costs a finite amount (log(ε/K) at worst), as a model's
never-zero probability does. The pooled annotators' distribution of an item is the mean of theirs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ethdash.evaluation import statistics

SMOOTHING = 0.01  # ε: the weight of the uniform distribution in every person's distribution
POOLED = "annotators pooled"


def judgment_distribution(chosen: np.ndarray, confidence: np.ndarray, k: int) -> np.ndarray:
    """Rows of distributions over k options from chosen option indices and confidences (NaN: 1)."""
    c = np.clip(np.where(np.isnan(confidence), 1.0, confidence), 1.0 / k, 1.0)
    p = np.repeat(((1.0 - c) / (k - 1))[:, None], k, axis=1)
    p[np.arange(len(chosen)), chosen] = c
    return (1.0 - SMOOTHING) * p + SMOOTHING / k


def person_distributions(labels: pd.DataFrame, options: tuple[str, ...]) -> dict[str, pd.DataFrame]:
    """Per annotator, and pooled: a frame of split, item_id and p (that person's distribution of the item)."""
    index = {o: i for i, o in enumerate(options)}
    p = judgment_distribution(
        labels["label"].map(index).to_numpy(dtype=int), labels["confidence"].to_numpy(dtype=float), len(options)
    )
    frame = labels[["split", "item_id", "annotator"]].assign(p=list(p))
    out = {name: group[["split", "item_id", "p"]].reset_index(drop=True) for name, group in frame.groupby("annotator")}
    if len(out) > 1:
        pooled = frame.groupby(["split", "item_id"], sort=True)["p"].apply(lambda ps: np.mean(np.stack(ps), axis=0))
        out[POOLED] = pooled.reset_index()
    return out


def people_table(
    counts: np.ndarray,
    items: pd.DataFrame,
    models: list[statistics.Predictions],
    labels: pd.DataFrame,
    options: tuple[str, ...],
    min_items: int = 2,
    n_resamples: int = 1000,
    seed: int = 0,
    ordered: bool = False,
) -> pd.DataFrame:
    """The metric table of each person (and the annotators pooled) on the compared items they labelled, and
    of each model on those same items: the long table of statistics.metric_table, with a column `person`
    saying whose items each row is scored on. People with fewer than `min_items` such items are left out.
    The models keep their c and T*; a person's c and T* are cross-fitted on that person's items."""
    keys = pd.MultiIndex.from_frame(items[["split", "item_id"]])
    frames = []
    for person, dist in person_distributions(labels, options).items():
        mine = keys.get_indexer(pd.MultiIndex.from_frame(dist[["split", "item_id"]]))
        keep = mine >= 0
        if keep.sum() < min_items:
            continue
        rows, p = mine[keep], np.stack(dist["p"].to_numpy()[keep])
        n = counts[rows]
        person_pred = statistics.cross_fitted(person, n, p)
        subset = [pred.subset(rows) for pred in models]
        table = statistics.metric_table(n, [person_pred, *subset], n_resamples, seed, ordered=ordered)
        frames.append(table.assign(person=person))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
