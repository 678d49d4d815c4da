"""The annotation queue: what to annotate next, against direct computations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ethdash.annotation_queue import queue


def frame(n: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    items = pd.DataFrame({"split": "dev", "item_id": [f"x{i}" for i in range(n)]})
    counts = rng.integers(0, 6, (n, 2)).astype(float) + np.eye(2)[rng.integers(0, 2, n)]
    p = rng.dirichlet([1, 1], n)
    probs = pd.DataFrame({"split": "dev", "item_id": items["item_id"], "p": list(p)})
    return items, counts, probs


def test_disagreement_first_skipping_what_is_done_and_unscored_last():
    items, counts, probs = frame()
    y = counts / counts.sum(axis=1, keepdims=True)
    tv = 0.5 * np.abs(y - np.stack(probs["p"])).sum(axis=1)
    done = {("dev", "x0"), ("dev", "x5")}
    partly = probs[~probs["item_id"].isin(["x3", "x7"])]  # two items the model has not scored
    got = queue(items, counts, done, "disagreement", partly)
    scored = [i for i in np.argsort(-tv, kind="stable") if f"x{i}" not in ("x0", "x5", "x3", "x7")]
    assert got == [("dev", f"x{i}") for i in scored] + [("dev", "x3"), ("dev", "x7")]


def test_uncertainty_is_the_models_entropy():
    items, counts, probs = frame(seed=1)
    p = np.stack(probs["p"])
    entropy = -(p * np.log(p)).sum(axis=1)
    assert queue(items, counts, set(), "uncertainty", probs) == [("dev", f"x{i}") for i in np.argsort(-entropy)]


def test_random_order_is_seeded_and_the_same_for_any_part_of_the_list():
    items, counts, _ = frame(30)
    first = queue(items, counts, set(), "random", seed=3)
    assert first == queue(items, counts, set(), "random", seed=3) != queue(items, counts, set(), "random", seed=4)
    part = items.iloc[::3].reset_index(drop=True)
    assert queue(part, counts[::3], set(), "random", seed=3) == [
        k for k in first if k in set(zip(part.split, part.item_id))
    ]
    with pytest.raises(ValueError, match="unknown order"):
        queue(items, counts, set(), "alphabetical")
