"""Tests of skyrl-env-lettercount; they need only skyrl-core and this package."""

import skyrl_env_lettercount.plugin
from skyrl_env_lettercount.config import LetterCountConfig, LetterCountData
from skyrl_env_lettercount.env import LetterCountEnv
from skyrl_env_lettercount.prepare import prepare

from skyrl_core.api import Kind, load_prompt_rows
from skyrl_core.testing import check_plugin, fresh_registry


def test_plugin_is_valid():
    assert check_plugin(skyrl_env_lettercount.plugin) == []


def test_scores_the_last_box_and_never_raises():
    env = LetterCountEnv(LetterCountConfig(), {"reward_spec": {"ground_truth": "3"}, "max_turns": 1})
    assert env.step("\\boxed{2} no wait, \\boxed{3}").reward == 1.0
    for reply in ["", "\\boxed{", "\\boxed{three}", "3", "\\boxed{4}" * 1000]:
        env = LetterCountEnv(LetterCountConfig(), {"reward_spec": {"ground_truth": "3"}, "max_turns": 1})
        out = env.step(reply)
        assert (out.reward, out.done) == (0.0, True)


def test_retries_with_feedback():
    env = LetterCountEnv(LetterCountConfig(correct_reward=2.0), {"reward_spec": {"ground_truth": "2"}, "max_turns": 3})
    first = env.step("\\boxed{5}")
    assert not first.done and first.observations[0]["content"].startswith("Too high.")
    assert env.step("\\boxed{2}").reward == 2.0
    assert env.get_metrics() == {"solved": 1.0, "turns": 2.0}


def test_prepared_rows_validate(tmp_path):
    files = prepare(LetterCountData(train_rows=20, eval_rows=5, max_turns=2), tmp_path)
    registry = fresh_registry(skyrl_env_lettercount.plugin)
    rows = load_prompt_rows([str(files["train"])], registry=registry).rows
    assert len(rows) == 20 and {r.env_class for r in rows} == {"letter_count"}
    env_cls = registry.get(Kind.ENVIRONMENT, "letter_count").load()
    for r in rows:
        word, letter = r.extras["extra_info"]["word"], r.extras["extra_info"]["letter"]
        env = env_cls(LetterCountConfig(), r.extras)
        assert env.step(f"\\boxed{{{word.count(letter)}}}").reward == 1.0
