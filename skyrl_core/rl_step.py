"""The tensor side of one RL step: rollouts to a batch, advantages, and the loss functions.

``trainer.py`` calls these in order; each is a plain function of tensors and configs so
it can be read (and tested) on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import torch

from skyrl_core.algorithms.kl import apply_kl_penalty, kl_estimate
from skyrl_core.algorithms.offpolicy import tis_weights
from skyrl_core.algorithms.reductions import reduce_loss
from skyrl_core.algorithms.value import value_loss
from skyrl_core.config.schema import AlgorithmConfig
from skyrl_core.protocols.algorithms import AdvantageInput, PolicyLossInput
from skyrl_core.protocols.strategy import ForwardOutput, LossFn, LossScale, TrainBatch
from skyrl_core.rollout import RolloutBatch


def _pad(rows: list[list[float]], width: int) -> torch.Tensor:
    out = torch.zeros(len(rows), width, dtype=torch.float32)
    for i, row in enumerate(rows):
        if row:
            out[i, : len(row)] = torch.tensor(row, dtype=torch.float32)
    return out


def rollouts_to_batch(rollouts: RolloutBatch) -> tuple[TrainBatch, torch.Tensor]:
    """A ``TrainBatch`` with ``loss_mask``, ``rollout_logprobs``, ``token_rewards`` and the
    ``(B,)`` group ids."""
    trajs = rollouts.trajectories
    width = max((len(t.response_ids) for t in trajs), default=0)
    tensors = {
        "loss_mask": _pad([[float(m) for m in t.loss_mask] for t in trajs], width),
        "rollout_logprobs": _pad([list(t.rollout_logprobs) for t in trajs], width),
        "token_rewards": _pad([list(t.token_rewards) for t in trajs], width),
    }
    batch = TrainBatch([list(t.prompt_ids) for t in trajs], [list(t.response_ids) for t in trajs], tensors)
    group_ids = torch.tensor([t.group_id for t in trajs], dtype=torch.long)
    return batch, group_ids


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean of ``x`` where ``mask`` is 1 (0.0 for an empty mask)."""
    total = mask.sum()
    return float((x * mask).sum() / total) if total > 0 else 0.0


def compute_advantages(
    estimator: Callable[..., Any], estimator_cfg: Any, batch: TrainBatch, group_ids: torch.Tensor
) -> dict[str, float]:
    """Run the advantage estimator; store ``advantages`` and ``returns`` in the batch."""
    t = batch.tensors
    out = estimator(
        AdvantageInput(
            token_rewards=t["token_rewards"],
            response_mask=t["loss_mask"],
            group_ids=group_ids,
            values=t.get("old_values"),
        ),
        estimator_cfg,
    )
    t["advantages"] = out.advantages.detach().float()
    t["returns"] = out.returns.detach().float()
    mask = t["loss_mask"]
    adv = t["advantages"]
    valid = adv[mask > 0]
    return {
        "policy/advantage_mean": masked_mean(adv, mask),
        "policy/advantage_abs_mean": masked_mean(adv.abs(), mask),
        "policy/advantage_max": float(valid.max()) if valid.numel() else 0.0,
        "policy/advantage_min": float(valid.min()) if valid.numel() else 0.0,
    }


def penalise_rewards_with_kl(batch: TrainBatch, algo: AlgorithmConfig, coef: float) -> dict[str, float]:
    """KL-in-reward: subtract ``coef * KL(old || ref)`` from each token's reward."""
    t = batch.tensors
    kl = kl_estimate(t["old_logprobs"], t["ref_logprobs"], algo.kl.estimator)
    t["token_rewards"] = apply_kl_penalty(t["token_rewards"], kl, t["loss_mask"], coef)
    return {"policy/kl_ref": masked_mean(kl, t["loss_mask"]), "policy/kl_coef": coef}


