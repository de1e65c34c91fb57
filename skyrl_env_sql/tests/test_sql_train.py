"""Two multi-turn RL steps with text2sql on CPU: tiny local model, synthetic databases, native backend.

Runs ``examples/sql/cpu_tiny.toml`` (shortened by overrides) in a temporary directory after
``skyrl data prepare text2sql_synthetic``, then replays every logged eval conversation
through a fresh environment: the observations the model saw and the rewards the trainer
logged must be exactly what the environment produces, and the databases must be unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from skyrl_env_sql.env import Text2SQLEnv
from sql_fixtures import sha256

from skyrl_core.api import load_config, read_source, run_preparer
from skyrl_core.testing import fresh_registry, train
from skyrl_env_sql import plugin

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sql" / "cpu_tiny.toml"
DATA = Path("data") / "text2sql_synthetic"
SHORT = [
    "trainer.steps=2",
    "trainer.prompts_per_step=2",
    "trainer.samples_per_prompt=2",
    "warm_start.steps=6",
    "warm_start.batch_size=8",
    "generator.max_new_tokens=40",
    "eval.max_new_tokens=40",
    "eval.max_rows=4",
    "eval.every=0",
    "tracking.trackers=['jsonl']",
]


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_two_multi_turn_steps_on_synthetic_databases(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    registry = fresh_registry(plugin)
    options = {"prompt": "compact", "train_databases": 2, "eval_databases": 1, "questions_per_database": 6}
    run_preparer("text2sql_synthetic", DATA, options, registry)
    databases = sorted((DATA / "databases").rglob("*.sqlite"))
    assert len(databases) == 3
    before = {p: sha256(p) for p in databases}

    cfg = load_config(EXAMPLE, SHORT, registry)
    env_cfg = cfg.environments["text2sql"]
    assert cfg.generator.max_turns == 3
    train(cfg, registry, config_path=str(EXAMPLE))

    run_dir = Path(cfg.run_dir)
    steps = [m for m in _lines(run_dir / "metrics.jsonl") if "reward/mean" in m]
    assert [m["step"] for m in steps] == [1, 2]
    for m in steps:
        assert m["rollout/env_errors"] == 0.0
        assert 1.0 <= m["reward/text2sql/turns"] <= 3.0
        assert -1.0 <= m["reward/mean"] <= 1.0
        for key in ("correct", "format_error", "sql_calls", "sql_errors", "solution_failed"):
            assert f"reward/text2sql/{key}" in m

    # Replay every eval conversation: same observations, same reward.
    eval_rows = read_source(str(DATA / "eval.parquet"))
    final_eval = sorted((run_dir / "eval").iterdir())[-1]
    samples = _lines(final_eval / "samples.jsonl")
    assert len(samples) == 4
    for s in samples:
        assert s["error"] is None
        row = eval_rows[int(s["uid"])]
        assert s["prompt"] == row["prompt"]
        env = Text2SQLEnv(env_cfg, {**{k: v for k, v in row.items() if k != "prompt"}, "max_turns": 3})
        turns = s["turns"]
        assert [t["role"] for t in turns[::2]] == ["assistant"] * len(turns[::2])
        out = None
        for i in range(0, len(turns), 2):
            out = env.step(turns[i]["content"])
            if i + 1 < len(turns):
                assert out["observations"] == [turns[i + 1]], "the logged observation is the environment's"
        if out["done"]:
            assert out["reward"] == pytest.approx(s["reward"])
        else:  # cut by generator.max_total_tokens before the episode ended: no final reward
            assert s["finish_reason"] == "length" and s["reward"] == 0.0
        assert s["num_turns"] == len(turns[::2]) <= 3

    assert {p: sha256(p) for p in databases} == before, "training changed a database file"
