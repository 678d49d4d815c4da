"""The embedded backend: transformers (+ peft) in this process, on the CPU in float32 by default.

Requests are grouped by adapter (several adapters stay loaded on one base model). Within a group,
the token prefix that every prompt shares (chat header, system prompt, instructions) is computed
once and its key/value cache reused; the rest of each prompt is sorted by length and batched under a
token budget, left-padded with position ids that skip the padding. Only the last position goes
through the output projection.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import os
import threading
import time
from collections import defaultdict
from collections.abc import Iterator

import numpy as np

from ethdash.adapters import Adapter
from ethdash.errors import EthdashError
from ethdash.models import ModelSpec, weights_location
from ethdash.scoring.backends import Backend, Connection, Request, Result, register
from ethdash.scoring.batching import last_column, left_pad, length_batches

# Padded tokens per forward pass. Smaller than the cores need to be busy: the fewer prompts a batch holds, the
# closer its lengths (sorted) and the less it pads. 200 real dilemma prompts: 4096 padded 34% more tokens than
# they have and took 6.1-6.3 s, 1024 padded 8.5% and took 5.1-5.2 s; 48 anecdotes: 23.3 s against 21.7 s
# (bench/profile_backend.py).
TOKENS_PER_BATCH = 1024
MIN_SHARED_PREFIX = 8  # shorter shared prefixes are not worth a separate pass


class LocalScorer:
    backend = "local"

    def __init__(self, spec: ModelSpec, tokens_per_batch: int = TOKENS_PER_BATCH):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from transformers import AutoModelForCausalLM

        self.spec = spec
        self.dtype = spec.dtype
        self.tokens_per_batch = tokens_per_batch
        self.torch = torch
        location = weights_location(spec)
        self.base = AutoModelForCausalLM.from_pretrained(location, dtype=getattr(torch, spec.dtype))
        self.base.eval()
        self.peft = None  # a PeftModel around self.base once an adapter is loaded
        self.adapters: dict[str, Adapter] = {}
        self.pad_id = 0

    def _use(self, adapter: Adapter | None):
        """The model to call and a context in which it computes with `adapter` (None: the base)."""
        if adapter is None:
            if self.peft is None:
                return self.base, contextlib.nullcontext()
            return self.peft, self.peft.disable_adapter()
        name = adapter.served_name()
        if name not in self.adapters:
            from peft import PeftModel

            try:
                if self.peft is None:
                    self.peft = PeftModel.from_pretrained(self.base, str(adapter.path), adapter_name=name)
                    self.peft.eval()
                else:
                    self.peft.load_adapter(str(adapter.path), adapter_name=name)
            except (OSError, ValueError, RuntimeError, KeyError) as exc:
                raise EthdashError(
                    f"adapter '{adapter.name}' ({adapter.path}) does not load on model '{self.spec.name}': {exc}"
                ) from exc
            self.adapters[name] = adapter
        self.peft.set_adapter(name)
        return self.peft, contextlib.nullcontext()

    def score(self, requests: list[Request]) -> list[Result]:
        results: list[Result | None] = [None] * len(requests)
        for indices, batch_results in self.score_stream(requests):
            for i, result in zip(indices, batch_results):
                results[i] = result
        return results  # type: ignore[return-value]

    def score_stream(self, requests: list[Request]) -> Iterator[tuple[list[int], list[Result]]]:
        """The requests' results batch by batch, as (their indices in `requests`, results): a caller gives a
        whole job at once (the shared prefix computed once per adapter, batches as full as the token budget
        allows, by length across the job) and still stores and reports as batches finish."""
        groups: dict[str | None, list[int]] = defaultdict(list)
        for i, r in enumerate(requests):
            groups[r.adapter.served_name() if r.adapter else None].append(i)
        for indices in groups.values():
            adapter = requests[indices[0]].adapter
            start = time.perf_counter()
            prefix = shared_prefix([requests[i].prompt_ids for i in indices])
            cache = self._prefix_cache(prefix, adapter) if len(prefix) >= MIN_SHARED_PREFIX else None
            if cache is None:
                prefix = ()
            prefix_share = (time.perf_counter() - start) / len(indices)
            lengths = [len(requests[i].prompt_ids) - len(prefix) for i in indices]
            for positions in length_batches(lengths, self.tokens_per_batch):
                batch = [indices[p] for p in positions]
                start = time.perf_counter()
                logprobs = self._forward([requests[i] for i in batch], adapter, len(prefix), cache)
                share = (time.perf_counter() - start) / len(batch) + prefix_share
                yield batch, [Result(lp, share) for lp in logprobs]

    def generate(self, requests: list[Request], max_new_tokens: int) -> list[str]:
        """Greedy answers to the prompts (for templates that ask for a distribution in words), decoded."""
        torch = self.torch
        tokenizer = self._tokenizer()
        stop = tokenizer.eos_token_id
        texts: list[str] = [""] * len(requests)
        groups: dict[str | None, list[int]] = defaultdict(list)
        for i, r in enumerate(requests):
            groups[r.adapter.served_name() if r.adapter else None].append(i)
        for indices in groups.values():
            adapter = requests[indices[0]].adapter
            lengths = [len(requests[i].prompt_ids) for i in indices]
            for positions in length_batches(lengths, self.tokens_per_batch):
                batch = [indices[p] for p in positions]
                ids, mask, _ = left_pad([requests[i].prompt_ids for i in batch], 0, self.pad_id)
                model, context = self._use(adapter)
                with torch.inference_mode(), context:
                    out = model.generate(
                        input_ids=ids,
                        attention_mask=mask,
                        max_new_tokens=max_new_tokens,
                        do_sample=False,
                        temperature=None,
                        top_p=None,
                        top_k=None,
                        pad_token_id=stop,
                    )
                for i, row in zip(batch, out[:, ids.shape[1] :].tolist()):
                    answer = row[: row.index(stop)] if stop in row else row  # after the answer: padding
                    texts[i] = tokenizer.decode(answer, skip_special_tokens=True)
        return texts

    @functools.cache  # noqa: B019 (one scorer per model and process: it lives as long as the process)
    def _tokenizer(self):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(weights_location(self.spec))

    def _prefix_cache(self, prefix: tuple[int, ...], adapter: Adapter | None):
        model, context = self._use(adapter)
        with self.torch.inference_mode(), context:
            out = model(input_ids=self.torch.tensor([prefix]), use_cache=True, logits_to_keep=1)
        return out.past_key_values

    def _forward(
        self, batch: list[Request], adapter: Adapter | None, skip: int = 0, prefix_cache=None
    ) -> list[np.ndarray]:
        """One padded forward pass over the prompts after their first `skip` (shared, cached) tokens."""
        torch = self.torch
        ids, mask, positions = left_pad([r.prompt_ids[skip:] for r in batch], skip, self.pad_id)
        kwargs = {}
        if prefix_cache is not None:
            cache = copy.deepcopy(prefix_cache)  # the forward pass appends to it
            cache.batch_repeat_interleave(len(batch))
            kwargs["past_key_values"] = cache
        model, context = self._use(adapter)
        with torch.inference_mode(), context:
            out = model(
                input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=last_column(ids), **kwargs
            )
        logprobs = torch.log_softmax(out.logits[:, -1, :].double(), dim=-1)
        return [logprobs[row, list(r.answer_ids)].numpy() for row, r in enumerate(batch)]


def shared_prefix(prompts: list[tuple[int, ...]]) -> tuple[int, ...]:
    """The longest token prefix of all prompts, leaving at least one token of each to compute."""
    shortest = min(len(p) for p in prompts)
    first = prompts[0]
    n = 0
    while n < shortest - 1 and all(p[n] == first[n] for p in prompts):
        n += 1
    return first[:n]


# One loaded model per process and model spec, shared by every job (the dashboard's sessions, a reproduce
# run's stages); its lock serialises jobs because adapters are switched in place.
_LOCKS: dict[ModelSpec, threading.Lock] = defaultdict(threading.Lock)


@functools.cache
def _loaded(spec: ModelSpec) -> LocalScorer:
    return LocalScorer(spec)


def _connect(spec: ModelSpec, server: str | None, **_options) -> Connection:
    if server:
        raise EthdashError("the local backend takes no server URL: use --backend vllm with --server")
    return Connection(spec.dtype, lambda: _loaded(spec), _LOCKS[spec])


register(Backend("local", "the embedded transformers model, in this process", _connect))
