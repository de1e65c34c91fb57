"""What a run records about itself: ``config.toml`` (the resolved config) and ``manifest.json``
(plugins and versions, git revision, command line, seed), and how it seeds its RNGs."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

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


def write_manifest(run_dir: Path, cfg: RunConfig, registry: Registry, config_path: str | None) -> None:
    """``manifest.json`` + ``config.toml``: the resolved config, plugins and versions, git revision, seed."""
    data = to_dict(cfg)
    atomic_write_text(run_dir / "config.toml", to_toml(data))
    manifest = {
        "config_file": str(config_path) if config_path else None,
        "seed": cfg.run.seed,
        "git_revision": git_revision(Path.cwd()),
        "python": sys.version.split()[0],
        "argv": sys.argv,
        "pid": os.getpid(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "plugins": [
            {"distribution": p.distribution, "version": p.version, "status": p.status, "components": p.components}
            for p in registry.plugins
        ],
        "config": data,
    }
    try:
        import torch
        import transformers

        manifest["torch"] = torch.__version__
        manifest["transformers"] = transformers.__version__
    except ImportError:  # pragma: no cover
        pass
    atomic_write_text(run_dir / "manifest.json", json.dumps(manifest, indent=2, default=str))
