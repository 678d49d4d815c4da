"""Pick and build a backend for a scoring job (lazily: nothing loads until there is work)."""

from __future__ import annotations

from collections.abc import Callable

from ethdash import models, serve
from ethdash.backends import Scorer
from ethdash.backends.vllm import VllmClient, VllmScorer
from ethdash.errors import EthdashError
from ethdash.prompting import Prompter
from ethdash.store import Store


def make_scorer(
    store: Store, job, server: str | None = None
) -> tuple[Callable[[], Scorer], Callable[[], Prompter], str]:
    """(scorer factory, prompter factory, dtype of the scores)."""
    spec = models.get(job.model)
    if job.backend == "local":
        from ethdash.backends.local import LocalScorer

        return (lambda: LocalScorer(spec)), (lambda: Prompter(spec)), spec.dtype
    if job.backend != "vllm":
        raise EthdashError(f"unknown backend '{job.backend}': local or vllm")
    info = serve.find(spec.name)
    url = server or (info.url if info else None)
    if url is None:
        raise EthdashError(
            f"no vLLM server is known for '{spec.name}': start one with `ethdash serve --model "
            f"{spec.name}`, or give --server URL"
        )
    dtype = info.dtype if info and info.url == url else spec.dtype
    client = VllmClient(url)
    served = info.served_model if info and info.url == url else spec.name

    def scorer() -> Scorer:
        available = client.served_models()
        if served not in available:
            raise EthdashError(f"the vLLM server at {url} does not serve '{served}' (it serves {', '.join(available)})")
        return VllmScorer(client, served, dtype)

    return scorer, (lambda: Prompter(spec)), dtype
