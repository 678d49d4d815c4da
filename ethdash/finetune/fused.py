"""A faster training step for the frozen parts of the model: same weights, same results.

In eager PyTorch on a CPU, a LoRA step on a small model spends a third of its time outside the big
matrix multiplies, in full-width elementwise passes over memory. Three of them are avoidable:

- peft computes `base(x) + lora_B(lora_A(dropout(x))) * scaling`: the scaling multiplies the
  full-width output (and its gradient) and the sum is a separate full-width add each way. `_LoraLinear`
  scales the rank-r intermediate instead and accumulates the LoRA term into the base product (`addmm`,
  C += A B inside the multiply), with the backward written out.
- A Llama-style RMSNorm is five autograd operations forward and more backward; `_RmsNorm` is one
  function with a hand-written backward (the weight is frozen under LoRA, so only dx is needed).
- Losses on the answer tokens need only those tokens' logits: `AnswerHead` projects onto their rows of
  the output embedding instead of the whole vocabulary (49,152 rows for SmolLM2).

Only forwards change: parameters, their names and the saved adapters are peft's own, so a checkpoint
loads in peft and in vLLM as before. A layer outside what is covered keeps its own forward (merged or
several active adapters, DoRA and other variants, 4-bit bases, trained biases, fan_in_fan_out, a mixed batch, a norm
that computes something else, inputs that are not float32 for the norm).
"""

from __future__ import annotations

import types

import torch


class _LoraLinear(torch.autograd.Function):
    """y = x Wᵀ (+ bias) + s (d Aᵀ) Bᵀ, with d = x (no dropout) or d = dropout(x) passed separately."""

    @staticmethod
    def forward(ctx, x, dropped, weight, bias, lora_a, lora_b, scaling: float):
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        d2 = x2 if dropped is None else dropped.reshape(-1, shape[-1])
        hidden = torch.mm(d2, lora_a.t()).mul_(scaling)  # rank r: the cheap place to scale
        out = torch.mm(x2, weight.t()) if bias is None else torch.addmm(bias, x2, weight.t())
        out.addmm_(hidden, lora_b.t())
        ctx.save_for_backward(d2, weight, lora_a, lora_b, hidden)
        ctx.scaling = scaling
        ctx.shape = shape
        ctx.separate = dropped is not None
        return out.view(*shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, grad_out):
        d2, weight, lora_a, lora_b, hidden = ctx.saved_tensors
        g2 = grad_out.reshape(-1, weight.shape[0])
        # (hiddenᵀ g)ᵀ, not gᵀ hidden: MKL is ~3x faster with the rank as the rows of the product
        grad_b = torch.mm(hidden.t(), g2).t() if ctx.needs_input_grad[5] else None
        grad_hidden = torch.mm(g2, lora_b).mul_(ctx.scaling)
        grad_a = torch.mm(grad_hidden.t(), d2) if ctx.needs_input_grad[4] else None
        grad_x = grad_dropped = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.mm(g2, weight)
            if ctx.separate:  # the LoRA path's input gradient goes back through the dropout
                grad_dropped = torch.mm(grad_hidden, lora_a).view(ctx.shape)
            else:
                grad_x.addmm_(grad_hidden, lora_a)
            grad_x = grad_x.view(ctx.shape)
        return grad_x, grad_dropped, None, None, grad_a, grad_b, None


class _RmsNorm(torch.autograd.Function):
    """y = w · x / sqrt(mean(x²) + eps) over the last dimension, w frozen."""

    @staticmethod
    def forward(ctx, x, weight, eps: float):
        rstd = torch.rsqrt(torch.linalg.vecdot(x, x).div_(x.shape[-1]).add_(eps)).unsqueeze(-1)
        ctx.save_for_backward(x, weight, rstd)
        return (x * rstd).mul_(weight)

    @staticmethod
    def backward(ctx, grad_out):
        x, weight, rstd = ctx.saved_tensors
        # with x̂ = x · rstd and g' = g · w:  dx = rstd · (g' − x̂ · mean(g' · x̂))
        gw = grad_out * weight
        mean = torch.linalg.vecdot(gw, x).unsqueeze(-1).mul_(rstd.square().div_(x.shape[-1]))
        return gw.sub_(x * mean).mul_(rstd), None, None


