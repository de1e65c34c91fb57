"""Policy losses: ``fn(inp: PolicyLossInput, config) -> PolicyLossOutput``.

Every loss returns a *per-token* loss ``(B, R)`` that is 0 where ``inp.mask`` is 0; the
loop reduces it (``reductions.reduce_loss``), adds KL/entropy terms and optionally weights
it by truncated importance sampling (``offpolicy.tis_weights``). Losses never reduce.

Inputs, all ``(B, R)`` and aligned with the response tokens: ``logprobs`` (current policy,
requires grad), ``old_logprobs`` (the policy the ratio is taken against), ``advantages``
and ``mask`` (1.0 on model tokens, 0.0 on padding and environment tokens). Gradients flow
only through ``logprobs``: advantages, old log-probs and every clip or weight are treated
as constants, whatever their ``requires_grad``.

The log-ratio ``logprobs - old_logprobs`` is clamped to ``[-20, 20]`` before ``exp`` so an
extreme ratio is large but finite (no inf, no NaN); beyond the clamp its gradient is 0.

Metrics (detached scalar tensors; the loop logs them under ``policy/``), reported by every
loss so dashboards stay comparable:

* ``clip_frac``: fraction of loss tokens where clipping changed the objective;
* ``approx_kl``: estimate of KL(old || current) over loss tokens, ``mean(r - 1 - log r)``
  with ``r`` the per-token ratio (Schulman's k3);
* ``ratio_mean``, ``ratio_max``, ``ratio_min``: the ratio the loss used (for ``gspo``, the
  sequence-level ratio; for ``rollout_is``, the ratio to the engine's log-probs), over loss
  tokens.

``config`` may be None, meaning the loss's defaults.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from skyrl_core.algorithms.configs import (
    CISPOConfig,
    ClipCovConfig,
    CrossEntropyConfig,
    DualClipConfig,
    GSPOConfig,
    ImportanceSamplingConfig,
    KLCovConfig,
    PPOClipConfig,
    RolloutISConfig,
    SAPOConfig,
)
from skyrl_core.algorithms.masked import masked_max, masked_mean, masked_min, masked_sum
from skyrl_core.protocols.algorithms import PolicyLossInput, PolicyLossOutput

__all__ = [
    "cispo",
    "clip_cov",
    "cross_entropy",
    "dual_clip",
    "gspo",
    "importance_sampling",
    "kl_cov",
    "ppo_clip",
    "rollout_is",
    "sapo",
]

MAX_LOG_RATIO = 20.0
"""Clamp of ``|logprobs - old_logprobs|`` before ``exp`` (``exp(20) ≈ 4.9e8``)."""


# -- shared pieces ------------------------------------------------------------------------------


def _unpack(inp: PolicyLossInput, name: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(logprobs, old_logprobs, advantages, mask)`` with shapes checked and constants detached."""
    logp = inp.logprobs
    for field in ("old_logprobs", "advantages", "mask"):
        shape = getattr(inp, field).shape
        if shape != logp.shape:
            raise ValueError(
                f"policy loss {name!r}: {field} has shape {tuple(shape)} but logprobs has {tuple(logp.shape)}; "
                "every input must be (B, R) aligned with the response tokens"
            )
    if logp.dim() != 2:
        raise ValueError(f"policy loss {name!r}: logprobs must be (B, R), got shape {tuple(logp.shape)}")
    on = inp.mask.detach() > 0
    zero = torch.zeros((), dtype=logp.dtype, device=logp.device)
    # Padding may hold anything (even -inf/NaN); zero it so neither values nor gradients see it.
    logp = torch.where(on, logp, zero)
    old = torch.where(on, inp.old_logprobs.detach().to(logp.dtype), zero)
    adv = torch.where(on, inp.advantages.detach().to(logp.dtype), zero)
    return logp, old, adv, on.to(logp.dtype)


def _log_ratio(logp: Tensor, old: Tensor) -> Tensor:
    return (logp - old).clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO)


