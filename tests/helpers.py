"""Helpers shared by the model tests."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

from ethdash import models

MODEL = models.DEFAULT_MODEL


def make_adapter(folder: Path, seed: int, rank: int = 8) -> Path:
    """A small real PEFT LoRA adapter with random (non-zero) weights on every linear layer."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(models.weights_location(models.get(MODEL)), dtype=torch.float32)
    config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules="all-linear", init_lora_weights=False)
    model = get_peft_model(base, config)
    with torch.no_grad():  # scale the random B matrices so that the adapter moves answers visibly
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.mul_(0.1)
    model.save_pretrained(folder)
    return folder


def score_command(*args: str) -> list[str]:
    """`ethdash score` with the dilemma template, as a command line for a real process."""
    return [sys.executable, "-m", "ethdash", "score", "--template", "dilemmas-worse", "--dataset", "dilemmas", *args]


def wait_until(condition: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.2)
