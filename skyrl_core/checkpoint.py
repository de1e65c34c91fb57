"""Checkpoint directories: atomic writes, a ``latest`` pointer, retention, resume lookup.

Layout under ``<run dir>/checkpoints``::

    step-000010/            one finished checkpoint (strategy files + trainer_state.json)
    .tmp-step-000012-<pid>/ a checkpoint being written (ignored, removed on the next save)
    latest                  a text file naming the newest finished checkpoint

A checkpoint is written into a temporary directory and renamed into place only when it
is complete, and ``latest`` is replaced atomically afterwards, so a crash at any moment
leaves the previous checkpoint usable.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from skyrl_core.errors import SkyrlError

STATE_FILE = "trainer_state.json"


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class CheckpointManager:
    """Saves, lists, prunes and finds checkpoints of one run."""

    def __init__(self, run_dir: Path, keep_last: int = 2) -> None:
        self.root = Path(run_dir) / "checkpoints"
        self.keep_last = keep_last

    def save(self, step: int, write: Callable[[Path], None], state: dict[str, Any]) -> Path:
        """Create ``step-NNNNNN``: ``write(tmp_dir)`` fills it, then ``state`` is added as JSON."""
        self.root.mkdir(parents=True, exist_ok=True)
        for stale in self.root.glob(".tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        final = self.root / f"step-{step:06d}"
        tmp = self.root / f".tmp-step-{step:06d}-{os.getpid()}"
        tmp.mkdir()
        try:
            write(tmp)
            atomic_write_text(tmp / STATE_FILE, json.dumps({"step": step, **state}, indent=2))
            if final.exists():  # re-saving the same step (e.g. after a resume): replace it
                old = self.root / f".tmp-old-{final.name}-{os.getpid()}"
                final.rename(old)
                tmp.rename(final)
                shutil.rmtree(old, ignore_errors=True)
            else:
                tmp.rename(final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        atomic_write_text(self.root / "latest", final.name + "\n")
        self.prune()
        return final

    def finished(self) -> list[Path]:
        """Finished checkpoints, oldest first."""
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.glob("step-*") if (p / STATE_FILE).is_file())

    def prune(self) -> None:
        """Delete all but the ``keep_last`` newest checkpoints."""
        for old in self.finished()[: -self.keep_last]:
            shutil.rmtree(old, ignore_errors=True)

    def latest(self) -> Path | None:
        """The newest finished checkpoint, or None."""
        pointer = self.root / "latest"
        if pointer.is_file():
            candidate = self.root / pointer.read_text().strip()
            if (candidate / STATE_FILE).is_file():
                return candidate
        done = self.finished()
        return done[-1] if done else None

    def resolve(self, resume: str) -> Path | None:
        """Which checkpoint to resume from: ``auto`` (latest if any), ``never``, or a path."""
        if resume == "never":
            return None
        if resume == "auto":
            return self.latest()
        path = Path(resume)
        if not (path / STATE_FILE).is_file():
            raise SkyrlError(
                f"checkpoint.resume = {resume!r}: not a finished checkpoint (no {STATE_FILE} in it). "
                f"Use 'auto', 'never' or a path like {self.root / 'step-000010'}."
            )
        return path


def read_state(path: Path) -> dict[str, Any]:
    """The trainer state saved with a checkpoint."""
    return json.loads((Path(path) / STATE_FILE).read_text())