def _clipped_surrogate(ratio: Tensor, adv: Tensor, eps_low: float, eps_high: float) -> tuple[Tensor, Tensor]:
    """PPO's pessimistic surrogate ``max(-A·r, -A·clip(r, 1-eps_low, 1+eps_high))`` and where it clipped."""
    unclipped = -adv * ratio
    clipped = -adv * ratio.clamp(1.0 - eps_low, 1.0 + eps_high)
    is_clipped = clipped > unclipped
    return torch.where(is_clipped, clipped, unclipped), is_clipped


def _masked(token_loss: Tensor, mask: Tensor) -> Tensor:
    return torch.where(mask > 0, token_loss, torch.zeros_like(token_loss))


def _metrics(ratio: Tensor, log_ratio: Tensor, is_clipped: Tensor, mask: Tensor, **extra: Tensor) -> dict[str, Any]:
    with torch.no_grad():
        ratio, log_ratio = ratio.detach(), log_ratio.detach()
        out = {
            "clip_frac": masked_mean(is_clipped.to(ratio.dtype), mask),
            "approx_kl": masked_mean(torch.expm1(log_ratio) - log_ratio, mask),
            "ratio_mean": masked_mean(ratio, mask),
            "ratio_max": masked_max(ratio, mask),
            "ratio_min": masked_min(ratio, mask),
        }
        out.update({k: v.detach() for k, v in extra.items()})
    return out


# -- losses -------------------------------------------------------------------------------------


def ppo_clip(inp: PolicyLossInput, config: PPOClipConfig | None = None) -> PolicyLossOutput:
    """PPO clipped surrogate, per token, with asymmetric clipping.

    ``loss = max(-A·r, -A·clip(r, 1 - eps_low, 1 + eps_high))`` with ``r = exp(logp - old)``.
    PPO: Schulman et al. 2017. ``eps_high > eps_low`` is DAPO's clip-higher (Yu et al.
    2025): it lets low-probability tokens with positive advantage grow further, against
    entropy collapse. Clipped tokens get no gradient.
    """
    cfg = config if config is not None else PPOClipConfig()
    logp, old, adv, mask = _unpack(inp, "ppo_clip")
    log_ratio = _log_ratio(logp, old)
    ratio = log_ratio.exp()
    loss, is_clipped = _clipped_surrogate(ratio, adv, cfg.eps_low, cfg.eps_high)
    return PolicyLossOutput(_masked(loss, mask), _metrics(ratio, log_ratio, is_clipped, mask))


def dual_clip(inp: PolicyLossInput, config: DualClipConfig | None = None) -> PolicyLossOutput:
    """Dual-clip PPO (Ye et al. 2020, "Mastering Complex Control in MOBA Games with Deep RL").

    As ``ppo_clip``, and for negative advantages the loss is additionally bounded by
    ``-A · clip_ratio_c``: a token whose ratio exploded (``r > clip_ratio_c``) with ``A < 0``
    contributes a constant instead of an unbounded term. Extra metric ``dual_clip_frac``.
    """
    cfg = config if config is not None else DualClipConfig()
    logp, old, adv, mask = _unpack(inp, "dual_clip")
    log_ratio = _log_ratio(logp, old)
    ratio = log_ratio.exp()
    loss, is_clipped = _clipped_surrogate(ratio, adv, cfg.eps_low, cfg.eps_high)
    bound = -adv * cfg.clip_ratio_c
    is_dual = (adv < 0) & (bound < loss)
    loss = torch.where(is_dual, bound, loss)
    metrics = _metrics(ratio, log_ratio, is_clipped | is_dual, mask,
                       dual_clip_frac=masked_mean(is_dual.to(ratio.dtype), mask))
    return PolicyLossOutput(_masked(loss, mask), metrics)


