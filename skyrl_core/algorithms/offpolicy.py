"""Off-policy correction for the mismatch between the inference engine and the trainer.

The engine samples with its own kernels (and often lower precision), so its log-probs
``rollout_logprobs`` differ from the trainer's ``old_logprobs`` for the same weights and
tokens: the samples are slightly off-policy. Truncated importance sampling (TIS; Yao et
al. 2025, "Your Efficient RL Framework Secretly Brings You Off-Policy RL Training")
re-weights each token's loss by ``min(π_old / π_rollout, cap)``; the weights are constants.
Selected by ``[algorithm.tis] mode`` and ``cap``.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import Tensor

from skyrl_core.algorithms.masked import masked_max, masked_mean, masked_sum

TISMode = Literal["token", "sequence"]


def tis_weights(
    old_logprobs: Tensor,
    rollout_logprobs: Tensor,
    mask: Tensor,
    mode: TISMode | str = "token",
    cap: float = 2.0,
) -> tuple[Tensor, dict[str, Any]]:
    """Truncated importance weights for the token loss.

    Args:
        old_logprobs: ``(B, R)`` trainer log-probs of the sampled tokens (old policy).
        rollout_logprobs: ``(B, R)`` the engine's log-probs of the same tokens.
        mask: ``(B, R)``, 1 on model tokens, 0 on padding and environment tokens.
        mode: ``"token"``: ``w_t = min(exp(old_t - rollout_t), cap)``; ``"sequence"``: one
            weight per sequence, ``min(exp(Σ_t (old_t - rollout_t)), cap)`` (the product of
            the token ratios over the loss tokens), broadcast to its tokens.
        cap: upper bound of the weight (> 0).

    Returns:
        ``(weights, metrics)``: ``weights`` is ``(B, R)``, detached, 0 off the mask; multiply
        the per-token loss by it before reducing. Metrics (the loop logs them as
        ``policy/tis_<key>``): ``weight_mean``, ``weight_max`` and ``capped_frac``
        (fraction of loss tokens, or of sequences in sequence mode, whose weight hit the cap).
    """
    if not (old_logprobs.shape == rollout_logprobs.shape == mask.shape) or mask.dim() != 2:
        raise ValueError(
            f"tis_weights: old_logprobs {tuple(old_logprobs.shape)}, rollout_logprobs "
            f"{tuple(rollout_logprobs.shape)} and mask {tuple(mask.shape)} must all be (B, R)"
        )
    if not cap > 0:
        raise ValueError(f"tis_weights: cap must be > 0, got {cap!r}")
    with torch.no_grad():
        dtype = torch.promote_types(old_logprobs.dtype, torch.float32)
        on = (mask > 0).to(dtype)
        log_w = torch.where(on > 0, old_logprobs.to(dtype) - rollout_logprobs.to(dtype), torch.zeros_like(on))
        log_cap = math.log(cap)
        if mode == "token":
            capped = (log_w >= log_cap) & (on > 0)
            weights = log_w.clamp(max=log_cap).exp() * on
            capped_frac = masked_mean(capped.to(dtype), on)
        elif mode == "sequence":
            seq_log_w = masked_sum(log_w, on, dim=-1)
            has_tokens = on.sum(dim=-1) > 0
            capped_seq = (seq_log_w >= log_cap) & has_tokens
            weights = seq_log_w.clamp(max=log_cap).exp()[:, None] * on
            n_seq = has_tokens.to(dtype).sum()
            capped_frac = torch.where(n_seq > 0, capped_seq.to(dtype).sum() / n_seq.clamp_min(1), n_seq * 0)
        else:
            raise ValueError(f"tis_weights: mode must be 'token' or 'sequence', got {mode!r}")
        metrics = {
            "weight_mean": masked_mean(weights, on),
            "weight_max": masked_max(weights, on),
            "capped_frac": capped_frac,
        }
    return weights, metrics


def mismatch_metrics(logprobs_a: Tensor, logprobs_b: Tensor, mask: Tensor) -> dict[str, Any]:
    """How far two log-prob estimates of the same tokens disagree (e.g. trainer vs engine).

    Args:
        logprobs_a: ``(B, R)``, e.g. the trainer's old log-probs.
        logprobs_b: ``(B, R)``, e.g. the engine's rollout log-probs (the sampling policy).
        mask: ``(B, R)``, 1 on model tokens.

    Returns:
        Detached scalars over the loss tokens: ``logprob_diff_mean`` (mean ``|a - b|``),
        ``logprob_diff_max`` (max ``|a - b|``), ``logprob_diff_bias`` (mean ``a - b``),
        ``prob_diff_mean`` (mean ``|exp a - exp b|``) and ``approx_kl`` (k3 estimate of
        KL(b || a) from tokens sampled by b: mean ``r - 1 - log r``, ``r = exp(a - b)``).
    """
    if not (logprobs_a.shape == logprobs_b.shape == mask.shape):
        raise ValueError(f"mismatch_metrics: shapes {tuple(logprobs_a.shape)}, {tuple(logprobs_b.shape)} and "
                         f"{tuple(mask.shape)} must match")
    with torch.no_grad():
        dtype = torch.promote_types(logprobs_a.dtype, torch.float32)
        a, b = logprobs_a.detach().to(dtype), logprobs_b.detach().to(dtype)
        on = (mask > 0).to(dtype)
        diff = torch.where(on > 0, a - b, torch.zeros_like(a))
        log_r = diff.clamp(-20.0, 20.0)
        return {
            "logprob_diff_mean": masked_mean(diff.abs(), on),
            "logprob_diff_max": masked_max(diff.abs(), on),
            "logprob_diff_bias": masked_mean(diff, on),
            "prob_diff_mean": masked_mean((a.exp() - b.exp()).abs(), on),
            "approx_kl": masked_mean(torch.expm1(log_r) - log_r, on),
        }
