"""The OpenAI-compatible backend: chat completions from any server that speaks the OpenAI API, a hosted
model (GPT-4o under a dated snapshot name, registered with `source = "api"`) or a registered model that
`ethdash serve`'s vLLM server serves.

Prompts go as chat messages (the server tokenizes, with its chat template); one token is generated with
its `top_logprobs`. An answer's log-probability is the log of the summed probabilities of the returned
tokens whose text is the answer's, give or take surrounding white space ("A", " A"). An answer missing from
the top-k is censored: recorded at the k-th log-probability, an upper bound on its own, and flagged; never
taken as zero.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy.special import logsumexp

from ethdash import models
from ethdash.errors import EthdashError
from ethdash.scoring.backends import Backend, BudgetSpent, Connection, Request, Result, Scorer, register
from ethdash.scoring.backends.vllm import ServerError, _message

HOSTED_TOP_K = 20  # the most that hosted APIs return
RETRIES = 5  # on 429, 5xx and connection failures, with exponential backoff (or the server's Retry-After)
MAX_BACKOFF_S = 60.0


def answer_logprobs(top: list[tuple[str, float]], answers: tuple[str, ...]) -> tuple[list[float], list[bool]]:
    """Per answer: its log-probability from the returned top-k and whether it is censored (not among them:
    its log-probability is then at most the k-th one, which is what is recorded)."""
    if not top:
        raise ValueError("the answer has no top_logprobs")
    bound = min(lp for _, lp in top)
    values, censored = [], []
    for answer in answers:
        found = [lp for token, lp in top if token.strip() == answer.strip()]
        values.append(float(logsumexp(found)) if found else bound)
        censored.append(not found)
    return values, censored


def api_base(url: str) -> str:
    """The base the API's paths hang from: the URL as given, with /v1 added where it has no path (a vLLM
    server's address)."""
    url = url.strip().rstrip("/")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ServerError(f"'{url[:100]}' is not an API address: give http://HOST:PORT/v1 (or https://)")
    return url if parts.path not in ("", "/") else f"{url}/v1"


class Budget:
    """At most `limit` requests (prompts sent; a retry of the same prompt is not counted again)."""

    def __init__(self, limit: int | None):
        self.limit, self.used = limit, 0
        self._lock = threading.Lock()

    def take(self, wanted: int) -> int:
        with self._lock:
            granted = wanted if self.limit is None else max(0, min(wanted, self.limit - self.used))
            self.used += granted
            return granted


class ApiClient:
    """POST with a timeout, retries with backoff on 429 / 5xx / no connection; errors name the URL. The key
    goes in a header and nowhere else (never in a message or a log)."""

    def __init__(self, base: str, api_key: str | None = None, timeout_s: float = 60.0, retries: int = RETRIES):
        self.base, self.api_key, self.timeout_s, self.retries = api_base(base), api_key, timeout_s, retries
        self.backoff_s = 1.0
        self.retried = 0  # how many retries the server's faults cost (for reports and tests)

    def post(self, path: str, payload: dict) -> dict:
        url = f"{self.base}{path}"
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = json.dumps(payload).encode()
        last: ServerError | None = None
        for attempt in range(self.retries + 1):
            delay = min(MAX_BACKOFF_S, self.backoff_s * 2**attempt)
            try:
                with urllib.request.urlopen(
                    urllib.request.Request(url, data=data, headers=headers), timeout=self.timeout_s
                ) as response:
                    return json.loads(response.read() or b"{}")
            except urllib.error.HTTPError as exc:
                body = exc.read().decode("utf-8", "replace")[:500]
                last = ServerError(f"{url}: HTTP {exc.code}: {_message(body)}")
                if exc.code != 429 and exc.code < 500:  # the request itself is wrong: retrying will not help
                    raise last from exc
                delay = _retry_after(exc.headers.get("Retry-After"), delay)
            except TimeoutError:
                last = ServerError(f"{url}: no answer within {self.timeout_s:.0f} s")
            except (urllib.error.URLError, ConnectionError, OSError) as exc:
                last = ServerError(f"{url}: cannot reach the server ({getattr(exc, 'reason', exc)})")
            except ValueError as exc:
                raise ServerError(f"{url}: the answer is not JSON ({exc})") from exc
            if attempt < self.retries:
                self.retried += 1
                time.sleep(delay)
        assert last is not None
        raise ServerError(f"{last} (after {self.retries} retries)")


