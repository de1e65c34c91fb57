"""Contract of a metrics tracker (console, JSONL, TensorBoard, W&B, ...).

Constructed as ``TrackerClass(config, run_dir=pathlib.Path, run_config=dict)``.
Metric names are namespaced and stable: ``rollout/``, ``reward/``, ``policy/``,
``timing/``, ``eval/<data_source>/``.
"""

from __future__ import annotations

from typing import Protocol


class Tracker(Protocol):
    """Receives flat ``{name: float}`` metrics once per step."""

    def log(self, metrics: dict[str, float], step: int) -> None:
        """Record metrics for ``step``."""
        ...

    def close(self) -> None:
        """Flush and release resources."""
        ...
