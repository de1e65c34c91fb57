"""The ``mlflow`` tracker: a skyrl run as one MLflow run.

What it logs:

* every step's metrics at ``step`` = the skyrl step. MLflow keeps every value it is given, so a
  step that is logged again (steps redone after a crash, resumed from an older checkpoint) has
  two values at that step in its metric history; the later one (by timestamp) is the one the
  continuing run builds on. Characters MLflow does not allow in names become ``_``
  (``eval/all/pass@1`` is logged as ``eval/all/pass_1``);
* the resolved run config (the ``config`` of ``<run dir>/manifest.json``) as params, flattened
  to dotted keys (``trainer.lr``), values as JSON (strings as they are), at most 500 characters
  (older MLflow servers refuse more; the whole config is in the artifact ``skyrl/config.toml``);
* ``manifest.json`` and ``config.toml`` as artifacts under ``skyrl/``, uploaded when the run opens and
  again when it closes (the manifest then records how the attempt ended);
* tags: ``[tracking.mlflow] tags`` and ``skyrl.run_dir``.

Resume: the MLflow run id and the resolved tracking URI are kept in ``<run dir>/mlflow_run.json``
(written atomically). When training resumes from a checkpoint, the tracker reopens that run
(status RUNNING again); a run that starts from step 0 gets a new MLflow run. MLflow params cannot
change: a param whose value differs on resume keeps its first value (a warning names it). The
end of the run sets the status: FINISHED, FAILED, or KILLED when interrupted.

``mlflow`` is imported only when the first MLflow run is opened, never at start-up.
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import json
import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from skyrl_core.api import MissingDependencyError, RemoteRunTracker, SkyrlError
from skyrl_tracker_mlflow.config import MlflowConfig

STATE_FILE = "mlflow_run.json"
ARTIFACT_DIR = "skyrl"
ARTIFACT_FILES = ("manifest.json", "config.toml")
DEFAULT_STORE = "mlruns"
PARAM_VALUE_LIMIT = 500
PARAMS_PER_BATCH = 100  # MLflow's limit for params + tags in one log_batch
METRICS_PER_BATCH = 1000


class MlflowTracker(RemoteRunTracker):
    """Sends a run's metrics, config and manifest to an MLflow tracking store.

    The lifecycle (hooks, status on close), the state file and the run config come from
    ``skyrl_core.api.RemoteRunTracker``."""

    SERVICE = "MLflow"
    STATE_FILE = STATE_FILE

    def __init__(self, config: MlflowConfig | None, run_dir: Path, run_config: dict[str, Any] | None = None) -> None:
        super().__init__(run_dir, run_config)
        self.config = config or MlflowConfig()
        self.client: Any = None  # mlflow.tracking.MlflowClient, once the run is open
        self.run_id: str | None = None
        self.tracking_uri: str | None = None

    @staticmethod
    def check_installed(config: MlflowConfig | None) -> str:
        """MLflow is importable (checked before any model loads); the status names its version."""
        if importlib.util.find_spec("mlflow") is None:
            raise MissingDependencyError(
                "[tracking] trackers = ['mlflow'] needs MLflow, which is not installed: "
                "pip install 'mlflow-skinny>=2.22' (a dependency of skyrl-tracker-mlflow)"
            )
        for dist in ("mlflow", "mlflow-skinny"):
            try:
                return f"{dist} {md.version(dist)}"
            except md.PackageNotFoundError:
                continue
        return "mlflow (version unknown)"

    # -- the Tracker protocol -----------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self.run_id is not None

    def log(self, metrics: dict[str, float], step: int) -> None:
        """Log ``metrics`` at ``step`` (opening the run first when no hook did)."""
        self.ensure_open(step)
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [
            Metric(metric_name(key), float(value), now, step)
            for key, value in metrics.items()
            if isinstance(value, (int, float))
        ]
        for chunk in _chunks(batch, METRICS_PER_BATCH):
            self.client.log_batch(self.run_id, metrics=chunk)

    def _finish(self, outcome: str) -> None:
        """End the MLflow run: FINISHED, FAILED, or KILLED when interrupted."""
        run_id, self.run_id = self.run_id, None
        self.client.set_terminated(run_id, status={"finished": "FINISHED", "failed": "FAILED",
                                                   "interrupted": "KILLED"}[outcome])

    # -- opening -------------------------------------------------------------------------------

    def _open(self, *, resume: bool) -> None:
        previous = self.read_state() if resume else None
        uri = self._resolve_uri(previous)
        if urlparse(uri).scheme in ("", "file"):
            # MLflow 3 refuses file stores unless this is set; a value the user set wins
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        if previous is not None and (previous.get("tracking_uri"), previous.get("experiment")) != (
            uri,
            self.config.experiment,
        ):
            print(
                f"mlflow: {self.run_dir / STATE_FILE} records run {previous.get('run_id')} of experiment "
                f"{previous.get('experiment')!r} in {previous.get('tracking_uri')}; [tracking.mlflow] now names "
                f"experiment {self.config.experiment!r} in {uri}, so a new MLflow run starts",
                file=sys.stderr,
            )
            previous = None
        try:
            from mlflow.tracking import MlflowClient

            self.client = MlflowClient(tracking_uri=uri)
            self.run_id = self._reopen(previous) if previous else self._create()
        except SkyrlError:
            raise
        except Exception as exc:
            raise SkyrlError(
                f"[tracking.mlflow]: MLflow could not open a run in {uri} (experiment {self.config.experiment!r}): "
                f"{type(exc).__name__}: {exc}\nSet `[tracking.mlflow] tracking_uri` (or MLFLOW_TRACKING_URI) to a "
                "folder, a database or a reachable tracking server."
            ) from exc
        self.tracking_uri = uri
        self.write_state({"run_id": self.run_id, "tracking_uri": uri, "experiment": self.config.experiment})
        self._log_params()
        self._log_run_files()

    def _log_run_files(self) -> None:
        """Upload manifest.json and config.toml under ``skyrl/`` (replacing the earlier upload)."""
        for name in ARTIFACT_FILES:
            if (self.run_dir / name).is_file():
                self.client.log_artifact(self.run_id, str(self.run_dir / name), artifact_path=ARTIFACT_DIR)

    def _resolve_uri(self, previous: dict[str, Any] | None) -> str:
        """``tracking_uri``, else MLFLOW_TRACKING_URI, else the recorded store, else ./mlruns; folders made absolute."""
        uri = (
            self.config.tracking_uri
            or os.environ.get("MLFLOW_TRACKING_URI")
            or (previous or {}).get("tracking_uri")
            or DEFAULT_STORE
        )
        if uri.startswith("databricks") or urlparse(uri).scheme:
            return uri
        return Path(uri).expanduser().resolve().as_uri()

    def _create(self) -> str:
        experiment = self.client.get_experiment_by_name(self.config.experiment)
        if experiment is None:
            experiment_id = self.client.create_experiment(self.config.experiment)
        elif experiment.lifecycle_stage == "deleted":
            raise SkyrlError(
                f"[tracking.mlflow] experiment = {self.config.experiment!r} is deleted in {self.client.tracking_uri}: "
                "restore it (`mlflow experiments restore`) or name another experiment"
            )
        else:
            experiment_id = experiment.experiment_id
        tags = {"skyrl.run_dir": str(self.run_dir.resolve()), **self.config.tags}
        name = self.config.run_name or self.run_config.get("name") or self.run_dir.name
        return self.client.create_run(experiment_id, run_name=name, tags=tags).info.run_id

    def _reopen(self, previous: dict[str, Any]) -> str:
        from mlflow.exceptions import MlflowException

        run_id = str(previous["run_id"])
        try:
            run = self.client.get_run(run_id)
        except MlflowException as exc:
            raise SkyrlError(
                f"{self.run_dir / STATE_FILE}: the MLflow run {run_id} that this training run logged to is not in "
                f"{self.client.tracking_uri} ({exc.message}). Point [tracking.mlflow] tracking_uri at the store "
                "that holds it, or delete the file to log the resumed run to a new MLflow run."
            ) from exc
        if run.info.lifecycle_stage == "deleted":
            raise SkyrlError(
                f"{self.run_dir / STATE_FILE}: the MLflow run {run_id} is deleted in {self.client.tracking_uri}: "
                "restore it (`mlflow runs restore --run-id ...`), or delete the file to log to a new MLflow run"
            )
        self.client.update_run(run_id, status="RUNNING")
        return run_id

    def _log_params(self) -> None:
        """The run config as params; on a resumed run only the new ones (MLflow params cannot change)."""
        from mlflow.entities import Param

        params = {metric_name(key): _param_value(value) for key, value in _flatten(self.resolved_run_config())}
        logged = self.client.get_run(self.run_id).data.params
        changed = sorted(k for k, v in params.items() if k in logged and logged[k] != v)
        if changed:
            print(
                f"mlflow: run {self.run_id} keeps the first value of params that changed on resume (MLflow params "
                f"cannot change): {', '.join(changed)}; the resumed config is in {ARTIFACT_DIR}/config.toml",
                file=sys.stderr,
            )
        new = [Param(k, v) for k, v in params.items() if k not in logged]
        for chunk in _chunks(new, PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=chunk)


def metric_name(key: str) -> str:
    """``key`` with every character MLflow refuses in names (anything but letters, digits, ``_ - . / `` and
    space) replaced by ``_``: ``eval/all/pass@1`` -> ``eval/all/pass_1``."""
    return re.sub(r"[^\w\-./ ]", "_", key)


def _param_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= PARAM_VALUE_LIMIT else text[: PARAM_VALUE_LIMIT - 3] + "..."


def _flatten(data: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``{"a": {"b": 1}}`` -> ``("a.b", 1)``; empty tables stay values."""
    for key, value in data.items():
        if isinstance(value, dict) and value:
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
