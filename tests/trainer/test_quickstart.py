"""The README's main job: examples/quickstart.toml must visibly learn (slow, still run in CI)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from trainer_support import metrics

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quickstart_raises_held_out_greedy_accuracy(tmp_path: Path) -> None:
    q = tmp_path.as_posix()
    overrides = [
        f"run.dir={q}/run",
        f"model.path={q}/model",
        f'data.train=["{q}/data/train.parquet"]',
        f'data.eval=["{q}/data/eval.parquet"]',
        f'warm_start.data=["{q}/data/sft.parquet"]',
    ]
    cmd = [sys.executable, "-m", "skyrl_core.cli", "train", str(ROOT / "examples" / "quickstart.toml"), *overrides]
    subprocess.run(cmd, check=True, capture_output=True, timeout=1500, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    rows = metrics(tmp_path / "run")
    before, after = rows[0]["eval/all/score"], rows[max(rows)]["eval/all/score"]
    # Measured on 2 CPU cores: 0.00 -> 0.82. The issue asks for +20 points; allow seed noise.
    assert after - before >= 0.2, (before, after)
    assert (tmp_path / "run" / "curves.png").is_file()
    assert (tmp_path / "run" / "export" / "config.json").is_file()
    summary = json.loads((tmp_path / "run" / "warm_start" / "summary.json").read_text())
    assert summary["final_loss"] < summary["first_loss"]
