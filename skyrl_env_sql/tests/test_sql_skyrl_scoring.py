"""``[environments.text2sql] scoring = "skyrl"``: skyrl-gym's text2sql rules on the real zoo database.

The comparison with skyrl-gym itself, reply by reply, is in
plugins/skyrl_env_skyrlgym/tests/test_skyrl_scoring_corpus.py (it needs skyrl-gym installed).
"""

from __future__ import annotations

import pytest
from skyrl_env_sql.config import Text2SQLConfig
from skyrl_env_sql.executor import QueryLimits, execute, execute_on_copy
from skyrl_env_sql.skyrl_scoring import INVALID_ACTION, same_row_set, skyrl_observation, skyrl_solution
from sql_fixtures import sha256

from skyrl_core.api import ConfigError, parse_config
from skyrl_core.testing import fresh_registry
from skyrl_env_sql import plugin

CITIES = "SELECT city FROM people WHERE id < 4"  # Oslo, Lima, Oslo: a duplicate
T = "<think>t</think>"


def play(env, replies):
    out = []
    for reply in replies:
        step = env.step(reply)
        out.append(step)
        if step["done"]:
            break
    return out


def test_the_format_rules_read_the_whole_conversation():
    assert skyrl_solution(f"{T}<solution> SELECT 1 </solution>") == "SELECT 1"
    assert skyrl_solution("<solution>SELECT 1</solution>") is None  # no <think> anywhere
    assert skyrl_solution(f"{T}<solution>SELECT 1</solution><solution>x</solution>") is None
    assert skyrl_solution(f"{T}<solution>SELECT 1 </Think></solution>") is None  # a tag inside, any case
    obs = skyrl_observation("rows", 2)
    assert skyrl_solution(f"{T}<sql>q</sql>{obs}<solution>SELECT 1</solution>") is None  # no <think> after it
    assert skyrl_solution(f"{T}<sql>q</sql>{obs} <THINK></THINK><solution>SELECT 1</solution>") == "SELECT 1"
    assert obs == ("\n\n<observation>rows\n<reminder>You have 2 turns left to complete the task.</reminder>"
                   "</observation>\n\n")


def test_rows_are_compared_as_sets():
    assert same_row_set([("Oslo",), ("Oslo",), ("Lima",)], [("Lima",), ("Oslo",)])
    assert same_row_set([(3,)], [(3.0,)])
    assert not same_row_set([(0.1 + 0.2,)], [(0.3,)])
    assert not same_row_set([("3",)], [(3,)])


def test_skyrl_scoring_gives_skyrl_rewards_where_ours_differs(make_env):
    distinct = f"{T}<solution>SELECT DISTINCT city FROM people WHERE id < 4</solution>"
    assert play(make_env(CITIES, scoring="skyrl"), [distinct])[-1]["reward"] == 1.0
    assert play(make_env(CITIES), [distinct])[-1]["reward"] == 0.0  # ours: multisets
    no_think = f"<solution>{CITIES}</solution>"
    assert play(make_env(CITIES, scoring="skyrl"), [no_think])[-1]["reward"] == -1.0
    assert play(make_env(CITIES), [no_think])[-1]["reward"] == 1.0
    ordered = "SELECT name FROM people ORDER BY id DESC"
    unordered = f"{T}<solution>SELECT name FROM people</solution>"
    assert play(make_env(ordered, scoring="skyrl"), [unordered])[-1]["reward"] == 1.0
    assert play(make_env(ordered), [unordered])[-1]["reward"] == 0.0


def test_turns_follow_skyrl_and_observations_use_its_wrapper(make_env):
    env = make_env(CITIES, max_turns=3, scoring="skyrl")
    first, second, third = play(env, ["Let me think.", f"{T}<sql>SELECT COUNT(*) FROM pets</sql>", "still nothing"])
    assert first["observations"] == [{"role": "user", "content": skyrl_observation(INVALID_ACTION, 2)}]
    text = second["observations"][0]["content"]
    assert text.startswith("\n\n<observation>") and "5" in text
    assert text.endswith("<reminder>You have 1 turns left to complete the task.</reminder></observation>\n\n")
    assert [s["reward"] for s in (first, second)] == [0.0, 0.0]
    assert (third["done"], third["reward"]) == (True, -1.0)  # out of turns: the conversation has no solution


def test_a_hostile_solution_runs_on_a_copy_and_the_file_is_untouched(make_env, zoo_path):
    before = sha256(zoo_path)
    empty_gold = "SELECT name FROM people WHERE id > 100"
    for hostile in ("DELETE FROM people", "DROP TABLE pets", "UPDATE people SET name = 'x'"):
        env = make_env(empty_gold, scoring="skyrl")
        assert play(env, [f"{T}<solution>{hostile}</solution>"])[-1]["reward"] == 1.0  # no rows, as the gold
    returning = f"{T}<solution>DELETE FROM people WHERE id < 4 RETURNING city</solution>"
    assert play(make_env(CITIES, scoring="skyrl"), [returning])[-1]["reward"] == 1.0
    assert play(make_env(CITIES), [returning])[-1]["reward"] == 0.0  # ours: refused
    assert sha256(zoo_path) == before
    assert execute(zoo_path, "SELECT COUNT(*) FROM people").rows == ((5,),)


def test_execute_on_copy_refuses_files_and_big_databases(zoo_path, tmp_path):
    limits = QueryLimits(rollback_copy_max_bytes=1 << 30)
    target = tmp_path / "new.sqlite"
    result = execute(zoo_path, f"ATTACH DATABASE '{target}' AS a", limits)
    assert result.error_kind == "denied" and "ATTACH of the file" in result.error and not target.exists()
    assert execute(zoo_path, "ATTACH DATABASE ':memory:' AS m", limits).ok
    small = execute_on_copy(zoo_path, "DELETE FROM people", QueryLimits(rollback_copy_max_bytes=10))
    assert small.error_kind == "denied" and "larger than the 10 bytes copied" in small.error
    assert not execute(zoo_path, "DELETE FROM people").ok  # without the option: refused, as always


def test_a_failing_gold_query_is_still_a_data_error(make_env):
    from skyrl_env_sql.env import GoldQueryError

    env = make_env("SELECT nope FROM nowhere", scoring="skyrl")
    with pytest.raises(GoldQueryError, match="the gold query of db_id 'zoo' failed"):
        env.step(f"{T}<solution>SELECT 1</solution>")


def test_options_skyrl_scoring_would_ignore_are_refused():
    registry = fresh_registry(plugin)
    raw = {"model": {"path": "m"}, "data": {"train": ["t.jsonl"]},
           "environments": {"text2sql": {"scoring": "skyrl", "require_think": True, "rel_tol": 0.01}}}
    with pytest.raises(ConfigError) as exc:
        parse_config(raw, registry)
    assert ("scoring = 'skyrl' uses skyrl-gym's fixed rules, so require_think = True, rel_tol = 0.01 would have "
            "no effect; remove them, or set scoring = 'ours'") in str(exc.value)
    assert Text2SQLConfig(scoring="skyrl").scoring == "skyrl"
