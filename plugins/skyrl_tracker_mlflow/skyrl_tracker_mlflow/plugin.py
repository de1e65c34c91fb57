"""skyrl plugin module of skyrl-tracker-mlflow: its hook implementations.

Registered through the `skyrl` entry point in pyproject.toml. Registers the ``mlflow`` tracker
(``[tracking] trackers = ["mlflow"]``, options in ``[tracking.mlflow]``; its implementation, and
MLflow itself, are imported only when a run selects it) and tells the run's MLflow trackers when
training starts (a new MLflow run, or the recorded one when it resumed from a checkpoint) and
when it finished normally (status FINISHED instead of FAILED).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from skyrl_core.api import ComponentSpec, hookimpl
from skyrl_tracker_mlflow.config import MlflowConfig

if TYPE_CHECKING:
    from skyrl_core.api import RunContext


@hookimpl
def skyrl_register_trackers() -> list[ComponentSpec]:
    return [
        ComponentSpec(
            "mlflow",
            "skyrl_tracker_mlflow.tracker:MlflowTracker",
            "MLflow (file store, database or server): metrics, params and manifest; a resumed run continues.",
            MlflowConfig,
        )
    ]


@hookimpl
def skyrl_run_start(run: RunContext) -> None:
    for tracker in _mlflow_trackers(run):
        tracker.on_run_start(run.step)


@hookimpl
def skyrl_run_end(run: RunContext) -> None:
    for tracker in _mlflow_trackers(run):
        tracker.on_run_end()


def _mlflow_trackers(run: RunContext) -> list[Any]:
    from skyrl_tracker_mlflow.tracker import MlflowTracker  # light: mlflow is imported when a run opens

    return [t for t in run.trackers if isinstance(t, MlflowTracker)]