def gspo(inp: PolicyLossInput, config: GSPOConfig | None = None) -> PolicyLossOutput:
    """Group Sequence Policy Optimization (Zheng et al. 2025), GSPO-token form.

    The importance ratio is per *sequence*: ``s_i = exp(mean over the loss tokens of
    (logp - old))``, the geometric mean of the token ratios. Each token uses
    ``s_i,t = sg[s_i] · exp(logp_t - sg[logp_t])`` (value ``s_i``, gradient
    ``s_i · ∇logp_t``) in the clipped surrogate with its own advantage. With sequence-level
    advantages and ``loss_reduction = "sequence_mean"`` this is exactly GSPO's gradient.
    The sequence log-ratio is clamped at 10 as in the reference implementation. The paper's
    clip range is tiny (3e-4 / 4e-4) because sequence ratios stay close to 1.

    An empty response (all-zero mask row) has ratio 1 and loss 0.
    """
    cfg = config if config is not None else GSPOConfig()
    logp, old, adv, mask = _unpack(inp, "gspo")
    token_log_ratio = _log_ratio(logp, old)
    lengths = mask.sum(dim=-1).clamp_min(1.0)
    seq_log_ratio = masked_sum(token_log_ratio.detach(), mask, dim=-1) / lengths
    log_ratio = (logp - logp.detach() + seq_log_ratio[:, None]).clamp(max=10.0)
    ratio = log_ratio.exp()
    loss, is_clipped = _clipped_surrogate(ratio, adv, cfg.eps_low, cfg.eps_high)
    metrics = _metrics(ratio, token_log_ratio, is_clipped, mask)
    return PolicyLossOutput(_masked(loss, mask), metrics)


def cispo(inp: PolicyLossInput, config: CISPOConfig | None = None) -> PolicyLossOutput:
    """Clipped IS-weight Policy Optimization (MiniMax-M1 technical report, 2025).

    ``loss = -sg[clip(r, 1 - eps_low, 1 + eps_high)] · A · logp``: the importance weight is
    clipped and treated as a constant, so *every* token keeps a REINFORCE-style gradient
    ``-w · A · ∇logp`` (PPO instead drops clipped tokens, often the rare "fork" tokens
    that matter for reflection). ``clip_frac`` counts tokens whose weight was clipped.
    """
    cfg = config if config is not None else CISPOConfig()
    logp, old, adv, mask = _unpack(inp, "cispo")
    log_ratio = _log_ratio(logp, old)
    ratio = log_ratio.exp()
    low, high = 1.0 - cfg.eps_low, 1.0 + cfg.eps_high
    weight = ratio.detach().clamp(low, high)
    loss = -adv * weight * logp
    is_clipped = (ratio < low) | (ratio > high)
    return PolicyLossOutput(_masked(loss, mask), _metrics(ratio, log_ratio, is_clipped, mask))


def _covariance(adv: Tensor, logp: Tensor, mask: Tensor) -> Tensor:
    """Per-token ``(A - mean A)(logp - mean logp)`` over the loss tokens (detached)."""
    logp = logp.detach()
    return (adv - masked_mean(adv, mask)) * (logp - masked_mean(logp, mask))


def clip_cov(inp: PolicyLossInput, config: ClipCovConfig | None = None) -> PolicyLossOutput:
    """Clip-Cov (Cui et al. 2025, "The Entropy Mechanism of RL for Reasoning LMs").

    PPO's clipped surrogate, plus: among the loss tokens that PPO did not clip and whose
    covariance ``(A - mean A)(logp - mean logp)`` lies in ``(clip_cov_lb, clip_cov_ub)``,
    ``max(1, int(clip_ratio · tokens))`` are drawn at random (torch's global RNG) and their
    gradient is detached. High-covariance tokens drive entropy collapse; stopping a few of
    them keeps entropy up. Statistics are over the tokens passed in (one micro-batch).
    Extra metric ``cov_detach_frac``.
    """
    cfg = config if config is not None else ClipCovConfig()
    logp, old, adv, mask = _unpack(inp, "clip_cov")
    log_ratio = _log_ratio(logp, old)
    ratio = log_ratio.exp()
    loss, is_clipped = _clipped_surrogate(ratio, adv, cfg.eps_low, cfg.eps_high)
    with torch.no_grad():
        cov = _covariance(adv, logp, mask)
        candidates = (mask > 0) & ~is_clipped & (cov > cfg.clip_cov_lb) & (cov < cfg.clip_cov_ub)
        n_tokens = int(mask.sum().item())
        flat = torch.nonzero(candidates.flatten()).squeeze(-1)
        n_pick = min(max(int(cfg.clip_ratio * n_tokens), 1), flat.numel())
        chosen = flat[torch.randperm(flat.numel(), device=flat.device)[:n_pick]]
        detach = torch.zeros(candidates.numel(), dtype=torch.bool, device=mask.device)
        detach[chosen] = True
        detach = detach.view_as(candidates)
    loss = torch.where(detach, loss.detach(), loss)
    metrics = _metrics(ratio, log_ratio, is_clipped, mask, cov_detach_frac=masked_mean(detach.to(ratio.dtype), mask))
    return PolicyLossOutput(_masked(loss, mask), metrics)


