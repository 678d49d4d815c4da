"""Fine-tuning with real processes and the real model: overfitting works, and runs survive kills,
cancels, resumes and each other. Bad configurations are refused before any process starts."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest

from ethdash import adapters, metrics, models, orders, scoring, settings
from ethdash.datasets.importer import import_paths
from ethdash.finetune import runs
from ethdash.finetune.config import RunConfig
from ethdash.scoring.backends.local import LocalScorer
from ethdash.scoring.prompting import Prompter

from .conftest import DILEMMAS_DEV, run_cli
from .helpers import MODEL, wait_until

pytestmark = pytest.mark.model


@pytest.fixture
def dilemmas(store, shared_data):
    import_paths(store, [DILEMMAS_DEV])
    return store


def wait_for(run: runs.Run, states=("succeeded", "failed", "cancelled"), timeout_s: float = 850) -> dict:
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
    config = RunConfig(
        name=f"overfit-{loss}",
        limit=16,
        loss=loss,
        steps=40,
        learning_rate=learning_rate,
        rank=8,
        schedule="constant",
        warmup_steps=4,
        heldout_fraction=0.0,
        checkpoint_every=40,
        seed=0,
    )
    run = runs.start(config, dilemmas)
    status = wait_for(run)
    assert status["state"] == "succeeded", run.log_tail()
    untrained = mean_kl(dilemmas, None, 16)
    trained = mean_kl(dilemmas, config.name, 16)
    assert trained <= 0.5 * untrained, (untrained, trained)
    losses_logged = [m["loss"] for m in run.metrics() if m["kind"] == "train"]
    assert len(losses_logged) == 40 and np.mean(losses_logged[-5:]) < np.mean(losses_logged[:5])


SMALL = {"limit": 12, "steps": 8, "eval_every": 4, "checkpoint_every": 2, "learning_rate": 1e-3}


def test_a_killed_run_shows_as_failed_and_resumes_from_its_last_checkpoint(dilemmas):
    run = runs.start(RunConfig(name="killed", **SMALL), dilemmas)
    wait_until(lambda: len(run.checkpoints()) >= 2, timeout_s=300)
    os.killpg(run.raw_status()["pid"], signal.SIGKILL)
    wait_until(lambda: run.status()["state"] == "failed", timeout_s=30)

    result = run_cli("finetune", "status", "killed")  # the next time anyone looks
    assert result.returncode == 0 and "killed: failed" in result.stdout and "log:" in result.stdout
    last = int(run.checkpoints()[-1].name.split("-")[1])

    result = run_cli("finetune", "resume", "killed")
    assert result.returncode == 0, result.stderr
    assert wait_for(run)["state"] == "succeeded", run.log_tail()
    steps = [m["step"] for m in run.metrics() if m["kind"] == "train"]
    # Finished, did not start over, and the steps redone after the last checkpoint (step `last`) left no
    # duplicate records (issue 16).
    assert steps == list(range(1, 9)), (steps, last)
    evals = [m["step"] for m in run.metrics() if m["kind"] == "eval"]
    assert len(evals) == len(set(evals))
    assert "log_tail" not in run.status() or not run.status()["log_tail"]  # the failure's tail is gone
    adapter = adapters.get(dilemmas, "killed")
    assert adapter.path == run.adapter_dir and adapter.base_model == MODEL

    # the finished adapter is compared with the base model through `ethdash score`
    for extra in ([], ["--adapter", "killed"]):
        result = run_cli(
            "score", "--template", "dilemmas-worse", "--dataset", "dilemmas", "--split", "dev", "--limit", "3", *extra
        )
        assert result.returncode == 0, result.stderr
    with dilemmas.connect() as con:
        rows = con.execute("SELECT adapter, count(*) FROM scores GROUP BY adapter ORDER BY adapter").fetchall()
    assert rows == [("killed", 6), (None, 6)]


def test_resume_never_unpickles_code_from_a_run_folder(dilemmas, tmp_path):
    """A trainer state is read with weights_only: a planted pickle that would run code is refused, not run."""
    import pickle

    run = runs.start(RunConfig(name="planted", **{**SMALL, "steps": 500}), dilemmas)
    wait_until(lambda: len(run.checkpoints()) >= 1, timeout_s=300)
    runs.cancel(run)
    witness = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {witness}",))

    (run.checkpoints()[-1] / "trainer_state.pt").write_bytes(pickle.dumps({"step": Payload()}))
    assert run_cli("finetune", "resume", "planted").returncode == 0
    assert wait_for(run)["state"] == "failed"
    assert not witness.exists()
    assert "Weights only load failed" in run.log_tail(200) or "weights_only" in run.log_tail(200)


def test_cancel_stops_a_run_cleanly(dilemmas):
    run = runs.start(RunConfig(name="cancelled", **{**SMALL, "steps": 500}), dilemmas)
    wait_until(lambda: run.raw_status().get("step", 0) >= 2, timeout_s=300)
    result = run_cli("finetune", "cancel", "cancelled")
    assert result.returncode == 0 and "cancelled: cancelled" in result.stdout, result.stderr
    status = run.status()
    assert status["state"] == "cancelled" and status["step"] < 500
    assert int(run.checkpoints()[-1].name.split("-")[1]) == status["step"]  # resumable from where it stopped
    again = run_cli("finetune", "cancel", "cancelled")
    assert again.returncode == 1 and "not running" in again.stderr


def test_two_runs_at_once_both_finish_and_register(dilemmas):
    result = run_cli(
        "finetune", "start", "--name", "pair", "--seeds", "1,2", "--limit", "12", "--steps", "4", "--eval-every", "2"
    )
    assert result.returncode == 0, result.stderr
    pair = [runs.get("pair-s1"), runs.get("pair-s2")]
    for run in pair:
        assert wait_for(run)["state"] == "succeeded", run.log_tail()
        assert adapters.get(dilemmas, run.name).content_hash == run.status()["final"]["adapter_hash"]
    assert pair[0].config().seed == 1 and pair[1].config().seed == 2
    spread = run_cli("finetune", "spread", "pair")
    assert spread.returncode == 0 and "(n=2)" in spread.stdout
    xents = [r.status()["final"]["xent"] for r in pair]
    assert f"mean {np.mean(xents):.4f}" in spread.stdout


@pytest.mark.parametrize(
    "args, words",
    [
        (["--model", "gpt-17"], "unknown model 'gpt-17'"),
        (["--template", "nope"], "unknown template 'nope'"),
        (["--loss", "hinge"], "Invalid value for '--loss'"),
        (["--rank", "0"], "LoRA rank 0 is not allowed"),
        (["--rank", "4096"], "LoRA rank 4096 is not allowed"),
        (["--split", "train"], "no training items"),
        (["--limit", "3", "--controversial", "--name", "../evil"], "is not allowed"),
        (["--name", "a/b"], "is not allowed"),
        (["--eval-split", "dev"], "must not be the training split"),
        (["--dataset", "anecdotes"], "unknown dataset 'anecdotes'"),
    ],
)
def test_invalid_configs_are_refused_before_any_process_starts(dilemmas, args, words):
    result = run_cli("finetune", "start", "--name", "bad", *args)
    assert result.returncode != 0 and words in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not settings.runs_dir().exists() or not any(settings.runs_dir().iterdir())


def test_an_unknown_loss_in_a_config_file_is_refused(dilemmas, tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"loss": "hinge", "steps": 3}))
    result = run_cli("finetune", "start", "--name", "fromfile", "--config", str(tmp_path / "run.json"))
    assert result.returncode == 1 and "unknown loss 'hinge'" in result.stderr


def test_two_data_parallel_processes_train_what_one_process_trains_with_accumulation(dilemmas):
    """torchrun with 2 processes (gloo on CPU: the path a multi-GPU machine takes with NCCL), batch 2 each,
    against one process with batch 2 and 2 accumulated micro-batches: the same data, the same averaged
    gradients, so the same adapter."""
    import torch
    from safetensors.torch import load_file

    common = dict(limit=8, loss="soft-xent", steps=2, batch_size=2, learning_rate=1e-3, heldout_fraction=0.25)
    single = runs.start(RunConfig(name="single", grad_accum=2, **common), dilemmas)
    assert wait_for(single)["state"] == "succeeded", single.log_tail()
    parallel = runs.start(RunConfig(name="parallel", processes=2, **common), dilemmas)
    status = wait_for(parallel)
    assert status["state"] == "succeeded", parallel.log_tail(40)
    assert status["processes"] == 2
    a = load_file(single.adapter_dir / "adapter_model.safetensors")
    b = load_file(parallel.adapter_dir / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    moved = max(float((a[k] - 0).abs().max()) for k in a if "lora_B" in k)
    assert moved > 0  # training moved the B matrices away from their zero start
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-6)
    losses = [[r["loss"] for r in run.metrics() if r["kind"] == "train"] for run in (single, parallel)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)
    assert {n for n, _, _ in adapters.all_adapters(dilemmas)} >= {"single", "parallel"}
