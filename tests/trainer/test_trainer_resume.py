"""Kill a training process after a checkpoint and resume: the run continues exactly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from trainer_support import metrics, write_config

from skyrl_core.checkpoint import read_state

STEPS = 4


def _train_cmd(cfg: Path) -> list[str]:
    return [sys.executable, "-m", "skyrl_core.cli", "train", str(cfg)]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "export" / "model.safetensors")


@pytest.mark.slow
def test_kill_after_checkpoint_then_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    # Reference: an uninterrupted run.
    ref_cfg = write_config(tmp_path / "ref", steps=STEPS)
    subprocess.run(_train_cmd(ref_cfg), check=True, env=_env(), capture_output=True, timeout=600)

    # Same config, killed with SIGKILL once a checkpoint exists, then resumed.
    cfg = write_config(tmp_path / "killed", steps=STEPS)
    run = tmp_path / "killed" / "run"
    proc = subprocess.Popen(_train_cmd(cfg), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 600
    while not (run / "checkpoints" / "latest").exists():
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = read_state(run / "checkpoints" / (run / "checkpoints" / "latest").read_text().strip())["step"]
    assert 1 <= killed_at <= STEPS

    out = subprocess.run(_train_cmd(cfg), check=True, env=_env(), capture_output=True, text=True, timeout=600)
    assert f"at step {killed_at}" in out.stdout

    ref, resumed = metrics(tmp_path / "ref" / "run"), metrics(run)
    assert sorted(resumed) == sorted(ref) == list(range(STEPS + 1))
    for step in range(1, STEPS + 1):  # same prompts, same samples, same updates
        for key in ("reward/mean", "policy/pg_loss", "policy/grad_norm", "rollout/response_length/mean"):
            assert resumed[step][key] == pytest.approx(ref[step][key], rel=1e-5, abs=1e-6), (step, key)
    final_ref, final = _weights(tmp_path / "ref" / "run"), _weights(run)
    assert final_ref.keys() == final.keys()
    for name in final_ref:
        torch.testing.assert_close(final[name], final_ref[name], rtol=1e-5, atol=1e-6)
    # the data position continued: the state after the last step equals the reference's
    last = f"step-{STEPS:06d}"
    assert (
        read_state(run / "checkpoints" / last)["loader"]
        == read_state(tmp_path / "ref" / "run" / "checkpoints" / last)["loader"]
    )


def test_resume_from_an_explicit_path_and_a_bad_path(tmp_path: Path, capsys) -> None:
    from skyrl_core.cli import main

    cfg = write_config(tmp_path, steps=2)
    assert main(["train", str(cfg)]) == 0
    first = tmp_path / "run" / "checkpoints" / "step-000001"
    # explicit path: resumes at step 1 and redoes step 2
    assert main(["train", str(cfg), f"checkpoint.resume={str(first)!r}"]) == 0
    assert "at step 1" in capsys.readouterr().out
    # a path that is not a checkpoint is a clear error (exit 2), not a traceback
    assert main(["train", str(cfg), f"checkpoint.resume={str(tmp_path)!r}"]) == 2
    assert "not a finished checkpoint" in capsys.readouterr().err
