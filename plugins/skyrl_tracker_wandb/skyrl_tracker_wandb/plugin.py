"""skyrl plugin module of skyrl-tracker-wandb: its hook implementations.

Registered through the `skyrl` entry point in pyproject.toml. Registers the ``wandb`` tracker
(``[tracking] trackers = ["wandb"]``, options in ``[tracking.wandb]``; its implementation, and
wandb itself, are imported only when a run selects it) and tells the run's W&B trackers when
training starts (a new W&B run, or the recorded one when it resumed from a checkpoint) and when
it finished normally (exit code 0 instead of 1).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from skyrl_core.api import ComponentSpec, hookimpl
from skyrl_tracker_wandb.config import WandbConfig

if TYPE_CHECKING:
    from skyrl_core.api import RunContext


@hookimpl
def skyrl_register_trackers() -> list[ComponentSpec]:
    return [
        ComponentSpec(
            "wandb",
            "skyrl_tracker_wandb.tracker:WandbTracker",
            "Weights & Biases (online or offline): metrics, config and manifest; a resumed run continues its W&B run.",
            WandbConfig,
        )
    ]


@hookimpl
def skyrl_run_start(run: RunContext) -> None:
    for tracker in _wandb_trackers(run):
        tracker.on_run_start(run.step)


@hookimpl
def skyrl_run_end(run: RunContext) -> None:
    for tracker in _wandb_trackers(run):
        tracker.on_run_end()


def _wandb_trackers(run: RunContext) -> list[Any]:
    from skyrl_tracker_wandb.tracker import WandbTracker  # light: wandb is imported when a run opens

    return [t for t in run.trackers if isinstance(t, WandbTracker)]
