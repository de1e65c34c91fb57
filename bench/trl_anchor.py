"""TRL's GRPOTrainer as a baseline: find the anchor script and run it in a child process.

The anchor (``shared/tools/anchors/trl_anchor/trl_grpo_step.py``, kept by the team beside the
checkout) times GRPO steps of TRL's GRPOTrainer on a shape picked by ``SHAPE`` (``cpu``, ``0.5b``,
``tiny``) and prints JSON lines; its last one is ``{"bench": "trl_grpo_step", ...}``. Both
``bench/cpu_grpo_vs_trl.py`` and ``bench/gpu_bench.py`` run it through :func:`run_anchor`, so the
baseline is measured in the same run as our step.

On the GPU machine ``../shared`` does not travel with the checkout: copy the anchor folder (script
and ``tok/``) into the ignored ``.whl-trl/trl_anchor/`` and carry ``.whl-trl`` (see
``bench/run_gpu.sh``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
_RELATIVE = Path("tools") / "anchors" / "trl_anchor" / "trl_grpo_step.py"
CANDIDATES = (
    REPO.parent / "shared" / _RELATIVE,
    REPO / "shared" / _RELATIVE,
    REPO / ".whl-trl" / "trl_anchor" / "trl_grpo_step.py",
)


def find_anchor(path: str | None = None) -> Path:
    """The anchor script: ``path`` if given, else the first of :data:`CANDIDATES` with its ``tok/``."""
    candidates = [Path(path)] if path else list(CANDIDATES)
    for c in candidates:
        if c.is_file() and (c.parent / "tok").is_dir():
            return c
    raise SystemExit(f"the TRL anchor script was not found (tried {', '.join(map(str, candidates))}); "
                     "pass its path (--anchor / --trl-anchor)")


def parse_output(stdout: str) -> dict[str, Any]:
    """The anchor's records: ``final`` (the ``trl_grpo_step`` line), ``versions``, ``log_tail``.

    The Trainer prints dicts of its own between the anchor's JSON lines; lines that are not JSON
    objects are skipped.
    """
    records = []
    for line in stdout.splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            records.append(value)
    return {
        "final": next((r for r in records if r.get("bench") == "trl_grpo_step"), None),
        "versions": next((r for r in records if "trl" in r), {}),
        "log_tail": next((r for r in records if "log_history_tail" in r), {}).get("log_history_tail", [{}]),
    }


def run_anchor(anchor: Path, shape: str, steps: int, workdir: Path, *, python: str | Path | None = None,
               env: dict[str, str] | None = None, timeout: float | None = None) -> dict[str, Any]:
    """Run the anchor once; returns its step times, steady median, versions and wall time.

    Raises ``SystemExit`` with the child's output tail when it fails or prints no result line.
    """
    child_env = dict(os.environ, **(env or {}), SHAPE=shape, STEPS=str(steps), TMPDIR=str(workdir))
    start = time.perf_counter()
    try:
        proc = subprocess.run([str(python or sys.executable), str(anchor)], capture_output=True, text=True,
                              env=child_env, cwd=workdir, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise SystemExit(f"the TRL anchor did not finish in {timeout} s") from exc
    wall = time.perf_counter() - start
    parsed = parse_output(proc.stdout)
    final = parsed["final"]
    if proc.returncode != 0 or final is None:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"the TRL anchor failed (exit {proc.returncode})")
    return {
        "step_seconds": final["step_seconds"],
        "steady_median_s": final["steady_median_s"],
        "peak_gib": final.get("peak_gib"),
        "shape": {k: final.get(k) for k in ("prompts", "samples", "prompt_len", "completion_len", "micro_batch")},
        "completion_mean_length": parsed["log_tail"][0].get("completions/mean_length"),
        "versions": parsed["versions"],
        "run_seconds": round(wall, 1),
    }
