"""``[dapo]``: the options of every DAPO piece (torch-free: imported at start-up).

A run turns DAPO on with the table alone; every piece is on with the paper's defaults and
can be switched off on its own::

    [dapo]                       # clip-higher, dynamic sampling, token-level loss, overlong shaping
    overlong_filtering = false   # e.g. keep the loss of truncated samples

Clip-higher and the token-level loss live in core tables (``[algorithm.policy_loss]``
``eps_low``/``eps_high``, ``[algorithm] loss_reduction``); ``[dapo]`` only supplies their
defaults (see ``skyrl_algo_dapo.presets``), so those tables stay the one place to tune them.
"""

from __future__ import annotations

from typing import Literal

import attrs

from skyrl_core.api import non_negative, option, positive

DAPO_EPS_LOW = 0.2
DAPO_EPS_HIGH = 0.28
DEFAULT_BUFFER_FRACTION = 0.2  # DAPO: a 4096-token buffer below a 20480-token maximum


@attrs.define(kw_only=True)
class DapoConfig:
    """``[dapo]``: DAPO (Yu et al. 2025, "DAPO: An Open-Source LLM Reinforcement Learning System at Scale")."""

    clip_higher: bool = option(
        True,
        help="Clip-higher: asymmetric PPO clipping. [algorithm.policy_loss] eps_low / eps_high default to "
        f"{DAPO_EPS_LOW} / {DAPO_EPS_HIGH} (set them there to tune); the policy loss must clip the ratio PPO-style "
        "(ppo_clip, dual_clip, clip_cov) with eps_high > eps_low.",
    )
    token_level_loss: bool = option(
        True,
        help="Token-level policy-gradient loss: [algorithm] loss_reduction defaults to 'token_mean' (every loss "
        "token of the mini-batch weighs the same); another reduction is a config error while this is on.",
    )
    dynamic_sampling: bool = option(
        True,
        help="Drop prompt groups whose rewards are all equal (their GRPO advantage is 0) and sample new prompts "
        "until trainer.prompts_per_step informative groups are collected. Reports dapo/filter_rate every step.",
    )
    filter_on: Literal["raw_reward", "reward"] = option(
        "raw_reward",
        help="What dynamic sampling compares within a group: 'raw_reward' (the reward before [dapo]'s overlong "
        "punishment, i.e. the task's accuracy, as in the paper) or 'reward' (after it).",
    )
    max_sampling_rounds: int = option(
        10,
        help="Generation rounds per step before dynamic sampling gives up with an error that reports the "
        "observed fraction of informative groups.",
        check=positive,
    )
    prompts_per_round: int | None = option(
        None,
        help="Prompts drawn per generation round of dynamic sampling (default: trainer.prompts_per_step). "
        "Informative groups beyond the step's quota are discarded (dapo/groups_discarded).",
        check=positive,
    )
    overlong_filtering: bool = option(
        True,
        help="Overlong filtering: zero the loss mask of truncated samples (finish reason 'length'), so a cut-off "
        "answer is not punished for its content; its reward still counts in its group's baseline.",
    )
    overlong_punishment: bool = option(
        True,
        help="Soft overlong punishment: add a length penalty to the reward, 0 up to overlong_max_tokens - "
        "overlong_buffer_tokens, falling linearly to -overlong_penalty_factor at overlong_max_tokens (and beyond).",
    )
    overlong_max_tokens: int | None = option(
        None,
        help="Response length (model tokens) at which the penalty is full. Default: the generation cap, "
        "min(generator.max_new_tokens * generator.max_turns, generator.max_total_tokens).",
        check=positive,
    )
    overlong_buffer_tokens: int | None = option(
        None,
        help="Length of the penalty ramp below overlong_max_tokens, at most overlong_max_tokens. Default: "
        f"{DEFAULT_BUFFER_FRACTION:.0%} of it (DAPO: 4096 of 20480).",
        check=positive,
    )
    overlong_penalty_factor: float = option(
        1.0, help="The penalty of a response at or beyond overlong_max_tokens.", check=non_negative
    )
