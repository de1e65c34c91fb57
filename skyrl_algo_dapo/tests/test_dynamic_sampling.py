"""Dynamic sampling on hand-built rounds: which groups are kept, the metrics, the limit error."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from dapo_support import run_context, traj
from skyrl_algo_dapo.dynamic_sampling import (
    DynamicSamplingError,
    SamplingPlan,
    collect_informative,
    is_informative,
    merge_round_metrics,
)
from skyrl_algo_dapo.overlong import RAW_REWARD

from skyrl_core.api import RolloutBatch


def round_of(*groups: Sequence[float], metrics: dict[str, float] | None = None) -> RolloutBatch:
    """One generation round: a group of trajectories per list of rewards (group ids 0, 1, ...)."""
    trajs = [traj(g, r) for g, rewards in enumerate(groups) for r in rewards]
    for i, t in enumerate(trajs):
        t.uid = f"{t.group_id}:{i}"
    return RolloutBatch(trajs, dict(metrics or {}))


class Sampler:
    """``sample(k)`` for the tests: hands out prepared rounds and records each ``k``."""

    def __init__(self, *rounds: RolloutBatch) -> None:
        self.rounds = list(rounds)
        self.asked: list[int] = []

    def __call__(self, k: int) -> RolloutBatch:
        self.asked.append(k)
        return self.rounds.pop(0)


def test_is_informative():
    assert is_informative([traj(0, 1.0), traj(0, 0.0)])
    assert not is_informative([traj(0, 1.0), traj(0, 1.0)])
    assert not is_informative([traj(0, 0.3)])  # one sample: nothing to compare
    assert not is_informative([traj(0, 0.1 + 0.2), traj(0, 0.3)])  # float sums that differ by rounding
    # raw_reward compares the reward before [dapo]'s overlong punishment
    penalised = traj(0, 0.5)
    penalised.extra[RAW_REWARD] = 1.0
    group = [penalised, traj(0, 1.0)]
    assert not is_informative(group, "raw_reward")
    assert is_informative(group, "reward")


def test_quota_is_filled_over_rounds():
    sampler = Sampler(
        round_of([1, 1, 1], [0, 1, 0], [0, 0, 0], metrics={"reward/mean": 1 / 3, "rollout/response_length/max": 7.0,
                                                           "rollout/env_errors": 1.0}),
        round_of([0, 0, 0], [0, 0, 0], [1, 1, 1], metrics={"reward/mean": 1 / 3, "rollout/response_length/max": 9.0,
                                                           "rollout/env_errors": 0.0}),
        round_of([1, 0, 1], [0, 0, 0], [0.5, 0, 0], metrics={"reward/mean": 0.5 / 3, "rollout/response_length/max": 5.0,
                                                             "rollout/env_errors": 2.0}),
    )
    batch = collect_informative(sampler, SamplingPlan(quota=2, per_round=3, max_rounds=5))

    assert sampler.asked == [3, 3, 3] and not sampler.rounds
    groups = batch.groups()
    assert list(groups) == [0, 1] and all(len(g) == 3 for g in groups.values())
    assert [t.reward for t in groups[0]] == [0, 1, 0]  # round 1, group 1
    assert [t.reward for t in groups[1]] == [1, 0, 1]  # round 3, group 0
    m = batch.metrics
    assert m["dapo/sampling_rounds"] == 3.0 and m["dapo/prompts_sampled"] == 9.0
    assert m["dapo/filter_rate"] == pytest.approx(6 / 9)  # 6 all-equal groups of 9
    assert m["dapo/groups_discarded"] == 1.0  # round 3, group 2: informative but over the quota
    assert m["dapo/kept_reward_mean"] == pytest.approx(3 / 6)
    # reward/ and rollout/ describe everything sampled in the step
    assert m["reward/mean"] == pytest.approx((1 / 3 + 1 / 3 + 0.5 / 3) / 3)
    assert m["rollout/response_length/max"] == 9.0 and m["rollout/env_errors"] == 3.0


def test_one_round_when_every_group_is_informative():
    sampler = Sampler(round_of([1, 0], [0, 1]))
    batch = collect_informative(sampler, SamplingPlan(quota=2, per_round=2, max_rounds=1))
    assert sampler.asked == [2] and len(batch) == 4
    assert batch.metrics["dapo/filter_rate"] == 0.0 and batch.metrics["dapo/sampling_rounds"] == 1.0


def test_the_round_limit_is_a_clear_error():
    sampler = Sampler(round_of([1, 1], [0, 1], [0, 0], [0, 0]), round_of([0, 0], [1, 1], [0, 0], [0, 0]))
    with pytest.raises(DynamicSamplingError) as err:
        collect_informative(sampler, SamplingPlan(quota=3, per_round=4, max_rounds=2))
    text = str(err.value)
    assert "after 2 sampling round(s) of 4 prompts (8 groups of 2 samples)" in text
    assert "only 1 of the step's 3 groups were informative" in text
    assert "Observed informative fraction: 0.125 (1/8)" in text
    assert "all equal: 5 at 0, 2 at 1" in text
    assert "about 24 prompts per step at this rate" in text
    assert "dapo.max_sampling_rounds" in text and "dapo.dynamic_sampling = false" in text


def test_no_informative_group_at_all():
    with pytest.raises(DynamicSamplingError, match=r"fraction: 0\.000 \(0/2\).*2 at 0\..*more than that"):
        collect_informative(Sampler(round_of([0, 0], [0, 0])), SamplingPlan(quota=1, per_round=2, max_rounds=1))


def test_merge_round_metrics_weights_by_trajectories():
    merged = merge_round_metrics([
        (4, {"reward/mean": 1.0, "rollout/x/min": 2.0, "only_first": 3.0}),
        (12, {"reward/mean": 0.0, "rollout/x/min": 1.0}),
    ])
    assert merged == {"reward/mean": 0.25, "rollout/x/min": 1.0, "only_first": 3.0}


def test_the_collect_hook(tmp_path):
    run = run_context("[dapo]\nprompts_per_round = 3\n", tmp_path)
    sampler = Sampler(round_of([1, 0], [1, 1], [0, 1]))
    batch = run.registry.hook.skyrl_collect_rollouts(run=run, sample=sampler, num_prompts=2)
    assert sampler.asked == [3] and len(batch.groups()) == 2

    # dynamic sampling off, or no [dapo] table: the plugin leaves collection to the loop
    for toml in ("[dapo]\ndynamic_sampling = false\n", ""):
        quiet = run_context(toml, tmp_path)
        assert quiet.registry.hook.skyrl_collect_rollouts(run=quiet, sample=Sampler(), num_prompts=2) is None
