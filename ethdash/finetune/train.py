"""The training loop of one run (runs in the run's own process; see runs.py).

LoRA (peft) on a registered model, float32 on the CPU (optionally a 4-bit base on CUDA: QLoRA).
Only the answer position's logits are computed. A seeded part of the training items is held out:
evaluated periodically (soft xent, Dirichlet score, accuracy), it picks the checkpoint, and it is
where c and T* are fitted. The evaluation split, if any, is never touched here.

Data parallel: launched by torchrun (`processes` > 1 in the config), every process trains on its own
micro-batches and DDP averages the gradients; process 0 alone evaluates, checkpoints, reports and
registers. The micro-batch of (step, micro, rank) is the one a single process would take as micro-batch
rank of grad_accum x processes, so the two ways train on the same data.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import shutil
import time
from collections.abc import Callable

import numpy as np

from ethdash import adapters, models, orders, scoring, templates
from ethdash.datasets import catalog
from ethdash.durations import Pace, human_duration
from ethdash.evaluation import measures
from ethdash.finetune.config import eval_interval
from ethdash.finetune.data import Example, examples, heldout_split, select_items
from ethdash.finetune.fused import prepare
from ethdash.finetune.runs import COMPLETE, Run, remove_incomplete_checkpoints
from ethdash.losses import compute
from ethdash.scoring.batching import last_column, left_pad, length_batches
from ethdash.scoring.prompting import Prompter
from ethdash.store import Store

EVAL_TOKENS_PER_BATCH = 2048
TRAIN_TOKENS_PER_PART = 2048  # padded tokens per forward and backward pass: bounds the activations kept


def train(run: Run, store: Store, should_stop: Callable[[], bool]) -> str:
    """Train (or continue) the run; returns the final state: succeeded or cancelled."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM, get_scheduler

    config = run.config()
    spec = models.get(config.model)
    template = templates.get(config.template)
    dataset = next(d for d in catalog.datasets(store) if d.name == config.dataset)
    options = dataset.view(template.view).options
    has_counts = dataset.view(template.view).has_counts
    items = select_items(store, config, template)
    train_idx, heldout_idx = heldout_split(len(items), config.heldout_fraction, config.seed)
    prompter = Prompter(spec)
    answer_ids = list(prompter.answer_ids(template))
    train_examples = examples(items.iloc[train_idx], template, options, prompter, config.order)
    heldout_items = items.iloc[heldout_idx].reset_index(drop=True)
    heldout_examples = examples(heldout_items, template, options, prompter, "both")
    per_step = config.batch_size * config.grad_accum
    total_steps = config.steps or math.ceil(config.epochs * len(train_examples) / per_step)
    eval_every = eval_interval(config.eval_every, total_steps)

    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    main = rank == 0
    if world > 1:
        import torch.distributed as dist

        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    torch.manual_seed(config.seed)
    load_kwargs = {"dtype": getattr(torch, spec.dtype)}
    local_device = {"": int(os.environ.get("LOCAL_RANK", "0"))}
    if torch.cuda.is_available():  # one process: the layers are spread over the GPUs; several: one GPU each
        load_kwargs["device_map"] = local_device if world > 1 else "auto"
    if config.quantize_4bit:
        from transformers import BitsAndBytesConfig

        load_kwargs = {
            "quantization_config": BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16
            ),
            "device_map": local_device if world > 1 else "auto",
        }
    if main:
        print(f"loading the weights of {spec.name}", flush=True)
    base = AutoModelForCausalLM.from_pretrained(models.weights_location(spec), **load_kwargs)
    device = next(base.parameters()).device
    remove_incomplete_checkpoints(run)
    checkpoints = run.checkpoints()
    if checkpoints:  # resume: the adapter weights, the optimizer, the schedule and the step
        model = PeftModel.from_pretrained(base, str(checkpoints[-1]), is_trainable=True)
        # weights_only: tensors and plain values, never pickled code (a planted file must not run on resume).
        state = torch.load(checkpoints[-1] / "trainer_state.pt", weights_only=True)
        start_step = state["step"]
        run.drop_metrics_after(start_step)  # the steps after the checkpoint are redone: no duplicate records
    else:
        target = (
            config.target_modules
            if config.target_modules == "all-linear"
            else [m.strip() for m in config.target_modules.split(",")]
        )
        lora = LoraConfig(
            r=config.rank,
            lora_alpha=config.alpha,
            lora_dropout=config.dropout,
            target_modules=target,
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(base, lora)
        state, start_step = None, 0
    # The same step with fewer passes over memory; logit_ids: the logits' columns of the answers.
    logit_ids, fused = prepare(base, config.loss, answer_ids)
    if main:
        print(f"fused forwards: {fused['lora']} LoRA layers, {fused['norm']} norms", flush=True)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate)
    scheduler = get_scheduler(
        config.schedule, optimizer, num_warmup_steps=config.warmup_steps, num_training_steps=total_steps
    )
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        random.setstate(state["python_rng"])
        torch.set_rng_state(state["torch_rng"])
    if main:
        run.write_status(
            state="running",
            message="training" if start_step == 0 else f"training, resumed from step {start_step}",
            step=start_step,
            total_steps=total_steps,
            train_examples=len(train_examples),
            heldout_items=len(heldout_items),
            eval_every=eval_every,
            processes=world,
        )
        print(
            f"training {run.name}: steps {start_step + 1}-{total_steps} of batch {per_step} from "
            f"{len(train_examples)} examples; {len(heldout_items)} held-out items evaluated every {eval_every} "
            "steps",
            flush=True,
        )

    # torch.compile fuses the elementwise work; the first step compiles for minutes on a CPU.
    runner = torch.compile(model, dynamic=True) if config.compile else model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        runner = DistributedDataParallel(runner)

    def forward_logits(batch: list[Example], grad: bool):
        ids, mask, positions = (t.to(device) for t in left_pad([e.prompt_ids for e in batch]))
        with torch.set_grad_enabled(grad):
            # Evaluation (process 0 alone) goes around DDP, whose forward would wait for the others.
            net = runner if grad else model
            out = net(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=last_column(ids))
        return out.logits[:, -1, :].float()

    def agreed(value: float, op: str) -> float:
        """The same value in every process (max or mean over them)."""
        if world == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=device if device.type == "cuda" else "cpu")
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
        return float(tensor) / (world if op == "mean" else 1)

    def evaluate(step: int) -> dict:
        model.eval()
        probs = {}
        lengths = [len(e.prompt_ids) for e in heldout_examples]
        for indices in length_batches(lengths, EVAL_TOKENS_PER_BATCH):
            batch = [heldout_examples[i] for i in indices]
            logits = forward_logits(batch, grad=False)
            logp = torch.log_softmax(logits.double(), dim=-1)[:, logit_ids].detach().cpu().numpy()
            for example, lp in zip(batch, logp):
                p, _ = scoring.distribution(lp)
                probs[(example.item_id, example.order)] = template.to_votes(p, options, example.order)
        model.train()
        record = {"kind": "eval", "step": step, **heldout_metrics(heldout_items, probs, template, has_counts)}
        run.append_metrics(record)
        print(eval_line(record), flush=True)
        return record

    model.train()
    step = start_step
    pace = Pace(time.perf_counter(), start_step, total_steps)
    epoch_orders: dict[int, np.ndarray] = {}
    while step < total_steps:
        if agreed(float(should_stop()), "max"):  # every process stops at the same step
            if main:
                _checkpoint(run, model, optimizer, scheduler, step)
            _leave(world)
            return "cancelled"
        step += 1
        started = time.perf_counter()
        optimizer.zero_grad()
        total_loss = 0.0
        # Long prompts (anecdotes) go through in parts under a token budget, so that memory stays bounded;
        # each part's mean loss is weighted by its share of the batch: the gradient is the whole batch's.
        parts = []
        for micro in range(config.grad_accum):
            batch = _batch_for(step, micro, config, train_examples, epoch_orders, world, rank)
            for indices in length_batches([len(e.prompt_ids) for e in batch], TRAIN_TOKENS_PER_PART):
                parts.append(([batch[i] for i in indices], len(indices) / len(batch) / config.grad_accum))
        for k, (part, weight) in enumerate(parts):
            # DDP averages gradients once per step, on the last backward.
            sync = contextlib.nullcontext() if world == 1 or k == len(parts) - 1 else runner.no_sync()
            with sync:
                logits = forward_logits(part, grad=True)
                counts = torch.tensor([e.answer_counts for e in part], dtype=torch.float32, device=logits.device)
                loss = compute(config.loss, logits, logit_ids, counts) * weight
                loss.backward()
            total_loss += float(loss.detach())
        if config.max_grad_norm:
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        total_loss = agreed(total_loss, "mean")
        if not main:
            continue
        run.append_metrics(
            {
                "kind": "train",
                "step": step,
                "loss": total_loss,
                "lr": scheduler.get_last_lr()[0],
                "seconds": time.perf_counter() - started,
            }
        )
        evaluate_now = heldout_examples and (step % eval_every == 0 or step == total_steps)
        if evaluate_now:
            evaluate(step)
        if evaluate_now or step % config.checkpoint_every == 0 or step == total_steps:
            _checkpoint(run, model, optimizer, scheduler, step)
        pace.done(step, time.perf_counter())  # after evaluating and saving: the ETA includes their time
        run.write_status(
            step=step, loss=total_loss, seconds_per_step=pace.seconds_per_step, eta_seconds=pace.eta_seconds
        )
        if step <= 10 or step % max(1, total_steps // 100) == 0 or step == total_steps:  # <= ~110 lines a run
            print(step_line(step, total_steps, total_loss, pace.seconds_per_step, pace.eta_seconds), flush=True)
    if main:
        final = _finish(run, store, config)
        run.write_status(state="succeeded", step=step, final=final, message="finished", eta_seconds=0.0)
        print(f"finished: the adapter of step {final['chosen_step']} is registered as '{config.name}'", flush=True)
    _leave(world)
    return "succeeded"


def _leave(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()


def step_line(step: int, total: int, loss: float, seconds_per_step: float | None, eta_seconds: float | None) -> str:
    """One line of the run's log: "step 5/12  loss 0.6931 nats  1.24 s/step  ETA about 9 s"."""
    pace = "" if seconds_per_step is None else f"  {seconds_per_step:.2f} s/step"
    eta = "" if eta_seconds is None else f"  ETA about {human_duration(eta_seconds)}"
    return f"step {step}/{total}  loss {loss:.4f} nats{pace}{eta}"


def eval_line(record: dict) -> str:
    """The log's line for a held-out evaluation."""
    dirichlet = (
        "Dirichlet score n/a (shares, no vote counts)"
        if record["dirichlet"] is None or np.isnan(record["dirichlet"])
        else f"Dirichlet score {record['dirichlet']:.4f} nats (c {record['c']:.2f})"
    )
    return (
        f"held-out at step {record['step']}: soft xent {record['xent']:.4f} nats, {dirichlet}, "
        f"accuracy {record['accuracy']:.1%} ({record['items']} items)"
    )


def heldout_metrics(items, probs: dict, template, has_counts: bool = True) -> dict:
    """Every metric (ethdash.evaluation.measures) on the held-out items, with c and T* fitted on them."""
    counts = np.array([list(c) for c in items["counts"]], dtype=float)
    if template.is_dilemma:
        p_ab = np.array([probs[(i, "ab")] for i in items["item_id"]])
        p_ba = np.array([probs[(i, "ba")] for i in items["item_id"]])
        p = orders.combine(p_ab, p_ba)
        first = 0.5 * (p_ab[:, 0] + p_ba[:, 1])  # per item, P(first-listed option) over both orders
    else:
        p = np.array([probs[(i, "-")] for i in items["item_id"]])
        first = None
    inputs = measures.fitted_inputs(counts, p, first, has_counts)
    return {
        "position_bias": None,  # reported (as none) for anecdotes too
        **measures.values(inputs),
        "c": float(inputs.c[0]),
        "temperature": float(inputs.t[0]),
        "items": len(counts),
    }


BUCKET_BATCHES = 8  # batches drawn together and sorted by length, so that little compute goes to padding


def _batch_for(
    step: int, micro: int, config, data: list[Example], epoch_orders: dict, world: int = 1, rank: int = 0
) -> list[Example]:
    """The examples of one micro-batch, a pure function of (seed, step, micro, rank): a resumed run sees
    the same data, and `world` processes see what one process sees with world x grad_accum micro-batches.
    Examples follow a seeded permutation per epoch; each window of BUCKET_BATCHES batches is sorted by
    prompt length, cut into batches, and those batches are taken in a seeded order."""
    size = config.batch_size
    index = ((step - 1) * config.grad_accum + micro) * world + rank
    window, slot = divmod(index, BUCKET_BATCHES)
    first = window * BUCKET_BATCHES * size
    members = []
    for position in range(first, first + BUCKET_BATCHES * size):
        epoch, k = divmod(position, len(data))
        if epoch not in epoch_orders:
            epoch_orders[epoch] = np.random.default_rng([config.seed, epoch]).permutation(len(data))
        members.append(data[epoch_orders[epoch][k]])
    members.sort(key=lambda e: len(e.prompt_ids))
    order = np.random.default_rng([config.seed, 1_000_003, window]).permutation(BUCKET_BATCHES)
    chosen = order[slot]
    return members[chosen * size : (chosen + 1) * size]


def _checkpoint(run: Run, model, optimizer, scheduler, step: int) -> None:
    import torch

    folder = run.checkpoints_dir / f"step-{step:06d}"
    if (folder / COMPLETE).is_file():
        return
    shutil.rmtree(folder, ignore_errors=True)
    model.save_pretrained(folder)
    torch.save(
        {
            "step": step,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "python_rng": random.getstate(),
            "torch_rng": torch.get_rng_state(),
        },
        folder / "trainer_state.pt",
    )
    (folder / COMPLETE).write_text(str(step))


def _finish(run: Run, store: Store, config) -> dict:
    """Pick the checkpoint with the best held-out xent (else the last), make it the adapter, register it."""
    evals = {r["step"]: r for r in run.metrics() if r.get("kind") == "eval"}
    checkpoints = {int(p.name.split("-")[1]): p for p in run.checkpoints()}
    candidates = [s for s in evals if s in checkpoints]
    chosen = min(candidates, key=lambda s: evals[s]["xent"]) if candidates else max(checkpoints)
    shutil.rmtree(run.adapter_dir, ignore_errors=True)
    shutil.copytree(checkpoints[chosen], run.adapter_dir, ignore=shutil.ignore_patterns("trainer_state.pt", COMPLETE))
    final = {"chosen_step": chosen, **evals.get(chosen, {})}
    final.pop("kind", None)
    adapter = adapters.register(
        store,
        config.name,
        run.adapter_dir,
        config.model,
        meta={"run": str(run.folder), "config": config.__dict__, "final": final},
    )
    final["adapter_hash"] = adapter.content_hash
    return final