def kl_cov(inp: PolicyLossInput, config: KLCovConfig | None = None) -> PolicyLossOutput:
    """KL-Cov (Cui et al. 2025, "The Entropy Mechanism of RL for Reasoning LMs").

    The unclipped surrogate ``-A · r`` on every token, plus ``kl_coef · |logp - old|`` on the
    ``max(1, int(kl_cov_ratio · tokens))`` loss tokens with the largest covariance
    ``(A - mean A)(logp - mean logp)``. No ratio clipping (``clip_frac`` is 0). Statistics are
    over the tokens passed in (one micro-batch). Extra metric ``kl_cov_frac``.
    """
    cfg = config if config is not None else KLCovConfig()
    logp, old, adv, mask = _unpack(inp, "kl_cov")
    log_ratio = _log_ratio(logp, old)
    ratio = log_ratio.exp()
    loss = -adv * ratio
    with torch.no_grad():
        n_tokens = int(mask.sum().item())
        selected = torch.zeros(mask.numel(), dtype=torch.bool, device=mask.device)
        if n_tokens > 0:
            cov = torch.where(mask > 0, _covariance(adv, logp, mask), float("-inf"))
            k = min(max(int(cfg.kl_cov_ratio * n_tokens), 1), n_tokens)
            selected[cov.flatten().topk(k).indices] = True
        selected = selected.view_as(mask)
    loss = torch.where(selected, loss + cfg.kl_coef * log_ratio.abs(), loss)
    metrics = _metrics(ratio, log_ratio, torch.zeros_like(selected), mask,
                       kl_cov_frac=masked_mean(selected.to(ratio.dtype), mask))
    return PolicyLossOutput(_masked(loss, mask), metrics)


def sapo(inp: PolicyLossInput, config: SAPOConfig | None = None) -> PolicyLossOutput:
    """Soft Adaptive Policy Optimization (Gao et al. 2025, "Soft Adaptive Policy Optimization").

    A smooth gate replaces PPO's hard clip: ``loss = -f(r, tau) · A`` with
    ``f(r, tau) = sigmoid(tau · (r - 1)) · 4 / tau`` and ``tau = tau_pos`` where ``A > 0``,
    ``tau_neg`` elsewhere. At ``r = 1`` the gate's slope is 1, so the on-policy gradient is
    REINFORCE's ``-A · ∇logp``; as ``r`` moves away from 1 the gradient
    ``-A · 4 · s(1 - s) · r · ∇logp`` (``s`` the sigmoid) fades smoothly instead of dropping to
    0. Nothing is clipped (``clip_frac`` is 0). The paper (and SkyRL-train) recommend
    ``loss_reduction = "sequence_mean"``.
    """
    cfg = config if config is not None else SAPOConfig()
    logp, old, adv, mask = _unpack(inp, "sapo")
    log_ratio = _log_ratio(logp, old)
    ratio = log_ratio.exp()
    tau = torch.where(adv > 0, torch.full_like(adv, cfg.tau_pos), torch.full_like(adv, cfg.tau_neg))
    gate = torch.sigmoid(tau * (ratio - 1.0)) * (4.0 / tau)
    loss = -gate * adv
    no_clip = torch.zeros_like(mask, dtype=torch.bool)
    return PolicyLossOutput(_masked(loss, mask), _metrics(ratio, log_ratio, no_clip, mask))


