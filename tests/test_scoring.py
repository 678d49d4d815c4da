"""Scoring with the embedded model: batched local scores equal an independent single-prompt
computation, for the base model and for real LoRA adapters; the cache; resuming a killed run."""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ethdash import adapters, models, scoring
from ethdash.datasets import catalog
from ethdash.datasets.importer import import_paths
from ethdash.scoring.backends.local import LocalScorer
from ethdash.scoring.prompting import Prompter
from ethdash.settings import demo_dir

from .conftest import ANECDOTE_SAMPLE, DILEMMAS_DEV, ROOT, run_cli
from .helpers import make_adapter, score_command, wait_until

pytestmark = pytest.mark.model
MODEL = models.DEFAULT_MODEL


@pytest.fixture(scope="module")
def adapter_dirs(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("adapters")
    return make_adapter(root / "one", seed=1), make_adapter(root / "two", seed=2)


@pytest.fixture(scope="module")
def local_scorer() -> LocalScorer:
    return LocalScorer(models.get(MODEL))


@functools.lru_cache(maxsize=4)
def fresh_model(adapter: Path | None):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = models.weights_location(models.get(MODEL))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    return tokenizer, model


def independent_probs(messages: list[dict], answer_tokens: list[str], adapter: Path | None) -> np.ndarray:
    """The straightforward computation: one unpadded prompt through a freshly loaded model (the adapter
    merged into its weights), softmax over the full vocabulary, renormalised over the answers."""
    import torch

    tokenizer, model = fresh_model(adapter)
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        probs = torch.softmax(model(input_ids=ids["input_ids"]).logits[0, -1].double(), dim=-1)
    answer = probs[[tokenizer.convert_tokens_to_ids(t) for t in answer_tokens]].numpy()
    return answer / answer.sum()


def test_local_scores_equal_single_prompt_computations(store, shared_data, adapter_dirs, local_scorer):
    import_paths(store, [DILEMMAS_DEV, ANECDOTE_SAMPLE])
    one = adapters.register(store, "one", adapter_dirs[0], MODEL)
    prompter = Prompter(models.get(MODEL))
    checked = 0
    for template, dataset, limit in (
        ("dilemmas-worse", "dilemmas", 6),
        ("anecdotes-classes", "anecdotes", 2),
        ("anecdotes-binarized", "anecdotes", 2),
    ):
        for adapter in (None, "one"):
            plan = scoring.plan(store, scoring.Job(MODEL, template, dataset, adapter=adapter, limit=limit))
            assert scoring.run(store, plan, local_scorer, prompter) == len(plan.keys)
            stored = scoring.scores_frame(store, plan)
            items = plan.items.set_index("item_id")
            for row in stored.itertuples():
                item = items.loc[row.item_id]
                messages = plan.template.messages(item.to_dict(), row.item_order)
                tokens = [a.token for a in plan.template.answers]
                p = independent_probs(messages, tokens, one.path if adapter else None)
                if dataset == "dilemmas":  # answers name positions: A is action 1 only in order ab
                    expected = p if row.item_order == "ab" else p[::-1]
                else:
                    expected = np.zeros(len(plan.options))
                    for k, a in enumerate(plan.template.answers):
                        expected[plan.options.index(a.option)] = p[k]
                np.testing.assert_allclose(row.probs, expected, atol=1e-4)
                assert 0.0 <= row.outside_mass < 1.0
                assert row.backend == "local" and row.dtype == "float32"
                checked += 1
    assert checked == 2 * (12 + 2 + 2)


def test_the_cache_never_computes_twice_and_a_changed_adapter_is_new(store, adapter_dirs, local_scorer, tmp_path):
    import_paths(store, [demo_dir()])
    folder = tmp_path / "adapter"
    make_adapter(folder, seed=3)
    adapters.register(store, "mine", folder, MODEL)
    prompter = Prompter(models.get(MODEL))
    job = scoring.Job(MODEL, "dilemmas-worse", "dilemmas", adapter="mine", limit=4)
    plan = scoring.plan(store, job)
    assert len(plan.todo) == 8 and scoring.run(store, plan, local_scorer, prompter) == 8
    before = scoring.scores_frame(store, plan)
    assert scoring.plan(store, job).todo == []  # nothing left to compute

    make_adapter(folder, seed=4)  # the same folder, new weights: a new adapter
    changed = scoring.plan(store, job)
    assert len(changed.todo) == 8
    scoring.run(store, changed, local_scorer, prompter)
    after = scoring.scores_frame(store, changed)
    assert not np.allclose(np.stack(before["probs"]), np.stack(after["probs"]))

    base = scoring.plan(store, scoring.Job(MODEL, "dilemmas-worse", "dilemmas", limit=4, order="ab"))
    assert len(base.todo) == 4  # the base model is another key again, one order only


def test_cli_score_export_and_clear_errors(store, tmp_path):
    import_paths(store, [demo_dir()])
    result = run_cli("score", "--template", "dilemmas-worse", "--dataset", "dilemmas", "--limit", "3")
    assert result.returncode == 0, result.stderr
    assert "6 to compute" in result.stderr and "6/6 scored" in result.stderr
    again = run_cli("score", "--template", "dilemmas-worse", "--dataset", "dilemmas", "--limit", "3")
    assert "6 already stored, 0 to compute" in again.stderr

    assert run_cli("scores", "export", str(tmp_path / "s.csv")).returncode == 0
    assert run_cli("scores", "export", str(tmp_path / "s.parquet")).returncode == 0
    csv, parquet = pd.read_csv(tmp_path / "s.csv"), pd.read_parquet(tmp_path / "s.parquet")
    assert len(csv) == len(parquet) == 6
    np.testing.assert_allclose(np.stack([json.loads(p) for p in csv["probs"]]), np.stack(parquet["probs"]))
    np.testing.assert_allclose(np.stack(parquet["probs"]).sum(axis=1), 1.0)
    with store.connect() as con:  # each score carries its item's gold votes in the template's view
        rows = con.execute("SELECT item_id, counts FROM votes WHERE view = 'worse' AND sample = 'gold'").fetchall()
    gold = dict(rows)
    for row in parquet.itertuples():
        assert list(row.votes) == list(gold[row.item_id])
        np.testing.assert_allclose(row.shares, np.asarray(gold[row.item_id]) / sum(gold[row.item_id]))
    assert [json.loads(v) for v in csv["votes"]] == [list(map(float, gold[i])) for i in csv["item_id"]]

    # Filters, and a format it cannot write refused (no file) with the formats it can.
    only = run_cli("scores", "export", str(tmp_path / "f.csv"), "--adapter", "base", "--split", csv["split"][0])
    assert only.returncode == 0 and len(pd.read_csv(tmp_path / "f.csv")) == (csv["split"] == csv["split"][0]).sum()
    assert run_cli("scores", "export", str(tmp_path / "n.csv"), "--template", "anecdotes-classes").returncode == 0
    assert len(pd.read_csv(tmp_path / "n.csv")) == 0
    xlsx = run_cli("scores", "export", str(tmp_path / "scores.xlsx"))
    assert xlsx.returncode == 1 and ".csv, .parquet" in xlsx.stderr and not (tmp_path / "scores.xlsx").exists()

    # An item whose text changed since it was scored: its old scores are not exported as the new item's.
    changed = tmp_path / "changed"
    changed.mkdir()
    lines = (demo_dir() / "demo.scruples-dilemmas.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    first["actions"][0]["description"] += " (edited)"
    (changed / "demo.scruples-dilemmas.jsonl").write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    assert run_cli("data", "import", str(changed)).returncode == 0
    after = run_cli("scores", "export", str(tmp_path / "after.csv"))
    exported = pd.read_csv(tmp_path / "after.csv")
    assert first["id"] not in set(exported["item_id"]) and len(exported) == 6 - 2
    assert "left out 2 scores" in after.stderr

    errors = {
        ("--model", "gpt-17"): "unknown model 'gpt-17'",
        ("--adapter", "nope"): "unknown adapter 'nope'",
        ("--template", "nope"): "unknown template 'nope'",
        ("--dataset", "nope"): "unknown dataset 'nope'",
        ("--template", "anecdotes-classes"): "template 'anecdotes-classes' is for dataset 'anecdotes'",
    }
    for args, words in errors.items():
        base = {"--template": "dilemmas-worse", "--dataset": "dilemmas"}
        base[args[0]] = args[1]
        result = run_cli("score", *[x for kv in base.items() for x in kv])
        assert result.returncode == 1 and words in result.stderr and "Traceback" not in result.stderr, result.stderr


def count_scores(store) -> int:
    with store.connect() as con:
        return con.execute("SELECT count(*) FROM scores").fetchone()[0]


def test_a_killed_run_resumes_without_recomputing(store, shared_data):
    import_paths(store, [DILEMMAS_DEV])
    command = score_command("--limit", "60")
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until(lambda: count_scores(store) >= scoring.CHUNK, timeout_s=240)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = count_scores(store)
    assert scoring.CHUNK <= kept < 120  # what was finished before the kill is stored
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert f"{kept} already stored, {120 - kept} to compute" in result.stderr
    assert count_scores(store) == 120


def test_a_prompt_too_long_for_the_model_is_refused_with_its_item_and_length(store, tmp_path):
    """Before: a 50 MB text imported silently, and scoring it tokenized for about a minute, then failed with
    a traceback asking for 30 GB. Now: a warning on import; on scoring, the prompt is refused from its
    characters (never tokenized) or its tokens, named with its item and length, and the other items score."""
    import time

    rows = [
        {"uid": "short", "scenario": "Keeping a found wallet.", "y": 3, "n": 7},
        {"uid": "wordy", "scenario": "I kept the wallet because " * 40, "y": 5, "n": 5},
        {"uid": "huge", "scenario": "x" * 5_000_000, "y": 1, "n": 1},
    ]
    path = tmp_path / "long.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    flags = ["--dataset", "long", "--text-column", "scenario", "--id-column", "uid"]
    flags += ["--option", "Y=y", "--option", "N=n"]
    imported = run_cli("data", "import", str(path), *flags)
    assert imported.returncode == 0 and "long.jsonl:3: text of 5,000,000 characters" in imported.stderr
    assert run_cli("templates", "new", "--dataset", "long").returncode == 0

    started = time.monotonic()
    scored = run_cli("score", "--template", "long-votes", "--dataset", "long")
    took = time.monotonic() - started
    assert scored.returncode == 0, scored.stderr
    assert "not scored: item huge (order -): the prompt is 5,000," in scored.stderr and "characters" in scored.stderr
    with store.connect() as con:
        stored = {r[0] for r in con.execute("SELECT item_id FROM scores").fetchall()}
    assert stored == {"short", "wordy"}
    print(f"scoring with one 5 MB prompt refused took {took:.1f} s")

    env = {**os.environ, "ETHDASH_MAX_PROMPT_TOKENS": "100"}  # the wordy prompt has ~250 tokens
    with store.connect() as con:
        con.execute("DELETE FROM scores")
    limited = run_cli("score", "--template", "long-votes", "--dataset", "long", env=env)
    assert limited.returncode == 0, limited.stderr
    refusal = r"not scored: item wordy \(order -\): the prompt is \d{3} tokens, more than the 100 allowed"
    assert re.search(refusal, limited.stderr), limited.stderr


def test_a_server_url_is_http_or_https_and_nothing_else(store):
    """Before: the sidebar's server URL was fetched without checks: file:///etc/hostname was read."""
    import_paths(store, [demo_dir()])
    for url in ("file:///etc/hostname", "ftp://127.0.0.1/x", "javascript:alert(1)", "http://"):
        result = run_cli(
            "score", "--template", "dilemmas-worse", "--dataset", "dilemmas", "--limit", "1",
            "--backend", "vllm", "--server", url,
        )  # fmt: skip
        assert result.returncode == 1 and "is not a server address: give http://HOST:PORT" in result.stderr, url
        assert socket_hostname() not in result.stderr


def socket_hostname() -> str:
    return Path("/etc/hostname").read_text().strip() or "\0"


def demo_dilemmas() -> list[dict]:
    path = demo_dir() / "demo.scruples-dilemmas.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_new_votes_keep_their_scores_and_a_new_prompt_is_scored_again(store, local_scorer, tmp_path):
    """The score key covers what the model is asked, not the item's votes (issue 15)."""
    import_paths(store, [demo_dir()])
    prompter = Prompter(models.get(MODEL))
    # Three items by id: re-imported items move in the file order that --limit follows (their source changes).
    ids = tuple(r["id"] for r in demo_dilemmas()[:3])
    job = scoring.Job(MODEL, "dilemmas-worse", "dilemmas", item_ids=ids)
    plan = scoring.plan(store, job)
    assert scoring.run(store, plan, local_scorer, prompter) == 6
    before = scoring.scores_frame(store, plan).set_index(["item_id", "item_order"])["probs"]
    first, second = ids[0], ids[1]

    records = {r["id"]: r for r in demo_dilemmas()}
    records[first]["gold_annotations"] = [5, 0]  # votes: the model never sees them
    records[second]["actions"][0]["description"] += " on purpose"  # the prompt's text
    changed = tmp_path / "demo.scruples-dilemmas.jsonl"
    changed.write_text("".join(json.dumps(r) + "\n" for r in records.values()))
    report = import_paths(store, [changed])
    assert report.changed == 2

    again = scoring.plan(store, job)
    assert sorted((k["item_id"], k["item_order"]) for k in again.todo) == [(second, "ab"), (second, "ba")]
    assert scoring.run(store, again, local_scorer, prompter) == 2
    after = scoring.scores_frame(store, again).set_index(["item_id", "item_order"])["probs"]
    for order in ("ab", "ba"):
        assert list(after[(first, order)]) == list(before[(first, order)])  # kept, not recomputed
        assert not np.allclose(after[(second, order)], before[(second, order)])

    # The export leaves out the scores of the earlier prompt and joins the new votes.
    written, stale = scoring.export(store, tmp_path / "scores.csv", scoring.jobs.ScoreFilter(dataset="dilemmas"))
    assert (written, stale) == (6, 2)
    frame = pd.read_csv(tmp_path / "scores.csv")
    assert {tuple(json.loads(v)) for v in frame.loc[frame["item_id"] == first, "votes"]} == {(5.0, 0.0)}


def earlier_weights_id(folder: Path) -> str:
    """The weights id as stores before key version 2 recorded it: every .json, .safetensors and .bin file
    of the folder, the conversion record included."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.suffix in (".json", ".safetensors", ".bin") and p.is_file()):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return f"sha256:{digest.hexdigest()}"


def test_scores_stored_under_the_earlier_key_are_kept(store, local_scorer):
    """A store written before key version 2: its local scores are found (and re-keyed), not recomputed."""
    import hashlib

    import_paths(store, [demo_dir()])
    job = scoring.Job(MODEL, "dilemmas-worse", "dilemmas", limit=3)
    plan = scoring.plan(store, job)
    scoring.run(store, plan, local_scorer, Prompter(models.get(MODEL)))
    before = scoring.scores_frame(store, plan).set_index("score_key")["probs"]
    weights = earlier_weights_id(Path(models.weights_location(models.get(MODEL))))
    fields = "dataset, split, item_id, item_hash, item_order, model, adapter, adapter_hash, template, template_hash"
    with store.transaction() as con:
        rows = con.execute(f"SELECT score_key, {fields}, dtype FROM scores").fetchall()
        for key, *values, dtype in rows:
            old = dict(zip(fields.split(", "), values), model_weights=weights, backend="local", dtype=dtype)
            old_key = hashlib.sha256(json.dumps(old, sort_keys=True).encode()).hexdigest()
            con.execute(
                "UPDATE scores SET score_key = ?, model_weights = ?, prompt_hash = NULL, backend_id = NULL "
                "WHERE score_key = ?",
                [old_key, weights, key],
            )
    again = scoring.plan(store, job)
    assert again.todo == []
    after = scoring.scores_frame(store, again).set_index("score_key")
    assert sorted(after.index) == sorted(before.index) and after["prompt_hash"].notna().all()
    assert all(list(after.loc[k, "probs"]) == list(before[k]) for k in before.index)


def test_plan_keys_equal_an_independent_computation_of_the_key_digest(store, tmp_path):
    """The plan writes each key's JSON around the fields the job's keys share (speed): the digests must be
    those of the whole key's JSON, byte for byte, ids with quotes, backslashes, braces (the key's text is a
    format pattern) and non-ASCII letters included."""
    import hashlib

    demo = (demo_dir() / "demo.scruples-dilemmas.jsonl").read_text().splitlines()
    odd = []
    for line, item_id in zip(demo, ['say "no"', "back\\slash", "ünïcödé ☃", "tab\there", "{curly} }{0}"]):
        record = json.loads(line)
        record["id"] = item_id
        odd.append(json.dumps(record, ensure_ascii=False))
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "train.scruples-dilemmas.jsonl").write_text("\n".join(odd) + "\n", encoding="utf-8")
    import_paths(store, [tmp_path / "odd", demo_dir()])
    for job in (
        scoring.Job(MODEL, "dilemmas-worse", "dilemmas"),
        scoring.Job(MODEL, "anecdotes-binarized", "anecdotes", backend="vllm"),
    ):
        plan = scoring.plan(store, job, backend_id="some server: 'x' {braces} }{")
        rows = {r.item_id: r._asdict() for r in plan.items.itertuples()}
        assert len(plan.keys) == len(plan.items) * len(plan.template.orders("both")) > 0
        for key in plan.keys:
            fields = {f: key[f] for f in key if f not in ("score_key", "item_hash", "template_hash", "backend")}
            assert fields["prompt_hash"] == plan.template.prompt_digest(
                rows[key["item_id"]], plan.options, key["item_order"]
            )
            parts = [
                part
                for name in sorted({**fields, "key_version": 2})
                for part in (name, {**fields, "key_version": 2}[name])
            ]
            expected = hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode()).hexdigest()
            assert key["score_key"] == expected == scoring.jobs.score_key(fields), key
    assert {"ünïcödé ☃", 'say "no"', "{curly} }{0}"} <= {
        k["item_id"] for k in scoring.plan(store, scoring.Job(MODEL, "dilemmas-worse", "dilemmas")).keys
    }


def test_a_model_registered_with_another_chat_template_is_asked_anew(store):
    """The registry's chat template override changes the text around the messages: part of the key."""
    import_paths(store, [demo_dir()])
    folder = models.weights_location(models.get(MODEL))
    template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}assistant:"

    def keys_with(chat_template: str | None) -> list[str]:
        entry = f'[[model]]\nname = "mine"\nsource = "path"\nlocation = "{folder}"\n'
        if chat_template is not None:
            entry += f"chat_template = {json.dumps(chat_template)}\n"
        models.config_path().write_text(entry)
        job = scoring.Job("mine", "dilemmas-worse", "dilemmas", limit=2)
        return [k["score_key"] for k in scoring.plan(store, job).keys]

    own, other = keys_with(None), keys_with(template)
    assert len(own) == 4 and not set(own) & set(other)
    assert keys_with(None) == own and keys_with(template) == other


