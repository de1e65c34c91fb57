"""Builtin metric trackers."""

from __future__ import annotations

from skyrl_core.specs import ComponentSpec
from skyrl_core.tracking import ConsoleConfig, JsonlConfig, TensorBoardConfig

TRACKERS: list[ComponentSpec] = [
    ComponentSpec("console", "skyrl_core.tracking:ConsoleTracker", "Compact per-step table on stdout.", ConsoleConfig),
    ComponentSpec(
        "jsonl", "skyrl_core.tracking:JsonlTracker", "One JSON line per step in <run dir>/metrics.jsonl.", JsonlConfig
    ),
    ComponentSpec(
        "tensorboard",
        "skyrl_core.tracking:TensorBoardTracker",
        "TensorBoard event files under the run directory.",
        TensorBoardConfig,
    ),
]
