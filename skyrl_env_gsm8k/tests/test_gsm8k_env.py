"""The gsm8k and gsm8k_multi_turn environments: scoring, turn logic, metrics, registration."""

from __future__ import annotations

import pytest
from skyrl_env_gsm8k.config import Gsm8kEnvConfig, Gsm8kMultiTurnConfig
from skyrl_env_gsm8k.env import (
    HIGH_FEEDBACK,
    LOW_FEEDBACK,
    NO_ANSWER_FEEDBACK,
    WRONG_FEEDBACK,
    Gsm8kEnv,
    Gsm8kMultiTurnEnv,
)

from skyrl_core.api import ConfigError, Kind, StepOutput, parse_config
from skyrl_core.testing import check_plugin, fresh_registry
from skyrl_env_gsm8k import plugin

PROMPT = [{"role": "user", "content": "Natalia sold 48 clips in April and half as many in May. How many in total?"}]


def extras(truth="72", max_turns=1, **more):
    return {
        "reward_spec": {"method": "rule", "ground_truth": truth},
        "data_source": "gsm8k",
        "max_turns": max_turns,
        **more,
    }


# -- single turn ------------------------------------------------------------------------------


def test_single_turn_scores_and_ends():
    env = Gsm8kEnv(None, extras())
    prompt, meta = env.init(PROMPT)
    assert prompt == PROMPT and meta == {}
    out = env.step("48/2 = 24 in May, 48 + 24 = 72.\n#### 72")
    assert isinstance(out, StepOutput)
    assert out.done and out.reward == 1.0 and out.observations == []
    assert out.metadata["answer"] == "72" and out.metadata["answer_source"] == "marker"
    assert env.get_metrics() == {"correct": 1.0, "formatted": 1.0, "parse_failure": 0.0, "turns": 1.0}


def test_single_turn_config_is_applied():
    cfg = Gsm8kEnvConfig(mode="flexible", correct_reward=2.0, format_reward=0.5)
    assert Gsm8kEnv(cfg, extras()).step("so it is 72").reward == 2.0
    assert Gsm8kEnv(cfg, extras()).step("\\boxed{70}").reward == 0.5
    strict = Gsm8kEnv(Gsm8kEnvConfig(format_reward=0.5), extras())
    out = strict.step("so it is 72")
    assert out.reward == 0.0
    assert strict.get_metrics()["parse_failure"] == 1.0


def test_ground_truth_may_be_a_full_solution_or_a_number():
    assert Gsm8kEnv(None, extras("Half of 48 is <<48/2=24>>24.\n#### 72")).step("#### 72").reward == 1.0
    assert Gsm8kEnv(None, extras(72)).step("#### 72.0").reward == 1.0


@pytest.mark.parametrize("spec", [None, {}, {"ground_truth": None}, {"ground_truth": "seventy"}, "72"])
def test_bad_ground_truth_is_a_clear_error(spec):
    with pytest.raises(ValueError, match=r"gsm8k: reward_spec.ground_truth must be a number.*extra_info.index 7"):
        Gsm8kEnv(None, {"reward_spec": spec, "extra_info": {"index": 7}})


def test_metrics_aggregate_as_means():
    envs = [Gsm8kEnv(None, extras()) for _ in range(4)]
    for env, reply in zip(envs, ["#### 72", "#### 5", "no idea", "#### 72"], strict=True):
        env.step(reply)
    agg = Gsm8kEnv.aggregate_metrics([e.get_metrics() for e in envs])
    assert agg == {"correct": 0.5, "formatted": 0.75, "parse_failure": 0.25, "turns": 1.0}


def test_metrics_before_any_step():
    assert Gsm8kEnv(None, extras()).get_metrics()["parse_failure"] == 1.0


# -- multi turn -------------------------------------------------------------------------------


def test_multi_turn_feedback_then_correct_with_discount():
    env = Gsm8kMultiTurnEnv(Gsm8kMultiTurnConfig(turn_discount=0.5), extras(max_turns=3))
    _, meta = env.init(PROMPT)
    assert meta == {"max_turns": 3}
    first = env.step("#### 70")
    assert not first.done and first.reward == 0.0
    assert first.observations == [{"role": "user", "content": WRONG_FEEDBACK}]
    second = env.step("I forgot May. \n#### 72")
    assert second.done and second.reward == 0.5  # 1.0 * 0.5 ** (2 - 1)
    metrics = env.get_metrics()
    assert metrics["correct"] == 1.0 and metrics["turns"] == 2.0 and metrics["first_try_correct"] == 0.0


