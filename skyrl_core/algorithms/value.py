"""The critic's clipped value loss (PPO with GAE)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from skyrl_core.algorithms.masked import masked_mean, masked_var


def value_loss(
    values: Tensor, old_values: Tensor, returns: Tensor, mask: Tensor, clip: float | None
) -> tuple[Tensor, dict[str, Any]]:
    """Clipped value loss, per token: ``0.5 · max((V - G)², (V_clip - G)²)``.

    ``V_clip = V_old + clip(V - V_old, -clip, clip)`` keeps the critic from moving further
    than ``clip`` from the values it had when the rollouts were scored (PPO, Schulman et
    al. 2017, as in its reference implementation). ``clip=None`` gives the plain
    ``0.5 · (V - G)²``.

    Args:
        values: ``(B, R)`` critic values with gradient.
        old_values: ``(B, R)`` the critic's values at rollout time (constants).
        returns: ``(B, R)`` targets ``G`` (``AdvantageOutput.returns`` of ``gae``; constants).
        mask: ``(B, R)``, 1 on model tokens, 0 on padding and environment tokens.
        clip: the clip range (``[algorithm] value_clip``), or None.

    Returns:
        ``(token_loss (B, R), metrics)``; ``token_loss`` is 0 off the mask (reduce it with
        ``reduce_loss`` and weight it by ``value_coef``). Metrics: ``value_clip_frac``,
        ``value_mean``, ``return_mean``, ``value_mse`` and ``explained_variance``
        (``1 - Var(G - V) / Var(G)``; 0 when the returns do not vary).
    """
    if not (values.shape == old_values.shape == returns.shape == mask.shape):
        raise ValueError(
            f"value_loss: values {tuple(values.shape)}, old_values {tuple(old_values.shape)}, returns "
            f"{tuple(returns.shape)} and mask {tuple(mask.shape)} must all be (B, R)"
        )
    old_values = old_values.detach().to(values.dtype)
    returns = returns.detach().to(values.dtype)
    unclipped = (values - returns).square()
    if clip is None:
        loss, is_clipped = unclipped, torch.zeros_like(unclipped, dtype=torch.bool)
    else:
        clipped_values = old_values + (values - old_values).clamp(-clip, clip)
        clipped = (clipped_values - returns).square()
        is_clipped = clipped > unclipped
        loss = torch.where(is_clipped, clipped, unclipped)
    token_loss = torch.where(mask > 0, 0.5 * loss, torch.zeros_like(loss))
    with torch.no_grad():
        v = values.detach()
        var_returns = masked_var(returns, mask)
        var_error = masked_var(returns - v, mask)
        explained = torch.where(var_returns > 0, 1.0 - var_error / var_returns.clamp_min(1e-12),
                                torch.zeros_like(var_returns))
        metrics = {
            "value_clip_frac": masked_mean(is_clipped.to(v.dtype), mask),
            "value_mean": masked_mean(v, mask),
            "return_mean": masked_mean(returns, mask),
            "value_mse": masked_mean(unclipped.detach(), mask),
            "explained_variance": explained,
        }
    return token_loss, metrics
