"""Kill an ``async`` run right after a checkpoint, resume it: no prompt is trained twice or skipped.

While the killed run checkpointed, groups were buffered or still generating. The
checkpoint lists their prompts as pending (after the loader's position); the resumed run
generates them again first. So at every checkpoint, the prompts trained so far plus the
pending ones are exactly the prompts drawn from the loader so far, with no overlap.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pipeline_support import TRAINED_LOG, metrics, trained, write_config

from skyrl_core.checkpoint import read_state
from skyrl_core.data.loader import PromptLoader

STEPS = 8
ROWS = 48  # write_data's default; every row fits max_prompt_tokens, so uid == row index
SCRIPT = Path(__file__).with_name("pipeline_support.py")


def _env(log: Path) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", TRAINED_LOG: str(log)}


def _drawn(seed: int, position: int) -> list[str]:
    """The uids the run's loader has handed out at ``position`` (first epoch)."""
    return [str(i) for i in PromptLoader(list(range(ROWS)), seed=seed).next_rows(position)]


def _check_bookkeeping(ckpt: Path, trained_uids: list[str]) -> None:
    state = read_state(ckpt)
    pending = state["loader"]["pending"]
    drawn = _drawn(state["loader"]["seed"], state["loader"]["position"])
    assert len(trained_uids) == len(set(trained_uids)), "a prompt was trained twice"
    assert not set(trained_uids) & set(pending), "a pending prompt was already trained"
    assert sorted(trained_uids + pending, key=int) == sorted(drawn, key=int), "a drawn prompt was skipped"


def test_kill_mid_async_run_then_resume_trains_every_prompt_once(tmp_path, tiny_model_dir):
    cfg = write_config(tmp_path, tiny_model_dir, steps=STEPS, delay=0.1, ckpt_every=1,
                       slowness=[1.0, 4.0, 1.0, 2.0], trainer='mode = "async"\nmax_staleness = 2')
    run = tmp_path / "run"
    latest = run / "checkpoints" / "latest"
    first_log, second_log = tmp_path / "trained-1.jsonl", tmp_path / "trained-2.jsonl"

    proc = subprocess.Popen([sys.executable, str(SCRIPT), str(cfg)], env=_env(first_log),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not (latest.exists() and latest.read_text().strip() >= "step-000003"):
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = run / "checkpoints" / latest.read_text().strip()
    killed_at = read_state(killed)["step"]
    assert 3 <= killed_at < STEPS
    assert read_state(killed)["loader"]["pending"], "nothing was in flight: the test would prove nothing"

    before = trained(first_log)
    _check_bookkeeping(killed, [u for s in range(1, killed_at + 1) for u in before[s]])

    out = subprocess.run([sys.executable, str(SCRIPT), str(cfg)], env=_env(second_log),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"at step {killed_at}" in out.stdout

    after = trained(second_log)
    assert sorted(after) == list(range(killed_at + 1, STEPS + 1))
    uids = [u for s in range(1, killed_at + 1) for u in before[s]] + [u for s in sorted(after) for u in after[s]]
    assert len(uids) == STEPS * 2
    final = run / "checkpoints" / f"step-{STEPS:06d}"
    _check_bookkeeping(final, uids)

    rows = metrics(run)
    assert all(rows[s]["rollout/staleness/max"] <= 2 for s in range(1, STEPS + 1))
    # the version counts every weight sync, across the restart: the initial one plus one per step
    assert read_state(final)["policy_version"] == STEPS + 1
    # the first step after the resume trains the re-queued prompts first
    pending = read_state(killed)["loader"]["pending"]
    assert set(after[killed_at + 1]) <= set(pending)
