"""Builtin trackers: a compact console table, ``metrics.jsonl`` and TensorBoard; and
:class:`RemoteRunTracker`, the base of trackers that mirror a run into a service (W&B, MLflow).

Every tracker implements ``skyrl_core.protocols.Tracker`` and is constructed as
``Tracker(config, run_dir=Path, run_config=dict)``. A resumed run redoes the steps after its
checkpoint; ``run_config["first_step"]`` says where it starts, and the file trackers forget
what an earlier attempt wrote from there on, so each step has one row and one point.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any, ClassVar, Literal

import attrs

from skyrl_core.config.fields import option, positive
from skyrl_core.errors import SkyrlError

# Columns of the console table: (metric, header, format).
CONSOLE_COLUMNS: list[tuple[str, str, str]] = [
    ("reward/mean", "reward", "{:+.3f}"),
    ("eval/all/score", "eval", "{:.3f}"),
    ("policy/loss", "loss", "{:+.4f}"),
    ("policy/approx_kl", "kl_old", "{:.2e}"),
    ("policy/entropy", "entropy", "{:.3f}"),
    ("policy/grad_norm", "grad", "{:.3f}"),
    ("rollout/response_length/mean", "len", "{:.1f}"),
    ("timing/step", "sec", "{:.1f}"),
]


@attrs.define(kw_only=True)
class ConsoleConfig:
    """Options of the console tracker."""

    every: int = option(1, help="Print a table row every N steps.", check=positive)
    columns: list[str] = option(factory=list, help="Extra metric names to show as columns, besides the default ones.")


@attrs.define(kw_only=True)
class JsonlConfig:
    """Options of the JSONL tracker."""

    filename: str = option("metrics.jsonl", help="File under the run directory; one JSON object per step.")


@attrs.define(kw_only=True)
class TensorBoardConfig:
    """Options of the TensorBoard tracker."""

    subdir: str = option("tensorboard", help="Event-file directory under the run directory.")


def _write(text: str) -> None:
    try:
        from tqdm import tqdm

        tqdm.write(text, file=sys.stdout)
    except ImportError:  # pragma: no cover
        print(text)


class ConsoleTracker:
    """Prints one compact row per step (header every 20 rows)."""

    def __init__(self, config: ConsoleConfig | None, run_dir: Path, run_config: dict[str, Any] | None = None) -> None:
        self.config = config or ConsoleConfig()
        self.columns = list(CONSOLE_COLUMNS) + [(c, c.split("/")[-1][:10], "{:.4g}") for c in self.config.columns]
        self.rows = 0

    def log(self, metrics: dict[str, float], step: int) -> None:
        if step % self.config.every and not any(k.startswith("eval/") for k in metrics):
            return
        cols = self.columns  # always the same columns, so rows line up under the header
        if self.rows % 20 == 0:
            _write("step  " + "  ".join(f"{h:>9}" for _, h, _ in cols))
        cells = []
        for key, _, fmt in cols:
            value = metrics.get(key)
            cells.append(f"{fmt.format(value):>9}" if isinstance(value, (int, float)) else f"{'-':>9}")
        _write(f"{step:>4}  " + "  ".join(cells))
        self.rows += 1

    def close(self) -> None:
        return None


class JsonlTracker:
    """Appends ``{"step": N, ...metrics}`` lines to ``<run dir>/metrics.jsonl`` (flushed each step).

    A resumed run first drops the lines of the steps it redoes (``run_config["first_step"]``
    and later, see ``truncate_metrics``), so the file keeps one line per step.
    """

    def __init__(self, config: JsonlConfig | None, run_dir: Path, run_config: dict[str, Any] | None = None) -> None:
        self.config = config or JsonlConfig()
        self.path = Path(run_dir) / self.config.filename
        self.path.parent.mkdir(parents=True, exist_ok=True)
        first_step = (run_config or {}).get("first_step")
        if first_step is not None:
            truncate_metrics(self.path, int(first_step))
        self._f = self.path.open("a", encoding="utf-8")

    def log(self, metrics: dict[str, float], step: int) -> None:
        clean = {k: (v if isinstance(v, (int, float)) and math.isfinite(v) else None) for k, v in metrics.items()}
        self._f.write(json.dumps({"step": step, **clean}) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def truncate_metrics(path: Path, first_step: int) -> int:
    """Drop the lines of ``path`` whose step is ``first_step`` or later; return how many went.

    Lines that do not parse (the half-written last line of a killed process) go too. The
    file is replaced atomically (written beside it, synced, renamed), so a crash during the
    truncation leaves either the old file or the new one, never a mix.
    """
    if not path.is_file():
        return 0
    kept: list[str] = []
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    for line in lines:
        try:
            step = json.loads(line)["step"]
        except (ValueError, TypeError, KeyError):
            continue
        if isinstance(step, int) and step < first_step:
            kept.append(line)
    dropped = sum(1 for line in lines if line.strip()) - len(kept)
    if dropped:
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        with tmp.open("w", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in kept))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    return dropped


class TensorBoardTracker:
    """Writes scalars with ``torch.utils.tensorboard``.

    Each attempt of a run writes its own event file; a resumed one starts it with a purge at
    ``run_config["first_step"]`` (``SummaryWriter(purge_step=...)``), so TensorBoard hides what
    earlier attempts logged for the redone steps and each curve has one point per step.
    """

    def __init__(
        self, config: TensorBoardConfig | None, run_dir: Path, run_config: dict[str, Any] | None = None
    ) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.config = config or TensorBoardConfig()
        log_dir = Path(run_dir) / self.config.subdir
        first_step = (run_config or {}).get("first_step")
        # Only a directory with earlier attempts' event files needs the purge marker.
        purge = int(first_step) if first_step is not None and any(log_dir.glob("*tfevents*")) else None
        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge)

    def log(self, metrics: dict[str, float], step: int) -> None:
        for key, value in metrics.items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Read a metrics.jsonl file (later lines for the same step win, e.g. after a resume)."""
    by_step: dict[int, dict[str, Any]] = {}
    if not path.exists():
        return []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            by_step.setdefault(int(row["step"]), {}).update(row)
    return [by_step[s] for s in sorted(by_step)]


