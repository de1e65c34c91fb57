"""Helpers for the training-loop tests: a tiny, fast run config written into a temp dir."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from skyrl_core.testing.runs import write_tiny_config as write_config  # noqa: F401  (the tests' name for it)


def metrics(run_dir: Path) -> dict[int, dict[str, Any]]:
    """metrics.jsonl by step (later lines for a step win, as after a resume)."""
    out: dict[int, dict[str, Any]] = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        out.setdefault(row["step"], {}).update(row)
    return out
