"""Options of the builtin advantage estimators and policy losses (torch-free).

Each class validates the rest of an ``[algorithm.advantage]`` or ``[algorithm.policy_loss]``
table once ``name`` has picked the component, e.g.::

    [algorithm.advantage]
    name = "grpo"
    norm_by_std = false      # Dr. GRPO

    [algorithm.policy_loss]
    name = "ppo_clip"
    eps_high = 0.28          # DAPO clip-higher

This module must stay importable without torch: ``skyrl config validate`` and
``skyrl components`` read it.
"""

from __future__ import annotations

from typing import Literal

import attrs

from skyrl_core.config.fields import Range, fraction, non_negative, option, positive, unit_interval


def _whiten_variance(what: str) -> str:
    """The ``whiten_variance`` option of an estimator that whitens ``what``."""
    return option(
        "population",
        help=f"Variance used when whitening {what}: 'population' (divide by n) or 'bessel' (divide by n - 1, "
        "Bessel's correction, as SkyRL-train's REINFORCE++ and GAE do).",
    )

# -- advantage estimators ---------------------------------------------------------------------


@attrs.define(kw_only=True)
class GRPOConfig:
    """``grpo``: group-relative advantages (Shao et al. 2024; Dr. GRPO: Liu et al. 2025)."""

    norm_by_std: bool = option(
        True,
        help="Divide by the group's (unbiased) reward standard deviation. false = Dr. GRPO "
        "(only subtract the group mean; pair it with loss_reduction = 'seq_mean_token_sum_norm').",
    )
    epsilon: float = option(1e-6, help="Added to the group standard deviation before dividing.", check=positive)
    batch_normalize: bool = option(
        False, help="Afterwards whiten the advantages over every loss token of the batch (mean 0, std 1)."
    )
    whiten_variance: Literal["population", "bessel"] = _whiten_variance("with batch_normalize")
    singleton_advantage: Literal["zero", "score"] = option(
        "zero",
        help="Advantage of a group of one sample: 'zero' (nothing to compare it with), or 'score': its "
        "score / (1 + epsilon) (its score with norm_by_std = false), SkyRL-train's convention (a group of "
        "one has mean 0 and std 1 there).",
    )


@attrs.define(kw_only=True)
class RLOOConfig:
    """``rloo``: leave-one-out baseline (Ahmadian et al. 2024)."""

    batch_normalize: bool = option(
        False, help="Afterwards whiten the advantages over every loss token of the batch (mean 0, std 1)."
    )
    whiten_variance: Literal["population", "bessel"] = _whiten_variance("with batch_normalize")


@attrs.define(kw_only=True)
class ReinforcePPConfig:
    """``reinforce++`` and ``reinforce++_baseline`` (Hu 2025)."""

    gamma: float = option(
        1.0, help="Discount factor of the per-token returns (1.0 = undiscounted).", check=unit_interval
    )
    epsilon: float = option(1e-8, help="Added to the batch standard deviation when whitening.", check=positive)
    whiten_variance: Literal["population", "bessel"] = _whiten_variance("the returns")


@attrs.define(kw_only=True)
class GAEConfig:
    """``gae``: generalised advantage estimation with a critic (Schulman et al. 2016)."""

    gamma: float = option(1.0, help="Discount factor.", check=unit_interval)
    lam: float = option(1.0, help="GAE lambda: 1.0 = Monte-Carlo returns minus values, 0.0 = one-step TD.",
                        check=unit_interval)
    whiten: bool = option(True, help="Whiten the advantages over every loss token of the batch (mean 0, std 1).")
    epsilon: float = option(1e-8, help="Added to the batch standard deviation when whitening.", check=positive)
    whiten_variance: Literal["population", "bessel"] = _whiten_variance("the advantages")


# -- policy losses ------------------------------------------------------------------------------


@attrs.define(kw_only=True)
class PPOClipConfig:
    """``ppo_clip``: clipped surrogate (Schulman et al. 2017); clip-higher (Yu et al. 2025)."""

    eps_low: float = option(0.2, help="The ratio is clipped below at 1 - eps_low.", check=non_negative)
    eps_high: float = option(
        0.2, help="The ratio is clipped above at 1 + eps_high; DAPO's clip-higher uses 0.28.", check=non_negative
    )


