"""Contracts of the algorithm pieces: advantage estimators and policy losses.

Shapes: ``B`` is the number of sequences in the batch, ``R`` the padded response length.
Every ``(B, R)`` tensor is aligned with the *response* tokens (prompt tokens excluded);
positions past a response's end are padding. The ``mask`` (``response_mask``) is 1.0 on
tokens the loss is computed on (tokens the model generated) and 0.0 on padding and on
tokens inserted by an environment (observations, chat-template tokens).
"""

from __future__ import annotations

from typing import Any, Protocol

import attrs

try:  # torch is a hard dependency of skyrl-core, but keep this module importable for docs
    from torch import Tensor
except ImportError:  # pragma: no cover
    Tensor = Any  # type: ignore[misc,assignment]


@attrs.frozen
class AdvantageInput:
    """What an advantage estimator receives.

    Attributes:
        token_rewards: ``(B, R)`` float; the reward credited at each response token. Outcome
            rewards sit on the last model token of the response (multi-turn: on the last
            token of each turn); zero elsewhere.
        response_mask: ``(B, R)`` float; 1.0 on model tokens, 0.0 on padding/observations.
        group_ids: ``(B,)`` long; samples generated from the same prompt share an id.
        values: ``(B, R)`` float critic values, or None when there is no critic.
    """

    token_rewards: Tensor
    response_mask: Tensor
    group_ids: Tensor
    values: Tensor | None = None


@attrs.frozen
class AdvantageOutput:
    """Advantages and returns, both ``(B, R)`` and zero where ``response_mask`` is 0."""

    advantages: Tensor
    returns: Tensor


class AdvantageEstimator(Protocol):
    """``estimator(inp, config) -> AdvantageOutput``; ``config`` is the spec's config object."""

    def __call__(self, inp: AdvantageInput, config: Any) -> AdvantageOutput: ...


@attrs.frozen
class PolicyLossInput:
    """What a policy loss receives.

    Attributes:
        logprobs: ``(B, R)`` log-probs of the response tokens under the current policy
            (requires grad).
        old_logprobs: ``(B, R)`` log-probs under the policy that the ratio is taken against
            (the trainer's recomputation, or the rollout log-probs when configured).
        advantages: ``(B, R)``, no grad.
        mask: ``(B, R)`` float loss mask (see module docstring).
        rollout_logprobs: ``(B, R)`` log-probs reported by the inference engine, or None.
    """

    logprobs: Tensor
    old_logprobs: Tensor
    advantages: Tensor
    mask: Tensor
    rollout_logprobs: Tensor | None = None


@attrs.frozen
class PolicyLossOutput:
    """A per-token loss and scalar metrics.

    Attributes:
        token_loss: ``(B, R)``; the loop applies the configured loss reduction (token mean,
            sequence mean, ...) with ``mask``, so a loss never reduces by itself.
        metrics: scalar tensors or floats, e.g. ``clip_frac``, ``approx_kl``,
            ``ratio_mean``; logged under ``policy/``.
    """

    token_loss: Tensor
    metrics: dict[str, Any] = attrs.field(factory=dict)


class PolicyLoss(Protocol):
    """``loss(inp, config) -> PolicyLossOutput``; ``config`` is the spec's config object."""

    def __call__(self, inp: PolicyLossInput, config: Any) -> PolicyLossOutput: ...
