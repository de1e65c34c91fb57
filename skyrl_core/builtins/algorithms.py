"""Builtin advantage estimators and policy losses (implemented in skyrl_core.algorithms).

Selected in TOML by ``[algorithm.advantage] name = ...`` and ``[algorithm.policy_loss]
name = ...``; the rest of each table is validated by the config class named here.
"""

from __future__ import annotations

from skyrl_core.algorithms import configs as c
from skyrl_core.specs import ComponentSpec

_ADV = "skyrl_core.algorithms.advantages"
_LOSS = "skyrl_core.algorithms.policy_losses"

ADVANTAGE_ESTIMATORS: list[ComponentSpec] = [
    ComponentSpec("grpo", f"{_ADV}:grpo",
                  "Group-relative: (score - group mean) / group std; norm_by_std=false is Dr. GRPO.", c.GRPOConfig),
    ComponentSpec("rloo", f"{_ADV}:rloo", "REINFORCE leave-one-out: score minus the mean of the other samples.",
                  c.RLOOConfig),
    ComponentSpec("reinforce++", f"{_ADV}:reinforce_pp",
                  "REINFORCE++: discounted token returns, whitened over the batch.", c.ReinforcePPConfig),
    ComponentSpec("reinforce++_baseline", f"{_ADV}:reinforce_pp_baseline",
                  "REINFORCE++ with the group mean score subtracted first.", c.ReinforcePPConfig),
    ComponentSpec("gae", f"{_ADV}:gae", "Generalised advantage estimation with a critic (PPO).", c.GAEConfig,
                  requires_critic=True),
]

POLICY_LOSSES: list[ComponentSpec] = [
    ComponentSpec("ppo_clip", f"{_LOSS}:ppo_clip",
                  "PPO clipped surrogate with asymmetric eps_low/eps_high (clip-higher).", c.PPOClipConfig),
    ComponentSpec("dual_clip", f"{_LOSS}:dual_clip",
                  "PPO clip plus a bound of clip_ratio_c·|A| for negative advantages.", c.DualClipConfig),
    ComponentSpec("gspo", f"{_LOSS}:gspo", "GSPO: clipped sequence-level (geometric mean) importance ratio.",
                  c.GSPOConfig),
    ComponentSpec("cispo", f"{_LOSS}:cispo",
                  "CISPO: REINFORCE with clipped, stop-gradient importance weights.", c.CISPOConfig),
    ComponentSpec("clip_cov", f"{_LOSS}:clip_cov",
                  "PPO clip, detaching the gradient of a few high-covariance tokens.", c.ClipCovConfig),
    ComponentSpec("kl_cov", f"{_LOSS}:kl_cov",
                  "Unclipped surrogate with a KL penalty on the top-covariance tokens.", c.KLCovConfig),
    ComponentSpec("sapo", f"{_LOSS}:sapo",
                  "SAPO: a smooth sigmoid gate of the ratio instead of a hard clip (tau_pos/tau_neg).", c.SAPOConfig),
    ComponentSpec("importance_sampling", f"{_LOSS}:importance_sampling",
                  "Unclipped importance-weighted policy gradient: -ratio·A.", c.ImportanceSamplingConfig),
    ComponentSpec("rollout_is", f"{_LOSS}:rollout_is",
                  "REINFORCE weighted by the ratio to the engine's log-probs, zero outside a band.",
                  c.RolloutISConfig),
    ComponentSpec("cross_entropy", f"{_LOSS}:cross_entropy",
                  "Supervised negative log-likelihood of the loss tokens (advantages ignored).",
                  c.CrossEntropyConfig),
]
