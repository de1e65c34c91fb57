"""Advantage estimators: ``fn(inp: AdvantageInput, config) -> AdvantageOutput``.

Shapes: ``B`` sequences, ``R`` padded response tokens. ``inp.token_rewards`` is ``(B, R)``
with outcome rewards on the last model token of each response (multi-turn: of each turn);
``inp.response_mask`` is ``(B, R)``, 1.0 on model tokens (the actions), 0.0 on padding and
on environment tokens; ``inp.group_ids`` is ``(B,)``, equal for samples of one prompt.
Outputs are ``(B, R)`` float32 (float64 if the rewards are), zero where the mask is 0,
and never require grad.

A sequence's *score* is the sum of its token rewards. Edge cases, the same for every
group estimator: a group of one sample, or a group whose scores are all equal, gets
advantage 0 (there is nothing to compare it with), never NaN; an empty response (an
all-zero mask row) gets 0 everywhere. (``grpo``'s ``singleton_advantage = "score"``
reproduces SkyRL-train's singleton instead.)

Whitening uses population statistics (divide by ``n``) unless the estimator's
``whiten_variance`` is ``"bessel"`` (divide by ``n - 1``, as SkyRL-train does in REINFORCE++
and GAE).

``config`` may be None, meaning the estimator's defaults.
"""

from __future__ import annotations

import torch
from torch import Tensor

from skyrl_core.algorithms.configs import GAEConfig, GRPOConfig, ReinforcePPConfig, RLOOConfig
from skyrl_core.algorithms.masked import masked_whiten
from skyrl_core.protocols.algorithms import AdvantageInput, AdvantageOutput

__all__ = ["gae", "grpo", "reinforce_pp", "reinforce_pp_baseline", "rloo"]


# -- helpers ------------------------------------------------------------------------------------


def _prepare(inp: AdvantageInput, name: str) -> tuple[Tensor, Tensor]:
    """Validate shapes; return ``(rewards, mask)`` as detached floating tensors."""
    rewards, mask, groups = inp.token_rewards, inp.response_mask, inp.group_ids
    if rewards.dim() != 2 or rewards.shape != mask.shape:
        raise ValueError(
            f"advantage estimator {name!r}: token_rewards {tuple(rewards.shape)} and response_mask "
            f"{tuple(mask.shape)} must both be (B, R)"
        )
    if groups.shape != (rewards.shape[0],):
        raise ValueError(
            f"advantage estimator {name!r}: group_ids must be (B,) = ({rewards.shape[0]},), got {tuple(groups.shape)}"
        )
    dtype = torch.promote_types(rewards.dtype, torch.float32)
    return rewards.detach().to(dtype), (mask.detach() > 0).to(dtype)


def sequence_scores(token_rewards: Tensor) -> Tensor:
    """``(B,)`` outcome score of each sequence: the sum of its token rewards."""
    return token_rewards.sum(dim=-1)