@attrs.frozen
class PolicyLossFn:
    """The loss the strategy minimises for the policy (a ``LossFn``).

    A plain object rather than a closure so that it pickles *by reference* (its class and
    the policy-loss function are looked up by module and name on the other side): the
    ``fsdp2`` strategy sends it to its Ray workers, which rebuild it from their own
    installed packages. Build it with ``make_policy_loss_fn``.
    """

    policy_loss: Callable[..., Any]
    loss_cfg: Any
    algo: AlgorithmConfig
    norm_tokens: int
    kl_coef: float

    def __call__(
        self, micro: TrainBatch, out: ForwardOutput, scale: LossScale
    ) -> tuple[torch.Tensor, dict[str, float]]:
        algo = self.algo
        t = micro.tensors
        logprobs = out.logprobs
        mask = t["loss_mask"].to(logprobs.device)
        old = t["old_logprobs"].to(logprobs.device)
        adv = t["advantages"].to(logprobs.device)
        rollout = t.get("rollout_logprobs")
        rollout = rollout.to(logprobs.device) if rollout is not None else None
        res = self.policy_loss(PolicyLossInput(logprobs, old, adv, mask, rollout), self.loss_cfg)
        token_loss = res.token_loss
        metrics = {f"policy/{k}": float(v) for k, v in res.metrics.items()}
        if algo.tis.mode != "off" and rollout is not None:
            weights, tis_metrics = tis_weights(old, rollout, mask, algo.tis.mode, algo.tis.cap)
            token_loss = token_loss * weights.detach()
            metrics.update({f"policy/tis_{k}": float(v) for k, v in tis_metrics.items()})
        reduce = dict(num_tokens=scale.num_tokens, num_sequences=scale.num_sequences, norm_tokens=self.norm_tokens)
        pg_loss = reduce_loss(token_loss, mask, algo.loss_reduction, **reduce)
        loss = pg_loss
        metrics["policy/pg_loss"] = masked_mean(token_loss.detach(), mask)
        if algo.kl.mode == "loss":
            kl = kl_estimate(logprobs, t["ref_logprobs"].to(logprobs.device), algo.kl.estimator)
            loss = loss + self.kl_coef * reduce_loss(kl, mask, algo.loss_reduction, **reduce)
            metrics["policy/kl_ref"] = masked_mean(kl.detach(), mask)
        if out.entropy is not None:
            metrics["policy/entropy"] = masked_mean(out.entropy.detach(), mask)
            if algo.entropy_coef > 0:
                loss = loss - algo.entropy_coef * reduce_loss(out.entropy, mask, algo.loss_reduction, **reduce)
        metrics["policy/loss"] = metrics["policy/pg_loss"]
        return loss, metrics


def make_policy_loss_fn(
    policy_loss: Callable[..., Any], loss_cfg: Any, algo: AlgorithmConfig, norm_tokens: int, kl_coef: float
) -> LossFn:
    """The loss the strategy minimises for the policy (see ``LossFn`` and ``PolicyLossFn``)."""
    return PolicyLossFn(policy_loss, loss_cfg, algo, norm_tokens, kl_coef)


@attrs.frozen
class ValueLossFn:
    """The critic's clipped value loss (a ``LossFn``; a plain object for the same reason as
    ``PolicyLossFn``). Build it with ``make_value_loss_fn``."""

    algo: AlgorithmConfig
    norm_tokens: int

    def __call__(
        self, micro: TrainBatch, out: ForwardOutput, scale: LossScale
    ) -> tuple[torch.Tensor, dict[str, float]]:
        algo = self.algo
        t = micro.tensors
        values = out.values
        mask = t["loss_mask"].to(values.device)
        token_loss, m = value_loss(
            values, t["old_values"].to(values.device), t["returns"].to(values.device), mask, algo.value_clip
        )
        loss = algo.value_coef * reduce_loss(
            token_loss,
            mask,
            algo.loss_reduction,
            num_tokens=scale.num_tokens,
            num_sequences=scale.num_sequences,
            norm_tokens=self.norm_tokens,
        )
        metrics = {f"critic/{k}": float(v) for k, v in m.items()}
        metrics["critic/loss"] = masked_mean(token_loss.detach(), mask)
        return loss, metrics


def make_value_loss_fn(algo: AlgorithmConfig, norm_tokens: int) -> LossFn:
    """The critic's clipped value loss (see ``ValueLossFn``)."""
    return ValueLossFn(algo, norm_tokens)


def sft_loss_fn(micro: TrainBatch, out: ForwardOutput, scale: LossScale) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy on ``loss_mask`` tokens, averaged over the mini-batch's tokens."""
    mask = micro.tensors["loss_mask"].to(out.logprobs.device)
    nll = -(out.logprobs * mask).sum() / max(scale.num_tokens, 1.0)
    return nll, {"sft/loss": masked_mean(-out.logprobs.detach(), mask)}


def split_minibatches(
    group_ids: torch.Tensor, prompts_per_minibatch: int, generator: torch.Generator
) -> list[list[int]]:
    """Sequence indices of each mini-batch: whole groups, shuffled, ``prompts_per_minibatch`` groups each."""
    groups: dict[int, list[int]] = {}
    for i, g in enumerate(group_ids.tolist()):
        groups.setdefault(g, []).append(i)
    keys = list(groups)
    order = torch.randperm(len(keys), generator=generator).tolist()
    keys = [keys[i] for i in order]
    return [
        [i for g in keys[s : s + prompts_per_minibatch] for i in groups[g]]
        for s in range(0, len(keys), prompts_per_minibatch)
    ]


def mean_metrics(items: list[dict[str, float]]) -> dict[str, float]:
    """Average dicts of metrics key by key."""
    sums: dict[str, list[float]] = {}
    for m in items:
        for k, v in m.items():
            sums.setdefault(k, []).append(float(v))
    return {k: sum(v) / len(v) for k, v in sums.items()}
