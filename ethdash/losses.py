"""Training losses on the answer tokens (pure torch, no I/O), and their registry `LOSSES`.

`answer_logits` is (batch, answers): the logits of the template's answer tokens at the answer
position; `counts` is (batch, answers): the human votes per answer (see Template.answer_counts).
torch is imported inside the functions: the names (the CLI's and the form's choices) load without it.
A new loss is one function here and one entry in `LOSSES`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def soft_xent(answer_logits: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the softmax over the answers against the vote shares ȳ."""
    import torch

    y = counts / counts.sum(-1, keepdim=True)
    return -(y * torch.log_softmax(answer_logits, dim=-1)).sum(-1).mean()


def dirichlet(answer_logits: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Dirichlet-multinomial NLL of the vote counts with α = exp(z), as in the Scruples code.

    Raw answer logits of a language model are large (15-20, α near 1e8) and training pushes them
    further, where lgamma(α + n) − lgamma(α) cancels to nothing even in float64. Vote counts are
    integers, so the exact, stable form is used instead:
        lgamma(α + n) − lgamma(α) = Σ_{j<n} log(α + j),  with log(α + j) = logaddexp(z, log j).
    """
    import torch

    z, n = answer_logits.double(), torch.round(counts.double())  # shares of respondents: whole votes
    total = n.sum(-1)
    j = torch.arange(int(total.max().item()), dtype=torch.float64, device=z.device)
    log_j = torch.log(j)  # log 0 = -inf, so the j = 0 term is exactly z
    log_a_sum = torch.logsumexp(z, dim=-1)
    per_total = torch.logaddexp(log_a_sum[:, None], log_j) * (j < total[:, None])
    per_class = torch.logaddexp(z[..., None], log_j) * (j < n[..., None])
    return (per_total.sum(-1) - per_class.sum((-1, -2))).mean()


def text_to_text(vocab_logits: torch.Tensor, answer_ids: list[int], counts: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the full vocabulary with the vote shares as soft targets on the answer tokens."""
    import torch

    y = counts / counts.sum(-1, keepdim=True)
    logp = torch.log_softmax(vocab_logits, dim=-1)[:, answer_ids]
    return -(y * logp).sum(-1).mean()


@dataclass(frozen=True)
class Loss:
    name: str
    description: str
    on_answer_logits: bool  # a function of the answer tokens' logits alone (else of the whole vocabulary's)
    function: Callable[..., torch.Tensor]


LOSSES: dict[str, Loss] = {
    loss.name: loss
    for loss in (
        Loss("soft-xent", "cross-entropy against the vote shares, softmax over the answers", True, soft_xent),
        Loss("dirichlet", "Dirichlet-multinomial NLL of the vote counts, α = exp(answer logits)", True, dirichlet),
        Loss("text-to-text", "cross-entropy over the vocabulary, vote shares on the answers", False, text_to_text),
    )
}
ANSWER_LOGIT_LOSSES = tuple(name for name, loss in LOSSES.items() if loss.on_answer_logits)


def compute(name: str, vocab_logits: torch.Tensor, answer_ids: list[int], counts: torch.Tensor) -> torch.Tensor:
    if name not in LOSSES:
        raise ValueError(f"unknown loss '{name}': choose from {', '.join(LOSSES)}")
    loss = LOSSES[name]
    if loss.on_answer_logits:
        return loss.function(vocab_logits[:, answer_ids], counts)
    return loss.function(vocab_logits, answer_ids, counts)
