"""The path users run, `ethdash score`, against the local backend alone and the FLOP floor (issue 18).

On N real dev dilemmas in one option order (default 200 prompts), embedded model, float32:

(1) the local backend called once with every prompt (the model loaded before timing);
(2) the same backend in chunks of 32 prompts, each its own call (what `ethdash score` did before: the
    shared prefix computed again per chunk, batches of at most 32 prompts);
(3) the whole `ethdash score` process on a fresh store, minus the same command for 8 items on another
    fresh store (start-up, imports and model loading removed);
the floor: FLOPs of the prompts' tokens (the shared prefix once, every other token once: 2 x the
    non-embedding parameters per token, plus one output row per prompt) at this machine's fp32 matmul rate,
    measured in the same run.

Run: .venv/bin/python bench/score_path.py [--items 200]
Prints a table and writes bench/results/score_path.json. Targets (not asserted anywhere): (3) within 10% of
(1); (3) within 1.3x the floor.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DILEMMAS_DEV = ROOT.parent / "shared" / "data" / "scruples" / "dilemmas" / "dev.scruples-dilemmas.jsonl"


def matmul_gflops(torch, size: int = 2048, repeats: int = 10) -> float:
    """fp32 matrix-multiply rate of this machine with torch's threads (best of three timings)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 * repeats / best / 1e9


def machine(torch, gflops: float) -> dict:
    """What a result's figures were measured on."""
    return {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "fp32_matmul_gflops": round(gflops, 1),
    }


def cli_seconds(items: int, data: Path) -> float:
    """`ethdash score` for `items` dilemmas (one order) on a fresh store, as a whole process."""
    env = {**os.environ, "ETHDASH_HOME": tempfile.mkdtemp(prefix="ethdash-bench-cli-")}
    cli = [sys.executable, "-m", "ethdash"]
    subprocess.run([*cli, "data", "import", str(data)], env=env, check=True, capture_output=True, cwd=ROOT)
    args = ["score", "--template", "dilemmas-worse", "--dataset", "dilemmas", "--split", "dev"]
    start = time.perf_counter()
    subprocess.run(
        [*cli, *args, "--limit", str(items), "--order", "ab"], env=env, check=True, capture_output=True, cwd=ROOT
    )
    return time.perf_counter() - start


@dataclass
class Setup:
    """The prompts `ethdash score` sends for N real dev dilemmas (one order), the loaded local backend, and
    the FLOP floor of those prompts at this machine's matmul rate."""

    spec: object
    requests: list
    scorer: object
    gflops: float
    non_embedding: int
    prefix: int  # tokens every prompt shares
    tokens: int  # the shared prefix once, every other token once
    floor_s: float


def setup(items: int, data: Path = DILEMMAS_DEV) -> Setup:
    os.environ["ETHDASH_HOME"] = tempfile.mkdtemp(prefix="ethdash-bench-")
    import torch

    from ethdash import models, scoring
    from ethdash.datasets.importer import import_paths
    from ethdash.scoring.backends.local import LocalScorer, shared_prefix
    from ethdash.scoring.prompting import Prompter
    from ethdash.store import Store

    store = Store()
    import_paths(store, [data])
    spec = models.get(models.DEFAULT_MODEL)
    job = scoring.Job(spec.name, "dilemmas-worse", "dilemmas", "dev", limit=items, order="ab")
    plan = scoring.plan(store, job)
    _, requests = scoring.jobs.requests_for(plan, plan.keys, Prompter(spec))  # what `ethdash score` sends

    gflops = matmul_gflops(torch)
    scorer = LocalScorer(spec)
    config = scorer.base.config
    embedding = config.vocab_size * config.hidden_size
    non_embedding = sum(p.numel() for p in scorer.base.parameters()) - embedding * (
        1 if config.tie_word_embeddings else 2
    )
    prefix = len(shared_prefix([r.prompt_ids for r in requests]))
    tokens = prefix + sum(len(r.prompt_ids) - prefix for r in requests)
    floor_flops = 2 * non_embedding * tokens + 2 * config.hidden_size * config.vocab_size * len(requests)
    return Setup(spec, requests, scorer, gflops, non_embedding, prefix, tokens, floor_flops / (gflops * 1e9))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--data", type=Path, default=DILEMMAS_DEV)
    args = parser.parse_args()
    import torch

    s = setup(args.items, args.data)
    spec, requests, scorer, gflops = s.spec, s.requests, s.scorer, s.gflops
    non_embedding, prefix, tokens, floor_s = s.non_embedding, s.prefix, s.tokens, s.floor_s
    n = len(requests)

    scorer.score(requests[:4])  # warm-up
    start = time.perf_counter()
    scorer.score(requests)
    backend_s = time.perf_counter() - start
    start = time.perf_counter()
    for i in range(0, n, 32):
        scorer.score(requests[i : i + 32])
    chunked_s = time.perf_counter() - start
    del scorer

    small = 8
    cli_full, cli_small = cli_seconds(args.items, args.data), cli_seconds(small, args.data)
    # Start-up removed: the small run's time, less its few prompts at the backend's rate.
    cli_s = cli_full - cli_small + backend_s * small / n

    report = {
        "machine": machine(torch, gflops),
        "date": time.strftime("%Y-%m-%d"),
        "prompts": n,
        "tokens": {"shared_prefix": prefix, "total_once": tokens},
        "non_embedding_parameters": non_embedding,
        "floor_seconds": round(floor_s, 3),
        "seconds": {
            "1_backend_alone": round(backend_s, 3),
            "2_backend_in_chunks_of_32": round(chunked_s, 3),
            "3_ethdash_score_process_minus_startup": round(cli_s, 3),
            "ethdash_score_process_whole": round(cli_full, 3),
            f"ethdash_score_process_{small}_items": round(cli_small, 3),
        },
        "ratios": {
            "cli_over_backend": round(cli_s / backend_s, 3),
            "chunks_over_backend": round(chunked_s / backend_s, 3),
            "backend_over_floor": round(backend_s / floor_s, 3),
            "cli_over_floor": round(cli_s / floor_s, 3),
        },
    }
    print(
        f"{n} prompts ({args.items} real dev dilemmas, one order), {spec.name}, float32, {os.cpu_count()} CPUs, "
        f"fp32 matmul {gflops:.0f} GFLOP/s\n"
    )
    print(f"{'path':42} {'seconds':>9} {'x floor':>8}")
    print(f"{'floor (FLOPs / matmul rate)':42} {floor_s:9.2f} {1:8.2f}")
    for name, label in (
        ("1_backend_alone", "(1) backend alone, one call"),
        ("2_backend_in_chunks_of_32", "(2) backend in chunks of 32"),
        ("3_ethdash_score_process_minus_startup", "(3) ethdash score, start-up removed"),
    ):
        seconds = report["seconds"][name]
        print(f"{label:42} {seconds:9.2f} {seconds / floor_s:8.2f}")
    print(f"\n(3)/(1) = {report['ratios']['cli_over_backend']} (target <= 1.10); (3)/floor = "
          f"{report['ratios']['cli_over_floor']} (target <= 1.3)")  # fmt: skip
    out = ROOT / "bench" / "results" / "score_path.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
