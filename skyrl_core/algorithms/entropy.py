"""Entropy bonus: a per-token loss term that rewards keeping the policy's entropy up."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from skyrl_core.algorithms.masked import masked_mean


def entropy_bonus(entropy: Tensor, mask: Tensor, coef: float) -> tuple[Tensor, dict[str, Any]]:
    """``-coef · entropy`` per loss token, to be added to the policy's token loss.

    Args:
        entropy: ``(B, R)`` entropy of the policy's next-token distribution at each response
            position (``skyrl_core.ops.logprobs.entropy_from_logits``); carries gradient when
            the bonus is on.
        mask: ``(B, R)``, 1 on model tokens, 0 on padding and environment tokens.
        coef: the bonus coefficient (``[algorithm] entropy_coef``); 0 disables the term but the
            metric is still reported.

    Returns:
        ``(token_loss, metrics)``: ``token_loss`` is ``(B, R)``, 0 off the mask (reduce it
        like the policy loss); ``metrics["entropy"]`` is the masked mean entropy (detached).
    """
    if entropy.shape != mask.shape:
        raise ValueError(f"entropy_bonus: entropy {tuple(entropy.shape)} and mask {tuple(mask.shape)} differ")
    token_loss = torch.where(mask > 0, -coef * entropy, torch.zeros_like(entropy))
    return token_loss, {"entropy": masked_mean(entropy.detach(), mask)}
