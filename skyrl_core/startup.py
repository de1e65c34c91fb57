"""Start-up and shut-down: everything a run checks and builds before its first step, cheapest
checks first, and how it is closed.

Order (``setup_run``): resolve and check the components (``open_run``: unknown names, contracts,
missing packages) and the data files, then create the tiny model if asked, the data, the warm
start, and only then load the tokenizer, the strategy and the backend. A mistake in the config,
a plugin or the data therefore fails in seconds, before any model loads.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from skyrl_core.checkpoint import read_state
from skyrl_core.components import RunComponents, build_backend, build_strategy, build_trackers, model_for
from skyrl_core.config.schema import RunConfig
from skyrl_core.plugins import Registry
from skyrl_core.run import RunContext, new_context
from skyrl_core.specs import Kind


def open_run(cfg: RunConfig, registry: Registry, *, with_backend: bool = True) -> RunContext:
    """A ``RunContext`` whose components are resolved and checked; nothing is loaded yet.

    Resolves every selected component (``resolve_components``: unknown or ambiguous names and
    broken contracts fail here), asks the components whether they can run here
    (``check_installed``; the backend's is skipped without a backend or when its engines run in
    Ray actors, which check there), and records ``[runtime]`` for this process.
    """
    from skyrl_core import runtime
    from skyrl_core.components import resolve_components

    components = resolve_components(cfg, registry)
    # engines in Ray actors check their own installation there (another node may differ)
    check_installed(components, with_backend=with_backend and cfg.runtime.mode != "ray")
    runtime.configure(cfg.runtime)
    return new_context(cfg, registry, components)


def check_installed(components: RunComponents, *, with_backend: bool = True) -> None:
    """Fail before any training when a selected component cannot run here.

    A component class may declare ``check_installed(config)`` (``skyrl_core.protocols.ChecksInstallation``):
    a cheap check of installed packages (no engine start) that raises ``MissingDependencyError``
    saying what to install, and otherwise returns a one-line status that ``skyrl doctor`` shows.
    """
    from skyrl_core.protocols import ChecksInstallation

    chosen = [components.strategy, *components.trackers] + ([components.backend] if with_backend else [])
    for c in chosen:
        if isinstance(c.impl, ChecksInstallation):
            c.impl.check_installed(c.config)


def prepare_data(cfg: RunConfig, registry: Registry) -> None:
    """Create the data files with ``data.generate`` when they are missing."""
    if not cfg.data.generate:
        return
    paths = [*cfg.data.train, *cfg.data.eval]
    if paths and all(Path(p).exists() for p in paths):
        return
    from skyrl_core.prepare import run_preparer

    out_dir = Path(paths[0]).parent if paths else Path(cfg.run_dir) / "data"
    files = run_preparer(cfg.data.generate, out_dir, dict(cfg.data.generate_options), registry)
    for wanted, split in [(cfg.data.train, "train"), (cfg.data.eval, "eval")]:
        if wanted and split in files and Path(files[split]) != Path(wanted[0]):
            Path(files[split]).replace(wanted[0])


def check_data(cfg: RunConfig, registry: Registry, *, train: bool = True) -> None:
    """Before any model loads: the data files exist and are readable, and every environment their
    rows name (``env_class``, or ``data.default_env_class``) keeps its contract. Unknown names are
    left to row validation, which reports them with the row."""
    from skyrl_core.contracts import check_named
    from skyrl_core.data.rows import check_source

    sources = {"data.train": cfg.data.train if train else [], "data.eval": cfg.data.eval}
    for key, files in sources.items():
        for source in files or []:
            check_source(source, key)
    names = set(cfg.environments)
    for files in sources.values():
        for source in files or []:
            names |= {cfg.data.env_map.get(n, n) for n in _env_classes(source, cfg.data.default_env_class)}
    check_named(registry, Kind.ENVIRONMENT, sorted(n for n in names if registry.providers(Kind.ENVIRONMENT, n)))


def _env_classes(source: str, default: str | None) -> set[str]:
    """The ``env_class`` values of a local data file (reading only that column); empty for hub ids."""
    path = Path(source)
    if not path.is_file():
        return set()
    values: list[Any]
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        schema = pq.read_schema(path)
        values = pq.read_table(path, columns=["env_class"]).column(0).to_pylist() if "env_class" in schema.names else []
        values = values or [None]
    elif path.suffix.lower() == ".jsonl":
        values = []
        with path.open(encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    row = json.loads(line)
                    values.append(row.get("env_class") if isinstance(row, dict) else None)
    else:
        from skyrl_core.data.rows import read_source

        values = [row.get("env_class") for row in read_source(source)]
    return {v if isinstance(v, str) and v else default for v in values} - {None}


def setup_run(cfg: RunConfig, registry: Registry, config_path: str | None = None) -> RunContext:
    """Check, then build everything a training run needs; restore the latest checkpoint when resuming.

    Records the attempt in ``manifest.json`` and prints what a restart found
    (``skyrl_core.notices.restart_notice``). A run whose checkpoint is already at
    ``trainer.steps`` loads nothing: ``run.step`` is then that step and the caller has nothing to train.
    """
    run = open_run(cfg, registry)
    try:
        _build(run, config_path)
    except BaseException as exc:
        if run.manifest is not None:
            run.manifest.fail(exc)
        close_run(run)  # e.g. engines already started in Ray actors
        raise
    return run


def _build(run: RunContext, config_path: str | None) -> None:
    from skyrl_core.data import PromptLoader, load_prompts
    from skyrl_core.manifest import RunManifest, seed_everything
    from skyrl_core.models.loading import load_tokenizer
    from skyrl_core.models.tiny import ensure_model
    from skyrl_core.notices import restart_notice
    from skyrl_core.pipeline import track_prompts
    from skyrl_core.pipeline.collect import sync_weights
    from skyrl_core.sft import run_warm_start

    cfg, registry, components = run.config, run.registry, run.components
    assert components is not None and run.checkpoints is not None
    seed_everything(cfg.run.seed)
    resume_from = run.checkpoints.resolve(cfg.checkpoint.resume)
    state = read_state(resume_from) if resume_from else None
    run.manifest = RunManifest(run.run_dir)
    run.manifest.start(cfg, registry, config_path, resumed_from=resume_from, start_step=state["step"] if state else 0)
    notice = restart_notice(
        run.manifest.previous,
        resume=cfg.checkpoint.resume,
        checkpoints=run.checkpoints.root,
        resumed_from=resume_from,
        state=state,
        target_steps=cfg.trainer.steps,
    )
    if notice:
        print(notice)
    if state is not None:
        run.resumed_from = resume_from
        if int(state["step"]) >= cfg.trainer.steps:  # already complete: nothing to load
            run.step, run.model_path = int(state["step"]), state.get("model_path", cfg.model.path)
            return
    ensure_model(cfg.model)
    prepare_data(cfg, registry)
    check_data(cfg, registry)

    model_path = cfg.model.path
    if cfg.warm_start is not None:
        model_path = str(run_warm_start(run))  # skipped when its export already exists
    if state is not None:
        model_path = state.get("model_path", model_path)
    model = model_for(cfg, model_path)
    run.model_path = model_path
    run.tokenizer = load_tokenizer(model)
    run.strategy = _strategy(run, model)
    run.backend = build_backend(cfg, registry, components.backend, model)

    rows = load_prompts(cfg, registry, run.tokenizer, cfg.data.train, min_rows=cfg.trainer.prompts_per_step)
    loader = PromptLoader(rows, seed=cfg.run.seed, shuffle=cfg.data.shuffle)
    # off-policy modes draw prompts ahead of training; checkpoints then list them as pending
    run.train_loader = track_prompts(loader, cfg.trainer.mode, state)

    if state is not None:
        run.strategy.load_checkpoint(resume_from)
        run.step = int(state["step"])
        run.policy_version = int(state.get("policy_version", run.step))
        run.kl_coef = float(state.get("kl_coef", run.kl_coef))
        run.state = dict(state.get("plugin_state", {}))
        run.train_loader.load_state_dict(state["loader"])
        sync_weights(run, new_version=False)
    # the trackers forget what earlier attempts logged for the steps this one (re)does
    first_step = run.step + 1 if state is not None else 0
    run.trackers = build_trackers(registry, components, run.run_dir, cfg.run.name, first_step=first_step)


def _strategy(run: RunContext, model: Any) -> Any:
    """The run's training strategy for ``model`` (``[strategy]``, placed as ``[runtime]`` says)."""
    components = run.components
    assert components is not None
    return build_strategy(
        run.config,
        run.registry,
        components.strategy,
        model,
        need_ref=components.need_ref,
        need_critic=components.requires_critic,
        total_optimizer_steps=run.plan.total_optimizer_steps,
    )