def _lora_forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    adapter = self.active_adapters[0] if len(self.active_adapters) == 1 else None
    if args or kwargs or self.disable_adapters or self.merged or adapter not in self.lora_A:
        return self._unfused_forward(x, *args, **kwargs)
    base = self.base_layer
    lora_a, lora_b = self.lora_A[adapter].weight, self.lora_B[adapter].weight
    if not x.dtype == lora_a.dtype == base.weight.dtype:
        return self._unfused_forward(x, *args, **kwargs)
    dropout = self.lora_dropout[adapter]
    dropped = None if isinstance(dropout, torch.nn.Identity) else dropout(x)
    return _LoraLinear.apply(x, dropped, base.weight, base.bias, lora_a, lora_b, float(self.scaling[adapter]))


def _norm_forward(self, x: torch.Tensor) -> torch.Tensor:
    if x.dtype != torch.float32 or self.weight.dtype != torch.float32:
        return self._unfused_forward(x)
    return _RmsNorm.apply(x, self.weight, self.variance_epsilon)


def _lora_covered(module: torch.nn.Module) -> bool:
    from peft.tuners.lora.layer import Linear

    if type(module) is not Linear or module.fan_in_fan_out:
        return False
    base = module.base_layer
    if type(base) is not torch.nn.Linear or base.weight.requires_grad:
        return False
    if base.bias is not None and base.bias.requires_grad:  # peft's bias="all"/"lora_only": _LoraLinear gives it no grad
        return False
    return not any(module.lora_variant.values()) and not any(module.use_dora.values())


def _norm_covered(module: torch.nn.Module) -> bool:
    """A frozen norm that computes exactly what `_RmsNorm` computes (checked on a random input: a
    class named RMSNorm may compute something else, e.g. Gemma's scales by 1 + w)."""
    weight = getattr(module, "weight", None)
    if not type(module).__name__.endswith("RMSNorm") or not hasattr(module, "variance_epsilon"):
        return False
    if not isinstance(weight, torch.Tensor) or weight.dim() != 1 or weight.requires_grad:
        return False
    if weight.dtype != torch.float32 or weight.is_meta:
        return False
    probe = torch.randn(2, 3, weight.shape[0], generator=torch.Generator().manual_seed(0)).to(weight.device)
    with torch.no_grad():
        expected = module(probe)
        ours = _RmsNorm.apply(probe, weight, module.variance_epsilon)
    return expected.shape == ours.shape and torch.allclose(expected, ours, rtol=1e-5, atol=1e-6)


def _replace_forward(module: torch.nn.Module, forward) -> None:
    module._unfused_forward = module.forward
    module.forward = types.MethodType(forward, module)


def fuse(model: torch.nn.Module) -> dict[str, int]:
    """Give the covered LoRA layers and norms of `model` the fused forwards (idempotent); returns how
    many of each now have them."""
    counts = {"lora": 0, "norm": 0}
    for module in model.modules():
        if hasattr(module, "_unfused_forward"):
            counts["lora" if hasattr(module, "lora_A") else "norm"] += 1
        elif _lora_covered(module):
            _replace_forward(module, _lora_forward)
            counts["lora"] += 1
        elif _norm_covered(module):
            _replace_forward(module, _norm_forward)
            counts["norm"] += 1
    return counts


class AnswerHead(torch.nn.Module):
    """The output projection restricted to the answer tokens' rows: logits column k is answer k."""

    def __init__(self, head: torch.nn.Linear, answer_ids: list[int]):
        super().__init__()
        rows = torch.tensor(answer_ids, device=head.weight.device)
        self.register_buffer("weight", head.weight.detach()[rows].clone(), persistent=False)
        bias = None if head.bias is None else head.bias.detach()[rows].clone()
        self.register_buffer("bias", bias, persistent=False)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        # .to: a model spread over several GPUs has its last layer elsewhere (a no-op otherwise)
        return torch.nn.functional.linear(hidden.to(self.weight.device), self.weight, self.bias)


def prepare(model: torch.nn.Module, loss: str, answer_ids: list[int]) -> tuple[list[int], dict[str, int]]:
    """`fuse` the model, and give it the answer head where the loss needs nothing else. Returns the
    columns of the model's logits that hold the answer tokens, and `fuse`'s counts."""
    from ethdash.losses import ANSWER_LOGIT_LOSSES

    counts = fuse(model)
    if loss not in ANSWER_LOGIT_LOSSES:
        return answer_ids, counts
    if not isinstance(model.get_output_embeddings(), AnswerHead):
        model.set_output_embeddings(AnswerHead(model.get_output_embeddings(), answer_ids))
    return list(range(len(answer_ids))), counts
