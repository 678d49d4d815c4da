"""A run's configuration, validated before any process starts."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from ethdash import models, names, templates
from ethdash.datasets import catalog
from ethdash.errors import EthdashError
from ethdash.losses import LOSSES
from ethdash.store import Store

SCHEDULES = ("constant", "linear", "cosine")
MAX_RANK = 256
EVALUATIONS_PER_RUN = 10  # the default: enough points for a curve, even in a short first run


class ConfigError(EthdashError):
    pass


@dataclass(frozen=True)
class RunConfig:
    name: str  # the run and its adapter
    model: str = models.DEFAULT_MODEL
    template: str = "dilemmas-worse"
    dataset: str = "dilemmas"
    split: str | None = "dev"  # the training data
    limit: int | None = None
    controversial: bool | None = None  # item filter: only (not) controversial items
    min_margin: float = 0.0  # item filter: vote margin range
    max_margin: float = 1.0
    order: str = "both"  # option orders of dilemmas used as training examples
    eval_split: str | None = None  # evaluation split: never used for training or selection
    # Datasets without an evaluation split: a seeded fraction of the selected items is set aside for
    # evaluation (never trained on or used for selection); the rest is the training data.
    eval_fraction: float = 0.0
    eval_seed: int = 0
    loss: str = "soft-xent"
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: str = "all-linear"  # or a comma-separated list of module names
    learning_rate: float = 5e-4
    schedule: str = "cosine"
    warmup_steps: int = 0
    max_grad_norm: float | None = 1.0  # gradient clipping (None: off)
    steps: int | None = 100
    epochs: float | None = None  # instead of steps
    batch_size: int = 8
    grad_accum: int = 1
    seed: int = 0
    heldout_fraction: float = 0.2
    eval_every: int | None = None  # None: about EVALUATIONS_PER_RUN evaluations (see eval_interval)
    checkpoint_every: int = 20
    quantize_4bit: bool = False  # QLoRA, CUDA only
    processes: int = 1  # data-parallel processes (one per GPU), launched through torchrun
    compile: bool = False  # torch.compile the model: ~10% faster steps after a compile of minutes on a CPU

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ConfigError(f"unknown settings {sorted(unknown)}")
        return cls(**raw)


def eval_interval(eval_every: int | None, total_steps: int) -> int:
    """Steps between held-out evaluations: the configured interval, or one giving about ten evaluations a
    run (every step of a run under ten steps, so that even a first try of a few steps draws curves)."""
    return eval_every or max(1, math.ceil(total_steps / EVALUATIONS_PER_RUN))


def validate(config: RunConfig, store: Store) -> int:
    """Raise ConfigError for anything wrong; return the number of training items."""
    if not names.valid(config.name):
        raise ConfigError(names.refusal("run name", config.name))
    try:
        spec = models.get(config.model)
        template = templates.get(config.template)
    except EthdashError as exc:
        raise ConfigError(str(exc)) from None
    if config.loss not in LOSSES:
        raise ConfigError(f"unknown loss '{config.loss}': choose from {', '.join(LOSSES)}")
    if not (isinstance(config.rank, int) and 1 <= config.rank <= MAX_RANK):
        raise ConfigError(f"LoRA rank {config.rank} is not allowed: an integer from 1 to {MAX_RANK}")
    checks = [
        (config.schedule in SCHEDULES, f"schedule is one of {', '.join(SCHEDULES)}"),
        (config.learning_rate > 0, "learning_rate must be positive"),
        (config.batch_size >= 1 and config.grad_accum >= 1, "batch_size and grad_accum must be at least 1"),
        ((config.steps is None) != (config.epochs is None), "give steps or epochs, not both"),
        (config.steps is None or config.steps >= 1, "steps must be at least 1"),
        (config.epochs is None or config.epochs > 0, "epochs must be positive"),
        (0.0 <= config.heldout_fraction < 1.0, "heldout_fraction is in [0, 1)"),
        (0.0 <= config.eval_fraction < 1.0, "eval_fraction is in [0, 1)"),
        (0.0 <= config.dropout < 1.0, "dropout is in [0, 1)"),
        (config.order in ("both", *templates.ORDERS), "order is ab, ba or both"),
        (
            (config.eval_every is None or config.eval_every >= 1) and config.checkpoint_every >= 1,
            "eval_every and checkpoint_every are >= 1",
        ),
        (isinstance(config.processes, int) and 1 <= config.processes <= 64, "processes is from 1 to 64"),
        (
            config.eval_split is None or config.eval_split != config.split,
            "the evaluation split must not be the training split",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    if config.quantize_4bit:
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("quantize_4bit (QLoRA) needs a CUDA GPU")
    known = {d.name: d for d in catalog.datasets(store)}
    if config.dataset not in known:
        raise ConfigError(f"unknown dataset '{config.dataset}': the store has {', '.join(known) or 'none'}")
    try:
        templates.check_dataset(template, known[config.dataset])
    except EthdashError as exc:
        raise ConfigError(str(exc)) from None
    if config.loss == "dirichlet" and not known[config.dataset].view(template.view).has_counts:
        raise ConfigError(
            f"the Dirichlet loss needs vote counts, and {config.dataset} gives shares with no number of "
            "respondents: use the soft-xent loss, or import the data again with respondents in its mapping"
        )
    from ethdash.finetune.data import select_items

    items = select_items(store, config, template)
    if len(items) == 0:
        raise ConfigError(f"no training items: {config.dataset}/{config.split} with these filters is empty")
    if config.heldout_fraction > 0 and len(items) < 2:
        raise ConfigError("at least two items are needed to hold some out (or set heldout_fraction = 0)")
    assert spec is not None
    return len(items)