def plot_curves(metrics_path: Path, out_path: Path) -> Path | None:
    """Save reward and eval curves from metrics.jsonl as a PNG; None when there is nothing to plot."""
    rows = read_metrics(metrics_path)
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    steps = [r["step"] for r in rows if r.get("reward/mean") is not None]
    axes[0].plot(steps, [r["reward/mean"] for r in rows if r.get("reward/mean") is not None], marker="o", ms=3)
    axes[0].set_title("train reward (mean)")
    axes[0].set_xlabel("step")
    eval_keys = sorted({k for r in rows for k in r if k.startswith("eval/") and k.endswith("/score")})
    for key in eval_keys:
        pts = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
        axes[1].plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=key.split("/")[1])
    axes[1].set_title("eval score")
    axes[1].set_xlabel("step")
    if eval_keys:
        axes[1].legend()
    fig.tight_layout()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(out_path)
    return out_path


# -- trackers that mirror a run into a service ------------------------------------------------

Outcome = Literal["finished", "failed", "interrupted"]


class RemoteRunTracker:
    """Base of trackers that mirror a skyrl run into a run of a tracking service (W&B, MLflow).

    It holds what such trackers share, so a third-party one gets it right too:

    * the lifecycle: the plugin's ``skyrl_run_start`` hook calls :meth:`on_run_start` (which opens
      the service's run: the recorded one when training resumed from a checkpoint, ``step > 0``,
      else a new one), ``skyrl_run_end`` calls :meth:`on_run_end`, and :meth:`close` (the loop's
      ``finally``) uploads the run files once more and ends the service's run with the outcome:
      ``"finished"``, ``"failed"`` (an exception, or training opened but never ended) or
      ``"interrupted"`` (KeyboardInterrupt);
    * the state file in the run directory (``STATE_FILE``) that records which service run to
      continue on resume, read with a clear error and written atomically;
    * the resolved run config, read from ``manifest.json`` (written before trackers are built).

    A subclass sets ``SERVICE`` (its name in messages) and ``STATE_FILE``, and implements
    :attr:`is_open`, ``_open(resume=...)``, ``_log_run_files()`` and ``_finish(outcome)``.
    """

    SERVICE: ClassVar[str] = "tracking service"
    STATE_FILE: ClassVar[str] = "tracker_run.json"

    def __init__(self, run_dir: Path, run_config: dict[str, Any] | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.run_config = dict(run_config or {})
        self._in_training = False  # opened by the skyrl_run_start hook: success needs skyrl_run_end
        self._completed = False

    # -- what a subclass implements --------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        raise NotImplementedError

    def _open(self, *, resume: bool) -> None:
        raise NotImplementedError

    def _log_run_files(self) -> None:
        raise NotImplementedError

    def _finish(self, outcome: Outcome) -> None:
        raise NotImplementedError

    # -- the run's lifecycle ---------------------------------------------------------------------

    def on_run_start(self, step: int) -> None:
        """Open the service's run: the recorded one when training resumed from a checkpoint (``step > 0``), else
        a new one."""
        self._in_training = True
        self.ensure_open(step)

    def on_run_end(self) -> None:
        """Training finished normally: :meth:`close` reports success."""
        self._completed = True

    def ensure_open(self, step: int) -> None:
        """Open the run if no hook did (a tracker used outside ``skyrl train``): a first step above 0 continues
        the recorded run."""
        if not self.is_open:
            self._open(resume=step > 0)

    def close(self) -> None:
        """Upload the run files again (the manifest now records how the attempt ended) and end the run."""
        if not self.is_open:
            return
        # close() runs in the loop's `finally`: an exception on its way out means the run failed
        error = sys.exc_info()[1]
        failed = error is not None or (self._in_training and not self._completed)
        outcome: Outcome = "finished"
        if failed:
            outcome = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
        try:
            self._log_run_files()
        finally:
            self._finish(outcome)

    # -- the state file and the run config -------------------------------------------------------

    def read_state(self) -> dict[str, Any] | None:
        """The recorded service run (``STATE_FILE`` in the run directory), or None when there is none."""
        path = self.run_dir / self.STATE_FILE
        if not path.is_file():
            return None
        try:
            return dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError) as exc:
            raise SkyrlError(
                f"{path}: cannot read the recorded {self.SERVICE} run ({exc}); delete the file to start a new "
                f"{self.SERVICE} run"
            ) from exc

    def write_state(self, state: dict[str, Any]) -> None:
        """Record the service run for a later resume (written atomically)."""
        from skyrl_core.checkpoint import atomic_write_text

        atomic_write_text(self.run_dir / self.STATE_FILE, json.dumps(state, indent=2) + "\n")

    def resolved_run_config(self) -> dict[str, Any]:
        """The resolved config of the run (from manifest.json), else the ``run_config`` given."""
        manifest = self.run_dir / "manifest.json"
        if manifest.is_file():
            config = json.loads(manifest.read_text(encoding="utf-8")).get("config")
            if isinstance(config, dict):
                return config
        return dict(self.run_config)
