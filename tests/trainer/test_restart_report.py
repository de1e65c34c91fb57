"""A run killed twice (SIGKILL) and restarted says what it found each time, and its files show
one history: metrics.jsonl has one line per step, TensorBoard one point per step, and
manifest.json every attempt.

Attempt 1 is killed during step 3, before the first checkpoint (every 3 steps): attempt 2 finds
no checkpoint and starts over. Attempt 2 is killed during step 6, after the checkpoint of step
3: attempt 3 resumes there and redoes steps 4 and 5, then finishes. Attempt 4 finds the run
complete and trains nothing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from restart_support import HELD, HOLD_AT
from trainer_support import write_config

from skyrl_core.notices import failure_warning, furthest_step, restart_notice
from skyrl_core.rollout import Trajectory

STEPS = 6
SCRIPT = Path(__file__).with_name("restart_support.py")
TRACKERS = 'tracking.trackers=["jsonl", "tensorboard", "console"]'


def _cmd(cfg: Path) -> list[str]:
    return [sys.executable, str(SCRIPT), str(cfg), TRACKERS, "eval.every=2"]


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **extra}


def _run_until_held_then_kill(cfg: Path, hold_at: int, tmp: Path, name: str) -> str:
    """Start an attempt, wait until it holds after training step ``hold_at``, SIGKILL it; its stdout."""
    held, out = tmp / f"{name}.held", tmp / f"{name}.out"
    with out.open("w") as stdout:
        proc = subprocess.Popen(_cmd(cfg), env=_env(**{HOLD_AT: str(hold_at), HELD: str(held)}),
                                stdout=stdout, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 600
        while not held.exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
    return out.read_text()


def _jsonl_steps(run: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def _attempts(run: Path) -> list[dict]:
    return json.loads((run / "manifest.json").read_text())["attempts"]


def _tensorboard_steps(run: Path, tag: str) -> list[int]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    return [e.step for e in acc.Scalars(tag)]


@pytest.mark.slow
def test_a_run_killed_twice_reports_each_restart_and_keeps_one_history(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, steps=STEPS, ckpt_every=3)
    run = tmp_path / "run"
    ckpts = run / "checkpoints"

    # attempt 1: killed during step 3, before the first checkpoint
    first = _run_until_held_then_kill(cfg, 3, tmp_path, "attempt1")
    assert "resumed" not in first and "starting over" not in first  # a fresh run has nothing to report
    assert _jsonl_steps(run) == [0, 1, 2] and not ckpts.exists()
    assert [(a["status"], a["last_step"]) for a in _attempts(run)] == [("running", 2)]

    # attempt 2: no checkpoint, so it starts over; killed during step 6, after the checkpoint of step 3
    second = _run_until_held_then_kill(cfg, 6, tmp_path, "attempt2")
    assert f"no checkpoint in {ckpts}: starting over from step 0" in second
    assert "the previous attempt got to step 2 without saving a checkpoint" in second
    assert _jsonl_steps(run) == [0, 1, 2, 3, 4, 5]  # the first attempt's rows were replaced, not repeated
    assert (ckpts / "latest").read_text().strip() == "step-000003"

    # attempt 3: resumes at step 3, redoes steps 4 and 5, finishes
    third = subprocess.run(_cmd(cfg), env=_env(), capture_output=True, text=True, timeout=600, check=True).stdout
    assert f"resumed from {ckpts / 'step-000003'} at step 3 of {STEPS}: redoing steps 4..5" in third
    assert not any(line.startswith("resumed") and "{" in line for line in third.splitlines())  # no raw dicts
    assert _jsonl_steps(run) == list(range(STEPS + 1))  # one line per step
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all("eval/all/score" in r for r in rows if r["step"] in (2, 4, 6))

    # TensorBoard: one event file per attempt, but the purges leave one point per step
    assert len(list((run / "tensorboard").glob("*tfevents*"))) == 3
    assert _tensorboard_steps(run, "reward/mean") == list(range(1, STEPS + 1))
    assert _tensorboard_steps(run, "eval/all/score") == [0, 2, 4, 6]

    # attempt 4: the run is complete; nothing is trained or re-exported
    export = run / "export" / "model.safetensors"
    exported_at, metrics_before = export.stat().st_mtime_ns, (run / "metrics.jsonl").read_text()
    fourth = subprocess.run(_cmd(cfg), env=_env(), capture_output=True, text=True, timeout=600, check=True).stdout
    assert f"at step {STEPS}: the run is already complete (trainer.steps = {STEPS}); nothing to train" in fourth
    assert export.stat().st_mtime_ns == exported_at
    assert (run / "metrics.jsonl").read_text() == metrics_before

    # the manifest lists every attempt and how each one ended
    attempts = _attempts(run)
    assert [a["attempt"] for a in attempts] == [1, 2, 3, 4]
    assert [a["status"] for a in attempts] == ["interrupted", "interrupted", "completed", "already_complete"]
    assert [a["resumed_from"] for a in attempts] == [None, None, str(ckpts / "step-000003"),
                                                     str(ckpts / f"step-{STEPS:06d}")]
    assert [a["start_step"] for a in attempts] == [0, 0, 3, STEPS]
    assert [a["last_step"] for a in attempts] == [2, 5, STEPS, STEPS]
    assert len({a["pid"] for a in attempts}) == 4


def test_a_finished_run_whose_export_is_missing_writes_only_the_export(tmp_path: Path, capsys) -> None:
    """E.g. killed while exporting: the re-run trains nothing and exports the last checkpoint."""
    import shutil

    from skyrl_core.cli import main

    cfg = write_config(tmp_path, steps=1)
    run = tmp_path / "run"
    assert main(["train", str(cfg)]) == 0
    shutil.rmtree(run / "export")
    metrics_before = (run / "metrics.jsonl").read_text()
    capsys.readouterr()
    assert main(["train", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "at step 1: the run is already complete" in out
    assert f"the export was missing: wrote step 1 to {run / 'export'}" in out
    assert (run / "export" / "model.safetensors").is_file()
    assert (run / "metrics.jsonl").read_text() == metrics_before
    assert [a["status"] for a in _attempts(run)] == ["completed", "already_complete"]


# -- the pieces, without a run ------------------------------------------------------------------

CKPTS = Path("/runs/x/checkpoints")


def _notice(attempts, *, resume="auto", step=None, target=10, loader=None):
    state = None if step is None else {"step": step, "loader": loader or {}}
    resumed_from = None if step is None else CKPTS / f"step-{step:06d}"
    return restart_notice(attempts, resume=resume, checkpoints=CKPTS, resumed_from=resumed_from, state=state,
                          target_steps=target)


def test_what_a_restart_says() -> None:
    fresh = {"resumed_from": None, "last_step": 7}
    assert _notice([]) is None  # the first attempt of a new run
    assert _notice([fresh], step=5) == (
        f"resumed from {CKPTS / 'step-000005'} at step 5 of 10: redoing steps 6..7, which an earlier attempt "
        "had done after this checkpoint; their rows in the metrics are replaced"
    )
    assert _notice([fresh], step=6).startswith(f"resumed from {CKPTS / 'step-000006'} at step 6 of 10: redoing step 7,")
    assert _notice([fresh], step=7) == f"resumed from {CKPTS / 'step-000007'} at step 7 of 10: continuing with step 8"
    assert _notice([fresh], step=5, target=6).split(": ")[1].startswith("redoing step 6,")  # never past the target
    loader = {"epoch": 1, "position": 12, "num_rows": 64, "pending": ["3", "9"]}
    assert _notice([], step=2, loader=loader).endswith(
        "continuing with step 3 (data: epoch 1, prompt 12 of 64, 2 drawn prompts to generate again first)"
    )
    assert _notice([fresh], step=10) == (
        f"resumed from {CKPTS / 'step-000010'} at step 10: the run is already complete (trainer.steps = 10); "
        'nothing to train. Raise trainer.steps to train further, or set checkpoint.resume = "never" to start over.'
    )
    assert _notice([fresh]) == (
        f"no checkpoint in {CKPTS}: starting over from step 0 "
        "(the previous attempt got to step 7 without saving a checkpoint)"
    )
    killed_early = {"resumed_from": None, "last_step": None}  # e.g. during the warm start
    assert _notice([killed_early]).endswith("(the previous attempt stopped before finishing step 1)")
    assert _notice([fresh], resume="never") == 'checkpoint.resume = "never": starting over from step 0 (attempt 2)'


def test_the_faq_shows_the_real_messages() -> None:
    faq = (Path(__file__).resolve().parents[2] / "docs" / "faq.md").read_text()
    root = Path("runs/quickstart/checkpoints")
    before = [{"resumed_from": None, "last_step": 23}]
    loader = {"epoch": 0, "position": 640, "num_rows": 1000}
    notices = [
        restart_notice(before, resume="auto", checkpoints=root, resumed_from=root / "step-000020",
                       state={"step": 20, "loader": loader}, target_steps=30),
        restart_notice([{"resumed_from": None, "last_step": 7}], resume="auto", checkpoints=root, resumed_from=None,
                       state=None, target_steps=30),
        restart_notice(before, resume="auto", checkpoints=root, resumed_from=root / "step-000030",
                       state={"step": 30}, target_steps=30),
    ]
    for notice in notices:
        assert f"\n{notice}\n" in faq, notice


def test_the_furthest_step_counts_from_the_last_start_over() -> None:
    older = {"resumed_from": None, "last_step": 9}
    assert furthest_step([older, {"resumed_from": "c/step-000006", "last_step": 8}]) == 9
    assert furthest_step([older, {"resumed_from": None, "last_step": 2}]) == 2  # it superseded the 9
    assert furthest_step([older, {"resumed_from": "c/step-000003", "last_step": None}]) == 9
    assert furthest_step([{"attempt": 1, "status": "unknown"}]) is None  # a manifest from before attempts


def _traj(env: str, error: str | None = None) -> Trajectory:
    return Trajectory([1], [2], [1], [0.0], [0.0], 0, env_class=env, error=error)


def test_the_failure_warning() -> None:
    ok = [_traj("sql")] * 5
    assert failure_warning(ok, "step 1") is None
    failed = [_traj("sql", "sql: step raised OperationalError: no such table\nTraceback..."),
              _traj("gsm8k", "gsm8k: step timed out"), _traj("sql", "sql: other")]
    assert failure_warning(ok + failed, "step 4") == (
        "warning: step 4: 3 of 8 trajectories failed in their environment and scored 0 (sql: 2, gsm8k: 1); "
        "first error: sql: step raised OperationalError: no such table"
    )
    # a collector (DAPO's dynamic sampling) dropped failed groups: the reported count is larger
    assert failure_warning(ok + failed[:1], "step 2", reported=5.0).startswith(
        "warning: step 2: 5 trajectories failed in their environment and scored 0 (1 of them kept for training: sql: 1)"
    )
    assert failure_warning(ok, "step 2", reported=4.0) == (
        "warning: step 2: 4 trajectories failed in their environment and scored 0 (none kept for training)"
    )
    long = failure_warning([_traj("e", "x" * 1000)], "eval")
    assert long is not None and len(long) < 500 and long.endswith("...")


def test_a_manifest_from_before_attempts_were_recorded_counts_as_one(tmp_path: Path) -> None:
    from skyrl_core.config.loader import load_config
    from skyrl_core.manifest import RunManifest
    from skyrl_core.testing import fresh_registry

    registry = fresh_registry()
    cfg = load_config(write_config(tmp_path, steps=2), [], registry)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "manifest.json").write_text(json.dumps({"seed": 3, "pid": 11, "started": "2026-01-01T00:00:00"}))
    manifest = RunManifest(run_dir)
    manifest.start(cfg, registry, "run.toml", resumed_from=None, start_step=0)
    manifest.update(last_step=1)
    data = json.loads((run_dir / "manifest.json").read_text())
    assert data["seed"] == 3 and data["pid"] == os.getpid() and data["config"]["trainer"]["steps"] == 2
    assert [(a["attempt"], a["pid"], a["status"]) for a in data["attempts"]] == [
        (1, 11, "unknown"), (2, os.getpid(), "running")
    ]
    assert data["attempts"][1]["last_step"] == 1
    manifest.fail(ValueError("bad row"))
    last = json.loads((run_dir / "manifest.json").read_text())["attempts"][-1]
    assert last["status"] == "failed" and last["error"] == "ValueError: bad row" and "ended" in last
