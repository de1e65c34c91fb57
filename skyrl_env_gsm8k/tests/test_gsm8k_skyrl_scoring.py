"""``scoring = "skyrl"`` of gsm8k and gsm8k_multi_turn: skyrl-gym's rules, without skyrl-gym.

The comparison with skyrl-gym itself, reply by reply, is in
plugins/skyrl_env_skyrlgym/tests/test_skyrl_scoring_corpus.py (it needs skyrl-gym installed).
"""

from __future__ import annotations

import pytest
from skyrl_env_gsm8k.config import Gsm8kEnvConfig, Gsm8kMultiTurnConfig
from skyrl_env_gsm8k.env import Gsm8kEnv, Gsm8kMultiTurnEnv
from skyrl_env_gsm8k.skyrl_scoring import ASK_AGAIN, ASK_FINAL, skyrl_answer

from skyrl_core.api import ConfigError, parse_config
from skyrl_core.testing import fresh_registry
from skyrl_env_gsm8k import plugin


def extras(truth="72", max_turns=1):
    return {"reward_spec": {"method": "rule", "ground_truth": truth}, "max_turns": max_turns,
            "extra_info": {"index": 7}}


@pytest.mark.parametrize(
    ("reply", "answer"),
    [("#### 72", "72"), ("#### 70\n#### 72", "70"), ("#### $72", None), ("#### $72\n#### 72", "72"),
     ("#### 72.", "72."), ("#### **72**", None), ("####72", None), ("####  72", None), ("#### 1,234", "1234"),
     ("#### -5", "-5"), ("#### 7,2", "72"), ("##### 72", "72"), ("", None)],
)
def test_the_answer_is_the_first_hash_answer_as_text(reply, answer):
    assert skyrl_answer(reply) == answer


@pytest.mark.parametrize(
    ("reply", "skyrl", "ours"),
    [("#### 70\n#### 72", 0.0, 1.0), ("#### 72\n#### 70", 1.0, 0.0), ("#### $72", 0.0, 1.0),
     ("#### 72.", 0.0, 1.0), ("#### **72**", 0.0, 1.0), ("#### 72.0", 0.0, 1.0), ("#### 72", 1.0, 1.0)],
)
def test_single_turn_rewards(reply, skyrl, ours):
    assert Gsm8kEnv(Gsm8kEnvConfig(scoring="skyrl"), extras()).step(reply).reward == skyrl
    assert Gsm8kEnv(Gsm8kEnvConfig(), extras()).step(reply).reward == ours


def test_multi_turn_rewards_every_turn_and_asks_with_skyrls_messages():
    """Issue 23's episode: two formatted wrong answers, then the right one, with max_turns = 4."""
    env = Gsm8kMultiTurnEnv(Gsm8kMultiTurnConfig(scoring="skyrl"), extras(max_turns=4))
    steps = [env.step(r) for r in ("#### 70", "#### 71", "#### 72")]
    assert [s.reward for s in steps] == [0.05, 0.05, 1.0] and sum(s.reward for s in steps) == pytest.approx(1.1)
    assert [s.done for s in steps] == [False, False, True]
    assert [s.observations for s in steps[:2]] == [[{"role": "user", "content": ASK_AGAIN}]] * 2
    assert env.get_metrics()["first_try_correct"] == 0.0 and env.get_metrics()["correct"] == 1.0

    ours = Gsm8kMultiTurnEnv(Gsm8kMultiTurnConfig(), extras(max_turns=4))
    assert [ours.step(r).reward for r in ("#### 70", "#### 71", "#### 72")] == [0.0, 0.0, 0.25]

    last = Gsm8kMultiTurnEnv(Gsm8kMultiTurnConfig(scoring="skyrl"), extras(max_turns=2))
    first = last.step("no idea")
    assert (first.reward, first.done, first.observations) == (0.0, False, [{"role": "user", "content": ASK_FINAL}])
    end = last.step("#### 3")
    assert (end.reward, end.done, end.observations) == (0.1, True, [])


@pytest.mark.parametrize("truth", ["1,234", "$72", "#### 72", 72])
def test_a_ground_truth_no_reply_could_match_is_refused(truth):
    with pytest.raises(ValueError, match=r"with scoring = 'skyrl' reward_spec.ground_truth must be .*index 7"):
        Gsm8kEnv(Gsm8kEnvConfig(scoring="skyrl"), extras(truth))
    Gsm8kEnv(Gsm8kEnvConfig(), extras(truth))  # ours reads numbers: fine


def test_options_skyrl_scoring_would_ignore_are_refused():
    registry = fresh_registry(plugin)
    raw = {"model": {"path": "m"}, "data": {"train": ["t.jsonl"]},
           "environments": {"gsm8k": {"scoring": "skyrl", "mode": "flexible"},
                            "gsm8k_multi_turn": {"scoring": "skyrl", "turn_discount": 1.0, "feedback": "direction"}}}
    with pytest.raises(ConfigError) as exc:
        parse_config(raw, registry)
    text = str(exc.value)
    assert "environments.gsm8k: " in text and "so mode = 'flexible' would have no effect; remove it" in text
    assert "so turn_discount = 1.0, feedback = 'direction' would have no effect; remove them" in text
    ok = parse_config({**raw, "environments": {"gsm8k": {"scoring": "skyrl"}}}, registry)
    assert ok.environments["gsm8k"].scoring == "skyrl"
