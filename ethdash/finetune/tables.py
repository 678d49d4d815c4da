"""A run as a person reads it: the run list, a one-line progress text, the evaluations' columns and curves,
and the settings and results as labelled tables. Pure apart from reading the runs' folders (`run_rows`)."""

from __future__ import annotations

import time

import pandas as pd

from ethdash.durations import human_duration
from ethdash.evaluation import measures
from ethdash.finetune import runs
from ethdash.finetune.config import RunConfig


def run_rows() -> pd.DataFrame:
    """A row per run: its state, step, model, loss, data and last message."""
    rows = []
    for run in runs.all_runs():
        status = run.status()
        config = run.config()
        total = status.get("total_steps") or config.steps or "—"
        rows.append(
            {
                "run": run.name,
                "state": status.get("state"),
                "step": f"{status.get('step', 0)} / {total}",
                "model": config.model,
                "loss": config.loss,
                "data": f"{config.dataset}/{config.split}",
                "message": status.get("message", ""),
            }
        )
    return pd.DataFrame(rows)


def progress_text(name: str, status: dict, total: int) -> str:
    """One line, e.g. "r8: running · step 5 of 12 · loss 0.6931 nats · 1.24 s/step · ETA about 9 s"."""
    state = status.get("state")
    parts = [f"{name}: {state}", f"step {int(status.get('step', 0) or 0)} of {total}"]
    if status.get("loss") is not None:
        parts.append(f"loss {status['loss']:.4f} nats")
    if status.get("seconds_per_step") is not None:
        parts.append(f"{status['seconds_per_step']:.2f} s/step")
    eta = status.get("eta_seconds")
    if state in runs.ACTIVE and eta is not None:
        left = max(eta - (time.time() - status.get("updated_at", time.time())), 0.0)  # counts down between steps
        parts.append(f"ETA about {human_duration(left)}")
    elif state in runs.ACTIVE:
        parts.append(status.get("message") or "starting")
    return " · ".join(parts)


CURVES = (  # metrics key, series, unit
    ("xent", "held-out soft xent", "nats"),
    ("dirichlet", "held-out Dirichlet score", "nats"),
    ("accuracy", "held-out accuracy", "%"),
)


def curve_records(records: list[dict]) -> pd.DataFrame:
    """A run's metrics log as the curves chart reads it (step, value, series, unit): the training loss and
    the held-out metrics of `CURVES`."""
    curves = [
        {"step": r["step"], "value": r["loss"], "series": "training loss", "unit": "nats"}
        for r in records
        if r.get("kind") == "train"
    ]
    curves += [
        {"step": r["step"], "value": r[key], "series": series, "unit": unit}
        for key, series, unit in CURVES
        for r in records
        if r.get("kind") == "eval" and r.get(key) is not None
    ]
    return pd.DataFrame(curves, columns=["step", "value", "series", "unit"])


EVAL_COLUMNS = {
    "step": "step",
    **{m.name: measures.label(m.name, with_unit=True) for m in measures.METRICS},
    "c": "fitted c",
    "temperature": "T*",
    "items": "held-out items",
}
SETTINGS = {  # RunConfig field: the label a person reads
    "name": "name (the adapter's)",
    "model": "model",
    "template": "template",
    "dataset": "dataset",
    "split": "training split",
    "limit": "item limit",
    "controversial": "controversial items only",
    "min_margin": "min vote margin",
    "max_margin": "max vote margin",
    "order": "option orders trained on",
    "eval_split": "evaluation split",
    "eval_fraction": "evaluation fraction",
    "eval_seed": "evaluation seed",
    "loss": "loss",
    "rank": "LoRA rank",
    "alpha": "LoRA alpha",
    "dropout": "LoRA dropout",
    "target_modules": "target modules",
    "learning_rate": "learning rate",
    "schedule": "schedule",
    "warmup_steps": "warm-up steps",
    "max_grad_norm": "gradient clipping (max norm)",
    "steps": "steps",
    "epochs": "epochs",
    "batch_size": "batch size",
    "grad_accum": "gradient accumulation",
    "seed": "seed",
    "heldout_fraction": "held-out fraction",
    "eval_every": "evaluate every (steps)",
    "checkpoint_every": "checkpoint every (steps)",
    "quantize_4bit": "4-bit base model (QLoRA)",
    "processes": "data-parallel processes",
    "compile": "torch.compile",
}
RESULTS = {  # final result key: label
    "chosen_step": "chosen checkpoint (step)",
    **{m.name: "held-out " + measures.label(m.name, with_unit=True) for m in measures.METRICS},
    "c": "fitted c",
    "temperature": "T*",
    "items": "held-out items",
    "adapter_hash": "adapter content hash",
}


def shown(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def labelled(pairs: list[tuple[str, object]], header: str) -> pd.DataFrame:
    return pd.DataFrame({header: [label for label, _ in pairs], "value": [shown(v) for _, v in pairs]})


def settings_table(config: RunConfig, status: dict) -> pd.DataFrame:
    values = dict(config.__dict__)
    if values["limit"] is None:
        values["limit"] = "all items"
    if values["eval_every"] is None:  # the interval the run chose (about ten a run)
        chosen = status.get("eval_every")
        values["eval_every"] = f"{chosen} (auto)" if chosen else "auto"
    return labelled([(SETTINGS.get(key, key.replace("_", " ")), value) for key, value in values.items()], "setting")


def results_table(final: dict) -> pd.DataFrame:
    values = dict(final)
    if isinstance(values.get("accuracy"), float):
        values["accuracy"] = f"{values['accuracy']:.1%}"
    if values.get("adapter_hash"):
        values["adapter_hash"] = values["adapter_hash"][:16] + "…"
    return labelled([(label, values[key]) for key, label in RESULTS.items() if key in values], "result")
