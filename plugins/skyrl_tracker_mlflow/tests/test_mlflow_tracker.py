"""The MLflow tracker against real MLflow with its file store, read back with ``MlflowClient``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from mlflow_readback import read_run
from skyrl_tracker_mlflow.config import MlflowConfig
from skyrl_tracker_mlflow.tracker import STATE_FILE, MlflowTracker

from skyrl_core.api import SkyrlError

MANIFEST = {
    "seed": 3,
    "plugins": [{"distribution": "skyrl-core"}],
    "config": {
        "run": {"name": "t"},
        "trainer": {"lr": 0.001, "betas": [0.9, 0.999], "steps": 2},
        "model": {"tokenizer": None, "trust_remote_code": False, "chat_template": "x" * 600},
        "data": {"generate_options": {}},
    },
}


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A run directory as the loop leaves it before trackers are built: manifest.json and config.toml."""
    return _run_dir(tmp_path / "run", MANIFEST)


def _run_dir(run: Path, manifest: dict) -> Path:
    run.mkdir(exist_ok=True)
    (run / "manifest.json").write_text(json.dumps(manifest))
    (run / "config.toml").write_text('[run]\nname = "t"\n')
    return run


def _session(run_dir: Path, start_step: int, steps: dict[int, float], *, config: MlflowConfig | None = None,
             finish: bool = True) -> MlflowTracker:
    """One training session: start at ``start_step``, log ``{step: reward}``, end normally (or not), close."""
    tracker = MlflowTracker(config or MlflowConfig(tags={"team": "rl"}), run_dir, {"name": "t"})
    tracker.on_run_start(start_step)
    for step, reward in steps.items():
        tracker.log({"reward/mean": reward, "policy/skipped": 0, "eval/all/pass@2": 0.5, "note": "text"}, step)
    if finish:
        tracker.on_run_end()
    tracker.close()
    return tracker


def _recorded(run_dir: Path) -> dict:
    return json.loads((run_dir / STATE_FILE).read_text())


def test_metrics_params_tags_and_artifacts_are_logged(run_dir: Path, mlflow_sandbox: Path) -> None:
    _session(run_dir, 0, {0: 0.0, 1: 0.25, 2: float("nan")})
    run = read_run(run_dir)
    assert run.tracking_uri == (mlflow_sandbox / "mlruns").as_uri()  # the default store, made absolute
    assert (run.status, run.name, run.experiment) == ("FINISHED", "t", "skyrl")
    assert run.tags["team"] == "rl" and run.tags["skyrl.run_dir"] == str(run_dir.resolve())
    assert run.history["reward/mean"][:2] == [(0, 0.0), (1, 0.25)] and math.isnan(run.history["reward/mean"][2][1])
    assert run.history["eval/all/pass_2"] == [(0, 0.5), (1, 0.5), (2, 0.5)]  # '@' is not allowed in MLflow names
    assert "note" not in run.history  # not a number
    assert run.params["trainer.lr"] == "0.001" and run.params["trainer.betas"] == "[0.9, 0.999]"
    assert run.params["run.name"] == "t" and run.params["model.tokenizer"] == "null"
    assert run.params["model.trust_remote_code"] == "false" and run.params["data.generate_options"] == "{}"
    assert len(run.params["model.chat_template"]) == 500 and run.params["model.chat_template"].endswith("...")
    assert json.loads(run.artifacts["skyrl/manifest.json"]) == MANIFEST
    assert run.artifacts["skyrl/config.toml"] == (run_dir / "config.toml").read_text()


