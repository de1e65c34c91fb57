"""Soft overlong punishment and overlong filtering, on hand-built batches and through the hook."""

from __future__ import annotations

import pytest
from dapo_support import config, run_context, traj
from skyrl_algo_dapo.config import DapoConfig
from skyrl_algo_dapo.overlong import RAW_REWARD, overlong_limits, overlong_penalty, shape_overlong

from skyrl_core.api import GeneratorConfig, RolloutBatch


def test_penalty_follows_the_paper():
    # DAPO eq. 13 with the paper's L_max = 20480, L_cache = 4096
    assert overlong_penalty(100, 20480, 4096) == 0.0
    assert overlong_penalty(16384, 20480, 4096) == 0.0  # the last length without a penalty
    assert overlong_penalty(16385, 20480, 4096) == pytest.approx(-1 / 4096)
    assert overlong_penalty(18432, 20480, 4096) == pytest.approx(-0.5)
    assert overlong_penalty(20480, 20480, 4096) == -1.0
    assert overlong_penalty(25000, 20480, 4096) == -1.0  # beyond the maximum: the full penalty
    assert overlong_penalty(18432, 20480, 4096, factor=0.4) == pytest.approx(-0.2)
    assert overlong_penalty(5, 10, 10) == pytest.approx(-0.5)  # a ramp over the whole range
    with pytest.raises(ValueError, match=r"buffer_tokens must be in 1\.\.max_tokens"):
        overlong_penalty(5, 10, 11)


def test_limits_default_to_the_generation_cap():
    gen = GeneratorConfig(max_new_tokens=256, max_total_tokens=4096)
    assert overlong_limits(DapoConfig(), gen) == (256, 51)  # 20% ramp
    multi = GeneratorConfig(max_new_tokens=256, max_turns=4, max_total_tokens=700)
    assert overlong_limits(DapoConfig(), multi) == (700, 140)
    assert overlong_limits(DapoConfig(overlong_max_tokens=100, overlong_buffer_tokens=10), gen) == (100, 10)
    assert overlong_limits(DapoConfig(), GeneratorConfig(max_new_tokens=2)) == (2, 1)  # ramp of at least 1


def test_shape_overlong_on_a_hand_built_batch():
    gen = GeneratorConfig(max_new_tokens=10)
    section = DapoConfig(overlong_buffer_tokens=4)  # penalty from 6 model tokens, -1 at 10
    short = traj(0, 1.0, model_tokens=5)
    in_ramp = traj(0, 1.0, model_tokens=8)
    truncated = traj(1, 0.0, model_tokens=10, finish="length")
    # multi-turn: environment tokens after the last model token; length counts model tokens only
    with_env = traj(1, 1.0, model_tokens=7, env_tokens=5)
    batch = RolloutBatch([short, in_ramp, truncated, with_env])

    metrics = shape_overlong(batch, section, gen)

    assert [t.reward for t in batch] == pytest.approx([1.0, 0.5, -1.0, 0.75])
    assert in_ramp.token_rewards[-1] == pytest.approx(0.5)  # on the last model token, with the outcome
    assert with_env.token_rewards[6] == pytest.approx(0.75) and with_env.token_rewards[7:] == [0.0] * 5
    assert [t.extra[RAW_REWARD] for t in batch] == [1.0, 1.0, 0.0, 1.0]
    # filtering: only the truncated sample loses its loss mask
    assert truncated.loss_mask == [0] * 10
    assert short.loss_mask == [1] * 5 and in_ramp.loss_mask == [1] * 8 and with_env.loss_mask == [1] * 7 + [0] * 5
    assert metrics == {
        "dapo/overlong_penalty_mean": pytest.approx((0 - 0.5 - 1.0 - 0.25) / 4),
        "dapo/overlong_penalized_frac": 0.75,
        "dapo/overlong_filtered_frac": 0.25,
    }
    for t in batch:
        t.check()


def test_each_overlong_piece_switches_off():
    gen = GeneratorConfig(max_new_tokens=10)
    batch = RolloutBatch([traj(0, 1.0, model_tokens=10, finish="length")])
    assert shape_overlong(batch, DapoConfig(overlong_punishment=False), gen) == {"dapo/overlong_filtered_frac": 1.0}
    assert batch.trajectories[0].reward == 1.0 and batch.trajectories[0].loss_mask == [0] * 10

    batch = RolloutBatch([traj(0, 1.0, model_tokens=10, finish="length")])
    metrics = shape_overlong(batch, DapoConfig(overlong_filtering=False), gen)
    assert batch.trajectories[0].reward == 0.0 and batch.trajectories[0].loss_mask == [1] * 10
    assert "dapo/overlong_filtered_frac" not in metrics

    batch = RolloutBatch([traj(0, 1.0, model_tokens=10, finish="length")])
    assert shape_overlong(batch, DapoConfig(overlong_punishment=False, overlong_filtering=False), gen) == {}
    assert batch.trajectories[0].reward == 1.0 and batch.trajectories[0].loss_mask == [1] * 10


def test_the_shape_rewards_hook_acts_only_with_a_dapo_table(tmp_path):
    toml = "[generator]\nmax_new_tokens = 10\n"
    run = run_context(toml + "[dapo]\noverlong_buffer_tokens = 4\n", tmp_path)
    batch = RolloutBatch([traj(0, 1.0, model_tokens=8), traj(0, 0.0, model_tokens=10, finish="length")])
    batch.metrics["reward/mean"] = 0.5
    run.registry.hook.skyrl_shape_rewards(run=run, batch=batch)
    assert [t.reward for t in batch] == pytest.approx([0.5, -1.0])
    assert batch.metrics["reward/mean"] == 0.5 and batch.metrics["dapo/overlong_filtered_frac"] == 0.5

    quiet = run_context(toml, tmp_path)
    batch = RolloutBatch([traj(0, 1.0, model_tokens=10, finish="length")])
    quiet.registry.hook.skyrl_shape_rewards(run=quiet, batch=batch)
    assert batch.trajectories[0].reward == 1.0 and batch.trajectories[0].loss_mask == [1] * 10
    assert batch.metrics == {}
    assert config("").sections == {}
