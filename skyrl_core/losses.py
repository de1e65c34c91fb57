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
from skyrl_core.algorithms.offpolicy import correction_weights, mismatch_metrics
from skyrl_core.algorithms.reductions import needs_weights, reduce_loss, weights_key
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
    old_from_forward: bool = False
    """The old log-probs are this pass's own log-probs, detached (``trainer.old_logprobs_from_update``):
    only exact when no optimizer step ran since the batch was drawn (one mini-batch, one epoch)."""

    def __call__(
        self, micro: TrainBatch, out: ForwardOutput, scale: LossScale
    ) -> tuple[torch.Tensor, dict[str, float]]:
        algo = self.algo
        t = micro.tensors
        logprobs = out.logprobs
        mask = t["loss_mask"].to(logprobs.device)
        adv = t["advantages"].to(logprobs.device)
        rollout = t.get("rollout_logprobs")
        rollout = rollout.to(logprobs.device) if rollout is not None else None
        mismatch: dict[str, float] = {}
        if self.old_from_forward:
            old = logprobs.detach()
            if rollout is not None:  # the loop's trainer-vs-engine metrics, from this pass
                m = mismatch_metrics(old, rollout, mask)
                mismatch = {f"policy/rollout_{k}": float(v) for k, v in m.items()}
        else:
            old = t["old_logprobs"].to(logprobs.device)
        res = self.policy_loss(PolicyLossInput(logprobs, old, adv, mask, rollout), self.loss_cfg)
        token_loss = res.token_loss
        metrics = {f"policy/{k}": float(v) for k, v in res.metrics.items()}
        if algo.tis.enabled and rollout is not None:
            weights, tis_metrics = rollout_correction(old, rollout, mask, algo)
            token_loss = token_loss * weights.detach()
            metrics.update({f"policy/tis_{k}": float(v) for k, v in tis_metrics.items()})
        pg_loss = reduce_term(token_loss, mask, algo, "policy", micro, scale, self.norm_tokens)
        loss = pg_loss
        metrics["policy/pg_loss"] = float(masked_mean(token_loss.detach(), mask))
        if algo.kl.mode == "loss":
            kl = kl_estimate(logprobs, t["ref_logprobs"].to(logprobs.device), algo.kl.estimator)
            loss = loss + self.kl_coef * reduce_term(kl, mask, algo, "kl", micro, scale, self.norm_tokens)
            metrics["policy/kl_ref"] = float(masked_mean(kl.detach(), mask))
        if out.entropy is not None:
            metrics["policy/entropy"] = float(masked_mean(out.entropy.detach(), mask))
            if algo.entropy_coef > 0:
                bonus = reduce_term(out.entropy, mask, algo, "entropy", micro, scale, self.norm_tokens)
                loss = loss - algo.entropy_coef * bonus
        metrics["policy/loss"] = metrics["policy/pg_loss"]
        metrics.update(mismatch)
        return loss, metrics


def rollout_correction(
    old: torch.Tensor, rollout: torch.Tensor, mask: torch.Tensor, algo: AlgorithmConfig
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``[algorithm.tis]``'s weights for the token loss: TIS and the rejection masks
    (``skyrl_core.algorithms.offpolicy.correction_weights``)."""
    tis = algo.tis
    bounds = {"geometric": (tis.geometric_low, tis.geometric_high), "product": (tis.product_low, tis.product_high)}
    return correction_weights(
        old,
        rollout,
        mask,
        tis_mode=tis.mode,
        cap=tis.cap,
        token_bounds=(tis.token_mask_low, tis.token_mask_high),
        outlier_bounds=(tis.outlier_token_low, tis.outlier_token_high),
        sequence_metric=tis.sequence_mask,
        sequence_bounds=bounds.get(tis.sequence_mask, (tis.geometric_low, tis.geometric_high)),
    )


def reduce_term(
    token_loss: torch.Tensor,
    mask: torch.Tensor,
    algo: AlgorithmConfig,
    term: str,
    micro: TrainBatch,
    scale: LossScale,
    norm_tokens: int,
) -> torch.Tensor:
    """One loss term of a micro-batch, reduced as ``algo.reduction(term)`` says: from the mini-batch
    totals in ``scale``, or from the per-token weights the loop put in the batch
    (``skyrl_core.batches.attach_reduction_weights``) when the reduction needs the whole mini-batch."""
    mode = algo.reduction(term)  # type: ignore[arg-type]
    weights = None
    if needs_weights(mode, algo.empty_sequences):
        weights = micro.tensors.get(weights_key(mode))
        if weights is None:
            raise ValueError(
                f"the {term} term's reduction {mode!r} (with empty_sequences = {algo.empty_sequences!r}) needs "
                f"per-token weights over the mini-batch in batch.tensors[{weights_key(mode)!r}]; compute them with "
                "skyrl_core.batches.attach_reduction_weights before train_step"
            )
        weights = weights.to(token_loss.device)
    return reduce_loss(
        token_loss,
        mask,
        mode,
        num_tokens=scale.num_tokens,
        num_sequences=scale.num_sequences,
        norm_tokens=norm_tokens,
        weights=weights,
    )


def make_policy_loss_fn(
    policy_loss: Callable[..., Any],
    loss_cfg: Any,
    algo: AlgorithmConfig,
    norm_tokens: int,
    kl_coef: float,
    *,
    old_from_forward: bool = False,
) -> LossFn:
    """The loss the strategy minimises for the policy (see ``LossFn`` and ``PolicyLossFn``)."""
    return PolicyLossFn(policy_loss, loss_cfg, algo, norm_tokens, kl_coef, old_from_forward)


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
        loss = algo.value_coef * reduce_term(token_loss, mask, algo, "value", micro, scale, self.norm_tokens)
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
