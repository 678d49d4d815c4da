"""The fused training step (ethdash.finetune.fused) against peft's and transformers' own forwards, on
the real model and real dilemma prompts: the same loss, the same answer logits, the same gradient for
every LoRA parameter; and layers it does not cover keep their own forward."""

from __future__ import annotations

import pytest

from ethdash import losses, models, templates
from ethdash.datasets.importer import import_paths
from ethdash.finetune.config import RunConfig
from ethdash.finetune.data import examples, select_items
from ethdash.finetune.fused import fuse, prepare
from ethdash.scoring.batching import last_column, left_pad
from ethdash.scoring.prompting import Prompter

from .conftest import DILEMMAS_DEV
from .helpers import MODEL

pytestmark = pytest.mark.model


@pytest.fixture
def batch(store, shared_data):
    """Eight real dilemma prompts (left-padded), their vote counts and the answer token ids."""
    import torch

    import_paths(store, [DILEMMAS_DEV])
    template = templates.get("dilemmas-worse")
    prompter = Prompter(models.get(MODEL))
    data = examples(select_items(store, RunConfig(name="t", limit=8), template), template, ("a", "b"), prompter)
    counts = torch.tensor([e.answer_counts for e in data[:8]], dtype=torch.float32)
    return left_pad([e.prompt_ids for e in data[:8]]), counts, list(prompter.answer_ids(template))


def lora_model(dropout: float):
    """The embedded model with a LoRA adapter on every linear layer, B not zero (peft's init would make
    the LoRA term vanish, and with it most of what is compared)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(models.weights_location(models.get(MODEL)), dtype=torch.float32)
    config = LoraConfig(r=8, lora_alpha=16, lora_dropout=dropout, target_modules="all-linear", init_lora_weights=False)
    model = get_peft_model(base, config)
    model.train()
    return base, model


def train_step(model, tensors, keep, loss: str, logit_ids: list[int], counts):
    """Loss, logits and the LoRA gradients of one step; dropout draws from the same seed every time."""
    import torch

    ids, mask, positions = tensors
    model.zero_grad()
    torch.manual_seed(1)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=keep).logits[:, -1]
    value = losses.compute(loss, logits, logit_ids, counts)
    value.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return float(value.detach()), logits.detach()[:, logit_ids], grads


@pytest.mark.parametrize("loss, dropout", [("soft-xent", 0.0), ("dirichlet", 0.1), ("text-to-text", 0.0)])
def test_the_fused_step_computes_what_peft_and_transformers_compute(batch, loss, dropout):
    import torch

    tensors, counts, answer_ids = batch
    base, model = lora_model(dropout)
    expected = train_step(model, tensors, 1, loss, answer_ids, counts)

    logit_ids, fused = prepare(base, loss, answer_ids)
    assert fused == {"lora": 30 * 7, "norm": 30 * 2 + 1}  # every LoRA layer and every norm of the model
    head = base.get_output_embeddings()
    assert head.weight.shape[0] == (len(answer_ids) if loss != "text-to-text" else base.config.vocab_size)
    got = train_step(model, tensors, last_column(tensors[0]), loss, logit_ids, counts)

    assert got[0] == pytest.approx(expected[0], rel=1e-5)
    torch.testing.assert_close(got[1], expected[1], rtol=1e-5, atol=1e-4)
    assert expected[2].keys() == got[2].keys() and len(got[2]) == 2 * 30 * 7
    for name, grad in expected[2].items():
        scale = float(grad.abs().max())
        assert scale > 0, name
        # float32 rounding through 30 layers reaches ~3e-4 of the largest entry; a mistake is of order 1
        assert float((got[2][name] - grad).abs().max()) <= 1e-3 * scale, name


def test_the_fused_forward_leaves_the_adapter_switchable(batch):
    """With the adapter disabled, the fused model is the base model again (peft's own path)."""
    import torch

    (ids, mask, positions), _, answer_ids = batch
    base, model = lora_model(0.0)
    model.eval()
    with torch.no_grad(), model.disable_adapter():
        plain = model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=1).logits
    with torch.no_grad():
        adapted = model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=1).logits
    fuse(base)
    with torch.no_grad(), model.disable_adapter():
        fused_plain = model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=1).logits
    assert float((adapted - plain).abs().max()) > 1e-2  # the adapter changes the answers
    torch.testing.assert_close(fused_plain, plain, rtol=1e-5, atol=1e-4)


def test_a_norm_that_computes_something_else_keeps_its_own_forward():
    """Gemma-style norms scale by 1 + w: same class-name pattern and attributes, other arithmetic."""
    import torch
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    class OnePlusWeightRMSNorm(LlamaRMSNorm):
        def forward(self, x):
            return super().forward(x) / self.weight * (1 + self.weight)

    norms = torch.nn.ModuleList([LlamaRMSNorm(16), OnePlusWeightRMSNorm(16)])
    for norm in norms:
        norm.weight.requires_grad_(False)
        norm.weight.uniform_(0.5, 1.5)
    assert fuse(norms) == {"lora": 0, "norm": 1}
    assert hasattr(norms[0], "_unfused_forward") and not hasattr(norms[1], "_unfused_forward")
    assert fuse(norms) == {"lora": 0, "norm": 1}  # idempotent
