"""The turn protocol of ``text2sql``: tool calls, observations, turns left, ending, layout, errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from skyrl_env_sql.config import Text2SQLConfig
from skyrl_env_sql.env import NO_ACTION_MESSAGE, Text2SQLEnv
from skyrl_env_sql.executor import DatabaseNotFound
from skyrl_env_sql.protocol import format_table, parse_reply
from sql_fixtures import DB_ID, FAMILY, sha256


def test_stop_strings_are_declared_for_the_generator():
    assert Text2SQLEnv.stop_strings == ("</sql>", "</solution>")


def test_a_tool_call_returns_the_result_and_the_turns_left(make_env):
    env = make_env("SELECT COUNT(*) FROM people", max_turns=4)
    prompt = [{"role": "user", "content": "How many people?"}]
    assert env.init(prompt)[0] == prompt
    out = env.step("<think>Look first.</think>\n<sql>SELECT name, score FROM people WHERE city = 'Lima'</sql>")
    assert out["done"] is False and out["reward"] == 0.0
    (msg,) = out["observations"]
    assert msg["role"] == "user"
    assert msg["content"] == (
        "<observation>\nname | score\nBob | 2.25\nEve | 2.25\n(2 rows)\n</observation>\n"
        "<reminder>You have 3 turns left.</reminder>"
    )
    out = env.step("<sql>SELECT score FROM people WHERE id = 3</sql>")
    assert "score\nNULL\n(1 row)" in out["observations"][0]["content"]
    assert "You have 2 turns left." in out["observations"][0]["content"]
    out = env.step("<sql>SELECT nope FROM people</sql>")
    content = out["observations"][0]["content"]
    assert "Error: no such column: nope" in content
    assert "This is your last turn" in content and "<solution>" in content
    out = env.step("<solution>SELECT COUNT(*) FROM people</solution>")
    assert out == {
        "observations": [],
        "reward": 1.0,
        "done": True,
        "metadata": {"action": "solution", "turn": 4, "ordered_comparison": False, "reward": 1.0},
    }
    metrics = env.get_metrics()
    assert metrics == {
        "correct": 1.0,
        "format_error": 0.0,
        "turns": 4.0,
        "sql_calls": 3.0,
        "sql_errors": 1.0,
        "sql_interrupted": 0.0,
        "sql_denied": 0.0,
        "solution_failed": 0.0,
    }


def test_refused_and_interrupted_tool_calls_are_observations(make_env, zoo_path):
    before = sha256(zoo_path)
    env = make_env("SELECT 1", max_turns=5, query_timeout_s=0.3)
    out = env.step("<sql>DROP TABLE people</sql>")
    assert (
        "Error: changing the schema (CREATE, DROP, ALTER, ANALYZE) is not allowed" in out["observations"][0]["content"]
    )
    out = env.step("<sql>WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r</sql>")
    assert "interrupted after 0.3 s" in out["observations"][0]["content"]
    out = env.step("<sql></sql>")
    assert "the <sql> block is empty" in out["observations"][0]["content"]
    m = env.get_metrics()
    assert (m["sql_calls"], m["sql_errors"], m["sql_denied"], m["sql_interrupted"]) == (3.0, 3.0, 1.0, 1.0)
    assert sha256(zoo_path) == before


def test_a_reply_without_an_action_costs_a_turn(make_env):
    env = make_env("SELECT 1", max_turns=2)
    out = env.step("Let me think about the people table.")
    assert out["done"] is False
    assert NO_ACTION_MESSAGE in out["observations"][0]["content"]
    assert out["metadata"]["format_error"] == "no <sql> or <solution> block"


def test_the_last_turn_ends_the_episode_without_running_its_query(make_env):
    env = make_env("SELECT 1", max_turns=2)
    env.step("<sql>SELECT 1</sql>")
    out = env.step("<sql>SELECT 2</sql>")
    assert out["done"] is True and out["observations"] == []
    assert out["reward"] == -1.0
    assert env.get_metrics()["sql_calls"] == 1.0


def test_max_turns_one_is_single_turn(make_env):
    env = make_env("SELECT COUNT(*) FROM people", max_turns=1)
    assert env.step("<sql>SELECT COUNT(*) FROM people</sql>")["reward"] == -1.0
    env = make_env("SELECT COUNT(*) FROM people", max_turns=1)
    assert env.step("<solution>SELECT COUNT(*) FROM people</solution>")["reward"] == 1.0


def test_text_after_the_closing_tag_is_ignored_and_reported(make_env):
    env = make_env("SELECT COUNT(*) FROM people")
    out = env.step("<sql>SELECT COUNT(*) FROM people</sql>\nand then <solution>SELECT 0</solution>")
    assert out["done"] is False, "the first completed block is the action (where generation would have stopped)"
    assert "(1 row)" in out["observations"][0]["content"]
    assert out["metadata"]["ignored_trailing_text"].startswith("\nand then")


@pytest.mark.parametrize(
    ("reply", "kind", "content"),
    [
        ("<sql>SELECT 1</sql>", "sql", "SELECT 1"),
        ("<think>x</think>\n<solution>\nSELECT 2\n</solution>\n", "solution", "SELECT 2"),
        ("<solution>SELECT 1 -- see <sql> tag</solution>", "solution", "SELECT 1 -- see <sql> tag"),
        ("<sql>SELECT '<solution>' AS s</sql>", "sql", "SELECT '<solution>' AS s"),
        ("<sql>SELECT 1 /* <sql> */ + 1</sql>", "sql", "SELECT 1 /* <sql> */ + 1"),
        ("<solution>SELECT 3</solution><sql>SELECT 4</sql>", "solution", "SELECT 3"),
        ("<sql>SELECT 1", "none", ""),
        ("no tags at all", "none", ""),
        ("", "none", ""),
    ],
)
def test_parse_reply(reply, kind, content):
    action = parse_reply(reply)
    assert (action.kind, action.content) == (kind, content)


def test_think_is_detected_only_before_the_action():
    assert parse_reply("<think>a</think><sql>SELECT 1</sql>").has_think
    assert not parse_reply("<sql>SELECT 1</sql><think>late</think>").has_think
    assert not parse_reply("<think>unclosed <sql>SELECT 1</sql>").has_think


def test_observations_are_bounded_in_rows_cells_and_characters(make_env):
    env = make_env("SELECT 1", max_turns=5, max_rows=3, max_cell_chars=10, max_chars=400)
    out = env.step("<sql>WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT n FROM r</sql>")
    content = out["observations"][0]["content"]
    assert "n\n1\n2\n3\n(showing the first 3 rows; the query returned more" in content
    out = env.step("<sql>SELECT hex(zeroblob(5000)) AS big, 'a|b' AS pipe, 'x\ny' AS newline</sql>")
    content = out["observations"][0]["content"]
    assert "0000000000... (10000 characters)" in content
    assert "a\\|b" in content and "x\\ny" in content
    table = format_table(["c"], [("v" * 50,)] * 40, truncated=True, max_chars=300, max_cell_chars=100)
    assert len(table) <= 300
    assert table.endswith("(output cut to 300 characters: showing 3 of 40+ rows)")


def test_blobs_and_no_result_sets_are_described(make_env):
    env = make_env("SELECT 1", max_turns=5)
    out = env.step("<sql>SELECT zeroblob(16) AS b</sql>")
    assert "<blob of 16 bytes>" in out["observations"][0]["content"]
    out = env.step("<sql>-- only a comment</sql>")
    assert "returned no result set" in out["observations"][0]["content"]


def test_aggregate_metrics_is_a_mean():
    assert Text2SQLEnv.aggregate_metrics([{"correct": 1.0, "turns": 2.0}, {"correct": 0.0, "turns": 4.0}]) == {
        "correct": 0.5,
        "turns": 3.0,
    }


# -- databases and rows -------------------------------------------------------------------------


def extras(**kw):
    base = {"db_id": DB_ID, "data": FAMILY, "reward_spec": {"ground_truth": "SELECT 1"}, "max_turns": 2}
    base.update(kw)
    return base


def test_omnisql_family_folders_are_found(tmp_path, zoo_template):
    root = tmp_path / "data"
    for folder, db_id in [("SynSQL-2.5M/databases", "synth_db"), ("bird/train/train_databases", "bird_db")]:
        target = root / folder / db_id / f"{db_id}.sqlite"
        target.parent.mkdir(parents=True)
        shutil.copyfile(zoo_template, target)
    cfg = Text2SQLConfig(db_root=str(root))
    assert Text2SQLEnv(cfg, extras(db_id="synth_db", data="synsql")).db_path == (
        root / "SynSQL-2.5M/databases/synth_db/synth_db.sqlite"
    )
    assert Text2SQLEnv(cfg, extras(db_id="bird_db", data="bird")).db_path.parts[-3:-1] == ("train_databases", "bird_db")
    custom = Text2SQLConfig(db_root=str(root), family_dirs={"mine": "bird/train/train_databases"})
    assert Text2SQLEnv(custom, extras(db_id="bird_db", data="mine")).db_path.name == "bird_db.sqlite"


def test_plain_family_folders_and_default_family(db_root):
    env = Text2SQLEnv(Text2SQLConfig(db_root=str(db_root), default_family=FAMILY), extras(data=None))
    assert env.db_path == db_root / FAMILY / DB_ID / f"{DB_ID}.sqlite"


def test_a_missing_database_names_every_path_tried(db_root):
    with pytest.raises(DatabaseNotFound) as err:
        Text2SQLEnv(Text2SQLConfig(db_root=str(db_root)), extras(db_id="nowhere", data="synsql"))
    message = str(err.value)
    assert "database 'nowhere' (family 'synsql') not found" in message
    assert str(Path("SynSQL-2.5M/databases/nowhere/nowhere.sqlite")) in message
    assert str(Path("synsql/nowhere/nowhere.sqlite")) in message
    with pytest.raises(DatabaseNotFound, match="db_root is not set"):
        Text2SQLEnv(Text2SQLConfig(), extras())


@pytest.mark.parametrize("db_id", ["../zoo", "zoo/../../etc", "/etc/passwd", "..", ""])
def test_db_ids_cannot_leave_db_root(db_root, db_id):
    with pytest.raises(ValueError, match=r"db_id"):
        Text2SQLEnv(Text2SQLConfig(db_root=str(db_root)), extras(db_id=db_id))


def test_rows_missing_fields_are_named(db_root):
    with pytest.raises(ValueError) as err:
        Text2SQLEnv(Text2SQLConfig(db_root=str(db_root)), {"max_turns": 2})
    assert "db_id, data (the database family), reward_spec.ground_truth" in str(err.value)
    assert "skyrl data prepare text2sql" in str(err.value)
