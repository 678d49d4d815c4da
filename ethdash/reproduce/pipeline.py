"""`ethdash reproduce`: references, base model, fine-tuned adapters, scores, tables, figures, report.

Every stage goes through the caches (scores in the store, fine-tune runs in their folders), so an
interrupted reproduction resumes where it stopped and a finished one recomputes nothing. Tables and
figures are recomputed from the stored scores each time (seconds).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ethdash import models, scoring, templates
from ethdash.datasets import catalog
from ethdash.errors import EthdashError
from ethdash.evaluation import Evaluation, evaluate, fit_on
from ethdash.finetune import runs
from ethdash.finetune.config import RunConfig
from ethdash.finetune.data import evaluation_part, heldout_split, select_items
from ethdash.reproduce.profiles import HELDOUT_FRACTION, SPLIT_SEED, Experiment, Profile, experiments
from ethdash.scoring import System, service
from ethdash.store import Store

Say = Callable[[str], None]
Keys = set[tuple[str, str]]


@dataclass
class Options:
    model: str
    profile: Profile
    backend: str = "local"
    server: str | None = None
    seeds: tuple[int, ...] = (0,)
    qlora: bool = False
    n_resamples: int = 1000

    @property
    def via(self) -> service.Via:
        return service.Via(self.backend, self.server)


@dataclass
class ExperimentResult:
    experiment: Experiment
    evaluation: Evaluation
    table: pd.DataFrame
    references: pd.DataFrame
    paired: dict[str, pd.DataFrame]  # adapter label → its difference from the base model
    eval_items: int
    heldout_items: dict[str, int]  # system label → held-out items its c and T* were fitted on
    runs: dict[str, RunConfig] = field(default_factory=dict)  # adapter label → its run's config
    figures: list[str] = field(default_factory=list)
    figure_error: str | None = None


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-")


SHORT = {"soft-xent": "xent", "dirichlet": "dir", "dilemmas": "dil", "anecdotes-binarized": "aneb"}


def run_name(opts: Options, exp: Experiment, loss: str, seed: int) -> str:
    """Within the 64 characters a name may have: model, profile, experiment, loss, seed."""
    tail = f"-{opts.profile.name}-{SHORT.get(exp.key, exp.key)}-{SHORT.get(loss, loss)}-s{seed}"
    return f"r-{slug(opts.model)[: 62 - len(tail)]}{tail}"


def run_config(opts: Options, exp: Experiment, loss: str, seed: int) -> RunConfig:
    p = opts.profile
    return RunConfig(
        name=run_name(opts, exp, loss, seed),
        model=opts.model,
        template=exp.template,
        dataset=exp.dataset,
        split=exp.train_split,
        limit=exp.train_limit,
        eval_split=None if exp.eval_fraction else exp.eval_split,
        eval_fraction=exp.eval_fraction,
        eval_seed=SPLIT_SEED,
        loss=loss,
        rank=p.rank,
        alpha=p.alpha,
        learning_rate=p.learning_rate,
        steps=exp.steps,
        batch_size=p.batch_size,
        seed=seed,
        heldout_fraction=HELDOUT_FRACTION,
        eval_every=min(p.eval_every, exp.steps),
        checkpoint_every=min(p.eval_every, exp.steps),
        quantize_4bit=opts.qlora,
    )


def keys(frame: pd.DataFrame) -> Keys:
    return set(zip(frame["split"], frame["item_id"]))


def eval_keys(store: Store, exp: Experiment) -> Keys:
    frame = catalog.items_frame(store, exp.dataset, exp.eval_split, exp.view)
    if exp.eval_fraction:
        _, frame = evaluation_part(frame, exp.eval_fraction, SPLIT_SEED)
    return keys(frame.head(exp.eval_limit) if exp.eval_limit is not None else frame)


def heldout_keys(store: Store, config: RunConfig) -> Keys:
    """The run's held-out part of its training items (exactly as the trainer draws it)."""
    items = select_items(store, config, templates.get(config.template))
    _, held = heldout_split(len(items), config.heldout_fraction, config.seed)
    return keys(items.iloc[held])


