"""The openai backend's own logic: answers read from top_logprobs (variants, censoring), and retries.

Against a real server (`ethdash serve`'s vLLM): tests/test_vllm.py. Here, a small stub server on 127.0.0.1
stands in only for what a real server cannot be made to do on demand: answer 429 and 503 (rate limits and
an overloaded upstream), and then answer."""

from __future__ import annotations

import json
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from ethdash.errors import EthdashError
from ethdash.scoring.backends import BudgetSpent, Request
from ethdash.scoring.backends.openai import ApiClient, ApiScorer, Budget, answer_logprobs, api_base
from ethdash.scoring.backends.vllm import ServerError


def test_variants_of_an_answer_are_summed_and_a_missing_answer_is_censored_at_the_kth():
    top = [("A", math.log(0.5)), (" A", math.log(0.1)), ("The", math.log(0.2)), ("C", math.log(0.05))]
    values, censored = answer_logprobs(top, ("A", "B"))
    assert values[0] == pytest.approx(math.log(0.6)) and not censored[0]
    # B is not among the top 4: at most the 4th probability, recorded as that bound, never as zero
    assert values[1] == pytest.approx(math.log(0.05)) and censored[1]
    with pytest.raises(ValueError):
        answer_logprobs([], ("A", "B"))


def test_the_base_url_gets_v1_only_where_it_has_no_path():
    assert api_base("http://127.0.0.1:8000/") == "http://127.0.0.1:8000/v1"
    assert api_base("https://api.example.org/v1") == "https://api.example.org/v1"
    assert api_base("https://gateway.example.org/openai/v1/") == "https://gateway.example.org/openai/v1"
    with pytest.raises(EthdashError):
        api_base("file:///etc/passwd")


class Stub:
    """Answers each POST with the next scripted (status, headers) and then a chat completion."""

    def __init__(self, script: list[tuple[int, dict]]):
        self.script, self.seen = list(script), []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (the http.server name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.seen.append((self.path, self.headers.get("Authorization"), body))
                status, headers = stub.script.pop(0) if stub.script else (200, {})
                payload = {"error": {"message": f"scripted {status}"}} if status != 200 else stub.completion()
                data = json.dumps(payload).encode()
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @staticmethod
    def completion() -> dict:
        top = [{"token": "B", "logprob": math.log(0.7)}, {"token": "A", "logprob": math.log(0.2)}]
        return {
            "system_fingerprint": "fp_stub",
            "choices": [{"logprobs": {"content": [{"token": "B", "logprob": top[0]["logprob"], "top_logprobs": top}]}}],
        }

    def close(self):
        self.server.shutdown()


@pytest.fixture
def stub(request):
    server = Stub(request.param)
    yield server
    server.close()


REQUEST = Request((), (), None, ({"role": "user", "content": "A or B?"},), ("A", "B"))


@pytest.mark.parametrize("stub", [[(429, {"Retry-After": "0"}), (503, {})]], indirect=True)
def test_429_and_503_are_retried_with_backoff_and_the_answer_is_read(stub):
    client = ApiClient(stub.url, api_key="sk-test-secret")
    client.backoff_s = 0.01
    [result] = ApiScorer(client, "m", "api", 5, Budget(None)).score([REQUEST])
    assert len(stub.seen) == 3 and client.retried == 2
    assert all(path == "/v1/chat/completions" for path, _, _ in stub.seen)
    assert all(auth == "Bearer sk-test-secret" for _, auth, _ in stub.seen)
    path, _, body = stub.seen[-1]
    assert body["logprobs"] is True and body["top_logprobs"] == 5 and body["max_tokens"] == 1
    assert body["messages"] == [{"role": "user", "content": "A or B?"}]
    np.testing.assert_allclose(result.answer_logprobs, np.log([0.2, 0.7]))
    assert result.censored == (False, False) and result.fingerprint == "fp_stub"


@pytest.mark.parametrize("stub", [[(503, {})] * 3], indirect=True)
def test_a_server_failing_every_retry_is_an_error_naming_the_url_and_never_the_key(stub):
    client = ApiClient(stub.url, api_key="sk-test-secret", retries=2)
    client.backoff_s = 0.01
    with pytest.raises(ServerError) as error:
        ApiScorer(client, "m", "api", 5, Budget(None)).score([REQUEST])
    message = str(error.value)
    assert f"{stub.url}/v1/chat/completions: HTTP 503" in message and "after 2 retries" in message
    assert "sk-test-secret" not in message and len(stub.seen) == 3


@pytest.mark.parametrize("stub", [[(400, {})]], indirect=True)
def test_a_refused_request_is_not_retried(stub):
    with pytest.raises(ServerError, match="HTTP 400: scripted 400"):
        ApiScorer(ApiClient(stub.url), "m", "api", 5, Budget(None)).score([REQUEST])
    assert len(stub.seen) == 1


@pytest.mark.parametrize("stub", [[]], indirect=True)
def test_the_budget_stops_sending_and_hands_back_what_was_computed(stub):
    scorer = ApiScorer(ApiClient(stub.url), "m", "api", 5, Budget(3))
    assert len(scorer.score([REQUEST, REQUEST])) == 2
    with pytest.raises(BudgetSpent) as spent:
        scorer.score([REQUEST, REQUEST, REQUEST])
    assert len(spent.value.results) == 1 and len(stub.seen) == 3 and "--max-requests 3" in str(spent.value)
