"""``RunContext``: everything one training run holds, built once by ``setup_run``.

Plugins receive it in their pipeline hooks (``skyrl_run_start``, ``skyrl_collect_rollouts``,
``skyrl_shape_rewards``, ``skyrl_step_end``, ``skyrl_run_end``).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs

from skyrl_core.checkpoint import CheckpointManager, atomic_write_text
from skyrl_core.config.loader import component_config
from skyrl_core.config.plan import BatchPlan, make_plan
from skyrl_core.config.render import to_dict, to_toml
from skyrl_core.config.schema import RunConfig
from skyrl_core.plugins import Registry
from skyrl_core.specs import Kind


@attrs.define
class RunContext:
    """The state of a run.

    Attributes:
        config: the validated run config.
        registry: the plugin registry of this process.
        run_dir: where metrics, checkpoints, exports and plots go.
        plan: the derived batch plan.
        model_path: the model the RL phase starts from (after a warm start, its export).
        tokenizer: the Hugging Face tokenizer.
        backend: the inference backend (``InferenceBackend``).
        strategy: the training strategy (``TrainingStrategy``).
        train_loader: the stateful prompt loader.
        trackers: metric trackers.
        checkpoints: the checkpoint manager.
        step: the last finished training step (0 before the first).
        policy_version: increments at every weight sync.
        kl_coef: the current KL coefficient (changes with the adaptive controller).
        pipeline: the background generation of ``[trainer] mode = "one_step_off"`` or
            ``"async"`` (None in ``sync`` mode).
        state: free-form state that plugins may keep across steps (saved in checkpoints
            when JSON-serialisable).
    """

    config: RunConfig
    registry: Registry
    run_dir: Path
    plan: BatchPlan
    model_path: str = ""
    tokenizer: Any = None
    backend: Any = None
    strategy: Any = None
    train_loader: Any = None
    trackers: list[Any] = attrs.field(factory=list)
    checkpoints: CheckpointManager | None = None
    step: int = 0
    policy_version: int = 0
    kl_coef: float = 0.0
    state: dict[str, Any] = attrs.field(factory=dict)
    timings: dict[str, float] = attrs.field(factory=dict)
    loop: Any = None  # the asyncio event loop generation runs on
    pipeline: Any = None  # background generation ([trainer] mode != "sync"; skyrl_core.pipeline)

    def section(self, name: str) -> Any:
        """A plugin-owned config section (``[name]``), or None when absent."""
        return self.config.sections.get(name)

    def component_config(self, kind: Kind, name: str, given: Any) -> Any:
        """A component's validated options or its config class's defaults."""
        return component_config(self.registry, kind, name, given)

    @contextmanager
    def timer(self, name: str):
        """Add the elapsed seconds of the block to ``timings['timing/<name>']``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            key = f"timing/{name}"
            self.timings[key] = self.timings.get(key, 0.0) + time.perf_counter() - start

    def log(self, metrics: dict[str, float], step: int) -> None:
        """Send metrics to every tracker."""
        for tracker in self.trackers:
            tracker.log(metrics, step)


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


def new_context(cfg: RunConfig, registry: Registry) -> RunContext:
    """A context with the run directory created and nothing built yet."""
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return RunContext(
        config=cfg,
        registry=registry,
        run_dir=run_dir,
        plan=make_plan(cfg),
        checkpoints=CheckpointManager(run_dir, cfg.checkpoint.keep_last),
        kl_coef=cfg.algorithm.kl.coef,
    )
