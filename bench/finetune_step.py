"""One LoRA training step of the embedded model at batch 8 on real dilemma prompts, three ways:
- ethdash: the training loop's step: the answer position only, projected onto the answer tokens
  alone, with the fused LoRA and norm forwards of ethdash.finetune.fused;
- unfused: the answer position only, through the whole vocabulary, with peft's and transformers' own
  forwards (ethdash's step before the fused forwards);
- straightforward: peft's forwards and the full logits at every position;
with seconds per step, tokens per second, peak memory, and the fraction of the machine's measured
float32 matmul rate that the step achieves.

FLOPs: a forward pass is 2 x non-embedding parameters x tokens, plus 2 x hidden x (vocabulary, or
answer tokens) for each position sent through the output projection; a LoRA step is about twice its
forward pass.
Each variant runs in its own process, so that peak memory is its own.

Run: .venv/bin/python bench/finetune_step.py [--steps 6] [--compiled]
Prints a table and writes bench/results/finetune_step.json. Target: above half of the measured rate.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DILEMMAS_DEV = ROOT.parent / "shared" / "data" / "scruples" / "dilemmas" / "dev.scruples-dilemmas.jsonl"
BATCH = 8


def matmul_rate(threads: int, n: int = 2048, repeat: int = 5) -> float:
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    start = time.perf_counter()
    for _ in range(repeat):
        a @ b
    return 2 * n**3 * repeat / (time.perf_counter() - start)


def run_variant(variant: str, steps: int) -> dict:
    os.environ["ETHDASH_HOME"] = tempfile.mkdtemp(prefix="ethdash-bench-")
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from ethdash import losses, models, templates
    from ethdash.datasets.importer import import_paths
    from ethdash.finetune.config import RunConfig
    from ethdash.finetune.data import examples, select_items
    from ethdash.finetune.fused import prepare
    from ethdash.finetune.train import BUCKET_BATCHES, _batch_for
    from ethdash.scoring.batching import last_column, left_pad
    from ethdash.scoring.prompting import Prompter
    from ethdash.store import Store

    store = Store()
    import_paths(store, [DILEMMAS_DEV])
    spec = models.get(models.DEFAULT_MODEL)
    template = templates.get("dilemmas-worse")
    config = RunConfig(name="bench", limit=BATCH * BUCKET_BATCHES)
    prompter = Prompter(spec)
    data = examples(select_items(store, config, template), template, ("action 1", "action 2"), prompter)
    answer_ids = list(prompter.answer_ids(template))
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(models.weights_location(spec), dtype=torch.float32)
    model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"))
    logit_ids = answer_ids
    if variant not in ("straightforward", "unfused"):  # the training loop's fused forwards and answer head
        logit_ids, _ = prepare(base, "soft-xent", answer_ids)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model.train()
    runner = torch.compile(model, dynamic=True) if variant == "ethdash-compiled" else model

    def step(batch) -> int:
        ids, mask, positions = left_pad([e.prompt_ids for e in batch])
        keep = 0 if variant == "straightforward" else last_column(ids)  # 0: logits at every position
        logits = runner(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=keep).logits
        counts = torch.tensor([e.answer_counts for e in batch])
        loss = losses.compute("soft-xent", logits[:, -1, :], logit_ids, counts)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return int(mask.sum())

    orders: dict = {}  # the training loop's own batches: length-bucketed
    batches = [_batch_for(i + 1, 0, config, data, orders) for i in range(steps + 1)]
    step(batches[0])  # warm-up (and, compiled, the compilation)
    if variant == "ethdash-compiled":
        step(batches[1])  # a second shape compiles once more
    tokens, start = 0, time.perf_counter()
    for batch in batches[1:]:
        tokens += step(batch)
    seconds = (time.perf_counter() - start) / steps
    tokens_per_step = tokens / steps
    non_embedding = sum(p.numel() for n, p in base.named_parameters() if "embed" not in n and "lora" not in n)
    hidden, vocab = base.config.hidden_size, base.config.vocab_size
    # (position, output row) pairs through the output projection
    rows = {"straightforward": tokens_per_step * vocab, "unfused": BATCH * vocab}
    projected = rows.get(variant, BATCH * len(logit_ids))
    forward = 2 * non_embedding * tokens_per_step + 2 * hidden * projected
    return {
        "variant": variant,
        "seconds_per_step": seconds,
        "tokens_per_step": tokens_per_step,
        "tokens_per_s": tokens_per_step / seconds,
        "step_flops": 2 * forward,
        "achieved_flops_per_s": 2 * forward / seconds,
        "threads": torch.get_num_threads(),
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
        "non_embedding_params": non_embedding,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--compiled", action="store_true", help="also time the torch.compile'd step (minutes)")
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.steps)))
        return
    results = {}
    variants = ("ethdash", "unfused", "straightforward", *(["ethdash-compiled"] if args.compiled else []))
    for variant in variants:
        out = subprocess.run(
            [sys.executable, __file__, "--variant", variant, "--steps", str(args.steps)],
            capture_output=True,
            text=True,
            check=True,
        )
        results[variant] = json.loads(out.stdout.strip().splitlines()[-1])
    rate = matmul_rate(results["ethdash"]["threads"])
    for r in results.values():
        r["fraction_of_matmul_rate"] = r["achieved_flops_per_s"] / rate
    ours, plain = results["ethdash"], results["straightforward"]
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "cpus": os.cpu_count(),
        "batch": BATCH,
        "matmul_flops_per_s": rate,
        "results": results,
        "speedup_over_straightforward": plain["seconds_per_step"] / ours["seconds_per_step"],
    }
    print(
        f"LoRA r=8 step, batch {BATCH} real dilemma prompts, float32, {ours['threads']} threads; "
        f"measured matmul rate {rate / 1e9:.1f} GFLOP/s\n"
    )
    print(f"{'variant':16} {'s/step':>7} {'tokens/s':>9} {'GFLOP/s':>8} {'of rate':>8} {'peak GB':>8}")
    for r in results.values():
        print(
            f"{r['variant']:16} {r['seconds_per_step']:7.2f} {r['tokens_per_s']:9.0f} "
            f"{r['achieved_flops_per_s'] / 1e9:8.1f} {r['fraction_of_matmul_rate']:8.0%} {r['peak_rss_gb']:8.2f}"
        )
    print(
        f"\nethdash step is {report['speedup_over_straightforward']:.2f}x the straightforward step "
        f"(target: above half of the measured rate)"
    )
    print("the compiled step excludes its compile time (minutes, in the first steps)")
    out = ROOT / "bench" / "results" / "finetune_step.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
