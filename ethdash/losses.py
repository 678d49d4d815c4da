"""Training losses on the answer tokens (pure torch, no I/O).

`answer_logits` is (batch, answers): the logits of the template's answer tokens at the answer
position; `counts` is (batch, answers): the human votes per answer (see Template.answer_counts).
"""

from __future__ import annotations

import torch


def soft_xent(answer_logits: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the softmax over the answers against the vote shares ȳ."""
    y = counts / counts.sum(-1, keepdim=True)
    return -(y * torch.log_softmax(answer_logits, dim=-1)).sum(-1).mean()


def dirichlet(answer_logits: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Dirichlet-multinomial NLL of the vote counts with α = exp(z), as in the Scruples code.

    Raw answer logits of a language model are large (15-20, α near 1e8) and training pushes them
    further, where lgamma(α + n) − lgamma(α) cancels to nothing even in float64. Vote counts are
    integers, so the exact, stable form is used instead:
        lgamma(α + n) − lgamma(α) = Σ_{j<n} log(α + j),  with log(α + j) = logaddexp(z, log j).
    """
    z, n = answer_logits.double(), counts.double()
    total = n.sum(-1)
    j = torch.arange(int(total.max().item()), dtype=torch.float64, device=z.device)
    log_j = torch.log(j)  # log 0 = -inf, so the j = 0 term is exactly z
    log_a_sum = torch.logsumexp(z, dim=-1)
    per_total = torch.logaddexp(log_a_sum[:, None], log_j) * (j < total[:, None])
    per_class = torch.logaddexp(z[..., None], log_j) * (j < n[..., None])
    return (per_total.sum(-1) - per_class.sum((-1, -2))).mean()


def text_to_text(vocab_logits: torch.Tensor, answer_ids: list[int], counts: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the full vocabulary with the vote shares as soft targets on the answer tokens."""
    y = counts / counts.sum(-1, keepdim=True)
    logp = torch.log_softmax(vocab_logits, dim=-1)[:, answer_ids]
    return -(y * logp).sum(-1).mean()


LOSSES = ("soft-xent", "dirichlet", "text-to-text")
ANSWER_LOGIT_LOSSES = ("soft-xent", "dirichlet")  # functions of the answer tokens' logits alone


def compute(name: str, vocab_logits: torch.Tensor, answer_ids: list[int], counts: torch.Tensor) -> torch.Tensor:
    if name == "text-to-text":
        return text_to_text(vocab_logits, answer_ids, counts)
    answer_logits = vocab_logits[:, answer_ids]
    if name == "soft-xent":
        return soft_xent(answer_logits, counts)
    if name == "dirichlet":
        return dirichlet(answer_logits, counts)
    raise ValueError(f"unknown loss '{name}': choose from {', '.join(LOSSES)}")
