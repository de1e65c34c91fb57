"""The math of the RL step: pure tensor functions, no model and no engine.

Registered components (chosen by name from TOML through the registry, never imported
by name in the loop):

* advantage estimators, ``fn(inp: AdvantageInput, config) -> AdvantageOutput``, in
  ``skyrl_core.algorithms.advantages``: ``grpo``, ``rloo``, ``reinforce++``,
  ``reinforce++_baseline``, ``gae``;
* policy losses, ``fn(inp: PolicyLossInput, config) -> PolicyLossOutput``, in
  ``skyrl_core.algorithms.policy_losses``: ``ppo_clip``, ``dual_clip``, ``gspo``,
  ``cispo``, ``clip_cov``, ``kl_cov``.

Free functions called by the training loop:

* ``reductions.reduce_loss``: per-token loss -> scalar (token mean, sequence mean, Dr. GRPO);
* ``kl``: ``kl_estimate`` (k1/k2/k3/abs), ``apply_kl_penalty``, fixed/adaptive controllers;
* ``entropy.entropy_bonus``; ``value.value_loss`` (clipped critic loss);
* ``offpolicy``: truncated importance sampling and engine/trainer mismatch metrics;
* ``masked``: masked sum/mean/whiten helpers.

Options live in ``configs`` (torch-free). This package imports nothing eagerly so that
``skyrl_core.algorithms.configs`` can be read without torch. See docs/algorithms.md.
"""
