"""The W&B tracker against the real wandb library in offline mode, read back from its ``.wandb`` files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from skyrl_tracker_wandb.config import WandbConfig
from skyrl_tracker_wandb.tracker import STATE_FILE, WandbTracker
from wandb_records import next_second, read_offline_runs

from skyrl_core.api import SkyrlError

MANIFEST = {
    "seed": 3,
    "plugins": [{"distribution": "skyrl-core"}],
    "config": {"run": {"name": "t"}, "trainer": {"lr": 0.001, "betas": [0.9, 0.999]}},
}


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A run directory as the loop leaves it before trackers are built: manifest.json and config.toml."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps(MANIFEST))
    (run / "config.toml").write_text('[run]\nname = "t"\n')
    return run


def _session(run_dir: Path, start_step: int, steps: dict[int, float], *, config: WandbConfig | None = None,
             finish: bool = True) -> WandbTracker:
    """One training session: start at ``start_step``, log ``{step: reward}``, end normally (or not), close."""
    if start_step > 0:
        next_second()  # a resumed session: not in its predecessor's offline folder
    tracker = WandbTracker(config or WandbConfig(mode="offline", tags=["ci"]), run_dir, {"name": "t"})
    tracker.on_run_start(start_step)
    for step, reward in steps.items():
        tracker.log({"reward/mean": reward, "policy/skipped": 0, "eval/all/pass@2": 0.5}, step)
    if finish:
        tracker.on_run_end()
    tracker.close()
    return tracker


def _recorded_id(run_dir: Path) -> str:
    return json.loads((run_dir / STATE_FILE).read_text())["run_id"]


def test_metrics_config_and_manifest_are_logged(run_dir: Path) -> None:
    _session(run_dir, 0, {0: 0.0, 1: 0.25, 2: 0.5})
    (seg,) = read_offline_runs(run_dir)
    assert seg.run_id == _recorded_id(run_dir) and seg.project == "skyrl"
    assert seg.name == "t" and seg.tags == ["ci"]
    assert [(row["trainer/step"], row["reward/mean"]) for row in seg.history] == [(0, 0.0), (1, 0.25), (2, 0.5)]
    assert all(row["eval/all/pass@2"] == 0.5 and row["policy/skipped"] == 0 for row in seg.history)
    assert ("*", "trainer/step") in seg.metrics  # every metric is plotted against the skyrl step
    assert seg.summary["reward/mean"] == 0.5 and seg.summary["trainer/step"] == 2
    assert seg.config == MANIFEST["config"]  # the resolved run config, nested as in the TOML
    (artifact,) = seg.artifacts
    assert artifact["name"] == f"skyrl-run-{seg.run_id}" and artifact["type"] == "skyrl-run"
    assert sorted(artifact["files"]) == ["config.toml", "manifest.json"]
    assert json.loads(Path(artifact["files"]["manifest.json"]).read_text()) == MANIFEST  # the staged copy
    assert seg.exit_code == 0


def test_resume_continues_the_recorded_run_and_keeps_redone_steps(run_dir: Path) -> None:
    _session(run_dir, 0, {0: 0.0, 1: 0.1, 2: 0.2})
    first = _recorded_id(run_dir)
    # resumed from the checkpoint of step 1: step 2 is redone, then step 3 is new
    _session(run_dir, 1, {2: 0.3, 3: 0.4})
    assert _recorded_id(run_dir) == first
    one, two = read_offline_runs(run_dir)
    assert one.run_id == two.run_id == first and two.exit_code == 0
    assert [r["trainer/step"] for r in one.history] == [0, 1, 2]
    assert [(r["trainer/step"], r["reward/mean"]) for r in two.history] == [(2, 0.3), (3, 0.4)]
    assert two.summary["reward/mean"] == 0.4


def test_a_run_that_starts_over_gets_a_new_wandb_run(run_dir: Path) -> None:
    _session(run_dir, 0, {0: 0.0})
    first = _recorded_id(run_dir)
    _session(run_dir, 0, {0: 0.0})  # e.g. checkpoint.resume = "never" in the same run directory
    assert _recorded_id(run_dir) != first
    # a resume into another project does not continue a run of the old one
    _session(run_dir, 3, {4: 0.0}, config=WandbConfig(mode="offline", project="other"))
    segments = read_offline_runs(run_dir)
    assert len({s.run_id for s in segments}) == 3 and segments[-1].project == "other"


def test_failed_and_interrupted_runs_exit_non_zero(run_dir: Path) -> None:
    _session(run_dir, 0, {0: 0.0, 1: 0.1}, finish=False)  # the loop never reached skyrl_run_end
    next_second()
    tracker = WandbTracker(WandbConfig(mode="offline"), run_dir, {"name": "t"})
    tracker.on_run_start(1)
    tracker.log({"reward/mean": 0.2}, 2)
    with pytest.raises(KeyboardInterrupt):
        try:
            raise KeyboardInterrupt
        finally:  # as the loop closes its trackers
            tracker.close()
    assert [s.exit_code for s in read_offline_runs(run_dir)] == [1, 130]


def test_log_before_the_hook_opens_a_run(run_dir: Path) -> None:
    """Used outside the training loop (no skyrl_run_start): the first log opens the run."""
    tracker = WandbTracker(WandbConfig(mode="offline"), run_dir, {"name": "t"})
    tracker.log({"reward/mean": 1.0}, 0)
    tracker.close()
    (seg,) = read_offline_runs(run_dir)
    assert [r["reward/mean"] for r in seg.history] == [1.0] and seg.exit_code == 0


def test_wandb_mode_from_the_environment_and_a_custom_dir(run_dir: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    _session(run_dir, 0, {0: 0.5}, config=WandbConfig(dir=str(tmp_path / "elsewhere")))
    (seg,) = read_offline_runs(tmp_path / "elsewhere")
    assert seg.run_id == _recorded_id(run_dir) and not list(run_dir.glob("wandb"))


def test_online_without_credentials_says_what_to_do(run_dir: Path) -> None:
    tracker = WandbTracker(WandbConfig(mode="online"), run_dir, {"name": "t"})
    with pytest.raises(SkyrlError) as info:
        tracker.on_run_start(0)
    message = str(info.value)
    assert "[tracking.wandb]" in message and "mode 'online'" in message
    assert 'mode = "offline"' in message and "wandb login" in message and "WANDB_API_KEY" in message
    assert not (run_dir / STATE_FILE).exists()


def test_check_installed_names_the_version() -> None:
    import wandb

    assert WandbTracker.check_installed(WandbConfig()) == f"wandb {wandb.__version__}"


def test_disabled_mode_logs_nothing_and_does_not_fail(run_dir: Path) -> None:
    _session(run_dir, 0, {0: 0.0, 1: 0.5}, config=WandbConfig(mode="disabled"))
    assert not (run_dir / "wandb").exists() and not (run_dir / STATE_FILE).exists()
