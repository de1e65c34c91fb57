"""Contract of a metrics tracker (console, JSONL, TensorBoard, W&B, ...).

Constructed as ``TrackerClass(config, run_dir=pathlib.Path, run_config=dict)``, where
``run_config`` holds:

* ``name``: the run's name (``[run] name``);
* ``first_step``: the first step this attempt logs: 0 for a run that starts (or starts over),
  ``N + 1`` for a run resumed from the checkpoint of step ``N``. What an earlier attempt
  recorded for this step or later is superseded: the resumed run redoes those steps, so a
  tracker drops or hides them (``metrics.jsonl`` is truncated, TensorBoard purges from it).

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