def test_multi_turn_first_try_gets_full_reward():
    env = Gsm8kMultiTurnEnv(None, extras(max_turns=3))
    out = env.step("#### 72")
    assert out.done and out.reward == 1.0
    assert env.get_metrics()["first_try_correct"] == 1.0


def test_multi_turn_no_answer_feedback_and_last_turn():
    env = Gsm8kMultiTurnEnv(Gsm8kMultiTurnConfig(format_reward=0.1), extras(max_turns=2))
    first = env.step("I am not sure.")
    assert not first.done and first.observations[0]["content"] == NO_ANSWER_FEEDBACK
    last = env.step("#### 71")
    assert last.done and last.observations == []
    assert last.reward == 0.1  # well-formed but wrong at the end
    assert env.get_metrics() == {
        "correct": 0.0,
        "formatted": 1.0,
        "parse_failure": 0.0,
        "turns": 2.0,
        "first_try_correct": 0.0,
    }


def test_multi_turn_only_final_turn_is_rewarded():
    """Intermediate wrong turns earn nothing, even with a format reward; the sum is the final reward."""
    env = Gsm8kMultiTurnEnv(Gsm8kMultiTurnConfig(format_reward=0.1, turn_discount=1.0), extras(max_turns=4))
    rewards = [env.step(reply).reward for reply in ["#### 1", "#### 2", "#### 72"]]
    assert rewards == [0.0, 0.0, 1.0]


def test_multi_turn_direction_feedback():
    env = Gsm8kMultiTurnEnv(Gsm8kMultiTurnConfig(feedback="direction"), extras(max_turns=5))
    assert env.step("#### 100").observations[0]["content"] == HIGH_FEEDBACK
    assert env.step("#### 10").observations[0]["content"] == LOW_FEEDBACK
    assert env.step("nothing").observations[0]["content"] == NO_ANSWER_FEEDBACK


def test_multi_turn_with_one_turn_behaves_like_single_turn():
    for reply in ["#### 72", "#### 3", "???"]:
        multi = Gsm8kMultiTurnEnv(Gsm8kMultiTurnConfig(format_reward=0.2), extras(max_turns=1))
        single = Gsm8kEnv(Gsm8kEnvConfig(format_reward=0.2), extras())
        a, b = multi.step(reply), single.step(reply)
        assert (a.reward, a.done) == (b.reward, b.done)


def test_multi_turn_stops_at_max_turns():
    env = Gsm8kMultiTurnEnv(None, extras(max_turns=3))
    dones = [env.step("wrong").done for _ in range(3)]
    assert dones == [False, False, True]
    assert env.get_metrics()["turns"] == 3.0


# -- registration and config --------------------------------------------------------------------


def test_plugin_passes_check_plugin():
    assert check_plugin(plugin) == []


def test_registry_provides_envs_and_preparers():
    registry = fresh_registry(plugin)
    assert {"gsm8k", "gsm8k_multi_turn"} <= set(registry.names(Kind.ENVIRONMENT))
    assert {"gsm8k", "gsm8k_synthetic"} <= set(registry.names(Kind.DATASET_PREPARER))
    assert registry.get(Kind.ENVIRONMENT, "gsm8k").load() is Gsm8kEnv
    assert registry.get(Kind.ENVIRONMENT, "gsm8k_multi_turn").load() is Gsm8kMultiTurnEnv


def _raw(**env_tables):
    return {"model": {"path": "unused"}, "environments": env_tables}


def test_environment_tables_validate():
    cfg = parse_config(
        _raw(gsm8k={"mode": "flexible", "format_reward": 0.1}, gsm8k_multi_turn={"feedback": "direction"}),
        fresh_registry(plugin),
    )
    assert cfg.environments["gsm8k"] == Gsm8kEnvConfig(mode="flexible", format_reward=0.1)
    assert cfg.environments["gsm8k_multi_turn"].feedback == "direction"


def test_environment_table_errors_name_the_key():
    with pytest.raises(ConfigError) as info:
        parse_config(
            _raw(gsm8k={"mode": "loose", "format_rewrd": 0.1}, gsm8k_multi_turn={"turn_discount": 1.5}),
            fresh_registry(plugin),
        )
    text = str(info.value)
    assert "environments.gsm8k.mode" in text
    assert "format_rewrd" in text and "format_reward" in text  # did you mean
    assert "environments.gsm8k_multi_turn.turn_discount" in text
