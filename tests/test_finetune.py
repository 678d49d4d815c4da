"""Fine-tuning with real processes and the real model: overfitting works, and runs survive kills,
cancels, resumes and each other. Bad configurations are refused before any process starts."""

from __future__ import annotations

import json
import os
import signal
import time

import numpy as np
import pytest

from ethdash import adapters, metrics, models, orders, scoring
from ethdash.backends.local import LocalScorer
from ethdash.finetune import runs
from ethdash.finetune.config import RunConfig
from ethdash.importer import import_paths
from ethdash.prompting import Prompter

from .conftest import DILEMMAS_DEV, run_cli
from .helpers import MODEL, wait_until

pytestmark = pytest.mark.model


@pytest.fixture
def dilemmas(store, shared_data):
    import_paths(store, [DILEMMAS_DEV])
    return store


def wait_for(run: runs.Run, states=("succeeded", "failed", "cancelled"), timeout_s: float = 600) -> dict:
    wait_until(lambda: run.status().get("state") in states, timeout_s)
    return run.status()


def mean_kl(store, adapter: str | None, limit: int) -> float:
    """Mean KL(ȳ ‖ p) over the items, p combining both option orders, scored by the local backend."""
    job = scoring.Job(MODEL, "dilemmas-worse", "dilemmas", "dev", adapter=adapter, limit=limit)
    plan = scoring.plan(store, job)
    scoring.run(store, plan, LocalScorer(models.get(MODEL)), Prompter(models.get(MODEL)))
    frame = scoring.scores_frame(store, plan)
    by_order = {o: frame[frame.item_order == o].set_index("item_id").loc[plan.items.item_id] for o in ("ab", "ba")}
    p = orders.combine(np.stack(by_order["ab"].probs), np.stack(by_order["ba"].probs))
    return metrics.kl([list(c) for c in plan.items["counts"]], p)


@pytest.mark.parametrize("loss, learning_rate", [("soft-xent", 2e-3), ("dirichlet", 2e-3)])
def test_training_toward_the_votes_halves_the_kl_on_those_items(dilemmas, loss, learning_rate):
    # 16 real dilemmas (the first 16 of dev: a fixed set), every one trained on (no held-out part).
    config = RunConfig(name=f"overfit-{loss}", limit=16, loss=loss, steps=40, learning_rate=learning_rate, rank=8,
                       schedule="constant", warmup_steps=4, heldout_fraction=0.0, checkpoint_every=40, seed=0)
    run = runs.start(config, dilemmas)
    status = wait_for(run)
    assert status["state"] == "succeeded", run.log_tail()
    untrained = mean_kl(dilemmas, None, 16)
    trained = mean_kl(dilemmas, config.name, 16)
    assert trained <= 0.5 * untrained, (untrained, trained)
    losses_logged = [m["loss"] for m in run.metrics() if m["kind"] == "train"]
    assert len(losses_logged) == 40 and np.mean(losses_logged[-5:]) < np.mean(losses_logged[:5])