def group_stats(scores: Tensor, group_ids: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-sample ``(group mean, unbiased group std, group size)``, each ``(B,)``.

    The std of a group of one is 0 (not NaN).
    """
    _, inverse, counts = torch.unique(group_ids, return_inverse=True, return_counts=True)
    counts = counts.to(scores.dtype)
    sums = torch.zeros_like(counts).index_add_(0, inverse, scores)
    mean = (sums / counts)[inverse]
    sq = torch.zeros_like(counts).index_add_(0, inverse, (scores - mean) ** 2)
    var = torch.where(counts > 1, sq / (counts - 1).clamp_min(1), torch.zeros_like(sq))
    return mean, var.sqrt()[inverse], counts[inverse]


def discounted_returns(rewards: Tensor, mask: Tensor, gamma: float) -> Tensor:
    """``(B, R)`` reward-to-go over the model tokens, discounted by ``gamma`` per model token.

    Environment/padding tokens (mask 0) are not actions: the reward found on one is
    credited, undiscounted, to the model token before it. Zero where the mask is 0.
    """
    if gamma == 1.0:  # fast path: every reward at or after t reaches t
        returns = rewards.flip(-1).cumsum(-1).flip(-1)
        return returns * mask
    returns = torch.zeros_like(rewards)
    running = rewards.new_zeros(rewards.shape[0])
    pending = torch.zeros_like(running)
    for t in reversed(range(rewards.shape[1])):
        m = mask[:, t]
        step = rewards[:, t] + pending + gamma * running
        running = torch.where(m > 0, step, running)
        pending = torch.where(m > 0, torch.zeros_like(pending), pending + rewards[:, t])
        returns[:, t] = running * m
    return returns


def _broadcast(seq_adv: Tensor, mask: Tensor) -> Tensor:
    return seq_adv[:, None] * mask


def _whiten(x: Tensor, mask: Tensor, cfg: ReinforcePPConfig | GAEConfig) -> Tensor:
    """Whiten over the batch with the estimator's ``epsilon`` and ``whiten_variance``."""
    return masked_whiten(x, mask, cfg.epsilon, unbiased=cfg.whiten_variance == "bessel")


def _batch_normalize(adv: Tensor, mask: Tensor, enabled: bool, variance: str = "population") -> Tensor:
    return masked_whiten(adv, mask, unbiased=variance == "bessel") if enabled else adv


# -- estimators ---------------------------------------------------------------------------------


def grpo(inp: AdvantageInput, config: GRPOConfig | None = None) -> AdvantageOutput:
    """Group-relative advantage: ``(score - group mean) / (group std + epsilon)``.

    GRPO (Shao et al. 2024, DeepSeekMath) normalises by the unbiased group standard
    deviation; with ``norm_by_std = false`` only the mean is subtracted, which is Dr. GRPO
    (Liu et al. 2025, "Understanding R1-Zero-Like Training"). The sequence's advantage is
    broadcast to each of its model tokens. Returns equal the advantages.

    Edge cases: a group with all scores equal gets 0; a singleton group gets 0, or with
    ``singleton_advantage = "score"`` SkyRL-train's value, computed as if the group had mean 0
    and std 1: ``score / (1 + epsilon)`` (``score`` with ``norm_by_std = false``).
    """
    cfg = config if config is not None else GRPOConfig()
    rewards, mask = _prepare(inp, "grpo")
    scores = sequence_scores(rewards)
    mean, std, count = group_stats(scores, inp.group_ids.to(scores.device))
    single = count <= 1
    if cfg.singleton_advantage == "score":
        mean = torch.where(single, torch.zeros_like(mean), mean)
        std = torch.where(single, torch.ones_like(std), std)
    adv = scores - mean
    if cfg.norm_by_std:
        adv = adv / (std + cfg.epsilon)
    if cfg.singleton_advantage == "zero":
        adv = torch.where(single, torch.zeros_like(adv), adv)
    advantages = _batch_normalize(_broadcast(adv, mask), mask, cfg.batch_normalize, cfg.whiten_variance)
    return AdvantageOutput(advantages=advantages, returns=advantages.clone())


def rloo(inp: AdvantageInput, config: RLOOConfig | None = None) -> AdvantageOutput:
    """REINFORCE leave-one-out: ``score_i - mean of the other scores in the group``.

    Ahmadian et al. 2024, "Back to Basics: Revisiting REINFORCE Style Optimization for
    Learning from Human Feedback in LLMs". Equal to ``n / (n - 1) * (score - group mean)``
    for a group of ``n``. Broadcast to the model tokens; returns equal the advantages.

    Edge cases: a singleton group has no other sample and gets 0; all equal gives 0.
    """
    cfg = config if config is not None else RLOOConfig()
    rewards, mask = _prepare(inp, "rloo")
    scores = sequence_scores(rewards)
    mean, _, count = group_stats(scores, inp.group_ids.to(scores.device))
    adv = torch.where(count > 1, (scores - mean) * count / (count - 1).clamp_min(1), torch.zeros_like(scores))
    advantages = _batch_normalize(_broadcast(adv, mask), mask, cfg.batch_normalize, cfg.whiten_variance)
    return AdvantageOutput(advantages=advantages, returns=advantages.clone())


def reinforce_pp(inp: AdvantageInput, config: ReinforcePPConfig | None = None) -> AdvantageOutput:
    """REINFORCE++ (Hu 2025): discounted per-token returns, whitened over the whole batch.

    ``returns[t] = sum over later model tokens s of gamma^(s - t) · reward[s]``; the
    advantages are the returns whitened over every model token of the batch (global,
    not per group), which is REINFORCE++'s variance reduction. Per-token rewards such
    as a KL penalty (``[algorithm.kl] mode = "reward"``) flow into the returns.

    Groups are ignored. If every token has the same return (e.g. all rewards equal),
    the advantages are 0.
    """
    cfg = config if config is not None else ReinforcePPConfig()
    rewards, mask = _prepare(inp, "reinforce++")
    returns = discounted_returns(rewards, mask, cfg.gamma)
    return AdvantageOutput(advantages=_whiten(returns, mask, cfg), returns=returns)


def reinforce_pp_baseline(inp: AdvantageInput, config: ReinforcePPConfig | None = None) -> AdvantageOutput:
    """REINFORCE++-baseline (Hu 2025): subtract the group mean score, then as REINFORCE++.

    The group's mean score is subtracted at each response's last model token, the
    discounted returns are taken, and the result is whitened over the batch. With
    ``gamma = 1`` and outcome rewards this is ``whiten(score - group mean)``.

    Edge cases: a singleton group's baseline is its own score, so its returns are 0
    before whitening; an empty response gets 0.
    """
    cfg = config if config is not None else ReinforcePPConfig()
    rewards, mask = _prepare(inp, "reinforce++_baseline")
    mean, _, _ = group_stats(sequence_scores(rewards), inp.group_ids.to(rewards.device))
    positions = torch.arange(mask.shape[1], device=mask.device)
    last = torch.where(mask > 0, positions, -1).amax(dim=-1) if mask.shape[1] else None
    if last is not None:
        has_tokens = last >= 0
        rows = torch.arange(mask.shape[0], device=mask.device)[has_tokens]
        rewards = rewards.clone()
        rewards[rows, last[has_tokens]] -= mean[has_tokens]
    returns = discounted_returns(rewards, mask, cfg.gamma)
    return AdvantageOutput(advantages=_whiten(returns, mask, cfg), returns=returns)


def gae(inp: AdvantageInput, config: GAEConfig | None = None) -> AdvantageOutput:
    """Generalised advantage estimation (Schulman et al. 2016) for PPO with a critic.

    Over the model tokens of each response, in reverse:
    ``delta_t = r_t + gamma · V_next - V_t``, ``A_t = delta_t + gamma · lam · A_next``,
    where "next" is the next *model* token (0 after the last one); rewards found on
    environment tokens are credited to the model token before them. ``returns = A + V``
    (the critic's regression target) before whitening; the advantages are then
    whitened over the batch when ``whiten`` is on.

    Requires ``inp.values`` ``(B, R)``: the critic's values of the same tokens.
    """
    cfg = config if config is not None else GAEConfig()
    rewards, mask = _prepare(inp, "gae")
    if inp.values is None:
        raise ValueError(
            "advantage estimator 'gae' needs critic values, but AdvantageInput.values is None. "
            "The loop runs a critic when the estimator's spec declares `requires_critic=True` (gae's does): "
            "check that a critic is configured, or choose a critic-free estimator in [algorithm.advantage] "
            "(e.g. name = \"grpo\")."
        )
    if inp.values.shape != rewards.shape:
        raise ValueError(f"advantage estimator 'gae': values {tuple(inp.values.shape)} must match "
                         f"token_rewards {tuple(rewards.shape)}")
    values = torch.where(mask > 0, inp.values.detach().to(rewards.dtype), torch.zeros_like(rewards))
    advantages = torch.zeros_like(rewards)
    last_adv = rewards.new_zeros(rewards.shape[0])
    next_value = torch.zeros_like(last_adv)
    pending = torch.zeros_like(last_adv)
    for t in reversed(range(rewards.shape[1])):
        m = mask[:, t]
        delta = rewards[:, t] + pending + cfg.gamma * next_value - values[:, t]
        adv_t = delta + cfg.gamma * cfg.lam * last_adv
        last_adv = torch.where(m > 0, adv_t, last_adv)
        next_value = torch.where(m > 0, values[:, t], next_value)
        pending = torch.where(m > 0, torch.zeros_like(pending), pending + rewards[:, t])
        advantages[:, t] = adv_t * m
    returns = (advantages + values) * mask
    if cfg.whiten:
        advantages = _whiten(advantages, mask, cfg)
    return AdvantageOutput(advantages=advantages, returns=returns)
