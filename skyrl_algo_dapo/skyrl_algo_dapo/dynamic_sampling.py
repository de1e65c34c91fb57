"""Dynamic sampling (DAPO section 3.2): train only on prompt groups whose rewards differ.

A group whose samples all score the same has GRPO advantage 0 everywhere: it costs a
forward and backward pass and contributes no gradient, and as accuracy rises more and more
groups are all-correct. ``collect_informative`` drops such groups and draws new prompts
until the step's quota of informative groups is full (the ``skyrl_collect_rollouts`` hook).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

import attrs

from skyrl_algo_dapo.overlong import RAW_REWARD
from skyrl_core.api import RolloutBatch, SkyrlError, Trajectory

EQUAL_ATOL = 1e-9  # rewards within this of each other count as equal (sums of float token rewards)


class DynamicSamplingError(SkyrlError):
    """Dynamic sampling hit ``[dapo] max_sampling_rounds`` before the step's quota was full."""


@attrs.frozen
class SamplingPlan:
    """How one step samples: ``quota`` informative groups, ``per_round`` prompts per round."""

    quota: int
    per_round: int
    max_rounds: int
    filter_on: str = "raw_reward"


def score(traj: Trajectory, filter_on: str) -> float:
    """The number dynamic sampling compares: the reward before [dapo]'s shaping, or after it."""
    if filter_on == "raw_reward":
        return float(traj.extra.get(RAW_REWARD, traj.reward))
    return traj.reward


def is_informative(group: Sequence[Trajectory], filter_on: str = "raw_reward") -> bool:
    """True when the group's scores are not all equal (so its advantages are not all zero)."""
    scores = [score(t, filter_on) for t in group]
    return bool(scores) and max(scores) - min(scores) > EQUAL_ATOL


def merge_round_metrics(rounds: Sequence[tuple[int, dict[str, float]]]) -> dict[str, float]:
    """One step's metrics from every round's ``(num_trajectories, metrics)``.

    Means are weighted by trajectories; ``*/max`` and ``*/min`` take the extreme and
    ``rollout/env_errors`` (a count) the sum. So ``reward/`` and ``rollout/`` describe every
    sample generated in the step, before filtering (a spread such as ``reward/std`` becomes the
    weighted mean of the rounds' spreads, not the pooled one).
    """
    keys = sorted({k for _, m in rounds for k in m})
    out: dict[str, float] = {}
    for key in keys:
        present = [(n, m[key]) for n, m in rounds if key in m]
        values = [v for _, v in present]
        if key.endswith("/max"):
            out[key] = max(values)
        elif key.endswith("/min"):
            out[key] = min(values)
        elif key == "rollout/env_errors":
            out[key] = sum(values)
        else:
            total = sum(n for n, _ in present)
            out[key] = sum(n * v for n, v in present) / total if total else sum(values) / len(values)
    return out


def collect_informative(sample: Callable[[int], RolloutBatch], plan: SamplingPlan) -> RolloutBatch:
    """Sample rounds of ``plan.per_round`` prompts until ``plan.quota`` informative groups are kept.

    Returns a batch of exactly ``plan.quota`` groups (group ids ``0..quota-1``, in the order
    they were kept) with the merged metrics of every round plus ``dapo/filter_rate`` (the
    fraction of sampled groups dropped as uninformative), ``dapo/sampling_rounds``,
    ``dapo/prompts_sampled``, ``dapo/groups_discarded`` (informative groups beyond the quota)
    and ``dapo/kept_reward_mean``. Raises ``DynamicSamplingError`` after ``plan.max_rounds``
    rounds without enough informative groups.
    """
    kept: list[list[Trajectory]] = []
    round_metrics: list[tuple[int, dict[str, float]]] = []
    uniform: Counter[float] = Counter()  # the common score of each dropped group
    sampled = discarded = rounds = 0
    samples_per_prompt = 0
    while len(kept) < plan.quota:
        if rounds == plan.max_rounds:
            raise DynamicSamplingError(_limit_message(plan, len(kept), sampled, uniform, samples_per_prompt))
        batch = sample(plan.per_round)
        rounds += 1
        round_metrics.append((len(batch), dict(batch.metrics)))
        for group in batch.groups().values():
            sampled += 1
            samples_per_prompt = max(samples_per_prompt, len(group))
            if not is_informative(group, plan.filter_on):
                uniform[round(score(group[0], plan.filter_on), 6)] += 1
            elif len(kept) < plan.quota:
                kept.append(group)
            else:
                discarded += 1
    trajectories = []
    for gid, group in enumerate(kept):
        for traj in group:
            traj.group_id = gid
            trajectories.append(traj)
    metrics = merge_round_metrics(round_metrics)
    metrics.update({
        "dapo/filter_rate": sum(uniform.values()) / sampled,
        "dapo/sampling_rounds": float(rounds),
        "dapo/prompts_sampled": float(sampled),
        "dapo/groups_discarded": float(discarded),
        "dapo/kept_reward_mean": sum(t.reward for t in trajectories) / max(len(trajectories), 1),
    })
    return RolloutBatch(trajectories=trajectories, metrics=metrics)


def _limit_message(plan: SamplingPlan, kept: int, sampled: int, uniform: Counter[float], group_size: int) -> str:
    informative = sampled - sum(uniform.values())
    fraction = informative / sampled if sampled else 0.0
    scores = ", ".join(f"{count} at {value:g}" for value, count in sorted(uniform.items()))
    need = f"about {plan.quota / fraction:.0f} prompts per step at this rate" if fraction > 0 else "more than that"
    return (
        f"[dapo] dynamic sampling: after {plan.max_rounds} sampling round(s) of {plan.per_round} prompts "
        f"({sampled} groups of {group_size} samples) only {kept} of the step's {plan.quota} groups were "
        f"informative. Observed informative fraction: {fraction:.3f} ({informative}/{sampled}); "
        f"groups whose {plan.filter_on.replace('_', ' ')}s were all equal: {scores or 'none'}. "
        f"Filling the step needs {need}. Raise dapo.max_sampling_rounds or dapo.prompts_per_round, "
        "lower trainer.prompts_per_step, raise trainer.samples_per_prompt, use a task of fitting difficulty "
        "(all 0: too hard or a broken reward; all 1: too easy), or set dapo.dynamic_sampling = false."
    )
