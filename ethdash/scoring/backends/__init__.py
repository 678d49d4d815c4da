"""Scoring backends: "probabilities of these answer tokens after this prompt, with this adapter".

Every backend takes the same `Request`s (prompts already tokenized, so that both backends see
identical token ids) and returns the raw log-probabilities of the answer tokens under the full
vocabulary. Renormalising over the answer set, and mapping onto the votes, happens elsewhere.
A backend whose server tokenizes (an OpenAI-compatible API: `Connection.tokenizes` false) gets the chat
messages and the answers' texts instead, and may return an answer as censored: outside the API's top-k,
its log-probability then an upper bound (the k-th one), never a zero.

A backend registers itself in its own module (`register(Backend(...))`), and every module of this package
is imported with it: the CLI's `--backend` choices, the pages and `reproduce` read the registry, so a new
backend is one new file here.
"""

from __future__ import annotations

import contextlib
import importlib
import pkgutil
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ethdash.adapters import Adapter
from ethdash.errors import EthdashError
from ethdash.models import ModelSpec


@dataclass(frozen=True)
class Request:
    prompt_ids: tuple[int, ...]
    answer_ids: tuple[int, ...]
    adapter: Adapter | None = None
    # For a server that tokenizes: the chat messages and the answers' texts (template order).
    messages: tuple[dict[str, str], ...] = ()
    answer_texts: tuple[str, ...] = ()


@dataclass(frozen=True)
class Result:
    answer_logprobs: np.ndarray  # log p(answer token | prompt) under the full vocabulary
    seconds: float  # compute time attributed to this request
    censored: tuple[bool, ...] = ()  # per answer: outside the returned top-k, its log-probability a bound
    fingerprint: str | None = None  # the API's system_fingerprint, where it gives one


class Scorer(Protocol):
    backend: str
    dtype: str

    def score(self, requests: list[Request]) -> list[Result]: ...


@dataclass(frozen=True)
class Connection:
    """A backend ready for one model: the dtype its scores are stored under, and the scorer, built only
    when there is work. `lock` is held while it scores (the embedded model switches adapters in place).
    `identity()` says what computes the scores beyond the weights id (which server, serving what): it is
    part of the score key, so that scores from one server are never taken as another's."""

    dtype: str
    scorer: Callable[[], Scorer]
    lock: AbstractContextManager = field(default_factory=contextlib.nullcontext)
    identity: Callable[[], str] = lambda: "local"
    tokenizes: bool = True  # false: the server tokenizes (requests carry messages and answer texts)


class BudgetSpent(EthdashError):
    """A backend's request budget ran out in the middle of a batch: `results` are those of its first
    requests, computed (and paid for) before it did, for the caller to store."""

    def __init__(self, message: str, results: list[Result]):
        super().__init__(message)
        self.results = results


@dataclass(frozen=True)
class Backend:
    """A scoring backend, as `--backend` names it. `connect(spec, server, **options)` reads no weights:
    loading waits for `Connection.scorer`. Options a backend does not take are ignored (`top_k`,
    `max_requests`: the openai backend's)."""

    name: str
    description: str
    connect: Callable[[ModelSpec, str | None], Connection]


BACKENDS: dict[str, Backend] = {}


def register(backend: Backend) -> Backend:
    """Called by each backend's own module (see `local.py`, `vllm.py`)."""
    BACKENDS[backend.name] = backend
    return backend


def get(name: str) -> Backend:
    if name not in BACKENDS:
        raise EthdashError(f"unknown backend '{name}': {', '.join(names())}")
    return BACKENDS[name]


def names() -> list[str]:
    return list(BACKENDS)


def _import_backends() -> None:
    """Import every module of this package: each backend registers itself (after the names above exist,
    which they use), so a new backend is one new file here."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")


_import_backends()