def _retry_after(header: str | None, default: float) -> float:
    try:
        return min(MAX_BACKOFF_S, max(0.0, float(header))) if header else default
    except ValueError:
        return default


class ApiScorer:
    backend = "openai"

    def __init__(
        self, client: ApiClient, model: str, dtype: str, top_k: int, budget: Budget, concurrency: int = 4
    ) -> None:
        self.client, self.model, self.dtype, self.top_k = client, model, dtype, top_k
        self.budget, self.concurrency = budget, concurrency

    def score(self, requests: list[Request]) -> list[Result]:
        granted = self.budget.take(len(requests))
        with ThreadPoolExecutor(self.concurrency) as pool:
            results = list(pool.map(self._one, requests[:granted]))
        if granted < len(requests):
            raise BudgetSpent(
                f"the request budget (--max-requests {self.budget.limit}) is spent: the scores computed are "
                "stored, the rest were not sent; run the command again (with a budget) to go on",
                results,
            )
        return results

    def _one(self, request: Request) -> Result:
        start = time.perf_counter()
        body = self.client.post(
            "/chat/completions",
            {
                "model": self.model,
                "messages": list(request.messages),
                "max_tokens": 1,
                "temperature": 0,
                "logprobs": True,
                "top_logprobs": self.top_k,
            },
        )
        try:
            content = body["choices"][0]["logprobs"]["content"][0]
            top = [(str(t["token"]), float(t["logprob"])) for t in content["top_logprobs"]]
            values, censored = answer_logprobs(top, request.answer_texts)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise ServerError(
                f"{self.client.base}/chat/completions: no top_logprobs in the answer ({str(body)[:300]})"
            ) from exc
        return Result(np.array(values), time.perf_counter() - start, tuple(censored), body.get("system_fingerprint"))


def _connect(
    spec: models.ModelSpec, server: str | None, top_k: int | None = None, max_requests: int | None = None, **_options
) -> Connection:
    """A hosted model at its registered URL; a local one at the server given, else the one `ethdash serve`
    recorded. Nothing is contacted yet."""
    from ethdash.scoring.backends import vllm_server

    if spec.hosted:
        url, served, dtype = server or spec.location, spec.api_model, "api"
    else:
        info = vllm_server.find(spec.name)
        url = server or (info.url if info else None)
        if url is None:
            raise EthdashError(
                f"no server is known for '{spec.name}': start one with `ethdash serve --model {spec.name}` "
                "(it speaks the OpenAI API), or give --server URL"
            )
        recorded = info is not None and info.url == url
        served = info.served_model if recorded else spec.name
        dtype = info.dtype if recorded else spec.dtype
    k = top_k or HOSTED_TOP_K
    if not 1 <= k <= HOSTED_TOP_K:
        raise EthdashError(f"--top-logprobs is 1 to {HOSTED_TOP_K}, not {k}")
    base = api_base(url)
    budget = Budget(max_requests)

    def scorer() -> Scorer:
        key = None
        if spec.api_key_env:
            key = os.environ.get(spec.api_key_env)
            if not key:
                raise EthdashError(
                    f"model '{spec.name}': the environment variable {spec.api_key_env} (its API key) is not set"
                )
        return ApiScorer(ApiClient(base, key), served, dtype, k, budget)

    # The endpoint, the name it serves and k (censoring depends on it) are part of the score key.
    return Connection(dtype, scorer, identity=lambda: f"openai:{base}:{served}:top{k}", tokenizes=False)


def prompt_tokens_estimate(characters: int) -> int:
    """Prompt tokens where no tokenizer is at hand: about four characters a token (English text)."""
    return math.ceil(characters / 4)


register(
    Backend(
        "openai",
        'an OpenAI-compatible chat API: a hosted model (source = "api") or `ethdash serve`\'s server',
        _connect,
    )
)