@attrs.define(kw_only=True)
class DualClipConfig:
    """``dual_clip``: PPO clip plus a bound for negative advantages (Ye et al. 2020)."""

    eps_low: float = option(0.2, help="The ratio is clipped below at 1 - eps_low.", check=non_negative)
    eps_high: float = option(0.2, help="The ratio is clipped above at 1 + eps_high.", check=non_negative)
    clip_ratio_c: float = option(
        3.0, help="For negative advantages the loss is at most clip_ratio_c·|A| (must be > 1).",
        check=Range(gt=1),
    )


@attrs.define(kw_only=True)
class GSPOConfig:
    """``gspo``: sequence-level importance ratio (Zheng et al. 2025)."""

    eps_low: float = option(
        3e-4, help="The sequence ratio is clipped below at 1 - eps_low (the paper uses 3e-4).", check=non_negative
    )
    eps_high: float = option(
        4e-4, help="The sequence ratio is clipped above at 1 + eps_high (the paper uses 4e-4).", check=non_negative
    )


@attrs.define(kw_only=True)
class CISPOConfig:
    """``cispo``: clipped, stop-gradient importance weights (MiniMax-M1, 2025)."""

    eps_low: float = option(
        1.0,
        help="The importance weight is clamped below at 1 - eps_low; 1.0 = no lower bound, as in the paper.",
        check=non_negative,
    )
    eps_high: float = option(5.0, help="The importance weight is clamped above at 1 + eps_high.", check=non_negative)


@attrs.define(kw_only=True)
class ClipCovConfig:
    """``clip_cov``: PPO clip + gradient detaching of high-covariance tokens (Cui et al. 2025)."""

    eps_low: float = option(0.2, help="PPO ratio clip below at 1 - eps_low.", check=non_negative)
    eps_high: float = option(0.2, help="PPO ratio clip above at 1 + eps_high.", check=non_negative)
    clip_ratio: float = option(
        2e-4,
        help="Fraction of the loss tokens (at least one) whose gradient is detached, drawn at random "
        "among the candidates whose covariance lies between clip_cov_lb and clip_cov_ub.",
        check=fraction,
    )
    clip_cov_lb: float = option(1.0, help="Lower covariance bound of the candidates.")
    clip_cov_ub: float = option(5.0, help="Upper covariance bound of the candidates.")


@attrs.define(kw_only=True)
class KLCovConfig:
    """``kl_cov``: unclipped surrogate + a KL penalty on the top-covariance tokens (Cui et al. 2025)."""

    kl_cov_ratio: float = option(
        2e-3,
        help="Fraction of the loss tokens (at least one), those with the largest covariance, that get the penalty "
        "(the paper uses 2e-3 for 7B models, 2e-4 for 32B).",
        check=fraction,
    )
    kl_coef: float = option(1.0, help="Coefficient of the |log-ratio| penalty on the selected tokens.",
                            check=non_negative)


@attrs.define(kw_only=True)
class SAPOConfig:
    """``sapo``: soft adaptive policy optimization, a sigmoid gate instead of a hard clip (Gao et al. 2025)."""

    tau_pos: float = option(
        1.0, help="Temperature of the gate on tokens with a positive advantage (larger: the gate closes sooner).",
        check=positive,
    )
    tau_neg: float = option(
        1.05,
        help="Temperature of the gate on tokens with a zero or negative advantage (the paper's 1.05 for "
        "Qwen3-30B-A3B; SkyRL-train's default too).",
        check=positive,
    )


@attrs.define(kw_only=True)
class RolloutISConfig:
    """``rollout_is``: REINFORCE weighted by the engine-anchored importance ratio, zero outside a band."""

    eps_low: float = option(
        0.2, help="Tokens whose ratio to the engine's policy is at most 1 - eps_low get weight 0.",
        check=non_negative,
    )
    eps_high: float = option(
        0.2, help="Tokens whose ratio to the engine's policy is at least 1 + eps_high get weight 0.",
        check=non_negative,
    )


@attrs.define(kw_only=True)
class CrossEntropyConfig:
    """``cross_entropy``: supervised negative log-likelihood on the loss tokens (no options)."""


@attrs.define(kw_only=True)
class ImportanceSamplingConfig:
    """``importance_sampling``: the unclipped importance-weighted policy gradient (no options)."""
