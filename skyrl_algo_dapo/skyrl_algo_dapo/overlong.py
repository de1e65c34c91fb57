"""Overlong reward shaping (DAPO section 3.4): soft punishment and filtering of truncated samples.

Both act on a freshly generated ``RolloutBatch`` in place (the ``skyrl_shape_rewards`` hook),
before group filtering and advantages:

* **soft overlong punishment** adds ``overlong_penalty(length)`` to the reward, credited on the
  last model token (where outcome rewards sit), so an answer that runs into the length limit
  scores a little less than the same answer given shorter;
* **overlong filtering** zeroes the loss mask of truncated samples (finish reason
  ``length``): a cut-off answer is not pushed down for content it never got to finish. Its
  reward still enters its group's mean and standard deviation.

The reward before the punishment is kept in ``trajectory.extra[RAW_REWARD]`` so that dynamic
sampling can compare the task's own scores (``[dapo] filter_on = "raw_reward"``).
"""

from __future__ import annotations

from skyrl_algo_dapo.config import DEFAULT_BUFFER_FRACTION, DapoConfig
from skyrl_core.api import GeneratorConfig, RolloutBatch, Trajectory

RAW_REWARD = "dapo_raw_reward"


def overlong_penalty(length: int, max_tokens: int, buffer_tokens: int, factor: float = 1.0) -> float:
    """DAPO's soft overlong punishment (Yu et al. 2025, eq. 13), scaled by ``factor``.

    ``0`` while ``length <= max_tokens - buffer_tokens``; then falling linearly, reaching
    ``-factor`` at ``length = max_tokens``; ``-factor`` beyond.
    """
    if buffer_tokens <= 0 or buffer_tokens > max_tokens:
        raise ValueError(f"buffer_tokens must be in 1..max_tokens ({max_tokens}), got {buffer_tokens}")
    start = max_tokens - buffer_tokens
    if length <= start:
        return 0.0
    if length >= max_tokens:
        return -factor
    return factor * (start - length) / buffer_tokens


def overlong_limits(section: DapoConfig, generator: GeneratorConfig) -> tuple[int, int]:
    """``(max_tokens, buffer_tokens)`` of the punishment, with the defaults resolved."""
    max_tokens = section.overlong_max_tokens or min(
        generator.max_new_tokens * generator.max_turns, generator.max_total_tokens
    )
    buffer = section.overlong_buffer_tokens or max(1, round(DEFAULT_BUFFER_FRACTION * max_tokens))
    return max_tokens, buffer


def model_tokens(traj: Trajectory) -> int:
    """The response length DAPO measures: tokens the model generated (loss mask 1)."""
    return sum(1 for m in traj.loss_mask if m)


def _last_model_token(traj: Trajectory) -> int:
    for i in range(len(traj.loss_mask) - 1, -1, -1):
        if traj.loss_mask[i]:
            return i
    return len(traj.token_rewards) - 1


def shape_overlong(batch: RolloutBatch, section: DapoConfig, generator: GeneratorConfig) -> dict[str, float]:
    """Apply the enabled overlong pieces of ``section`` to ``batch`` in place; return ``dapo/`` metrics.

    Lengths are measured before any loss mask is zeroed, so filtering never hides a penalty.
    """
    max_tokens, buffer = overlong_limits(section, generator)
    penalties: list[float] = []
    filtered = 0
    for traj in batch:
        traj.extra.setdefault(RAW_REWARD, traj.reward)
        if section.overlong_punishment:
            penalty = overlong_penalty(model_tokens(traj), max_tokens, buffer, section.overlong_penalty_factor)
            if penalty and traj.token_rewards:
                traj.token_rewards[_last_model_token(traj)] += penalty
            penalties.append(penalty)
        if section.overlong_filtering and traj.finish_reason == "length":
            traj.loss_mask = [0] * len(traj.loss_mask)
            filtered += 1
    n = max(len(batch), 1)
    metrics = {}
    if section.overlong_punishment:
        metrics["dapo/overlong_penalty_mean"] = sum(penalties) / n
        metrics["dapo/overlong_penalized_frac"] = sum(p < 0 for p in penalties) / n
    if section.overlong_filtering:
        metrics["dapo/overlong_filtered_frac"] = filtered / n
    return metrics
