"""The run commands of the ``skyrl`` CLI: ``train``, ``eval``, ``sft`` and ``export``.

Each loads the config (every error of the file at once), resolves and checks its components
(``skyrl_core.startup.open_run``) and only then loads models. The backend and the strategy
are built by the same functions in every command (``skyrl_core.components``), so ``[runtime]``
placement applies to ``skyrl eval`` as it does to ``skyrl train``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from skyrl_core.config.loader import load_config
from skyrl_core.config.schema import RunConfig
from skyrl_core.errors import SkyrlError
from skyrl_core.plugins import Registry, build_registry


def load_run_config(
    path: str, overrides: Sequence[str], registry: Registry | None = None
) -> tuple[RunConfig, Registry]:
    """The validated config of ``path`` and the registry it was validated with; plugins that failed
    to load and ambiguous component names are reported as warnings (a run that does not use them
    goes on)."""
    registry = registry or build_registry()
    cfg = load_config(path, overrides, registry)  # a bad config is the one error shown
    for p in registry.failed():
        print(f"warning: plugin {p.describe()} failed to load: {p.error}", file=sys.stderr)
    registry.warn_conflicts()
    return cfg, registry


def train_main(path: str, overrides: Sequence[str], registry: Registry | None = None) -> int:
    """``skyrl train``."""
    cfg, registry = load_run_config(path, overrides, registry)  # before torch is imported: a bad file fails fast
    from skyrl_core.trainer import train

    train(cfg, registry, config_path=path)
    return 0


def eval_main(path: str, overrides: Sequence[str], registry: Registry | None = None) -> int:
    """``skyrl eval``: evaluate ``[model] path`` on ``data.eval`` with ``[backend]`` placed as ``[runtime]`` says."""
    cfg, registry = load_run_config(path, overrides, registry)  # before torch is imported: a bad file fails fast
    from skyrl_core import runtime
    from skyrl_core.components import build_backend
    from skyrl_core.evaluation import run_eval
    from skyrl_core.models.tiny import ensure_model
    from skyrl_core.startup import check_data, open_run, prepare_data

    run = open_run(cfg, registry)
    assert run.components is not None
    ensure_model(cfg.model)
    prepare_data(cfg, registry)
    check_data(cfg, registry, train=False)
    backend = build_backend(cfg, registry, run.components.backend, cfg.model)
    try:
        metrics = run_eval(cfg, registry, backend=backend, show_progress=True)
    finally:
        backend.shutdown()
        runtime.shutdown()
    for key in sorted(metrics):
        print(f"{key:<40} {metrics[key]:.4f}")
    return 0


def sft_main(path: str, overrides: Sequence[str], registry: Registry | None = None) -> int:
    """``skyrl sft``: run only the ``[warm_start]`` phase and export the result."""
    cfg, registry = load_run_config(path, overrides, registry)  # before torch is imported: a bad file fails fast
    from skyrl_core import runtime
    from skyrl_core.sft import run_warm_start
    from skyrl_core.startup import open_run

    if cfg.warm_start is None:
        raise SkyrlError(f"{path}: `skyrl sft` needs a [warm_start] section (data, steps, batch_size, lr)")
    run = open_run(cfg, registry, with_backend=False)
    try:
        out = run_warm_start(run)
    finally:
        runtime.shutdown()
    print(f"supervised model written to {out}")
    return 0


def export_main(
    path: str,
    overrides: Sequence[str],
    checkpoint: str | None = None,
    out: str | None = None,
    registry: Registry | None = None,
) -> int:
    """``skyrl export``: write a Hugging Face folder from a checkpoint (default: the latest)."""
    cfg, registry = load_run_config(path, overrides, registry)  # before torch is imported: a bad file fails fast
    from skyrl_core import runtime
    from skyrl_core.startup import export_checkpoint, open_run

    run = open_run(cfg, registry, with_backend=False)
    assert run.checkpoints is not None
    ckpt = Path(checkpoint) if checkpoint else run.checkpoints.latest()
    if ckpt is None:
        raise SkyrlError(f"no checkpoint found under {run.checkpoints.root}; pass --checkpoint PATH")
    target = Path(out) if out else run.run_dir / "export"
    try:
        state = export_checkpoint(run, ckpt, target)
    finally:
        runtime.shutdown()
    print(f"exported step {state['step']} from {ckpt} to {target}")
    return 0
