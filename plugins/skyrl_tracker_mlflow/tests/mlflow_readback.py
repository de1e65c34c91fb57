"""Read back what the tracker logged, through MLflow's own client on the store it recorded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs


@attrs.define
class LoggedRun:
    """One MLflow run as the tracking store holds it."""

    run_id: str
    tracking_uri: str
    status: str
    name: str
    experiment: str
    params: dict[str, str]
    tags: dict[str, str]
    history: dict[str, list[tuple[int, float]]]  # metric -> [(step, value)] in the order logged
    artifacts: dict[str, str]  # path under the run's artifacts -> text


def read_run(run_dir: Path) -> LoggedRun:
    """The MLflow run recorded in ``<run dir>/mlflow_run.json``."""
    from mlflow.tracking import MlflowClient

    state = json.loads((Path(run_dir) / "mlflow_run.json").read_text())
    client = MlflowClient(tracking_uri=state["tracking_uri"])
    run = client.get_run(state["run_id"])
    history = {
        key: [(m.step, m.value) for m in sorted(client.get_metric_history(run.info.run_id, key), key=_when)]
        for key in run.data.metrics
    }
    artifacts: dict[str, Any] = {}
    downloads = Path(run_dir).parent / "downloads"
    downloads.mkdir(exist_ok=True)
    for info in client.list_artifacts(run.info.run_id, "skyrl"):
        local = client.download_artifacts(run.info.run_id, info.path, str(downloads))
        artifacts[info.path] = Path(local).read_text()
    return LoggedRun(
        run_id=run.info.run_id,
        tracking_uri=state["tracking_uri"],
        status=run.info.status,
        name=run.info.run_name,
        experiment=client.get_experiment(run.info.experiment_id).name,
        params=dict(run.data.params),
        tags=dict(run.data.tags),
        history=history,
        artifacts=artifacts,
    )


def _when(metric: Any) -> tuple[int, int]:
    return (metric.timestamp, metric.step)
