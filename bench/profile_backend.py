"""Where the local backend's time goes against the FLOP floor of bench/score_path.py (issue 18).

The same prompts as score_path.py (N real dev dilemmas, one order, embedded model, float32), scored once by
the local backend under torch's profiler. Every operator's own time is put in one of these groups:
- linear layers: the matrix multiplies the floor counts (2 x non-embedding parameters per token), and the
  output row of each prompt;
- attention: scaled dot-product attention (not in the floor: it grows with the context);
- elementwise: norms, rotary embeddings, activations, residual adds (memory-bound, not in the floor);
- copies: the shared prefix's key/value cache copied per batch, concatenations, gathers;
- the rest (embedding lookup, log-softmax over the vocabulary, framework overhead).
It also counts the padded tokens the batches compute against the prompts' own tokens, and the rate the
linear layers reach against the machine's matmul rate measured in the same run (2048 x 2048 products).

Run: .venv/bin/python bench/profile_backend.py [--items 200]
Prints a table and writes bench/results/profile_backend.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from score_path import ROOT, machine, setup

GROUPS = {
    "linear layers": ("aten::addmm", "aten::mm", "aten::linear", "aten::matmul", "aten::bmm"),
    "attention": ("aten::scaled_dot_product_attention", "aten::_scaled_dot_product", "aten::_softmax", "attention"),
    "elementwise": (
        *("aten::mul", "aten::add", "aten::rsqrt", "aten::pow", "aten::mean", "aten::silu", "aten::neg"),
        *("aten::div", "aten::sub", "aten::cos", "aten::sin", "aten::exp", "aten::sigmoid"),
    ),
    "copies": ("aten::copy_", "aten::cat", "aten::index", "aten::clone", "aten::repeat_interleave", "aten::contiguous"),
}


def group_of(name: str) -> str:
    for group, prefixes in GROUPS.items():
        if any(name.startswith(p) or p in name for p in prefixes):
            return group
    return "the rest"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=200)
    args = parser.parse_args()
    import torch
    from torch.profiler import ProfilerActivity, profile

    from ethdash.scoring.batching import length_batches

    s = setup(args.items)
    spec, requests, scorer, gflops, prefix, tokens = s.spec, s.requests, s.scorer, s.gflops, s.prefix, s.tokens
    non_embedding, floor_s = s.non_embedding, s.floor_s
    n = len(requests)
    lengths = [len(r.prompt_ids) - prefix for r in requests]
    batches = length_batches(lengths, scorer.tokens_per_batch)
    padded = prefix + sum(len(b) * max(lengths[i] for i in b) for b in batches)

    scorer.score(requests[:4])  # warm-up
    start = time.perf_counter()
    scorer.score(requests)
    plain_s = time.perf_counter() - start
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        scorer.score(requests)
        profiled_s = time.perf_counter() - start

    seconds: dict[str, float] = dict.fromkeys([*GROUPS, "the rest"], 0.0)
    ops: dict[str, float] = {}
    for event in prof.key_averages():
        own = event.self_cpu_time_total / 1e6
        seconds[group_of(event.key)] += own
        ops[event.key] = own
    total = sum(seconds.values())
    linear_rate = 2 * non_embedding * padded / max(seconds["linear layers"], 1e-9) / 1e9

    report = {
        "machine": machine(torch, gflops),
        "date": time.strftime("%Y-%m-%d"),
        "prompts": n,
        "tokens": {"shared_prefix": prefix, "total_once": tokens, "computed_with_padding": padded},
        "batches": len(batches),
        "floor_seconds": round(floor_s, 3),
        "backend_seconds": round(plain_s, 3),
        "profiled_seconds": round(profiled_s, 3),
        "own_time_by_group_seconds": {k: round(v, 3) for k, v in seconds.items()},
        "linear_layers_gflops_on_padded_tokens": round(linear_rate, 1),
        "top_operators_seconds": {k: round(v, 3) for k, v in sorted(ops.items(), key=lambda kv: -kv[1])[:15]},
    }
    print(
        f"{n} prompts ({args.items} real dev dilemmas, one order), {spec.name}, float32, {os.cpu_count()} CPUs, "
        f"fp32 matmul {gflops:.0f} GFLOP/s (2048 x 2048)\n"
    )
    print(
        f"floor {floor_s:.2f} s; the backend {plain_s:.2f} s ({plain_s / floor_s:.2f}x the floor), under the profiler"
    )
    more = padded / tokens - 1
    print(f"{profiled_s:.2f} s; tokens: {tokens:,} once, {padded:,} computed with padding ({more:.1%} more)\n")
    print(f"{'own time by group':28} {'seconds':>8} {'share':>7} {'x floor':>8}")
    for group, s in seconds.items():
        print(f"{group:28} {s:8.2f} {s / total:7.1%} {s / floor_s:8.2f}")
    share = linear_rate / gflops
    print(f"\nlinear layers on the padded tokens: {linear_rate:.0f} GFLOP/s ({share:.0%} of the matmul rate)")
    print("\ntop operators (own time, s):")
    for name, s in list(report["top_operators_seconds"].items())[:10]:
        print(f"  {name:50} {s:7.2f}")
    out = ROOT / "bench" / "results" / "profile_backend.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
