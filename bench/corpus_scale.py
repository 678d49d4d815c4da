"""The dashboard and the CLI at full-corpus size (issue 18).

Builds a synthetic store the size of the whole Scruples corpus: 28,296 dilemmas (train 23,596, dev 2,340,
test 2,360) and 32,766 anecdotes (train 27,766, dev 2,500, test 2,500), written as Scruples files from the
real records in ../shared/data (dilemmas: real actions re-paired, each with a real item's votes; anecdotes:
real titles and texts, so real lengths, with vote counts drawn from the official dev count vectors); six
systems (the base model and five LoRA adapters) scored on everything, dilemmas in both orders and anecdotes
under both label views (about 0.73 M score rows: random answer log-probabilities written through the
scoring's own store writer, under the keys `ethdash score` would use), and 20,000 annotations.

Then measures what users run, each as they run it:
- `ethdash data import` of the corpus files (a whole process, fresh store);
- Browse first render and item switch, Compare with the six systems (every metric, bootstrap included),
  on the largest split of each dataset: the time the page's script takes on the server (AppTest, as
  bench/app_latency.py), each repeat a fresh session: the first visit to the split after the app started
  (`*_first_visit`: nothing about the split cached yet, no bootstrap kept in the store), the median of
  later visits (what the process keeps, until the store changes: the item table, each system's plan and
  scores, the bootstrap), and the first visit in a new app process, the bootstraps the first one kept in
  the store (`*_after_restart`);
- `ethdash evaluate` with the six systems (a whole process), with no bootstrap kept in the store and run
  again (reading the first run's), and `ethdash scores export` of every score;
- the peak memory (VmHWM) of a real `ethdash app` process while headless Chromium opens Browse and
  Compare on a small split and then on the largest one (memory should follow the split shown).

Run: .venv/bin/python bench/corpus_scale.py [--home DIR] [--repeat 3] [--scale 1.0]
(--home keeps the built store for another run; --scale < 1 builds a proportionally smaller corpus, to try
the script). Prints a table and writes bench/results/corpus_scale.json (only at --scale 1). Targets (not
asserted anywhere): Browse first render < 1 s, item switch < 0.3 s, Compare < 3 s, evaluate < 5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
DILEMMA_SPLITS = {"train": 23_596, "dev": 2_340, "test": 2_360}
ANECDOTE_SPLITS = {"train": 27_766, "dev": 2_500, "test": 2_500}
ADAPTERS = [f"corpus-lora-{i}" for i in range(1, 6)]
# (dataset, template, view, options): every system scores each of these on every split.
SCORED = [
    ("dilemmas", "dilemmas-worse", "worse", ("action 1", "action 2")),
    ("anecdotes", "anecdotes-binarized", "binarized", ("RIGHT", "WRONG")),
    ("anecdotes", "anecdotes-classes", "classes", ("AUTHOR", "OTHER", "EVERYBODY", "NOBODY", "INFO")),
]
ANNOTATIONS = 20_000
TARGETS = {"browse_first_render": 1.0, "item_switch": 0.3, "compare_render": 3.0, "evaluate": 5.0}
FIRST = "_first_visit"  # the page times of the first visit to a split since the app started
RESTARTED = "_after_restart"  # the same in a new process, with the bootstraps kept by the first one
LARGEST = {"dilemmas": ("train", "worse", "dilemmas-worse"), "anecdotes": ("train", "binarized", "anecdotes-binarized")}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_corpus(folder: Path, scale: float, rng: random.Random) -> dict[str, int]:
    """The synthetic corpus as Scruples files under folder/dilemmas and folder/anecdotes."""
    real_dilemmas = [
        r for s in ("dev", "test") for r in read_jsonl(SHARED / f"scruples/dilemmas/{s}.scruples-dilemmas.jsonl")
    ]
    actions = [a["description"] for r in real_dilemmas for a in r["actions"]]
    real_anecdotes = read_jsonl(SHARED / "scruples/anecdotes/sample.scruples-anecdotes.jsonl")
    counts = json.loads((SHARED / "scruples-meta/dev.scruples-anecdotes_label-counts.json").read_text())
    classes = ("AUTHOR", "OTHER", "EVERYBODY", "NOBODY", "INFO")
    sizes = {}
    for dataset, splits in (("dilemmas", DILEMMA_SPLITS), ("anecdotes", ANECDOTE_SPLITS)):
        (folder / dataset).mkdir(parents=True, exist_ok=True)
        for split, n in splits.items():
            n = max(4, round(n * scale))
            records = []
            for _ in range(n):
                if dataset == "dilemmas":
                    votes = rng.choice(real_dilemmas)  # a real item's two vote samples, with new actions
                    pair = rng.sample(actions, 2)
                    records.append(
                        {
                            **{k: votes[k] for k in votes if k not in ("id", "actions")},
                            "id": uuid.UUID(int=rng.getrandbits(128)).hex,
                            "actions": [
                                {"id": uuid.UUID(int=rng.getrandbits(128)).hex, "description": d} for d in pair
                            ],
                        }
                    )
                else:
                    post = rng.choice(real_anecdotes)
                    scores = dict(zip(classes, rng.choice(counts)))
                    binarized = {
                        "RIGHT": scores["OTHER"] + scores["NOBODY"],
                        "WRONG": scores["AUTHOR"] + scores["EVERYBODY"],
                    }
                    records.append(
                        {
                            **post,
                            "id": uuid.UUID(int=rng.getrandbits(128)).hex,
                            "post_id": uuid.UUID(int=rng.getrandbits(128)).hex[:6],
                            "label_scores": scores,
                            "label": max(scores, key=scores.get),
                            "binarized_label_scores": binarized,
                            "binarized_label": max(binarized, key=binarized.get),
                        }
                    )
            path = folder / dataset / f"{split}.scruples-{dataset}.jsonl"
            path.write_text("".join(json.dumps(r) + "\n" for r in records))
            sizes[f"{dataset}/{split}"] = n
    return sizes


def cli(args: list[str], env: dict) -> tuple[float, subprocess.CompletedProcess]:
    """An `ethdash` command as a whole process, and its wall time."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "ethdash", *args], env=env, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"ethdash {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return seconds, done


def make_adapter(folder: Path, seed: int) -> Path:
    """A real PEFT LoRA adapter with random weights (its scores here are synthetic; the registry needs one)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from ethdash import models

    torch.manual_seed(seed)
    spec = models.get(models.DEFAULT_MODEL)
    base = AutoModelForCausalLM.from_pretrained(models.weights_location(spec), dtype=torch.float32)
    get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear")).save_pretrained(folder)
    return folder


def write_scores(store, rng: np.random.Generator) -> int:
    """Every system on every item, under the keys `ethdash score` uses, through the scoring's writer."""
    from ethdash import adapters, models
    from ethdash.scoring import Job, jobs, plan
    from ethdash.scoring.backends import Result

    for i, name in enumerate(ADAPTERS):
        adapters.register(
            store, name, make_adapter(store.path.parent / "adapters" / name, seed=i), models.DEFAULT_MODEL
        )
    written = 0
    for dataset, template, _, _ in SCORED:
        for adapter in (None, *ADAPTERS):
            p = plan(store, Job(models.DEFAULT_MODEL, template, dataset, adapter=adapter))
            k = len(p.template.answers)
            for start in range(0, len(p.todo), 50_000):
                keys = p.todo[start : start + 50_000]
                # answers and one "elsewhere" slot: log-softmax of random logits, the elsewhere mass small
                logits = rng.normal(0.0, 1.5, size=(len(keys), k + 1))
                logits[:, -1] -= 2.0
                lp = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
                jobs._write(store, p, keys, [Result(row[:k], 0.01) for row in lp])
                written += len(keys)
    return written


def write_annotations(store, rng: np.random.Generator) -> None:
    """ANNOTATIONS saves by 20 annotators over the items, in one transaction (as many single saves would)."""
    from ethdash.migrations import utc_now

    with store.connect() as con:
        items = con.execute("SELECT dataset, split, item_id FROM items").df()
    picked = items.sample(ANNOTATIONS, replace=len(items) < ANNOTATIONS, random_state=0).reset_index(drop=True)
    judgments = {"dilemmas": ["action 1", "action 2", None], "anecdotes": ["RIGHT", "WRONG", None]}
    frame = picked.assign(
        annotation_id=[uuid.uuid4().hex for _ in range(len(picked))],
        annotator=[f"annotator-{i % 20}" for i in range(len(picked))],
        judgment=[judgments[d][rng.integers(3)] for d in picked["dataset"]],
        confidence=rng.uniform(0.5, 1.0, len(picked)).round(2),
        tags=[["bench"] if i % 3 == 0 else [] for i in range(len(picked))],
        note="",
        created_at=utc_now(),
    )
    columns = "annotation_id, dataset, split, item_id, annotator, judgment, confidence, tags, note, created_at"
    with store.transaction() as con:
        con.register("new_annotations", frame)
        con.execute(f"INSERT INTO annotations SELECT {columns} FROM new_annotations")
        con.unregister("new_annotations")


def page_times(dataset: str, split: str, view: str, template: str) -> dict[str, float]:
    """One fresh AppTest session: Browse first render, Next, then Compare with the six systems."""
    from app_latency import one_session

    return one_session(split, ADAPTERS, dataset=dataset, view=view, template=template)


def forget_kept_bootstraps(store) -> None:
    """No bootstrap kept in the store by an earlier run: what a first look at a split computes."""
    with store.transaction() as con:
        con.execute("DELETE FROM bootstrap_results")


def restarted_session() -> None:
    """In a new process: a small split first (a started server), then the first visit to each largest split;
    prints the page times as JSON."""
    page_times("dilemmas", "dev", "worse", "dilemmas-worse")
    times = {
        f"{dataset}/{split}": page_times(dataset, split, view, template)
        for dataset, (split, view, template) in LARGEST.items()
    }
    print(json.dumps(times))


def app_memory(env: dict, splits: list[tuple[str, str, str, str]]) -> list[dict]:
    """A real `ethdash app` process; headless Chromium opens Browse then Compare for each (dataset, split,
    view, template) in turn; the process's peak resident memory (VmHWM) after each."""
    from playwright.sync_api import sync_playwright

    from ethdash.scoring.backends.vllm_server import free_port

    port = free_port()
    log = open(Path(env["ETHDASH_HOME"]) / "app.log", "w")  # noqa: SIM115 (closed below)
    app = subprocess.Popen(
        [sys.executable, "-m", "ethdash", "app", "--port", str(port)], env=env, cwd=ROOT, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    out = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1200})
            for _ in range(120):
                try:
                    page.goto(url)
                    break
                except Exception:  # not listening yet
                    time.sleep(0.5)
            for dataset, split, view, template in splits:
                query = f"dataset={dataset}&split={split}&view={view}&template={template}&adapters={','.join(ADAPTERS)}"
                row = {"split": f"{dataset}/{split}"}
                for name, path, ready in (("browse", "", "Item 1 of"), ("compare", "compare", "Coverage")):
                    start = time.perf_counter()
                    page.goto(f"{url}/{path}?{query}")
                    page.get_by_text(ready, exact=False).first.wait_for(timeout=600_000)
                    page.wait_for_timeout(1000)
                    page.get_by_test_id("stStatusWidget").wait_for(state="hidden", timeout=600_000)
                    row[f"{name}_in_browser_s"] = time.perf_counter() - start - 1.0
                    row[f"peak_rss_mb_after_{name}"] = _peak_rss_mb(app.pid)
                out.append(row)
            browser.close()
    finally:
        app.terminate()
        app.wait(timeout=30)
        log.close()
    return out


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", type=Path, default=None, help="Build (or reuse) the store here.")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--restarted-session", action="store_true", help=argparse.SUPPRESS)  # see restarted_session
    args = parser.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="ethdash-corpus-"))
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "ETHDASH_HOME": str(home)}
    os.environ["ETHDASH_HOME"] = str(home)  # this process's library calls and AppTest use it too
    if args.restarted_session:
        return restarted_session()

    import torch
    from score_path import matmul_gflops

    from ethdash import __version__
    from ethdash.store import Store

    result: dict = {"ethdash": __version__, "machine": platform.machine(), "python": platform.python_version()}
    result["matmul_gflops"] = matmul_gflops(torch)
    result["torch_threads"] = torch.get_num_threads()
    store = Store()
    if not (home / "built.json").is_file():
        start = time.perf_counter()
        sizes = write_corpus(home / "corpus", args.scale, random.Random(0))
        cli(["data", "import", str(home / "corpus")], env)
        rows = write_scores(store, np.random.default_rng(0))
        write_annotations(store, np.random.default_rng(1))
        (home / "built.json").write_text(json.dumps({"sizes": sizes, "score_rows": rows}))
        print(f"built in {time.perf_counter() - start:.0f} s: {rows:,} score rows")
    info = json.loads((home / "built.json").read_text())
    result.update(items=info["sizes"], score_rows=info["score_rows"], annotations=ANNOTATIONS)
    result["store_mb"] = store.path.stat().st_size / 1e6
    fresh = {**env, "ETHDASH_HOME": tempfile.mkdtemp(prefix="ethdash-corpus-import-")}
    result["import_s"], _ = cli(["data", "import", str(home / "corpus")], fresh)  # timed on a fresh store

    pages = {}
    forget_kept_bootstraps(store)
    # A server that has started: the pages' modules and libraries imported on a small split first.
    page_times("dilemmas", "dev", "worse", "dilemmas-worse")
    for dataset, (split, view, template) in LARGEST.items():
        # The first visit to the split: nothing about it cached (item table, plans, scores, bootstrap).
        first = page_times(dataset, split, view, template)
        # Every later visit (each a fresh session): what the process keeps until the store changes.
        runs = [page_times(dataset, split, view, template) for _ in range(args.repeat)]
        pages[f"{dataset}/{split}"] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        pages[f"{dataset}/{split}"].update({f"{k}{FIRST}": v for k, v in first.items()})
    # A new process: the first visits again, with the bootstraps the first process kept in the store.
    done = subprocess.run(
        [sys.executable, __file__, "--home", str(home), "--restarted-session"],
        env=env, capture_output=True, text=True, check=True, cwd=ROOT,
    )  # fmt: skip
    for split, times in json.loads(done.stdout.strip().splitlines()[-1]).items():
        pages[split].update({f"{k}{RESTARTED}": v for k, v in times.items()})
    result["pages"] = pages

    adapters = [a for name in ADAPTERS for a in ("--adapter", name)]
    evaluate = [
        "evaluate",
        "--template",
        "anecdotes-binarized",
        "--dataset",
        "anecdotes",
        "--split",
        "train",
        *adapters,
    ]
    forget_kept_bootstraps(store)
    result["evaluate_s"], _ = cli(evaluate, env)
    result["evaluate_again_s"], _ = cli(evaluate, env)  # the first run's bootstrap read from the store
    export_path = home / "scores.parquet"
    result["scores_export_s"], done = cli(["scores", "export", str(export_path)], env)
    result["scores_exported"] = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    small = ("dilemmas", "dev", "worse", "dilemmas-worse")
    result["app_memory"] = app_memory(env, [small, ("anecdotes", *LARGEST["anecdotes"])])

    print(f"\nmachine: {result['machine']}, fp32 matmul {result['matmul_gflops']:.0f} GFLOP/s")
    items = sum(info["sizes"].values())
    print(f"store: {items:,} items, {info['score_rows']:,} scores, ", end="")
    print(f"{ANNOTATIONS:,} annotations, {result['store_mb']:.0f} MB")
    print(f"\n{'what':<56}{'seconds':>9}{'target':>8}")
    print(f"{'ethdash data import (whole process)':<56}{result['import_s']:>9.1f}{'':>8}")
    for split, times in pages.items():
        for key, seconds in times.items():
            target = TARGETS[key.removesuffix(FIRST).removesuffix(RESTARTED)]
            print(f"{key + ' · ' + split:<56}{seconds:>9.2f}{target:>8.1f}")
    print(
        f"{'ethdash evaluate, 6 systems, anecdotes/train':<56}{result['evaluate_s']:>9.1f}{TARGETS['evaluate']:>8.1f}"
    )
    print(f"{'the same again (the bootstrap kept)':<56}{result['evaluate_again_s']:>9.1f}{TARGETS['evaluate']:>8.1f}")
    print(f"{'ethdash scores export (every score)':<56}{result['scores_export_s']:>9.1f}{'':>8}")
    for row in result["app_memory"]:
        print(
            f"app peak RSS after {row['split']}: Browse {row['peak_rss_mb_after_browse']:.0f} MB, Compare "
            f"{row['peak_rss_mb_after_compare']:.0f} MB (in the browser: {row['browse_in_browser_s']:.1f} s, "
            f"{row['compare_in_browser_s']:.1f} s)"
        )
    if args.scale == 1.0:
        out = ROOT / "bench" / "results" / "corpus_scale.json"
        out.write_text(json.dumps(result, indent=2))
        print(f"\nwritten {out}")


if __name__ == "__main__":
    main()