def test_an_item_without_a_title_is_asked_the_same_whether_its_split_or_it_alone_is_read(store, tmp_path, monkeypatch):
    """Before: a split where only some items have a title (a JSON null) was read with NaN for the missing ones,
    and the prompt said "nan" where the title goes; the item read alone (the one open in Browse) said "":
    another prompt, another score key."""
    path = tmp_path / "vignettes.jsonl"
    rows = [
        {"uid": "v1", "title": None, "vignette": "A nurse tells a patient a comforting lie.", "yes": 7, "no": 3},
        {"uid": "v2", "title": "Cheating", "vignette": "A student reports a friend who cheated.", "yes": 4, "no": 6},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    imported = run_cli(
        "data", "import", str(path), "--dataset", "vig", "--text-column", "vignette", "--title-column", "title",
        "--id-column", "uid", "--option", "APPROVE=yes", "--option", "DISAPPROVE=no",
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    written = run_cli("templates", "new", "--dataset", "vig", "--name", "vig-t")
    assert written.returncode == 0, written.stderr

    def v1_keys(item_ids: tuple[str, ...] | None) -> tuple[dict, str]:
        monkeypatch.setattr(scoring.jobs, "_DIGESTS", {})  # no digest remembered from the other read
        plan = scoring.plan(store, scoring.Job(MODEL, "vig-t", "vig", item_ids=item_ids))
        row = plan.items.index[plan.items["item_id"] == "v1"][0]
        user = plan.template.messages(catalog.records(plan.items)[row])[-1]["content"]
        return {k["item_order"]: k["score_key"] for k in plan.keys if k["item_id"] == "v1"}, user

    whole, asked = v1_keys(None)
    alone, asked_alone = v1_keys(("v1",))
    assert whole == alone and asked == asked_alone
    assert asked.endswith("\n\nA nurse tells a patient a comforting lie.") and "nan" not in asked
