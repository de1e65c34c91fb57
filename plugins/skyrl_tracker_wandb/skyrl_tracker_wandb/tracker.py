"""The ``wandb`` tracker: a skyrl run as one Weights & Biases run.

What it logs:

* every step's metrics, together with the skyrl step as ``trainer/step``, which every metric
  uses as its x-axis (``define_metric``). W&B's own ``_step`` only counts log calls, so a step
  that is logged again (steps redone after a crash, resumed from an older checkpoint) is
  recorded again with the same ``trainer/step`` instead of being dropped as non-monotonic;
  the later value is the one the continuing run builds on, and it is the one in the summary;
* the resolved run config (the ``config`` of ``<run dir>/manifest.json``), nested as in the
  TOML (W&B shows ``trainer.lr`` and so on);
* ``manifest.json`` and ``config.toml`` as the artifact ``skyrl-run-<run id>`` of type
  ``skyrl-run``, when the run opens and again when it closes (the manifest then records how the
  attempt ended; W&B keeps both as versions), and again when a resumed run rewrites them.

Resume: the W&B run id is kept in ``<run dir>/wandb_run.json`` (written atomically). When
training resumes from a checkpoint, the tracker continues that run (``id=..., resume="allow"``);
a run that starts from step 0 gets a new W&B run. The end of the run sets the W&B exit code:
0 when training finished, 1 when it failed, 130 when it was interrupted.

``wandb`` is imported only when the first W&B run is opened, never at start-up.
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

from skyrl_core.api import MissingDependencyError, RemoteRunTracker, SkyrlError
from skyrl_tracker_wandb.config import WandbConfig

STEP_METRIC = "trainer/step"
STATE_FILE = "wandb_run.json"
ARTIFACT_TYPE = "skyrl-run"
ARTIFACT_FILES = ("manifest.json", "config.toml")


class WandbTracker(RemoteRunTracker):
    """Sends a run's metrics, config and manifest to W&B (online, offline or disabled).

    The lifecycle (hooks, exit status on close), the state file and the run config come from
    ``skyrl_core.api.RemoteRunTracker``."""

    SERVICE = "W&B"
    STATE_FILE = STATE_FILE

    def __init__(self, config: WandbConfig | None, run_dir: Path, run_config: dict[str, Any] | None = None) -> None:
        super().__init__(run_dir, run_config)
        self.config = config or WandbConfig()
        self.run: Any = None  # the wandb Run, once opened
        self._logged_files: tuple[bytes, ...] = ()  # the artifact files' contents as last logged

    @staticmethod
    def check_installed(config: WandbConfig | None) -> str:
        """``wandb`` is importable (checked before any model loads); the status names its version."""
        if importlib.util.find_spec("wandb") is None:
            raise MissingDependencyError(
                "[tracking] trackers = ['wandb'] needs the wandb package, which is not installed: "
                "pip install 'wandb>=0.19.11' (a dependency of skyrl-tracker-wandb)"
            )
        return f"wandb {md.version('wandb')}"

    # -- the Tracker protocol -----------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self.run is not None

    def log(self, metrics: dict[str, float], step: int) -> None:
        """Log ``metrics`` with ``trainer/step = step`` (opening the run first when no hook did)."""
        self.ensure_open(step)
        values = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
        self.run.log({STEP_METRIC: step, **values})

    def _finish(self, outcome: str) -> None:
        """Finish the W&B run with exit code 0 (finished), 1 (failed) or 130 (interrupted)."""
        run, self.run = self.run, None
        run.finish(exit_code={"finished": 0, "failed": 1, "interrupted": 130}[outcome])

    # -- opening -------------------------------------------------------------------------------

    def _open(self, *, resume: bool) -> None:
        import wandb

        previous = self._previous_run() if resume else None
        where = Path(self.config.dir) if self.config.dir else self.run_dir
        where.mkdir(parents=True, exist_ok=True)
        kwargs: dict[str, Any] = {
            "project": self.config.project,
            "entity": self.config.entity,
            "name": self.config.name or self.run_config.get("name") or self.run_dir.name,
            "group": self.config.group,
            "tags": list(self.config.tags) or None,
            "notes": self.config.notes,
            "dir": str(where),
            "config": self.resolved_run_config(),
            "mode": self._mode(),
        }
        if previous is not None:
            kwargs.update(id=previous, resume="allow")
        try:
            run = wandb.init(**kwargs)
        except Exception as exc:
            raise SkyrlError(self._init_error(exc)) from exc
        self.run = run
        if kwargs["mode"] != "disabled":  # a disabled run has a made-up id: nothing to resume
            self.write_state({"run_id": run.id, "project": self.config.project, "entity": self.config.entity})
        run.define_metric(STEP_METRIC)
        run.define_metric("*", step_metric=STEP_METRIC)
        self._log_run_files()

    def _log_run_files(self) -> None:
        """Log manifest.json and config.toml as a version of the run's artifact, unless unchanged since the last."""
        files = [self.run_dir / name for name in ARTIFACT_FILES if (self.run_dir / name).is_file()]
        contents = tuple(path.read_bytes() for path in files)
        if not files or contents == self._logged_files:
            return
        import wandb

        artifact = wandb.Artifact(
            f"skyrl-run-{self.run.id}",
            type=ARTIFACT_TYPE,
            description="The skyrl run's manifest.json (plugins, versions, git revision, command line, seed, "
            "attempts) and its resolved config.toml.",
        )
        for path in files:
            artifact.add_file(str(path))
        self.run.log_artifact(artifact)
        self._logged_files = contents

    def _previous_run(self) -> str | None:
        """The W&B run id recorded in the run directory, when it belongs to the configured project and entity."""
        state = self.read_state()
        if state is None:
            return None
        if (state.get("project"), state.get("entity")) != (self.config.project, self.config.entity):
            print(
                f"wandb: {self.run_dir / STATE_FILE} records run {state.get('run_id')} of project "
                f"{state.get('project')!r} (entity {state.get('entity')!r}); [tracking.wandb] now names project "
                f"{self.config.project!r} (entity {self.config.entity!r}), so a new W&B run starts",
                file=sys.stderr,
            )
            return None
        return str(state["run_id"])

    def _mode(self) -> str | None:
        """``[tracking.wandb] mode``; for 'auto', WANDB_MODE read now (wandb itself reads it once per
        process), or None: wandb's default, online."""
        if self.config.mode != "auto":
            return self.config.mode
        return os.environ.get("WANDB_MODE") or None

    def _init_error(self, exc: Exception) -> str:
        return (
            f"[tracking.wandb]: W&B could not start a run (project {self.config.project!r}, "
            f"mode {self._mode() or 'online'!r}): "
            f"{type(exc).__name__}: {exc}\n"
            "To log without a W&B account or network, set `[tracking.wandb] mode = \"offline\"` (or "
            "WANDB_MODE=offline) and upload later with `wandb sync <run dir>/wandb/offline-run-*`; to log "
            "online, run `wandb login` or set WANDB_API_KEY."
        )
