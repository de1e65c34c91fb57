"""Two RL steps with the gsm8k environments on CPU: tiny local model, native backend, local strategy.

Runs ``examples/gsm8k/smoke_tiny.toml`` (shortened by overrides) in a temporary directory,
then checks that the rewards the trainer logged are the environment's rewards.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from skyrl_env_gsm8k.config import Gsm8kEnvConfig, Gsm8kMultiTurnConfig
from skyrl_env_gsm8k.env import Gsm8kEnv, Gsm8kMultiTurnEnv

from skyrl_core.api import load_config, read_source, run_preparer
from skyrl_core.testing import fresh_registry, train
from skyrl_env_gsm8k import plugin

SMOKE = Path(__file__).resolve().parents[2] / "examples" / "gsm8k" / "smoke_tiny.toml"
SHORT = [
    "trainer.steps=2",
    "trainer.prompts_per_step=2",
    "trainer.samples_per_prompt=2",
    "warm_start.steps=2",
    "warm_start.batch_size=4",
    "generator.max_new_tokens=24",
    "eval.max_new_tokens=24",
    "eval.max_rows=4",
    "eval.every=0",
    "tracking.trackers=['jsonl']",
]


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_two_steps_single_turn(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    registry = fresh_registry(plugin)
    cfg = load_config(SMOKE, SHORT, registry)
    train(cfg, registry, config_path=str(SMOKE))

    run_dir = Path(cfg.run_dir)
    for split in ("train", "test", "sft"):
        assert (tmp_path / "data" / "gsm8k_synthetic" / f"{split}.parquet").exists()
    steps = _lines(run_dir / "metrics.jsonl")
    assert [m["step"] for m in steps if "reward/mean" in m] == [1, 2]
    for m in (m for m in steps if "reward/mean" in m):
        assert m["rollout/env_errors"] == 0.0
        for key in ("correct", "formatted", "parse_failure", "turns"):
            assert f"reward/gsm8k/{key}" in m
        assert m["reward/gsm8k/formatted"] + m["reward/gsm8k/parse_failure"] <= 1.0

    # Eval samples: the logged reward is what the environment gives for the logged reply.
    test_rows = read_source(str(tmp_path / "data" / "gsm8k_synthetic" / "test.parquet"))
    env_cfg = cfg.environments.get("gsm8k") or Gsm8kEnvConfig()
    final_eval = sorted((run_dir / "eval").iterdir())[-1]
    samples = _lines(final_eval / "samples.jsonl")
    assert len(samples) == 4
    for s in samples:
        row = test_rows[int(s["uid"])]
        assert s["prompt"] == row["prompt"]
        extras = {k: v for k, v in row.items() if k != "prompt"}
        assert Gsm8kEnv(env_cfg, extras).step(s["response"]).reward == pytest.approx(s["reward"])


def test_two_steps_multi_turn(tmp_path, monkeypatch):
    """gsm8k_multi_turn through the real generator: feedback turns are appended and bounded by max_turns."""
    monkeypatch.chdir(tmp_path)
    registry = fresh_registry(plugin)
    files = run_preparer(
        "gsm8k_synthetic",
        tmp_path / "mt",
        {"train_rows": 16, "test_rows": 4, "sft_rows": 8, "env_class": "gsm8k_multi_turn"},
        registry,
    )
    overrides = [
        *SHORT,
        f"data.train=['{files['train']}']",
        f"data.eval=['{files['test']}']",
        f"warm_start.data=['{files['sft']}']",
        "generator.max_turns=2",
        "generator.max_total_tokens=1024",
        "environments.gsm8k_multi_turn.turn_discount=0.5",
    ]
    cfg = load_config(SMOKE, overrides, registry)
    assert isinstance(cfg.environments["gsm8k_multi_turn"], Gsm8kMultiTurnConfig)
    train(cfg, registry, config_path=str(SMOKE))

    steps = [m for m in _lines(Path(cfg.run_dir) / "metrics.jsonl") if "reward/mean" in m]
    assert len(steps) == 2
    for m in steps:
        assert m["rollout/env_errors"] == 0.0
        assert 1.0 <= m["reward/gsm8k_multi_turn/turns"] <= 2.0
        assert "reward/gsm8k_multi_turn/first_try_correct" in m
    # An untrained model rarely answers right, so most trajectories take the feedback turn.
    assert max(m["rollout/num_turns/mean"] for m in steps) > 1.0

    test_rows = read_source(str(files["test"]))
    final_eval = sorted((Path(cfg.run_dir) / "eval").iterdir())[-1]
    for s in _lines(final_eval / "samples.jsonl"):
        assert 1 <= s["num_turns"] <= 2
        if s["num_turns"] == 1:
            # One turn means the first answer was right or the episode was cut by length.
            row = test_rows[int(s["uid"])]
            env = Gsm8kMultiTurnEnv(cfg.environments["gsm8k_multi_turn"], {**row, "max_turns": 2})
            out = env.step(s["response"])
            assert out.done or s["finish_reason"] == "length"
