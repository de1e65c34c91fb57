"""Real skyrl training runs (tiny model, CPU) with ``trackers = ["jsonl", "wandb"]``, W&B offline.

What W&B recorded (read back from its ``.wandb`` files) equals what ``metrics.jsonl`` recorded;
a crash ends the W&B run with exit code 1, and resuming, also from an older checkpoint that
redoes a step, continues the same W&B run.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from wandb_records import Segment, next_second, read_offline_runs

from skyrl_core.api import build_registry, hookimpl, load_config
from skyrl_core.testing import read_metrics, run_skyrl, train, write_tiny_config

WANDB_TABLE = '\n[tracking.wandb]\nmode = "offline"\ntags = ["ci"]\n'
TRACKERS = 'tracking.trackers=["jsonl", "wandb"]'


class CrashAtStep:
    """A plugin that fails the run at the end of one step, before that step's metrics are logged."""

    def __init__(self, step: int) -> None:
        self.step = step

    @hookimpl
    def skyrl_step_end(self, run, step, metrics):
        if step == self.step:
            raise RuntimeError(f"crash at step {step}")


def _train(cfg_path: Path, *overrides: str, plugins: tuple = ()) -> None:
    """``skyrl train`` through the testing kit, with this plugin alone (and ``plugins``) loaded."""
    next_second()  # a resumed session: not in its predecessor's offline folder
    registry = build_registry(only=["skyrl-tracker-wandb"], extra_plugins=[(f"p{i}", p) for i, p in enumerate(plugins)])
    cfg = load_config(cfg_path, [TRACKERS, *overrides], registry)
    train(cfg, registry, config_path=str(cfg_path))


def _by_step(segments: list[Segment]) -> dict[int, dict]:
    """W&B's rows merged by trainer/step, later rows winning (as ``read_metrics`` merges metrics.jsonl)."""
    out: dict[int, dict] = {}
    for seg in segments:
        for row in seg.history:
            out.setdefault(row["trainer/step"], {}).update(row)
    return out


def _assert_same_values(wandb_rows: dict[int, dict], jsonl_rows: dict[int, dict]) -> None:
    assert sorted(wandb_rows) == sorted(jsonl_rows)
    for step, row in jsonl_rows.items():
        for key, value in row.items():
            if key == "step" or value is None:  # None: not finite (metrics.jsonl writes null)
                continue
            logged = wandb_rows[step][key]
            assert math.isclose(logged, value, rel_tol=1e-9, abs_tol=1e-12), (step, key, logged, value)


@pytest.mark.slow
def test_a_training_run_logs_every_step_the_config_and_the_manifest(tmp_path: Path) -> None:
    cfg = write_tiny_config(tmp_path, steps=2, extra=WANDB_TABLE)
    assert run_skyrl(["train", str(cfg), TRACKERS, "eval.every=1"]) == 0  # the real CLI
    run = tmp_path / "run"
    (seg,) = read_offline_runs(run)
    assert seg.run_id == json.loads((run / "wandb_run.json").read_text())["run_id"]
    assert seg.name == "t" and seg.tags == ["ci"] and seg.exit_code == 0
    assert [row["trainer/step"] for row in seg.history] == [0, 1, 2]
    _assert_same_values(_by_step([seg]), read_metrics(run))
    assert "eval/all/score" in seg.history[1] and "policy/loss" in seg.history[2]
    manifest = json.loads((run / "manifest.json").read_text())
    assert seg.config == manifest["config"]
    assert seg.config["trainer"]["steps"] == 2 and seg.config["tracking"]["trackers"] == ["jsonl", "wandb"]
    # logged when the run opened (the attempt running) and when it closed (the final manifest)
    first, artifact = seg.artifacts
    assert json.loads(Path(first["files"]["manifest.json"]).read_text())["attempts"][-1]["status"] == "running"
    assert json.loads(Path(artifact["files"]["manifest.json"]).read_text()) == manifest
    assert manifest["attempts"][-1]["status"] == "completed"
    assert Path(artifact["files"]["config.toml"]).read_text() == (run / "config.toml").read_text()


@pytest.mark.slow
def test_crash_resume_and_redone_steps_continue_the_same_wandb_run(tmp_path: Path) -> None:
    cfg = write_tiny_config(tmp_path, steps=2, extra=WANDB_TABLE)
    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="crash at step 2"):
        _train(cfg, plugins=(CrashAtStep(2),))  # step 1 is checkpointed, step 2 never logged
    _train(cfg)  # resumes from step 1, trains step 2
    _train(cfg, "trainer.steps=3", f"checkpoint.resume={str(run / 'checkpoints' / 'step-000001')!r}")  # redoes 2

    crashed, resumed, redone = read_offline_runs(run)
    assert crashed.run_id == resumed.run_id == redone.run_id
    assert [crashed.exit_code, resumed.exit_code, redone.exit_code] == [1, 0, 0]
    assert [[r["trainer/step"] for r in s.history] for s in (crashed, resumed, redone)] == [[0, 1], [2], [2, 3]]
    _assert_same_values(_by_step([crashed, resumed, redone]), read_metrics(run))  # later rows win in both
    assert redone.config["trainer"]["steps"] == 3  # the resumed session's config
