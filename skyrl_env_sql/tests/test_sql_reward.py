"""Reward correctness: result-set comparison rules, then whole episodes on the zoo database."""

from __future__ import annotations

import pytest
from skyrl_env_sql.compare import has_top_level_order_by, results_match, values_equal
from skyrl_env_sql.env import GoldQueryError
from sql_fixtures import sha256

# -- comparison rules ---------------------------------------------------------------------------


def test_rows_are_compared_as_multisets_by_default():
    assert results_match([(1, "a"), (2, "b")], [(2, "b"), (1, "a")])
    assert not results_match([(1,), (1,)], [(1,)]), "duplicates count"
    assert not results_match([(1,), (1,), (2,)], [(1,), (2,), (2,)]), "same set, different multiplicities"
    assert results_match([], [])
    assert not results_match([(1,)], [])


def test_order_matters_when_asked():
    assert results_match([(1,), (2,)], [(1,), (2,)], ordered=True)
    assert not results_match([(2,), (1,)], [(1,), (2,)], ordered=True)


def test_columns_are_compared_in_order_and_width_matters():
    assert not results_match([(1, "a")], [("a", 1)])
    assert not results_match([(1, "a")], [(1,)])
    assert not results_match([(1, "a", None)], [(1, "a")])


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        (3, 3.0, True),
        (0.1 + 0.2, 0.3, True),
        (1e12, 1e12 + 0.5, True),  # relative 5e-13
        (1.0, 1.001, False),
        (1.0, 1.0000001, True),
        (0.0, 1e-10, True),  # absolute tolerance near zero
        (0.0, 1e-6, False),
        (2**62, 2**62 + 1, False),  # integers compare exactly
        ("3", 3, False),  # text is never a number
        ("abc", "abc", True),
        ("abc", "ABC", False),
        (None, None, True),
        (None, 0, False),
        (None, "", False),
        (b"\x00\x01", b"\x00\x01", True),
        (b"\x00", "\x00", False),
        (float("nan"), float("nan"), True),
    ],
)
def test_value_equality_and_numeric_tolerance(a, b, equal):
    assert values_equal(a, b) is equal
    assert values_equal(b, a) is equal


def test_tolerance_is_configurable():
    assert not values_equal(1.0, 1.0000001, rel_tol=0.0, abs_tol=0.0)
    assert values_equal(1.0, 1.01, rel_tol=0.05)


def test_nearly_equal_numbers_that_sort_differently_still_match():
    pred = [(1.0000001, "b"), (1.0, "a")]
    gold = [(1.0, "b"), (1.0000001, "a")]
    assert results_match(pred, gold)
    assert not results_match(pred, gold, rel_tol=0.0, abs_tol=0.0)


def test_mixed_types_sort_without_errors():
    rows = [(None,), (2,), ("x",), (b"\x01",), (1.5,)]
    assert results_match(rows, list(reversed(rows)))


@pytest.mark.parametrize(
    ("sql", "ordered"),
    [
        ("SELECT name FROM people ORDER BY score", True),
        ("select name from people order   by score desc limit 3", True),
        ("SELECT name FROM people\nORDER\nBY score", True),
        ("SELECT a FROM t UNION SELECT b FROM u ORDER BY 1", True),
        ("SELECT name FROM people", False),
        ("SELECT * FROM (SELECT name FROM people ORDER BY score LIMIT 3)", False),
        ("SELECT name, ROW_NUMBER() OVER (ORDER BY score) FROM people", False),
        ("SELECT name FROM people WHERE city = 'ORDER BY'", False),
        ("SELECT name FROM people -- ORDER BY score", False),
        ("SELECT name FROM people /* ORDER BY score */", False),
        ('SELECT "order by" FROM people', False),
        ("SELECT [order by] FROM people", False),
        ("SELECT name FROM people WHERE id IN (SELECT id FROM people ORDER BY score) ORDER BY name", True),
        ("SELECT reorder, byline FROM t", False),
    ],
)
def test_top_level_order_by_detection(sql, ordered):
    assert has_top_level_order_by(sql) is ordered


# -- episodes -------------------------------------------------------------------------------


def solve(env, sql: str) -> float:
    out = env.step(f"<think>done</think>\n<solution>{sql}</solution>")
    assert out["done"] is True
    return out["reward"]


