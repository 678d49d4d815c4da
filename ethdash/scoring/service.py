"""The one way to score a job, used by the CLI, the pages and `reproduce`: the backend comes from the
registry, the plan is made with the dtype that backend stores, and the work runs under the backend's lock
(the embedded model is loaded once per process and shared)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from ethdash import models
from ethdash.scoring import backends, jobs
from ethdash.scoring.backends import Connection
from ethdash.scoring.prompting import Prompter
from ethdash.store import Store


@dataclass(frozen=True)
class Via:
    """Which backend computes, or computed, a job's scores: its name and, for a server, its address (None:
    the one `ethdash serve` recorded for the model). Stored scores are found through it, since the score key
    holds the backend's identity."""

    backend: str = "local"
    server: str | None = None


LOCAL = Via()


@dataclass(frozen=True)
class Prepared:
    """A job's plan (what is stored, what is missing) and the backend that computes the rest."""

    plan: jobs.Plan
    connection: Connection


def prepare(store: Store, job: jobs.Job, server: str | None = None) -> Prepared:
    """Resolve the job's names and backend and find what is missing; loads no model (a server is asked
    what it serves)."""
    connection = backends.get(job.backend).connect(models.get(job.model), server)
    return Prepared(jobs.plan(store, job, connection.dtype, connection.identity()), connection)


def run(store: Store, prepared: Prepared, progress: Callable[[jobs.Progress], None] | None = None) -> int:
    """Compute and store what the plan is missing; returns how many scores were computed."""
    if not prepared.plan.todo:
        return 0
    with prepared.connection.lock:
        scorer = prepared.connection.scorer()
        return jobs.run(store, prepared.plan, scorer, _prompter(prepared.plan.spec), progress)


def scores(store: Store, prepared: Prepared) -> pd.DataFrame:
    """The job's stored scores, one row per (item, order)."""
    return jobs.scores_frame(store, prepared.plan)


@functools.cache
def _prompter(spec: models.ModelSpec) -> Prompter:
    return Prompter(spec)
