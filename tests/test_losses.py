"""Training losses against the metrics (numpy) and brute force."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ethdash import losses, metrics


@st.composite
def logits_and_counts(draw):
    k = draw(st.integers(2, 5))
    n = draw(st.integers(1, 6))
    z = np.array([draw(st.lists(st.floats(-4, 4), min_size=k, max_size=k)) for _ in range(n)])
    counts = np.array(
        [draw(st.lists(st.integers(0, 9), min_size=k, max_size=k).filter(sum)) for _ in range(n)], dtype=float
    )
    return z, counts


@given(logits_and_counts())
@settings(max_examples=50)
def test_soft_xent_loss_is_the_metric_on_the_softmax(case):
    z, counts = case
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    loss = losses.soft_xent(torch.tensor(z), torch.tensor(counts))
    assert float(loss) == pytest.approx(metrics.soft_xent(counts, p), rel=1e-9, abs=1e-12)


@given(logits_and_counts())
@settings(max_examples=50)
def test_dirichlet_loss_is_the_metric_with_alpha_exp_z(case):
    z, counts = case
    loss = losses.dirichlet(torch.tensor(z), torch.tensor(counts))
    assert float(loss) == pytest.approx(metrics.dirichlet_nll_from_logits(counts, z), rel=1e-9)


def test_text_to_text_is_full_vocabulary_cross_entropy_on_the_answer_tokens():
    rng = np.random.default_rng(0)
    vocab = rng.normal(size=(3, 50))
    answer_ids = [7, 19]
    counts = np.array([[3, 2], [5, 0], [1, 4]], dtype=float)
    expected = []
    for row, n in zip(vocab, counts):
        logp = row - np.log(np.exp(row).sum())
        expected.append(-sum(n[k] / n.sum() * logp[a] for k, a in enumerate(answer_ids)))
    loss = losses.text_to_text(torch.tensor(vocab), answer_ids, torch.tensor(counts))
    assert float(loss) == pytest.approx(np.mean(expected), rel=1e-12)
    # mass outside the answer set is penalised: it is never below the answer-only cross-entropy
    answer_only = losses.soft_xent(torch.tensor(vocab[:, answer_ids]), torch.tensor(counts))
    assert float(loss) > float(answer_only)


def test_the_soft_xent_gradient_vanishes_at_the_human_distribution():
    counts = torch.tensor([[3.0, 1.0, 0.0]], dtype=torch.float64)
    z = torch.log(torch.tensor([[0.75, 0.25, 1e-12]], dtype=torch.float64)).requires_grad_()
    losses.soft_xent(z, counts).backward()
    assert torch.allclose(z.grad, torch.zeros_like(z), atol=1e-9)


def test_gradients_match_finite_differences():
    z = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    counts = torch.tensor([[3, 1, 0], [0, 5, 1], [2, 2, 2], [1, 0, 0]], dtype=torch.float64)
    for fn in (losses.soft_xent, losses.dirichlet):
        assert torch.autograd.gradcheck(lambda x, f=fn: f(x, counts), (z,))


def test_the_dirichlet_loss_stays_exact_at_large_logits():
    # Raw answer logits of a real model are 15-20: alpha = exp(z) near 1e8, where float32 lgamma cancels.
    z = torch.tensor([[18.0, 16.5]], dtype=torch.float32, requires_grad=True)
    counts = torch.tensor([[1.0, 4.0]])
    loss = losses.dirichlet(z, counts)
    expected = metrics.dirichlet_nll_from_logits(counts.numpy(), z.detach().double().numpy())
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-6) and float(loss.detach()) > 1.0
    # far beyond what lgamma can resolve, the loss stays exact: it tends to the multinomial NLL
    huge = torch.tensor([[400.0, 400.0 + np.log(4.0)]], dtype=torch.float64)
    multinomial = -(1 * np.log(0.2) + 4 * np.log(0.8))
    assert float(losses.dirichlet(huge, counts)) == pytest.approx(multinomial, rel=1e-9)
    loss.backward()
    # close to the multinomial gradient n_k − N p_k: pushes toward the second answer
    p = torch.softmax(z.detach().double(), dim=-1)
    np.testing.assert_allclose(z.grad.numpy(), -(counts.double() - counts.sum() * p).numpy(), rtol=1e-3)


def test_an_unknown_loss_name():
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        losses.compute("hinge", torch.zeros(1, 5), [0, 1], torch.ones(1, 2))