@pytest.mark.parametrize(
    ("gold", "pred", "reward"),
    [
        # same rows, any order, any column names, any formatting of the query
        ("SELECT name FROM people WHERE city = 'Oslo'", "select name from people where city='Oslo'", 1.0),
        ("SELECT name FROM people WHERE city = 'Oslo'", "SELECT name AS who FROM people WHERE id IN (1, 3)", 1.0),
        (
            "SELECT name FROM people WHERE city = 'Oslo'",
            "SELECT name FROM people WHERE city = 'Oslo' ORDER BY id DESC",
            1.0,
        ),
        ("SELECT COUNT(*) FROM pets WHERE kind = 'cat'", "SELECT SUM(kind = 'cat') FROM pets", 1.0),
        # numeric tolerance: 2.25 + 3.5 + 4 + 2.25 over 4 scores
        ("SELECT AVG(score) FROM people", "SELECT SUM(score) / COUNT(score) FROM people", 1.0),
        ("SELECT AVG(score) FROM people WHERE city = 'Lima' OR id = 1", "SELECT 8 / 3.0", 1.0),
        ("SELECT AVG(score) FROM people WHERE city = 'Lima' OR id = 1", "SELECT 8 / 3.0 + 1e-12", 1.0),
        ("SELECT AVG(score) FROM people WHERE city = 'Lima' OR id = 1", "SELECT 2.67", 0.0),
        ("SELECT COUNT(*) FROM people", "SELECT 5.0", 1.0),
        # wrong answers
        ("SELECT name FROM people WHERE city = 'Oslo'", "SELECT name FROM people WHERE city = 'Lima'", 0.0),
        ("SELECT name FROM people WHERE city = 'Oslo'", "SELECT name, city FROM people WHERE city = 'Oslo'", 0.0),
        ("SELECT name, city FROM people", "SELECT city, name FROM people", 0.0),
        ("SELECT city FROM people", "SELECT DISTINCT city FROM people", 0.0),
        ("SELECT name FROM people WHERE score IS NULL", "SELECT name FROM people WHERE score = NULL", 0.0),
        ("SELECT COUNT(*) FROM people", "SELECT '5'", 0.0),
        # ordered gold: the order must match
        ("SELECT name FROM people ORDER BY id DESC", "SELECT name FROM people ORDER BY id DESC", 1.0),
        ("SELECT name FROM people ORDER BY id DESC", "SELECT name FROM people ORDER BY id", 0.0),
        # a failing solution is wrong, not malformed
        ("SELECT name FROM people", "SELECT nme FROM people", 0.0),
        ("SELECT name FROM people", "DELETE FROM people", 0.0),
        ("SELECT name FROM people", "SELECT name FROM people; DROP TABLE people", 0.0),
    ],
)
def test_solution_rewards(make_env, zoo_path, gold, pred, reward):
    before = sha256(zoo_path)
    assert solve(make_env(gold), pred) == reward
    assert sha256(zoo_path) == before


def test_respect_order_false_compares_ordered_gold_as_a_multiset(make_env):
    gold, pred = "SELECT name FROM people ORDER BY id DESC", "SELECT name FROM people ORDER BY id"
    assert solve(make_env(gold, respect_order=False), pred) == 1.0


def test_a_runaway_solution_scores_zero(make_env):
    env = make_env("SELECT COUNT(*) FROM people", solution_timeout_s=0.3)
    runaway = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r"
    out = env.step(f"<solution>{runaway}</solution>")
    assert out["reward"] == 0.0
    assert "interrupted" in out["metadata"]["solution_error"]
    assert env.get_metrics()["solution_failed"] == 1.0


def test_a_solution_with_more_rows_than_max_compare_rows_scores_zero(make_env):
    env = make_env("SELECT name FROM people", max_compare_rows=100)
    out = env.step("<solution>SELECT a.name FROM people a, people b, people c</solution>")
    assert out["reward"] == 0.0
    assert "max_compare_rows" in out["metadata"]["solution_error"]


@pytest.mark.parametrize(
    ("replies", "options", "reward"),
    [
        (["<sql>SELECT 1</sql>", "<sql>SELECT 2</sql>", "<sql>SELECT 3</sql>"], {}, -1.0),
        (["I think it is Ann.", "Still thinking.", "Ann"], {}, -1.0),
        (["<solution>   </solution>"], {}, -1.0),
        (["<solution></solution>"], {"format_penalty": -0.5}, -0.5),
        (["<sql>SELECT 1</sql>", "<sql>SELECT 2</sql>", "<sql>SELECT 3</sql>"], {"format_penalty": 0.0}, 0.0),
        # require_think: every reply needs a <think> block before its action
        (["<solution>SELECT COUNT(*) FROM people</solution>"], {"require_think": True}, -1.0),
        (["<think>count</think><solution>SELECT COUNT(*) FROM people</solution>"], {"require_think": True}, 1.0),
        (
            ["<sql>SELECT 1</sql>", "<think>ok</think><solution>SELECT COUNT(*) FROM people</solution>"],
            {"require_think": True},
            -1.0,
        ),
        (["<solution>SELECT COUNT(*) FROM people</solution>"], {}, 1.0),
    ],
)
def test_format_violations_get_the_penalty(make_env, replies, options, reward):
    env = make_env("SELECT COUNT(*) FROM people", max_turns=3, **options)
    outs = [env.step(r) for r in replies]
    assert [o["done"] for o in outs] == [False] * (len(replies) - 1) + [True]
    assert outs[-1]["reward"] == reward
    assert all(o["reward"] == 0.0 for o in outs[:-1])
    assert env.get_metrics()["format_error"] == float(reward < 0 or (reward == 0 and "format_penalty" in options))


def test_a_failing_gold_query_is_a_data_error(make_env):
    env = make_env("SELECT missing_column FROM people")
    with pytest.raises(GoldQueryError, match=r"gold query of db_id 'zoo' failed.*no such column"):
        env.step("<solution>SELECT name FROM people</solution>")


def test_a_gold_query_with_too_many_rows_is_a_data_error(make_env):
    env = make_env("SELECT a.id FROM people a, people b, people c", max_compare_rows=10)
    with pytest.raises(GoldQueryError, match="max_compare_rows"):
        env.step("<solution>SELECT 1</solution>")


def test_gold_results_are_cached_per_database_version_but_failures_are_not(zoo_path):
    from skyrl_env_sql.env import gold_result
    from skyrl_env_sql.executor import QueryLimits, QueryResult, execute

    calls: list[str] = []

    def run(sql: str, limits: QueryLimits) -> QueryResult:
        calls.append(sql)
        return execute(zoo_path, sql, limits)

    limits = QueryLimits(timeout_s=1.0)
    for _ in range(3):
        assert gold_result(zoo_path, "SELECT COUNT(*) FROM pets", limits, run).rows == ((5,),)
    assert calls == ["SELECT COUNT(*) FROM pets"]
    for _ in range(2):
        assert not gold_result(zoo_path, "SELECT nope FROM pets", limits, run).ok
    assert calls.count("SELECT nope FROM pets") == 2
