"""Masked reductions over ``(B, R)`` tensors.

``mask`` is a float (or bool) tensor of the same shape, 1 where an entry counts and 0
where it is padding or an environment token. Every function is NaN-free on an all-zero
mask: means, maxima and minima of nothing are 0.
"""

from __future__ import annotations

import torch
from torch import Tensor


def masked_sum(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Sum of ``x`` where ``mask`` is set (entries under a zero mask are ignored, even NaN)."""
    values = torch.where(mask > 0, x * mask, torch.zeros((), dtype=x.dtype, device=x.device))
    return values.sum() if dim is None else values.sum(dim)


def masked_mean(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Mean of ``x`` weighted by ``mask``; 0 where the mask sums to 0."""
    total = masked_sum(x, mask, dim)
    count = mask.to(total.dtype).sum() if dim is None else mask.to(total.dtype).sum(dim)
    return torch.where(count > 0, total / count.clamp_min(1e-12), torch.zeros_like(total))


def masked_var(x: Tensor, mask: Tensor, unbiased: bool = False) -> Tensor:
    """Variance of all masked entries (population variance unless ``unbiased``); 0 when too few."""
    mean = masked_mean(x, mask)
    count = mask.to(x.dtype).sum()
    sq = masked_sum((x - mean) ** 2, mask)
    denom = count - 1 if unbiased else count
    return torch.where(denom > 0, sq / denom.clamp_min(1e-12), torch.zeros_like(sq))


def masked_whiten(
    x: Tensor, mask: Tensor, eps: float = 1e-8, shift_mean: bool = True, unbiased: bool = False
) -> Tensor:
    """``(x - mean) / (std + eps)`` over the masked entries of the whole tensor; 0 under the mask.

    Population statistics (divided by ``n``) unless ``unbiased`` (Bessel's correction,
    divided by ``n - 1``; a single entry then has std 0). All-equal entries give 0 (not NaN);
    so does an all-zero mask. With ``shift_mean=False`` the mean is added back (only the
    scale changes).
    """
    mean = masked_mean(x, mask)
    std = masked_var(x, mask, unbiased=unbiased).sqrt()
    out = (x - mean) / (std + eps)
    if not shift_mean:
        out = out + mean
    return torch.where(mask > 0, out, torch.zeros_like(out))


def masked_max(x: Tensor, mask: Tensor) -> Tensor:
    """Largest masked entry (0 when the mask is empty)."""
    if x.numel() == 0:
        return torch.zeros((), dtype=x.dtype, device=x.device)
    filled = torch.where(mask > 0, x, torch.full((), float("-inf"), dtype=x.dtype, device=x.device))
    top = filled.max()
    return torch.where((mask > 0).any(), top, torch.zeros_like(top))


def masked_min(x: Tensor, mask: Tensor) -> Tensor:
    """Smallest masked entry (0 when the mask is empty)."""
    return -masked_max(-x, mask)
