"""The one way to score a job, used by the CLI, the pages and `reproduce`: the backend comes from the
registry, the plan is made with the dtype that backend stores, and the work runs under the backend's lock
(the embedded model is loaded once per process and shared)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ethdash import models
from ethdash.scoring import backends, jobs
from ethdash.scoring.backends import Connection
from ethdash.scoring.backends.openai import prompt_tokens_estimate
from ethdash.scoring.prompting import Prompter
from ethdash.store import Store


@dataclass(frozen=True)
class Via:
    """Which backend computes, or computed, a job's scores: its name and, for a server, its address (None:
    the one `ethdash serve` recorded for the model). Stored scores are found through it, since the score key
    holds the backend's identity."""

    backend: str = "local"
    server: str | None = None
    top_k: int | None = None  # the openai backend's k of top_logprobs (None: its default)


LOCAL = Via()


@dataclass(frozen=True)
class Prepared:
    """A job's plan (what is stored, what is missing) and the backend that computes the rest."""

    plan: jobs.Plan
    connection: Connection


def prepare(store: Store, job: jobs.Job, server: str | None = None, table: str = "scores", **options) -> Prepared:
    """Resolve the job's names and backend and find what is missing; loads no model (a server is asked
    what it serves). `options` go to the backend (see `backends.Backend`); `table` as in `jobs.plan`."""
    connection = connect(job, server, **options)
    return Prepared(jobs.plan(store, job, connection.dtype, connection.identity(), table), connection)


def connect(job: jobs.Job, server: str | None = None, **options) -> Connection:
    """The backend that computes (or computed) the job's scores; loads no model (a server is asked what it
    serves)."""
    return backends.get(job.backend).connect(models.get(job.model), server, **options)


def run(store: Store, prepared: Prepared, progress: Callable[[jobs.Progress], None] | None = None) -> int:
    """Compute and store what the plan is missing; returns how many scores were computed."""
    if not prepared.plan.todo:
        return 0
    with prepared.connection.lock:
        scorer = prepared.connection.scorer()
        prompter = _prompter(prepared.plan.spec) if prepared.connection.tokenizes else None
        return jobs.run(store, prepared.plan, scorer, prompter, progress)


def dry_run(prepared: Prepared, price_per_million: float | None = None) -> str:
    """What the job would send: requests and prompt tokens (counted with the model's tokenizer where this
    machine has it, else estimated), and their cost at a price per million prompt tokens."""
    plan = prepared.plan
    rows = jobs.item_rows(plan)
    if plan.spec.hosted:
        chars = sum(
            len(m["content"]) for k in plan.todo for m in plan.template.messages(rows[k["item_id"]], k["item_order"])
        )
        tokens, how = prompt_tokens_estimate(chars), "estimated at 4 characters a token, chat markup not counted"
    else:
        _, requests = jobs.requests_for(plan, plan.todo, _prompter(plan.spec), rows)  # too long: left out, noted
        tokens = sum(len(r.prompt_ids) for r in requests)
        how = f"counted with {plan.spec.name}'s tokenizer and chat template"
    sent = len(plan.todo) - len(plan.too_long)
    line = f"dry run: {sent} requests, {tokens:,} prompt tokens ({how})"
    if price_per_million is not None:
        line += f", about {tokens * price_per_million / 1e6:.2f} USD at {price_per_million:g} per million"
    return line + "; nothing sent"


def repeat_spread(prepared: Prepared, times: int) -> pd.DataFrame:
    """Each of the job's prompts asked `times` times: per prompt, how far apart the answers' log-probabilities
    and their renormalised probabilities came out between calls (max − min, largest over the answers), and
    how many distinct system fingerprints answered. Nothing is stored."""
    plan = prepared.plan
    with prepared.connection.lock:
        scorer = prepared.connection.scorer()
        prompter = _prompter(plan.spec) if prepared.connection.tokenizes else None
        keys, requests = jobs.requests_for(plan, plan.keys, prompter)
        calls = [scorer.score(requests) for _ in range(times)]
    rows = []
    for i, key in enumerate(keys):
        lp = np.stack([call[i].answer_logprobs for call in calls])
        p = np.stack([jobs.distribution(x)[0] for x in lp])
        rows.append(
            {
                "item_id": key["item_id"],
                "item_order": key["item_order"],
                "logprob_range": float((lp.max(axis=0) - lp.min(axis=0)).max()),
                "probability_range": float((p.max(axis=0) - p.min(axis=0)).max()),
                "fingerprints": len({call[i].fingerprint for call in calls}),
            }
        )
    return pd.DataFrame(rows)


def scores(store: Store, prepared: Prepared, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The job's stored scores, one row per (item, order): `columns` of them (default: all)."""
    return jobs.scores_frame(store, prepared.plan, columns)


def prompter(spec: models.ModelSpec) -> Prompter:
    """The model's tokenizer and chat template, loaded once per process."""
    return _prompter(spec)


@functools.cache
def _prompter(spec: models.ModelSpec) -> Prompter:
    return Prompter(spec)