def cross_entropy(inp: PolicyLossInput, config: CrossEntropyConfig | None = None) -> PolicyLossOutput:
    """Supervised cross-entropy on the loss tokens: ``loss = -logp``; advantages are ignored.

    For training on given responses through the RL loop (e.g. distillation data, or a
    warm-start inside a run): every loss token's log-likelihood is raised. The ratio metrics
    still compare ``logp`` with ``old_logprobs``. SkyRL (and Tinker) sum this loss over the
    tokens; here it is reduced like every policy loss, by ``[algorithm] loss_reduction``
    (``token_mean``: the mean negative log-likelihood per token).
    """
    logp, old, _, mask = _unpack(inp, "cross_entropy")
    log_ratio = _log_ratio(logp, old)
    no_clip = torch.zeros_like(mask, dtype=torch.bool)
    return PolicyLossOutput(_masked(-logp, mask), _metrics(log_ratio.exp(), log_ratio, no_clip, mask))


def importance_sampling(inp: PolicyLossInput, config: ImportanceSamplingConfig | None = None) -> PolicyLossOutput:
    """The importance-weighted policy gradient without clipping: ``loss = -r · A``.

    ``r = exp(logp - old)``, so its gradient is ``-r · A · ∇logp``: the on-policy REINFORCE
    gradient corrected for samples drawn from the old policy (Tinker's and SkyRL's
    ``importance_sampling`` loss). Unlike ``ppo_clip`` nothing bounds the update, so keep
    ``epochs_per_step`` small. The log-ratio is clamped to ``[-20, 20]`` as in every loss here.
    """
    logp, old, adv, mask = _unpack(inp, "importance_sampling")
    log_ratio = _log_ratio(logp, old)
    ratio = log_ratio.exp()
    no_clip = torch.zeros_like(mask, dtype=torch.bool)
    return PolicyLossOutput(_masked(-ratio * adv, mask), _metrics(ratio, log_ratio, no_clip, mask))


def rollout_is(inp: PolicyLossInput, config: RolloutISConfig | None = None) -> PolicyLossOutput:
    """REINFORCE weighted by the importance ratio to the *engine's* policy, zero outside a band.

    ``loss = -sg[w] · A · logp`` with ``r = exp(logp - rollout_logprobs)`` and ``w = r`` when
    ``1 - eps_low < r < 1 + eps_high``, else 0 (SkyRL's ``rollout_is``, the agentic loss of the
    GLM-5 technical report, section 4.1.2). Like ``cispo`` every kept token has a
    REINFORCE-style gradient, but the ratio is anchored on the sampler (useful when samples are
    stale, ``[trainer] mode = "async"``) and tokens outside the band are dropped, not capped.
    Needs the engine's log-probs (``PolicyLossInput.rollout_logprobs``). ``clip_frac`` counts
    the dropped tokens.
    """
    cfg = config if config is not None else RolloutISConfig()
    logp, _, adv, mask = _unpack(inp, "rollout_is")
    if inp.rollout_logprobs is None:
        raise ValueError("policy loss 'rollout_is' needs the engine's log-probs, but rollout_logprobs is None")
    if inp.rollout_logprobs.shape != logp.shape:
        raise ValueError(f"policy loss 'rollout_is': rollout_logprobs has shape {tuple(inp.rollout_logprobs.shape)} "
                         f"but logprobs has {tuple(logp.shape)}")
    rollout = torch.where(mask > 0, inp.rollout_logprobs.detach().to(logp.dtype), torch.zeros_like(logp))
    log_ratio = _log_ratio(logp, rollout)
    ratio = log_ratio.exp()
    in_band = (ratio > 1.0 - cfg.eps_low) & (ratio < 1.0 + cfg.eps_high)
    weight = torch.where(in_band, ratio.detach(), torch.zeros_like(ratio))
    loss = -weight * adv * logp
    return PolicyLossOutput(_masked(loss, mask), _metrics(ratio, log_ratio, ~in_band, mask))
