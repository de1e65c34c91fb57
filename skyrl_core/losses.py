"""The losses a training strategy minimises: the policy loss, the critic's value loss, and SFT.

Each is a ``LossFn`` (``skyrl_core.protocols.strategy``): ``loss(micro, out, scale) ->
(loss, metrics)``. They are module-level objects so that they pickle *by reference*: the
``fsdp2`` strategy sends them to its Ray workers, which rebuild them from their own
installed packages.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import torch

from skyrl_core.algorithms.kl import kl_estimate
from skyrl_core.algorithms.masked import masked_mean
from skyrl_core.algorithms.offpolicy import tis_weights
from skyrl_core.algorithms.reductions import reduce_loss
from skyrl_core.algorithms.value import value_loss
from skyrl_core.config.schema import AlgorithmConfig
from skyrl_core.protocols.algorithms import PolicyLossInput
from skyrl_core.protocols.strategy import ForwardOutput, LossFn, LossScale, TrainBatch


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
        metrics["policy/pg_loss"] = float(masked_mean(token_loss.detach(), mask))
        if algo.kl.mode == "loss":
            kl = kl_estimate(logprobs, t["ref_logprobs"].to(logprobs.device), algo.kl.estimator)
            loss = loss + self.kl_coef * reduce_loss(kl, mask, algo.loss_reduction, **reduce)
            metrics["policy/kl_ref"] = float(masked_mean(kl.detach(), mask))
        if out.entropy is not None:
            metrics["policy/entropy"] = float(masked_mean(out.entropy.detach(), mask))
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
        metrics["critic/loss"] = float(masked_mean(token_loss.detach(), mask))
        return loss, metrics


def make_value_loss_fn(algo: AlgorithmConfig, norm_tokens: int) -> LossFn:
    """The critic's clipped value loss (see ``ValueLossFn``)."""
    return ValueLossFn(algo, norm_tokens)


def sft_loss(micro: TrainBatch, out: ForwardOutput, scale: LossScale) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy on the ``loss_mask`` tokens: the mean over every loss token of the mini-batch.

    Each micro-batch contributes ``sum(-logprob * mask) / scale.num_tokens``, so the
    accumulated gradient is that of the mini-batch mean. Its metric ``sft/loss`` is the
    micro-batch's mean negative log-likelihood per token, which the strategy's token-weighted
    averaging turns into the mini-batch mean. Used by ``skyrl sft`` and the warm start.
    """
    if out.logprobs is None:
        raise ValueError("the SFT loss needs log-probs; call train_step with role='policy'")
    mask = micro.tensors["loss_mask"].to(out.logprobs.device)
    nll = -(out.logprobs * mask).sum() / max(scale.num_tokens, 1.0)
    return nll, {"sft/loss": float(masked_mean(-out.logprobs.detach(), mask))}
