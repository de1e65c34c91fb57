"""Real skyrl training runs (tiny model, CPU) with ``trackers = ["jsonl", "mlflow"]`` and MLflow's file store.

What MLflow holds (read back with ``MlflowClient``) equals what ``metrics.jsonl`` recorded; a
crash leaves the MLflow run FAILED, and resuming, also from an older checkpoint that redoes a
step, continues the same MLflow run.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from mlflow_readback import LoggedRun, read_run
from skyrl_tracker_mlflow.tracker import metric_name

from skyrl_core.api import build_registry, hookimpl, load_config
from skyrl_core.testing import read_metrics, run_skyrl, train, write_tiny_config

MLFLOW_TABLE = '\n[tracking.mlflow]\nexperiment = "ci"\ntags = { suite = "tracker-tests" }\n'
TRACKERS = 'tracking.trackers=["jsonl", "mlflow"]'


class FailAtStep:
    """Raises from ``skyrl_step_end`` at one step, so that step is never logged or checkpointed."""

    def __init__(self, step: int) -> None:
        self.step = step

    @hookimpl
    def skyrl_step_end(self, run, step, metrics):
        if step == self.step:
            raise RuntimeError(f"failing at step {step}")


def _skyrl_train(cfg_path: Path, *overrides: str, extra_plugins: tuple = ()) -> None:
    """Train through the testing kit with only this plugin (and ``extra_plugins``) loaded."""
    registry = build_registry(only=["skyrl-tracker-mlflow"], extra_plugins=[("extra", p) for p in extra_plugins])
    train(load_config(cfg_path, [TRACKERS, *overrides], registry), registry, config_path=str(cfg_path))


def _latest_by_step(run: LoggedRun) -> dict[int, dict[str, float]]:
    """Each metric's last value at each step (a redone step's later value wins)."""
    out: dict[int, dict[str, float]] = {}
    for key, points in run.history.items():
        for step, value in points:
            out.setdefault(step, {})[key] = value
    return out


def _matches_jsonl(run: LoggedRun, run_dir: Path) -> None:
    logged, expected = _latest_by_step(run), read_metrics(run_dir)
    assert sorted(logged) == sorted(expected)
    for step, row in expected.items():
        for key, value in row.items():
            if key != "step" and value is not None:  # None: not finite (metrics.jsonl writes null)
                got = logged[step][metric_name(key)]
                assert math.isclose(got, value, rel_tol=1e-6, abs_tol=1e-9), (step, key, got, value)


@pytest.mark.slow
def test_a_training_run_logs_every_step_the_params_and_the_manifest(tmp_path: Path, mlflow_sandbox: Path) -> None:
    cfg = write_tiny_config(tmp_path, steps=2, extra=MLFLOW_TABLE)
    assert run_skyrl(["train", str(cfg), TRACKERS, "eval.every=1", "eval.pass_k=[1]"]) == 0  # the real CLI
    run_dir = tmp_path / "run"
    run = read_run(run_dir)
    assert run.tracking_uri == (mlflow_sandbox / "mlruns").as_uri()
    assert (run.status, run.name, run.experiment, run.tags["suite"]) == ("FINISHED", "t", "ci", "tracker-tests")
    _matches_jsonl(run, run_dir)
    assert [step for step, _ in run.history["eval/all/pass_1"]] == [0, 1, 2]
    assert run.params["trainer.steps"] == "2" and run.params["tracking.trackers"] == '["jsonl", "mlflow"]'
    assert run.params["run.dir"] == str(run_dir)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    # uploaded again when the run closed: the artifact records how the attempt ended
    assert json.loads(run.artifacts["skyrl/manifest.json"]) == manifest
    assert manifest["attempts"][-1]["status"] == "completed"
    assert run.artifacts["skyrl/config.toml"] == (run_dir / "config.toml").read_text()


@pytest.mark.slow
def test_crash_resume_and_redone_steps_continue_the_same_mlflow_run(tmp_path: Path) -> None:
    cfg = write_tiny_config(tmp_path, steps=2, extra=MLFLOW_TABLE)
    run_dir = tmp_path / "run"
    with pytest.raises(RuntimeError, match="failing at step 2"):
        _skyrl_train(cfg, extra_plugins=(FailAtStep(2),))  # step 1 is checkpointed, step 2 never logged
    crashed = read_run(run_dir)
    assert crashed.status == "FAILED" and [s for s, _ in crashed.history["reward/mean"]] == [1]

    _skyrl_train(cfg)  # resumes from step 1, trains step 2
    _skyrl_train(cfg, "trainer.steps=3", f"checkpoint.resume={str(run_dir / 'checkpoints' / 'step-000001')!r}")
    run = read_run(run_dir)
    assert run.run_id == crashed.run_id and run.status == "FINISHED"
    assert [s for s, _ in run.history["reward/mean"]] == [1, 2, 2, 3]  # step 2 twice: trained again
    _matches_jsonl(run, run_dir)  # later values win in both
