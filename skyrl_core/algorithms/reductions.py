"""Loss reductions: a per-token loss ``(B, R)`` becomes one scalar.

Chosen by ``[algorithm] loss_reduction``. The totals (``num_tokens``, ``num_sequences``)
are those of the whole *mini-batch* (``LossScale`` in ``skyrl_core.protocols.strategy``):
each micro-batch's loss is then its share of the mini-batch loss, so reducing every
micro-batch separately and summing (gradient accumulation) gives exactly the loss of
the mini-batch reduced at once.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from skyrl_core.algorithms.masked import masked_sum

LossReduction = Literal["token_mean", "sequence_mean", "seq_mean_token_sum_norm"]
REDUCTIONS: tuple[str, ...] = ("token_mean", "sequence_mean", "seq_mean_token_sum_norm")


def count_tokens(mask: Tensor) -> float:
    """Loss tokens in ``mask`` (``LossScale.num_tokens``)."""
    return float((mask > 0).sum().item())


def count_sequences(mask: Tensor) -> float:
    """Rows of ``mask`` with at least one loss token (``LossScale.num_sequences``)."""
    return float((mask > 0).any(dim=-1).sum().item())


def _divide(total: Tensor, denominator: float | Tensor) -> Tensor:
    denominator = torch.as_tensor(denominator, dtype=total.dtype, device=total.device)
    return torch.where(denominator > 0, total / denominator.clamp_min(1e-12), total * 0.0)


def reduce_loss(
    token_loss: Tensor,
    mask: Tensor,
    mode: LossReduction | str,
    *,
    num_tokens: float | Tensor | None = None,
    num_sequences: float | Tensor | None = None,
    norm_tokens: float | None = None,
) -> Tensor:
    """Reduce a per-token loss to a scalar.

    Args:
        token_loss: ``(B, R)`` per-token loss (e.g. ``PolicyLossOutput.token_loss``).
        mask: ``(B, R)`` loss mask: 1 on tokens that count, 0 on padding and environment
            tokens. Masked entries are ignored even if they are NaN.
        mode:
            * ``"token_mean"``: sum of all loss tokens / ``num_tokens``. Every token weighs
              the same, so long responses weigh more (DAPO's token-level loss, Yu et al. 2025).
            * ``"sequence_mean"``: each sequence's token mean, summed / ``num_sequences``.
              Every sequence weighs the same (the original GRPO, Shao et al. 2024).
            * ``"seq_mean_token_sum_norm"``: each sequence's token *sum* divided by the
              constant ``norm_tokens``, summed / ``num_sequences``. Dr. GRPO (Liu et al.
              2025): removes GRPO's length bias without the token-mean's batch coupling.
        num_tokens: loss tokens of the whole mini-batch; default: those of ``mask``.
        num_sequences: sequences of the whole mini-batch with at least one loss token;
            default: those of ``mask``.
        norm_tokens: the constant of ``seq_mean_token_sum_norm`` (required there), usually
            the longest possible sequence.

    Returns:
        A scalar tensor carrying ``token_loss``'s gradient. 0 (still differentiable) when
        there is nothing to average, never NaN.
    """
    if token_loss.shape != mask.shape or token_loss.dim() != 2:
        raise ValueError(
            f"reduce_loss: token_loss {tuple(token_loss.shape)} and mask {tuple(mask.shape)} must both be (B, R)"
        )
    weights = (mask > 0).to(token_loss.dtype)
    if mode == "token_mean":
        total = masked_sum(token_loss, weights)
        return _divide(total, num_tokens if num_tokens is not None else weights.sum())
    if mode not in ("sequence_mean", "seq_mean_token_sum_norm"):
        raise ValueError(f"reduce_loss: unknown mode {mode!r}; choose one of {', '.join(REDUCTIONS)}")
    seq_sums = masked_sum(token_loss, weights, dim=-1)
    if mode == "sequence_mean":
        per_seq = _divide(seq_sums, weights.sum(dim=-1))
    else:
        if norm_tokens is None or norm_tokens <= 0:
            raise ValueError(
                "reduce_loss: mode 'seq_mean_token_sum_norm' needs norm_tokens > 0 (the constant each "
                f"sequence's token sum is divided by), got {norm_tokens!r}; set [algorithm] loss_norm_tokens"
            )
        per_seq = seq_sums / float(norm_tokens)
    if num_sequences is None:
        num_sequences = (weights.sum(dim=-1) > 0).to(token_loss.dtype).sum()
    return _divide(per_seq.sum(), num_sequences)