def export_checkpoint(run: RunContext, checkpoint: Path, target: Path) -> dict[str, Any]:
    """Load ``checkpoint`` into the run's strategy and write it to ``target`` as a Hugging Face
    folder (``skyrl export``, and a finished run whose export is missing). Returns its trainer state."""
    from skyrl_core.models.loading import load_tokenizer

    state = read_state(checkpoint)
    model = model_for(run.config, state.get("model_path") or run.config.model.path)
    strategy = _strategy(run, model)
    strategy.load_checkpoint(checkpoint)
    strategy.export_hf(target, load_tokenizer(model))
    return state


def close_run(run: RunContext) -> None:
    """Stop the pipeline, trackers, backend, loop and Ray actors of a run, in that order.

    Each step runs even when an earlier one fails; a failure here is printed as a warning and
    never replaces the error that ended the run (e.g. a broken backend's ``shutdown``).
    """
    from skyrl_core import runtime

    steps: list[tuple[str, Callable[[], Any]]] = []
    if run.pipeline is not None:
        steps.append(("stopping the pipeline", run.pipeline.close))
    steps += [(f"closing the tracker {type(t).__name__}", t.close) for t in run.trackers]
    if run.backend is not None:
        steps.append(("shutting the backend down", run.backend.shutdown))
    if run.loop is not None:
        steps.append(("closing the event loop", run.loop.close))  # cancels what is left on it
    steps.append(("stopping Ray actors", runtime.shutdown))  # no-op when local
    for what, step in steps:
        try:
            step()
        except Exception as exc:  # cleanup must not hide what ended the run
            print(f"warning: {what} failed: {type(exc).__name__}: {exc}", file=sys.stderr)