def estimate(store: Store, opts: Options) -> tuple[int, int, float]:
    """(prompts to score, training steps, expected seconds) for what is not done yet (roughly)."""
    prompts, steps, step_s = 0, 0, 0.0
    for exp in experiments(opts.profile, _splits(store)):
        orders = 2 if templates.get(exp.template).is_dilemma else 1
        n_eval = len(eval_keys(store, exp))
        systems = 1 + len(exp.losses) * len(opts.seeds)
        n_held = 0
        if exp.losses:
            config = run_config(opts, exp, exp.losses[0], opts.seeds[0])
            n_held = len(heldout_keys(store, config))
            for loss in exp.losses:
                for seed in opts.seeds:
                    if runs_state(run_name(opts, exp, loss, seed)) != "succeeded":
                        steps += exp.steps
                        factor = 1.0 if orders == 2 else opts.profile.anecdote_step_factor
                        step_s += exp.steps * opts.profile.seconds_per_step * factor
        prompts += orders * (n_eval + n_held) * systems
    return prompts, steps, prompts * opts.profile.seconds_per_prompt + step_s


def runs_state(name: str) -> str | None:
    try:
        return runs.get(name).status().get("state")
    except EthdashError:
        return None


def _splits(store: Store) -> dict[str, list[str]]:
    return {d.name: catalog.splits(store, d.name) for d in catalog.datasets(store)}


class Scorers:
    """Scoring for the whole reproduction (the embedded model loads once per process; adapters switch on it)."""

    def __init__(self, store: Store, opts: Options):
        self.store, self.opts = store, opts

    def score(self, system: System, dataset: str, split: str, wanted: Keys, say: Say) -> None:
        ids = tuple(sorted(i for s, i in wanted if s == split))
        job = system.job(dataset, split, self.opts.backend, ids)
        prepared = service.prepare(self.store, job, self.opts.server)
        if not prepared.plan.todo:
            return
        say(f"  scoring {system.label} on {len(ids)} {dataset}/{split} items: {len(prepared.plan.todo)} prompts")

        shown = [0]

        def progress(p: scoring.Progress) -> None:  # a line every 320 prompts or so, and the last
            if p.done == p.total or p.done >= shown[0] + scoring.CHUNK * 10:
                shown[0] = p.done
                say(f"    {p.done}/{p.total} ({p.done / max(p.elapsed_s, 1e-9):.1f}/s)")

        service.run(self.store, prepared, progress)


def train(store: Store, config: RunConfig, say: Say, poll_s: float = 5.0) -> None:
    """Start, resume or wait for the run; return once it has succeeded (raise if it failed)."""
    state = runs_state(config.name)
    if state == "succeeded":
        return
    if state is None:
        say(f"  fine-tuning {config.name} ({config.loss}, {config.steps} steps) in its own process")
        run = runs.start(config, store)
    else:
        run = runs.get(config.name)
        if run.config() != config:
            raise EthdashError(
                f"run '{config.name}' exists with other settings ({run.folder}); remove it or use another profile"
            )
        if state in ("failed", "cancelled"):
            say(f"  resuming {config.name} from its last checkpoint")
            runs.resume(run)
        else:
            say(f"  waiting for {config.name} ({state})")
    last = -1
    while True:
        status = run.status()
        if status.get("state") == "succeeded":
            say(f"  {config.name}: done")
            return
        if status.get("state") in ("failed", "cancelled"):
            raise EthdashError(f"run '{config.name}' {status['state']}: {status.get('message', '')}\n{run.log_tail()}")
        step = int(status.get("step") or 0)
        if step != last and (step % 10 == 0 or step == config.steps):
            say(f"    {config.name}: step {step}/{config.steps}")
            last = step
        time.sleep(poll_s)


