"""What a strategy checkpoint holds on disk: file names, RNG states, completeness checks, atomic folders.

Both builtin strategies write their checkpoints with these names and helpers: ``local``
one file per piece (weights, optimizer, schedule, RNG states), ``fsdp2`` a DCP folder plus
the driver's RNG state and ``strategy.json``. Exports use ``replace_dir`` so that a folder
is never left half-written.
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from skyrl_core.errors import SkyrlError

POLICY_WEIGHTS = "model.safetensors"
POLICY_OPTIMIZER = "optimizer.pt"
POLICY_SCHEDULER = "scheduler.pt"
REF_WEIGHTS = "ref.safetensors"
CRITIC_WEIGHTS = "critic.safetensors"
CRITIC_OPTIMIZER = "critic_optimizer.pt"
CRITIC_SCHEDULER = "critic_scheduler.pt"
GRAD_SCALER = "grad_scaler.pt"
RNG_STATE = "rng.pt"
STRATEGY_STATE = "strategy.json"


class CheckpointError(SkyrlError, FileNotFoundError):
    """A checkpoint directory is missing or incomplete."""


def rng_state() -> dict[str, Any]:
    """Python, numpy (when installed), torch and CUDA generator states."""
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    try:
        import numpy as np

        kind, keys, pos, has_gauss, cached = np.random.get_state()
        # Tensors and plain numbers only, so the file loads with ``torch.load(weights_only=True)``.
        state["numpy"] = (kind, torch.from_numpy(keys.copy()), int(pos), int(has_gauss), float(cached))
    except ImportError:  # pragma: no cover - numpy ships with torch installs
        pass
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` captured (CUDA only when both sides have it)."""
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "numpy" in state:
        import numpy as np

        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, keys.numpy(), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def require_files(directory: Path, files: Sequence[tuple[str, str]]) -> None:
    """Check that every ``(name, what)`` file exists under ``directory``; name all missing ones at once."""
    missing = [f"{name} ({what})" for name, what in files if not (Path(directory) / name).is_file()]
    if missing:
        raise CheckpointError(
            f"checkpoint {directory}: missing {', '.join(missing)}. Was it written by the same strategy with the "
            "same options (reference model / critic)? Point checkpoint.resume at a complete checkpoint directory."
        )


def replace_dir(tmp: Path, dest: Path) -> None:
    """Move the finished directory ``tmp`` to ``dest``, replacing an existing ``dest``.

    ``dest`` is never half-written: the old one is set aside with one rename, the new one
    put in place with another, and only then is the old one deleted.
    """
    tmp, dest = Path(tmp), Path(dest)
    old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
    if dest.exists():
        os.replace(dest, old)
    os.replace(tmp, dest)
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)
