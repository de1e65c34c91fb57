"""The critic's clipped value loss and the entropy bonus."""

from __future__ import annotations

import pytest
import torch

from skyrl_core.algorithms.entropy import entropy_bonus
from skyrl_core.algorithms.value import value_loss


def test_value_loss_by_hand() -> None:
    # Token 0: V 1.5, V_old 1.0, G 2.0, clip 0.2 -> unclipped 0.25, clipped (1.2 - 2)^2 = 0.64: use 0.64, no grad.
    # Token 1: V 1.1 (inside the clip) -> 0.5 · 0.81, grad V - G = -0.9.
    # Token 2: V 0.7, V_old 1.0, G 0.0 -> unclipped 0.49, clipped (0.8)^2 = 0.64: use 0.64, no grad.
    # Token 3: padding.
    values = torch.tensor([[1.5, 1.1, 0.7, 5.0]], requires_grad=True)
    old = torch.tensor([[1.0, 1.0, 1.0, 0.0]], requires_grad=True)
    returns = torch.tensor([[2.0, 2.0, 0.0, 0.0]], requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    token_loss, metrics = value_loss(values, old, returns, mask, clip=0.2)
    assert torch.allclose(token_loss, torch.tensor([[0.32, 0.405, 0.32, 0.0]]))
    g_v, g_old, g_ret = torch.autograd.grad(token_loss.sum(), [values, old, returns], allow_unused=True)
    assert torch.allclose(g_v, torch.tensor([[0.0, -0.9, 0.0, 0.0]]))
    assert g_old is None and g_ret is None
    assert metrics["value_clip_frac"].item() == pytest.approx(2 / 3)
    assert metrics["value_mean"].item() == pytest.approx((1.5 + 1.1 + 0.7) / 3)
    assert metrics["return_mean"].item() == pytest.approx(4 / 3)
    assert metrics["value_mse"].item() == pytest.approx((0.25 + 0.81 + 0.49) / 3)


def test_value_loss_without_clip_is_half_mse() -> None:
    values = torch.tensor([[1.5, 1.1]], requires_grad=True)
    token_loss, metrics = value_loss(values, torch.zeros(1, 2), torch.tensor([[2.0, 2.0]]), torch.ones(1, 2), clip=None)
    assert torch.allclose(token_loss, torch.tensor([[0.125, 0.405]]))
    assert metrics["value_clip_frac"].item() == 0.0


def test_explained_variance() -> None:
    returns = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    mask = torch.ones(1, 4)
    _, perfect = value_loss(returns.clone(), returns, returns, mask, clip=None)
    assert perfect["explained_variance"].item() == pytest.approx(1.0)
    values = torch.tensor([[1.5, 1.5, 3.5, 3.5]])
    _, partial = value_loss(values, values, returns, mask, clip=None)
    # Var(G) = 1.25, Var(G - V) = Var([-0.5, 0.5, -0.5, 0.5]) = 0.25.
    assert partial["explained_variance"].item() == pytest.approx(1 - 0.25 / 1.25)
    _, flat = value_loss(values, values, torch.ones(1, 4), mask, clip=None)
    assert flat["explained_variance"].item() == 0.0  # constant returns: defined as 0, not NaN


def test_value_loss_empty_mask_and_shape_errors() -> None:
    token_loss, metrics = value_loss(torch.ones(2, 3), torch.ones(2, 3), torch.ones(2, 3), torch.zeros(2, 3), 0.2)
    assert torch.equal(token_loss, torch.zeros(2, 3))
    assert all(float(v) == 0.0 for v in metrics.values())
    with pytest.raises(ValueError, match="must all be"):
        value_loss(torch.ones(2, 3), torch.ones(2, 2), torch.ones(2, 3), torch.ones(2, 3), 0.2)


def test_entropy_bonus() -> None:
    entropy = torch.tensor([[1.0, 2.0, 3.0], [0.5, 9.0, 9.0]], requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    token_loss, metrics = entropy_bonus(entropy, mask, coef=0.01)
    assert torch.allclose(token_loss, torch.tensor([[-0.01, -0.02, -0.03], [-0.005, 0.0, 0.0]]))
    assert metrics["entropy"].item() == pytest.approx(6.5 / 4)
    (g,) = torch.autograd.grad(token_loss.sum(), entropy)
    assert torch.allclose(g, -0.01 * mask)  # minimising the loss raises entropy
    off, _ = entropy_bonus(entropy, mask, coef=0.0)
    assert torch.equal(off, torch.zeros(2, 3))
