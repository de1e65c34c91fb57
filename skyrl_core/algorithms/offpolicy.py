"""Off-policy correction for the mismatch between the inference engine and the trainer.

The engine samples with its own kernels (and often lower precision), so its log-probs
``rollout_logprobs`` differ from the trainer's ``old_logprobs`` for the same weights and
tokens: the samples are slightly off-policy. Truncated importance sampling (TIS; Yao et
al. 2025, "Your Efficient RL Framework Secretly Brings You Off-Policy RL Training")
re-weights each token's loss by ``min(π_old / π_rollout, cap)``; the weights are constants.
Selected by ``[algorithm.tis] mode`` and ``cap``.

Rejection masks (NovaSky's SkyRL ``off_policy_correction``) drop what is too far off-policy,
by the same per-token ratio ``ρ_t = π_old / π_rollout``:

* ``token_mask``: tokens whose ``ρ_t`` lies outside ``[low, high]``;
* ``outlier_sequence_mask``: whole sequences with any token below ``low`` or above ``high``;
* ``sequence_mask``: whole sequences whose geometric mean (``"geometric"``) or product
  (``"product"``) of ``ρ_t`` lies outside ``[low, high]``.

``correction_weights`` combines them in SkyRL's order (outlier sequences, then tokens, then
TIS and the sequence mask on the tokens that are left) into one constant per token. A masked
token's loss becomes 0 but stays in the reduction's denominators, as in NovaSky's SkyRL
(whose reductions are fixed before the masks apply).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import Tensor

from skyrl_core.algorithms.masked import masked_max, masked_mean, masked_sum

TISMode = Literal["token", "sequence"]
SequenceMaskMetric = Literal["geometric", "product"]
Bounds = tuple[float | None, float | None]


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


def _token_log_ratio(old_logprobs: Tensor, rollout_logprobs: Tensor, on: Tensor) -> Tensor:
    """``log ρ_t = old - rollout`` on the loss tokens (0 elsewhere), in float32 or wider."""
    dtype = on.dtype
    return torch.where(on > 0, old_logprobs.to(dtype) - rollout_logprobs.to(dtype), torch.zeros_like(on))


def _outside(log_ratio: Tensor, low: float | None, high: float | None) -> tuple[Tensor, Tensor]:
    """``(below low, above high)`` of ``exp(log_ratio)``, compared in log space (bounds > 0)."""
    below = log_ratio < math.log(low) if low is not None else torch.zeros_like(log_ratio, dtype=torch.bool)
    above = log_ratio > math.log(high) if high is not None else torch.zeros_like(log_ratio, dtype=torch.bool)
    return below, above


def _fraction(flags: Tensor, of: Tensor) -> Tensor:
    """The share of the entries set in ``of`` (a 0/1 or bool tensor) that are set in ``flags``."""
    n = (of > 0).float().sum()
    return torch.where(n > 0, (flags & (of > 0)).float().sum() / n.clamp_min(1), n * 0)


def token_mask(
    old_logprobs: Tensor, rollout_logprobs: Tensor, mask: Tensor, low: float, high: float
) -> tuple[Tensor, dict[str, Any]]:
    """Drop single tokens whose ratio ``ρ_t = exp(old - rollout)`` lies outside ``[low, high]``.

    Returns ``(keep, metrics)``: ``keep`` is ``(B, R)`` float, 1 on kept loss tokens, 0 on dropped
    ones and off the mask; ``metrics["token_masked_frac"]`` is the fraction of loss tokens dropped.
    """
    with torch.no_grad():
        on = (mask > 0).to(torch.promote_types(old_logprobs.dtype, torch.float32))
        below, above = _outside(_token_log_ratio(old_logprobs, rollout_logprobs, on), low, high)
        dropped = (below | above) & (on > 0)
        keep = on * (~dropped).to(on.dtype)
        return keep, {"token_masked_frac": _fraction(dropped, on)}


def outlier_sequence_mask(
    old_logprobs: Tensor, rollout_logprobs: Tensor, mask: Tensor, low: float | None, high: float | None
) -> tuple[Tensor, dict[str, Any]]:
    """Drop whole sequences that have any loss token with ``ρ_t < low`` or ``ρ_t > high`` (either
    bound may be None: unchecked).

    Returns ``(keep, metrics)``: ``keep`` is ``(B, R)`` float (a sequence's loss tokens all 1 or
    all 0); ``outlier_seq_masked_frac`` is the fraction of sequences dropped (of all rows, as
    SkyRL counts), ``outlier_seq_over_high_frac`` and ``outlier_seq_under_low_frac`` why.
    """
    with torch.no_grad():
        on = (mask > 0).to(torch.promote_types(old_logprobs.dtype, torch.float32))
        below, above = _outside(_token_log_ratio(old_logprobs, rollout_logprobs, on), low, high)
        below, above = below & (on > 0), above & (on > 0)
        bad = (below | above).any(dim=-1)
        keep = on * (~bad).to(on.dtype)[:, None]
        rows = torch.ones_like(bad)
        return keep, {
            "outlier_seq_masked_frac": _fraction(bad, rows),
            "outlier_seq_over_high_frac": _fraction(above.any(dim=-1), rows),
            "outlier_seq_under_low_frac": _fraction(below.any(dim=-1), rows),
        }


def sequence_mask(
    old_logprobs: Tensor,
    rollout_logprobs: Tensor,
    mask: Tensor,
    metric: SequenceMaskMetric | str,
    low: float,
    high: float,
) -> tuple[Tensor, dict[str, Any]]:
    """Drop whole sequences whose ratio to the engine lies outside ``[low, high]``.

    The sequence's ratio is the geometric mean ``exp(mean_t log ρ_t)`` (``"geometric"``, a
    per-token average, so the bounds are near 1, e.g. 0.99 and 1.01) or the product
    ``exp(Σ_t log ρ_t)`` (``"product"``, e.g. 0.5 and 2). A sequence without loss tokens has
    ratio 1. Returns ``(keep, metrics)`` with ``seq_masked_frac``, ``seq_over_high_frac`` and
    ``seq_under_low_frac`` (fractions of all rows).
    """
    if metric not in ("geometric", "product"):
        raise ValueError(f"sequence_mask: metric must be 'geometric' or 'product', got {metric!r}")
    with torch.no_grad():
        on = (mask > 0).to(torch.promote_types(old_logprobs.dtype, torch.float32))
        seq_log = masked_sum(_token_log_ratio(old_logprobs, rollout_logprobs, on), on, dim=-1)
        if metric == "geometric":
            seq_log = seq_log / on.sum(dim=-1).clamp_min(1.0)
        below, above = _outside(seq_log, low, high)
        bad = below | above
        keep = on * (~bad).to(on.dtype)[:, None]
        rows = torch.ones_like(bad)
        return keep, {
            "seq_masked_frac": _fraction(bad, rows),
            "seq_over_high_frac": _fraction(above, rows),
            "seq_under_low_frac": _fraction(below, rows),
        }


def correction_weights(
    old_logprobs: Tensor,
    rollout_logprobs: Tensor,
    mask: Tensor,
    *,
    tis_mode: str = "off",
    cap: float = 2.0,
    token_bounds: Bounds = (None, None),
    outlier_bounds: Bounds = (None, None),
    sequence_metric: str = "off",
    sequence_bounds: tuple[float, float] = (0.99, 1.01),
) -> tuple[Tensor, dict[str, Any]]:
    """Every configured correction as one constant weight per token (multiply the token loss by it).

    In NovaSky's SkyRL order: ``outlier_sequence_mask`` (when either ``outlier_bounds`` is set),
    then ``token_mask`` (when both ``token_bounds`` are set), then on the tokens left TIS
    (``tis_mode`` ``"token"``/``"sequence"``, ``tis_weights`` with ``cap``) and ``sequence_mask``
    (``sequence_metric`` ``"geometric"``/``"product"`` with ``sequence_bounds``).

    Returns:
        ``(weights, metrics)``: ``weights`` ``(B, R)``, detached, 0 off the mask and on dropped
        tokens; the metrics of every piece that ran (``weight_mean``, ``weight_max`` and
        ``capped_frac`` for TIS; ``*_masked_frac`` and the like for the masks).
    """
    with torch.no_grad():
        keep = (mask > 0).to(torch.promote_types(old_logprobs.dtype, torch.float32))
        metrics: dict[str, Any] = {}
        if outlier_bounds[0] is not None or outlier_bounds[1] is not None:
            kept, m = outlier_sequence_mask(old_logprobs, rollout_logprobs, keep, *outlier_bounds)
            keep = keep * kept
            metrics.update(m)
        if token_bounds[0] is not None and token_bounds[1] is not None:
            kept, m = token_mask(old_logprobs, rollout_logprobs, keep, token_bounds[0], token_bounds[1])
            keep = keep * kept
            metrics.update(m)
        weights = keep
        if tis_mode != "off":
            tis, m = tis_weights(old_logprobs, rollout_logprobs, keep, tis_mode, cap)
            weights = tis.to(keep.dtype)
            metrics.update(m)
        if sequence_metric != "off":
            kept, m = sequence_mask(old_logprobs, rollout_logprobs, keep, sequence_metric, *sequence_bounds)
            weights = weights * kept
            metrics.update(m)
    return weights, metrics