def run_experiment(store: Store, opts: Options, exp: Experiment, scorers: Scorers, say: Say) -> ExperimentResult:
    say(f"{exp.title}")
    wanted = eval_keys(store, exp)
    base = System(opts.model, None, exp.template)
    configs = {
        run_name(opts, exp, loss, seed): run_config(opts, exp, loss, seed) for loss in exp.losses for seed in opts.seeds
    }
    # c and T* of the base model: on the first run's held-out part (of the training data, never evaluated).
    base_held = heldout_keys(store, next(iter(configs.values()))) if configs else set()
    scorers.score(base, exp.dataset, exp.eval_split, wanted, say)
    if base_held:
        scorers.score(base, exp.dataset, exp.train_split, base_held, say)
    systems, held = [base], {base.label: (exp.train_split, base_held)}
    for name, config in configs.items():
        train(store, config, say)
        adapter = System(opts.model, name, exp.template)
        adapter_held = heldout_keys(store, config)
        scorers.score(adapter, exp.dataset, exp.eval_split, wanted, say)
        scorers.score(adapter, exp.dataset, exp.train_split, adapter_held, say)
        systems.append(adapter)
        held[adapter.label] = (exp.train_split, adapter_held)
    options = _options(store, exp)
    fits = {}
    for system in systems:
        split, part = held[system.label]
        if part:
            fit = fit_on(store, system, exp.dataset, split, exp.view, options, opts.via, part)
            if fit is not None:
                fits[system.label] = fit
    ev = evaluate(
        store,
        systems,
        exp.dataset,
        exp.eval_split,
        exp.view,
        options,
        via=opts.via,
        fits=fits,
        keep=wanted,
        fits_source="held-out part of the training data",
    )
    if len(ev.aligned.items) < 2:
        raise EthdashError(f"{exp.key}: fewer than two evaluation items are scored by every system")
    table = ev.table(opts.n_resamples)
    paired = {s.label: ev.paired(s.label, base.label, opts.n_resamples) for s in systems[1:]}
    return ExperimentResult(
        exp,
        ev,
        table,
        ev.references(),
        paired,
        len(ev.aligned.items),
        {label: len(part) for label, (_, part) in held.items()},
        {name: configs[name] for name in configs},
    )


def _options(store: Store, exp: Experiment) -> tuple[str, ...]:
    dataset = next(d for d in catalog.datasets(store) if d.name == exp.dataset)
    return dataset.view(exp.view).options


def write_figures(result: ExperimentResult, out: Path, options: tuple[str, ...]) -> None:
    """The reliability diagram and the scatter, as PDF, SVG and PNG at both column widths."""
    from ethdash.evaluation import export, paper
    from ethdash.evaluation.figures import COLUMN_WIDTHS

    figures = paper.figures(result.evaluation, options)
    folder = out / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    try:
        for name, fig in figures.items():
            for width in COLUMN_WIDTHS:
                for fmt in export.FIGURE_FORMATS:
                    path = folder / f"{result.experiment.key}-{name}-{width}.{fmt}"
                    path.write_bytes(export.figure_bytes(fig, fmt, width))
            result.figures.append(f"figures/{result.experiment.key}-{name}-single.png")
    except EthdashError as exc:
        result.figure_error = str(exc)


def reproduce(store: Store, opts: Options, out: Path, say: Say = print) -> list[ExperimentResult]:
    models.get(opts.model)  # a clear error for an unknown model before anything runs
    splits = _splits(store)
    planned = experiments(opts.profile, splits)
    if not planned:
        raise EthdashError(
            "the store has neither the dilemmas (dev and test) nor the anecdotes: import them first "
            "(ethdash data import PATH, or ethdash data fetch)"
        )
    out.mkdir(parents=True, exist_ok=True)
    scorers = Scorers(store, opts)
    results = []
    for exp in planned:
        result = run_experiment(store, opts, exp, scorers, say)
        write_figures(result, out, _options(store, exp))
        results.append(result)
    (out / "results.json").write_text(json.dumps(results_json(results), indent=2))
    return results


def results_json(results: list[ExperimentResult]) -> dict:
    def clean(value):
        return None if isinstance(value, float) and np.isnan(value) else value

    return {
        r.experiment.key: {
            "items": r.eval_items,
            "metrics": [{k: clean(v) for k, v in row.items()} for row in r.table.to_dict("records")],
            "references": r.references.to_dict("records"),
            "paired": {
                label: [{k: clean(v) for k, v in row.items()} for row in frame.to_dict("records")]
                for label, frame in r.paired.items()
            },
            "heldout_items": r.heldout_items,
        }
        for r in results
    }