def test_resume_continues_the_recorded_run_and_keeps_redone_steps(run_dir: Path, tmp_path: Path, capsys) -> None:
    _session(run_dir, 0, {0: 0.0, 1: 0.1, 2: 0.2})
    first = _recorded(run_dir)["run_id"]
    # resumed from the checkpoint of step 1 with more steps: step 2 is redone, step 3 is new
    _run_dir(run_dir, {**MANIFEST, "config": {**MANIFEST["config"], "trainer": {"lr": 0.001, "steps": 3}}})
    _session(run_dir, 1, {2: 0.3, 3: 0.4})
    run = read_run(run_dir)
    assert run.run_id == first and run.status == "FINISHED"
    assert run.history["reward/mean"] == [(0, 0.0), (1, 0.1), (2, 0.2), (2, 0.3), (3, 0.4)]
    assert run.params["trainer.steps"] == "2"  # MLflow params cannot change: the first value stays ...
    assert "trainer.steps" in capsys.readouterr().err  # ... and the warning says so
    assert run.artifacts["skyrl/manifest.json"] == (run_dir / "manifest.json").read_text()  # the latest one


def test_a_run_that_starts_over_gets_a_new_mlflow_run(run_dir: Path) -> None:
    _session(run_dir, 0, {0: 0.0})
    first = _recorded(run_dir)["run_id"]
    _session(run_dir, 0, {0: 0.0})  # e.g. checkpoint.resume = "never" in the same run directory
    second = _recorded(run_dir)["run_id"]
    assert second != first
    _session(run_dir, 3, {4: 0.0}, config=MlflowConfig(experiment="other"))  # resumed into another experiment
    run = read_run(run_dir)
    assert run.run_id not in (first, second) and run.experiment == "other"


def test_failed_and_interrupted_runs(run_dir: Path) -> None:
    _session(run_dir, 0, {0: 0.0, 1: 0.1}, finish=False)  # the loop never reached skyrl_run_end
    assert read_run(run_dir).status == "FAILED"
    tracker = MlflowTracker(MlflowConfig(), run_dir, {"name": "t"})
    tracker.on_run_start(1)
    tracker.log({"reward/mean": 0.2}, 2)
    assert read_run(run_dir).status == "RUNNING"  # the same run, reopened
    with pytest.raises(KeyboardInterrupt):
        try:
            raise KeyboardInterrupt
        finally:  # as the loop closes its trackers
            tracker.close()
    run = read_run(run_dir)
    assert run.status == "KILLED" and run.history["reward/mean"] == [(0, 0.0), (1, 0.1), (2, 0.2)]


def test_the_store_comes_from_the_environment_and_is_found_again_on_resume(
    run_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    store = tmp_path / "shared-store"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", str(store))
    _session(run_dir, 0, {0: 0.0})
    assert _recorded(run_dir)["tracking_uri"] == store.as_uri()
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.chdir(tmp_path)  # another directory: ./mlruns would be another store
    _session(run_dir, 1, {1: 0.5})
    run = read_run(run_dir)
    assert run.tracking_uri == store.as_uri() and run.history["reward/mean"] == [(0, 0.0), (1, 0.5)]
    assert not (tmp_path / "mlruns").exists()


def test_a_configured_folder_and_a_missing_run_are_clear(run_dir: Path, tmp_path: Path) -> None:
    config = MlflowConfig(tracking_uri="stores/a", experiment="exp", run_name="named")
    _session(run_dir, 0, {0: 0.0}, config=config)
    run = read_run(run_dir)
    assert run.tracking_uri == (Path.cwd() / "stores" / "a").as_uri() and (run.name, run.experiment) == ("named", "exp")
    state = _recorded(run_dir)
    (run_dir / STATE_FILE).write_text(json.dumps({**state, "run_id": "0123456789abcdef0123456789abcdef"}))
    tracker = MlflowTracker(config, run_dir, {"name": "t"})
    with pytest.raises(SkyrlError) as info:
        tracker.on_run_start(2)
    message = str(info.value)
    assert str(run_dir / STATE_FILE) in message and "0123456789abcdef0123456789abcdef" in message
    assert "tracking_uri" in message and "delete the file" in message


def test_check_installed_names_the_version() -> None:
    assert MlflowTracker.check_installed(MlflowConfig()).startswith(("mlflow ", "mlflow-skinny "))
