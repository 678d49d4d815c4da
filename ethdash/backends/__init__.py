"""Scoring backends: "probabilities of these answer tokens after this prompt, with this adapter".

Every backend takes the same `Request`s (prompts already tokenized, so that both backends see
identical token ids) and returns the raw log-probabilities of the answer tokens under the full
vocabulary. Renormalising over the answer set, and mapping onto the votes, happens elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ethdash.adapters import Adapter


@dataclass(frozen=True)
class Request:
    prompt_ids: tuple[int, ...]
    answer_ids: tuple[int, ...]
    adapter: Adapter | None = None


@dataclass(frozen=True)
class Result:
    answer_logprobs: np.ndarray  # log p(answer token | prompt) under the full vocabulary
    seconds: float  # compute time attributed to this request


class Scorer(Protocol):
    backend: str
    dtype: str

    def score(self, requests: list[Request]) -> list[Result]: ...
