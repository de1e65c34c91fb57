"""skyrl-gym's own gsm8k, gsm8k_multi_turn and text2sql environments through short real training runs
on CPU: SkyRL-format rows (their ``env_class`` names unchanged, sent to skyrl-gym by ``[data]
env_map``), a tiny local model warm-started on the answer format, the native backend, two GRPO
steps, greedy evals before and after.

Every logged eval conversation is then replayed through a fresh skyrl-gym environment made by
skyrl-gym itself: the observations the model saw and the rewards skyrl logged must be exactly what
skyrl-gym produces.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from skyrlgym_support import (
    DIST,
    SQL_SOLUTION,
    gsm8k_rows,
    make_database,
    needs_skyrl_gym,
    read_jsonl,
    sql_rows,
    write_run,
)

from skyrl_core.testing import read_metrics, run_skyrl

pytestmark = needs_skyrl_gym


def gsm8k_sft(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"prompt": r["prompt"], "response": f"#### {r['reward_spec']['ground_truth']}"} for r in rows]


def eval_samples(run_dir: Path) -> list[dict[str, Any]]:
    """The samples of the evals before and after training."""
    evals = sorted((run_dir / "eval").iterdir())
    assert [e.name for e in evals] == ["step-000000", "step-000002"]
    return [s for e in evals for s in read_jsonl(e / "samples.jsonl")]


def replay(env_id: str, env_config: Any, row: dict[str, Any], sample: dict[str, Any], max_turns: int) -> float:
    """Step a fresh skyrl-gym environment through ``sample``'s replies; check each observation
    against the logged one; return skyrl-gym's total reward."""
    import skyrl_gym

    extras = {**{k: v for k, v in row.items() if k != "prompt"}, "max_turns": max_turns}
    env = skyrl_gym.make(env_id, env_config=env_config, extras=extras)
    turns = sample.get("turns") or [{"role": "assistant", "content": sample["response"]}]
    total, out = 0.0, None
    for i in range(0, len(turns), 2):
        assert turns[i]["role"] == "assistant"
        out = env.step(turns[i]["content"])
        total += out["reward"]
        if i + 1 < len(turns):
            assert out["observations"] == [turns[i + 1]], "the logged observation is skyrl-gym's"
    if not out["done"]:  # cut by a token limit: the run stopped before skyrl-gym ended the episode
        assert sample["finish_reason"] == "length"
    return total


def check_steps(run_dir: Path, env_id: str) -> list[dict[str, Any]]:
    metrics = read_metrics(run_dir)
    steps = [metrics[1], metrics[2]]
    for m in steps:
        assert m["rollout/env_errors"] == 0.0
        assert m[f"reward/{DIST}:{env_id}/mean"] == pytest.approx(m["reward/mean"])  # the only environment
        assert m["policy/skipped"] == 0.0 and "policy/loss" in m  # an update ran (zero when all rewards tie)
    return steps


def test_gsm8k(gym_model_dir, tmp_path):
    rows = gsm8k_rows()  # env_class "gsm8k", as SkyRL writes it
    path = write_run(tmp_path, gym_model_dir, rows, gsm8k_sft(rows), data=f'env_map = {{ gsm8k = "{DIST}:gsm8k" }}')
    assert run_skyrl(["train", str(path)]) == 0  # the real command, plugins from their entry points
    check_steps(tmp_path / "run", "gsm8k")
    samples = eval_samples(tmp_path / "run")
    assert {s["env_class"] for s in samples} == {f"{DIST}:gsm8k"}
    for s in samples:
        assert s["error"] is None
        assert s["reward"] == replay("gsm8k", {}, rows[int(s["uid"])], s, max_turns=1)
    assert {s["reward"] for s in samples} == {0.0, 1.0}  # skyrl-gym's strict "#### N" rule, both ways


def test_gsm8k_multi_turn(gym_model_dir, tmp_path):
    rows = gsm8k_rows("gsm8k_multi_turn")
    path = write_run(
        tmp_path, gym_model_dir, rows, gsm8k_sft(rows),
        data=f'env_map = {{ gsm8k_multi_turn = "{DIST}:gsm8k_multi_turn" }}', generator="max_turns = 3",
    )
    assert run_skyrl(["train", str(path)]) == 0
    steps = check_steps(tmp_path / "run", "gsm8k_multi_turn")
    for m in steps:  # skyrl-gym's own aggregate_metrics: avg_steps
        assert m[f"reward/{DIST}:gsm8k_multi_turn/avg_steps"] == pytest.approx(m["rollout/num_turns/mean"])
    assert max(m["rollout/num_turns/mean"] for m in steps) > 1  # some episodes got feedback and another turn
    samples = eval_samples(tmp_path / "run")
    for s in samples:
        assert s["error"] is None
        assert s["reward"] == pytest.approx(replay("gsm8k_multi_turn", {}, rows[int(s["uid"])], s, max_turns=3))
    assert any(s["reward"] >= 1.0 for s in samples)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_text2sql_on_a_real_sqlite_database(gym_model_dir, tmp_path):
    from omegaconf import OmegaConf

    db_path = make_database(tmp_path / "databases")
    (database,) = db_path.rglob("*.sqlite")
    before = _sha256(database)
    rows = sql_rows()  # env_class "text2sql", db_id, data = "spider": SkyRL's SQL rows
    sft = [{"prompt": r["prompt"], "response": SQL_SOLUTION} for r in rows]
    path = write_run(
        tmp_path, gym_model_dir, rows, sft, warm_steps=40, max_new_tokens=48,
        data=f'env_map = {{ text2sql = "{DIST}:text2sql" }}',
        generator='max_turns = 2\nstop = ["</sql>", "</solution>"]',
        extra=f'\n[environments."{DIST}:text2sql"]\nenv_timeout_s = 90\n\n'
        f'[environments."{DIST}:text2sql".env_config]\ndb_path = "{db_path.as_posix()}"\n',
    )
    assert run_skyrl(["train", str(path)]) == 0
    for m in check_steps(tmp_path / "run", "text2sql"):
        assert -1.0 <= m["reward/mean"] <= 1.0  # skyrl-gym's rewards: -1 (format), 0, 1
    samples = eval_samples(tmp_path / "run")
    env_config = OmegaConf.create({"db_path": str(db_path)})
    for s in samples:
        assert s["error"] is None
        assert s["reward"] == replay("text2sql", env_config, rows[int(s["uid"])], s, max_turns=2)
    assert any(s["reward"] == 1.0 for s in samples)  # a solution whose result matched the gold query's
    assert _sha256(database) == before, "training changed the database"
