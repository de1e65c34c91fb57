"""KL regularisation towards the reference (initial) policy.

``[algorithm.kl] mode`` decides where it enters:

* ``"loss"``: ``coef · reduce_loss(kl_estimate(logp, ref_logp, estimator), mask, ...)`` is
  added to the policy loss (gradient through ``logp``), as in GRPO (Shao et al. 2024);
* ``"reward"``: ``apply_kl_penalty`` subtracts ``coef · KL`` from the per-token rewards
  before the advantages are computed (InstructGPT / Ziegler et al. 2019), with a fixed or
  adaptive coefficient (``FixedKLController``, ``AdaptiveKLController``).

Estimators of KL(current || ref) from tokens sampled by the current policy (Schulman,
"Approximating KL Divergence", 2020), with ``log r = ref_logp - logp``:

* ``k1 = -log r``: unbiased, high variance, can be negative per token;
* ``k2 = (log r)² / 2``: biased, low variance, non-negative;
* ``k3 = (r - 1) - log r``: unbiased, low variance, non-negative (clamped to [0, 10]);
* ``abs = |log r|``.
"""

from __future__ import annotations

from typing import Any, Literal

import attrs
import torch
from torch import Tensor

KLEstimator = Literal["k1", "k2", "k3", "abs"]
ESTIMATORS: tuple[str, ...] = ("k1", "k2", "k3", "abs")

_MAX_LOG_RATIO = 20.0
_MAX_K3 = 10.0


def kl_estimate(logprobs: Tensor, ref_logprobs: Tensor, estimator: KLEstimator | str = "k3") -> Tensor:
    """Per-token estimate of KL(current || ref), ``(B, R)``.

    Args:
        logprobs: ``(B, R)`` log-probs of the sampled tokens under the current policy (may
            require grad; the gradient of the estimate flows through it).
        ref_logprobs: ``(B, R)`` log-probs of the same tokens under the reference policy
            (treated as a constant).
        estimator: ``"k1"``, ``"k2"``, ``"k3"`` or ``"abs"`` (see the module docstring).

    Returns:
        ``(B, R)``; not masked (multiply by or reduce with the response mask).
    """
    if logprobs.shape != ref_logprobs.shape:
        raise ValueError(f"kl_estimate: logprobs {tuple(logprobs.shape)} and ref_logprobs "
                         f"{tuple(ref_logprobs.shape)} must have the same shape")
    log_ratio = logprobs - ref_logprobs.detach().to(logprobs.dtype)  # log(π / π_ref)
    if estimator == "k1":
        return log_ratio
    if estimator == "k2":
        return 0.5 * log_ratio.square()
    if estimator == "k3":
        neg = (-log_ratio).clamp(-_MAX_LOG_RATIO, _MAX_LOG_RATIO)  # log(π_ref / π)
        return (torch.expm1(neg) - neg).clamp(0.0, _MAX_K3)
    if estimator == "abs":
        return log_ratio.abs()
    raise ValueError(f"kl_estimate: unknown estimator {estimator!r}; choose one of {', '.join(ESTIMATORS)}")


def apply_kl_penalty(token_rewards: Tensor, kl: Tensor, mask: Tensor, coef: float) -> Tensor:
    """Rewards with the KL penalty: ``token_rewards - coef · kl`` on loss tokens.

    Args:
        token_rewards: ``(B, R)`` per-token rewards (outcome reward on the last token).
        kl: ``(B, R)`` per-token KL estimate (``kl_estimate``); used as a constant.
        mask: ``(B, R)``, 1 on model tokens; environment and padding tokens get no penalty.
        coef: the KL coefficient (a controller's ``value``).

    Returns:
        A new ``(B, R)`` tensor (the input is not modified).
    """
    penalty = torch.where(mask > 0, kl.detach().to(token_rewards.dtype), torch.zeros_like(token_rewards))
    return token_rewards - coef * penalty


@attrs.define
class FixedKLController:
    """A constant KL coefficient."""

    value: float

    def update(self, current_kl: float, n_steps: int) -> None:
        """No-op (kept so fixed and adaptive controllers are interchangeable)."""

    def state_dict(self) -> dict[str, Any]:
        """Checkpointable state."""
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict()``."""
        self.value = float(state["value"])


@attrs.define
class AdaptiveKLController:
    """Adaptive KL coefficient of Ziegler et al. 2019 ("Fine-Tuning LMs from Human Preferences").

    After each step, ``value *= 1 + clip(current_kl / target - 1, -0.2, 0.2) · n_steps / horizon``:
    the coefficient grows while the measured KL is above ``target`` and shrinks below it.
    """

    value: float
    target: float
    horizon: int

    def __attrs_post_init__(self) -> None:
        if self.target <= 0 or self.horizon <= 0:
            raise ValueError(f"AdaptiveKLController: target ({self.target}) and horizon ({self.horizon}) must be > 0")

    def update(self, current_kl: float, n_steps: int) -> None:
        """Move the coefficient after ``n_steps`` samples (or steps) with mean KL ``current_kl``."""
        error = min(max(float(current_kl) / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon

    def state_dict(self) -> dict[str, Any]:
        """Checkpointable state."""
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict()``."""
        self.value = float(state["value"])


def make_kl_controller(config: Any) -> FixedKLController | AdaptiveKLController:
    """The controller described by an ``[algorithm.kl]`` config (``coef``, ``adaptive``, ``target``, ``horizon``)."""
    if config.adaptive:
        return AdaptiveKLController(value=config.coef, target=config.target, horizon=config.horizon)
    return FixedKLController(value=config.coef)
