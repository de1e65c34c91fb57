"""Dataset preparers: synthetic databases + questions, and SkyRL-SQL / OmniSQL rows to skyrl rows."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from skyrl_env_sql.config import SkyRLSQLDataConfig, SyntheticDataConfig, Text2SQLConfig
from skyrl_env_sql.env import Text2SQLEnv
from skyrl_env_sql.executor import QueryLimits, execute
from skyrl_env_sql.prepare import prepare_skyrl_sql, prepare_synthetic
from skyrl_env_sql.protocol import parse_reply
from sql_fixtures import DB_ID, sha256

from skyrl_core.api import DataError, build_registry, validate_rows
from skyrl_env_sql import plugin

SMALL = {"train_databases": 2, "eval_databases": 1, "questions_per_database": 6, "seed": 5}


def rows_of(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    out = tmp_path_factory.mktemp("synthetic")
    return out, prepare_synthetic(SyntheticDataConfig(**SMALL), out)


def test_synthetic_writes_databases_and_splits(synthetic):
    out, paths = synthetic
    assert sorted(paths) == ["corpus", "eval", "sft", "train"]
    corpus = paths["corpus"].read_text()
    assert "SELECT" in corpus and "<solution>" in corpus and "<observation>" in corpus
    dbs = sorted(p.name for p in (out / "databases" / "synthetic").iterdir())
    assert dbs == ["synthetic_5_000", "synthetic_5_001", "synthetic_5_002"]
    train, evals = rows_of(paths["train"]), rows_of(paths["eval"])
    assert len(train) == 12 and len(evals) == 6
    assert {r["db_id"] for r in train} == {"synthetic_5_000", "synthetic_5_001"}
    assert {r["db_id"] for r in evals} == {"synthetic_5_002"}, "eval questions come from unseen databases"
    row = train[0]
    assert row["env_class"] == "text2sql" and row["data"] == "synthetic"
    assert row["reward_spec"]["method"] == "rule" and row["reward_spec"]["ground_truth"].startswith("SELECT")
    assert (
        "CREATE TABLE" in row["prompt"][1]["content"] and row["extra_info"]["question"] in row["prompt"][1]["content"]
    )


def test_rows_pass_core_validation_with_the_plugin_registered(synthetic):
    _, paths = synthetic
    registry = build_registry(entry_points=False, extra_plugins=[("skyrl-env-sql", plugin)])
    raw = [(str(paths["train"]), i, r) for i, r in enumerate(rows_of(paths["train"]))]
    rows = validate_rows(raw, registry=registry)
    assert {r.env_class for r in rows} == {"text2sql"}
    assert all(r.extras["db_id"] and r.extras["data"] for r in rows)


def test_every_gold_query_runs_and_answers_its_own_question(synthetic):
    out, paths = synthetic
    cfg = Text2SQLConfig(db_root=str(out / "databases"), isolation="thread")
    for split in ("train", "eval"):
        for row in rows_of(paths[split]):
            env = Text2SQLEnv(cfg, {**row, "max_turns": 2})
            result = execute(env.db_path, row["reward_spec"]["ground_truth"], QueryLimits())
            assert result.ok and result.rows, row
            assert env.step(f"<solution>{row['reward_spec']['ground_truth']}</solution>")["reward"] == 1.0


def test_sft_rows_are_worked_episodes(synthetic):
    _, paths = synthetic
    sft = rows_of(paths["sft"])
    assert len(sft) == 2 * 12
    call, full = sft[0]["messages"], sft[1]["messages"]
    assert [m["role"] for m in call] == ["system", "user", "assistant"]
    assert [m["role"] for m in full] == ["system", "user", "assistant", "user", "assistant"]
    assert parse_reply(call[-1]["content"]).kind == "sql"
    assert parse_reply(full[-1]["content"]).kind == "solution"
    assert full[3]["content"].startswith("<observation>\n") and "2 turns left" in full[3]["content"]


def test_synthetic_is_deterministic(tmp_path):
    a = prepare_synthetic(SyntheticDataConfig(**SMALL), tmp_path / "a")
    b = prepare_synthetic(SyntheticDataConfig(**SMALL), tmp_path / "b")
    assert rows_of(a["train"]) == rows_of(b["train"])
    db = Path("synthetic") / "synthetic_5_000" / "synthetic_5_000.sqlite"
    assert sha256(tmp_path / "a" / "databases" / db) == sha256(tmp_path / "b" / "databases" / db)
    c = prepare_synthetic(SyntheticDataConfig(**{**SMALL, "seed": 6}), tmp_path / "c")
    assert rows_of(c["train"]) != rows_of(a["train"])


def test_compact_prompts_and_custom_db_root(tmp_path):
    cfg = SyntheticDataConfig(**SMALL, prompt="compact", sft=False, db_root=str(tmp_path / "dbs"), family="tiny")
    paths = prepare_synthetic(cfg, tmp_path / "out")
    assert sorted(paths) == ["corpus", "eval", "train"]
    row = rows_of(paths["train"])[0]
    assert row["prompt"][1]["content"].startswith("Tables: ")
    assert len(row["prompt"][0]["content"]) < 120
    assert (tmp_path / "dbs" / "tiny" / row["db_id"] / f"{row['db_id']}.sqlite").is_file()


def test_the_cli_prepares_synthetic_data(tmp_path):
    skyrl = Path(sys.executable).parent / "skyrl"
    env = dict(os.environ, SKYRL_LOAD_PLUGINS="skyrl-env-sql")
    proc = subprocess.run(
        [str(skyrl), "data", "prepare", "text2sql_synthetic", "--out", str(tmp_path), "--train-databases", "1",
         "--eval-databases", "1", "--questions-per-database", "3"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"train: {tmp_path / 'train.parquet'}" in proc.stdout
    assert len(rows_of(tmp_path / "eval.parquet")) == 3


# -- SkyRL-SQL / OmniSQL rows ---------------------------------------------------------------


@pytest.fixture
def omnisql_root(tmp_path, zoo_template) -> Path:
    """A db_root in the OmniSQL data.zip layout with the zoo database as a 'spider' database."""
    root = tmp_path / "db_files" / "data"
    target = root / "spider" / "database" / DB_ID / f"{DB_ID}.sqlite"
    target.parent.mkdir(parents=True)
    shutil.copyfile(zoo_template, target)
    return root


def skyrl_sql_row(i: int, **over) -> dict:
    """A row as in NovaSky-AI/SkyRL-SQL-653-data-newfmt."""
    row = {
        "data_source": "spider",
        "prompt": [{"role": "system", "content": "Task Overview: ..."}, {"role": "user", "content": f"Q{i}"}],
        "env_class": "text2sql",
        "reward_spec": {"method": "rule", "ground_truth": "SELECT COUNT(*) FROM people"},
        "db_id": DB_ID,
        "data": "spider",
        "extra_info": {"split": "train", "index": i},
    }
    row.update(over)
    return row


def test_skyrl_sql_parquet_round_trips(tmp_path, omnisql_root):
    src = tmp_path / "train.parquet"
    pq.write_table(pa.Table.from_pylist([skyrl_sql_row(i) for i in range(4)]), src)
    cfg = SkyRLSQLDataConfig(input=str(src), db_root=str(omnisql_root))
    paths = prepare_skyrl_sql(cfg, tmp_path / "out")
    out = rows_of(paths["train"])
    assert len(out) == 4
    assert out[2]["prompt"] == skyrl_sql_row(2)["prompt"]
    assert out[2]["extra_info"]["index"] == 2 and out[2]["data_source"] == "spider"
    env = Text2SQLEnv(Text2SQLConfig(db_root=str(omnisql_root)), {**out[0], "max_turns": 2})
    assert env.step("<solution>SELECT 5</solution>")["reward"] == 1.0


def test_verl_and_omnisql_style_rows_are_converted(tmp_path, omnisql_root):
    rows = [
        {"db_id": DB_ID, "data": "spider", "question": "How many pets?", "sql": "SELECT COUNT(*) FROM pets"},
        {"db_id": DB_ID, "question": "Names?", "query": "SELECT name FROM people", "evidence": "names are text"},
        {"db_id": DB_ID, "data": "spider", "prompt": [{"role": "user", "content": "hi"}],
         "reward_model": {"style": "rule", "ground_truth": "SELECT 1"}},
    ]  # fmt: skip
    src = tmp_path / "rows.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in rows))
    cfg = SkyRLSQLDataConfig(input=str(src), eval_input=str(src), db_root=str(omnisql_root), default_family="spider")
    paths = prepare_skyrl_sql(cfg, tmp_path / "out")
    train = rows_of(paths["train"])
    assert [r["reward_spec"]["ground_truth"] for r in train] == [
        "SELECT COUNT(*) FROM pets",
        "SELECT name FROM people",
        "SELECT 1",
    ]
    assert "CREATE TABLE people" in train[0]["prompt"][1]["content"], "schema read from the database"
    assert "names are text" in train[1]["prompt"][1]["content"]
    assert train[1]["data"] == "spider"
    assert rows_of(paths["eval"])[0]["extra_info"]["split"] == "eval"


def test_bad_rows_are_reported_with_index_and_field(tmp_path, omnisql_root):
    rows = [
        skyrl_sql_row(0),
        skyrl_sql_row(1, db_id=""),
        skyrl_sql_row(2, reward_spec={"method": "rule", "ground_truth": ""}),
        skyrl_sql_row(3, db_id="not_there"),
    ]
    src = tmp_path / "bad.parquet"
    pq.write_table(pa.Table.from_pylist(rows), src)
    with pytest.raises(DataError) as err:
        prepare_skyrl_sql(SkyRLSQLDataConfig(input=str(src), db_root=str(omnisql_root)), tmp_path / "out")
    message = str(err.value)
    assert "3 problem(s)" in message
    assert "row 1: field 'db_id': missing or empty" in message
    assert "row 2: no gold SQL" in message
    assert "row 3: text2sql: database 'not_there' (family 'spider') not found" in message
    assert not (tmp_path / "out" / "train.parquet").exists()


def test_missing_input_says_what_to_pass(tmp_path):
    with pytest.raises(DataError, match="pass --input FILE"):
        prepare_skyrl_sql(SkyRLSQLDataConfig(), tmp_path)
    with pytest.raises(DataError, match="file not found"):
        prepare_skyrl_sql(SkyRLSQLDataConfig(input=str(tmp_path / "nope.parquet")), tmp_path)
