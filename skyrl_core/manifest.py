"""What a run records about itself: ``config.toml`` (the resolved config) and ``manifest.json``
(plugins and versions, git revision, command line, seed, and every attempt of the run), and how
it seeds its RNGs."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from skyrl_core.checkpoint import atomic_write_text
from skyrl_core.config.render import to_dict, to_toml
from skyrl_core.config.schema import RunConfig
from skyrl_core.plugins import Registry


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy (if present) and torch."""
    import torch

    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # pragma: no cover
        pass
    torch.manual_seed(seed)


def git_revision(path: Path) -> str | None:
    """The git commit of the working directory, if it is a repository."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


class RunManifest:
    """``manifest.json`` (and ``config.toml``) of a run: what this attempt runs, and every attempt.

    The top-level keys describe the current attempt: config file, seed, git revision, Python,
    argv, pid, start time, plugins and versions, the resolved config, torch and transformers.
    ``attempts`` lists every attempt of the run, oldest first, each with ``attempt`` (1, 2, ...),
    ``started``, ``pid``, ``argv``, ``config_file``, ``git_revision``, ``resumed_from`` (the
    checkpoint, or null when it started from step 0), ``start_step``, ``target_steps``
    (``trainer.steps``), ``last_step`` (the last step it logged, updated as it goes) and
    ``status``: ``running``, then ``completed``, ``already_complete``, ``failed`` (with
    ``error``) or, found by the next attempt, ``interrupted`` (killed: it never said how it ended).

    Args:
        run_dir: the run directory; an existing ``manifest.json`` there supplies the earlier
            attempts (a manifest written before attempts were recorded counts as one).
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / "manifest.json"
        self.previous: list[dict[str, Any]] = _earlier_attempts(self.path)
        self.attempt: dict[str, Any] = {}
        self._data: dict[str, Any] = {}

    def start(
        self,
        cfg: RunConfig,
        registry: Registry,
        config_path: str | None,
        *,
        resumed_from: Path | None,
        start_step: int,
    ) -> None:
        """Record this attempt (and the config) and write both files."""
        for earlier in self.previous:
            if earlier.get("status") == "running":
                earlier["status"] = "interrupted"
        data = to_dict(cfg)
        atomic_write_text(self.path.with_name("config.toml"), to_toml(data))
        now, revision = time.strftime("%Y-%m-%dT%H:%M:%S%z"), git_revision(Path.cwd())
        self.attempt = {
            "attempt": len(self.previous) + 1,
            "started": now,
            "pid": os.getpid(),
            "argv": sys.argv,
            "config_file": str(config_path) if config_path else None,
            "git_revision": revision,
            "resumed_from": str(resumed_from) if resumed_from else None,
            "start_step": start_step,
            "target_steps": cfg.trainer.steps,
            "last_step": start_step if resumed_from else None,
            "status": "running",
        }
        self._data = {
            "config_file": self.attempt["config_file"],
            "seed": cfg.run.seed,
            "git_revision": revision,
            "python": sys.version.split()[0],
            "argv": sys.argv,
            "pid": os.getpid(),
            "started": now,
            "plugins": [
                {"distribution": p.distribution, "version": p.version, "status": p.status, "components": p.components}
                for p in registry.plugins
            ],
            "config": data,
        }
        try:
            import torch
            import transformers

            self._data["torch"] = torch.__version__
            self._data["transformers"] = transformers.__version__
        except ImportError:  # pragma: no cover
            pass
        self._write()

    def update(self, **fields: Any) -> None:
        """Change fields of this attempt (``last_step``, ``status``, ...) and rewrite the file."""
        self.attempt.update(fields)
        self._write()

    def end(self, status: str) -> None:
        """Record how this attempt ended (``completed``, ``already_complete``)."""
        self.update(status=status, ended=time.strftime("%Y-%m-%dT%H:%M:%S%z"))

    def fail(self, error: BaseException) -> None:
        """Record the error that ended this attempt (``interrupted`` for Ctrl-C, else ``failed``)."""
        self.attempt["error"] = f"{type(error).__name__}: {error}"
        self.end("interrupted" if isinstance(error, KeyboardInterrupt) else "failed")

    def _write(self) -> None:
        data = {**self._data, "attempts": [*self.previous, self.attempt]}
        atomic_write_text(self.path, json.dumps(data, indent=2, default=str))


def _earlier_attempts(path: Path) -> list[dict[str, Any]]:
    """The attempts recorded in an existing manifest; a manifest without them counts as one."""
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"warning: {path} could not be read ({exc}); earlier attempts are not listed in it", file=sys.stderr)
        return []
    if not isinstance(data, dict):
        return []
    attempts = data.get("attempts")
    if isinstance(attempts, list):
        return [a for a in attempts if isinstance(a, dict)]
    keys = ("started", "pid", "argv", "config_file", "git_revision")
    return [{"attempt": 1, **{k: data.get(k) for k in keys}, "status": "unknown"}]
