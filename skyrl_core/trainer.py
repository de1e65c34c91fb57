"""The RL training loop: one controller, read top to bottom.

    skyrl train examples/quickstart.toml                 # CPU quickstart
    skyrl train my_run.toml trainer.lr=1e-6 run.name=x   # dotted overrides

One step (DESIGN.md section 4):

1. rollouts: ``prompts_per_step`` prompts x ``samples_per_prompt`` samples through the
   environments (plugins may take over collection, e.g. DAPO's dynamic sampling);
2. reward shaping hooks (inside sampling);
3. old log-probs (or the rollout log-probs), reference log-probs, critic values;
4. optional KL penalty in the reward, then advantages;
5. policy (and critic) updates over mini-batches and epochs;
6. weight sync to the inference backend; eval; checkpoint; metrics.

With ``[trainer] mode = "one_step_off"`` or ``"async"`` the rollouts (items 1-2) are
generated in the background while earlier steps train (``skyrl_core.pipeline``,
docs/async.md); the rest of the step is the same.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import torch

from skyrl_core.algorithms.masked import masked_mean
from skyrl_core.algorithms.offpolicy import mismatch_metrics
from skyrl_core.batches import (
    compute_advantages,
    mean_metrics,
    penalise_rewards_with_kl,
    rollouts_to_batch,
    split_minibatches,
)
from skyrl_core.checkpoint import read_state
from skyrl_core.config.loader import load_config
from skyrl_core.config.schema import RunConfig
from skyrl_core.errors import SkyrlError
from skyrl_core.losses import make_policy_loss_fn, make_value_loss_fn
from skyrl_core.pipeline import LoopThread, start_pipeline, track_prompts
from skyrl_core.pipeline.collect import sync_weights
from skyrl_core.plugins import Registry, build_registry
from skyrl_core.run import RunContext, new_context, seed_everything, write_manifest
from skyrl_core.specs import Kind

MISMATCH_PROMPTS = 8


# -- entry points ----------------------------------------------------------------------------


def _registry() -> Registry:
    registry = build_registry()
    registry.raise_on_conflicts()
    for p in registry.failed():
        print(f"warning: plugin {p.describe()} failed to load: {p.error}", file=sys.stderr)
    return registry


def train_main(path: str, overrides: Sequence[str]) -> int:
    """``skyrl train``."""
    registry = _registry()
    cfg = load_config(path, overrides, registry)
    train(cfg, registry, config_path=path)
    return 0


def eval_main(path: str, overrides: Sequence[str]) -> int:
    """``skyrl eval``: evaluate ``[model] path`` on ``data.eval``."""
    from skyrl_core.evaluate import run_eval
    from skyrl_core.models.tiny import ensure_model

    registry = _registry()
    cfg = load_config(path, overrides, registry)
    ensure_model(cfg.model)
    check_backend_installed(cfg, registry)  # before a warm start that would be wasted
    prepare_data(cfg, registry)
    check_data_sources(cfg)
    metrics = run_eval(cfg, registry, show_progress=True)
    for key in sorted(metrics):
        print(f"{key:<40} {metrics[key]:.4f}")
    return 0


def sft_main(path: str, overrides: Sequence[str]) -> int:
    """``skyrl sft``: run only the ``[warm_start]`` phase and export the result."""
    from skyrl_core.sft import run_warm_start

    registry = _registry()
    cfg = load_config(path, overrides, registry)
    if cfg.warm_start is None:
        raise SkyrlError(f"{path}: `skyrl sft` needs a [warm_start] section (data, steps, batch_size, lr)")
    run = _new_context(cfg, registry)
    out = run_warm_start(run)
    print(f"supervised model written to {out}")
    return 0


def export_main(path: str, overrides: Sequence[str], checkpoint: str | None = None, out: str | None = None) -> int:
    """``skyrl export``: write a Hugging Face folder from a checkpoint (default: the latest)."""
    registry = _registry()
    cfg = load_config(path, overrides, registry)
    run = _new_context(cfg, registry)
    ckpt = Path(checkpoint) if checkpoint else run.checkpoints.latest()
    if ckpt is None:
        raise SkyrlError(f"no checkpoint found under {run.checkpoints.root}; pass --checkpoint PATH")
    state = read_state(ckpt)
    build_components(run, model_path=state.get("model_path") or cfg.model.path, with_backend=False)
    run.strategy.load_checkpoint(ckpt)
    target = Path(out) if out else run.run_dir / "export"
    run.strategy.export_hf(target, run.tokenizer)
    print(f"exported step {state['step']} from {ckpt} to {target}")
    return 0


# -- setup -----------------------------------------------------------------------------------


def _new_context(cfg: RunConfig, registry: Registry) -> RunContext:
    """``new_context`` plus recording ``[runtime]`` (Ray starts only when a component needs it)."""
    from skyrl_core import runtime

    runtime.configure(cfg.runtime)
    return new_context(cfg, registry)


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


def build_components(run: RunContext, model_path: str, with_backend: bool = True) -> None:
    """Tokenizer, strategy and (optionally) backend for ``model_path``."""
    from skyrl_core.models.loading import load_tokenizer

    cfg = run.config
    model_cfg = attrs.evolve(cfg.model, path=model_path, tiny=None)
    run.model_path = model_path
    run.tokenizer = load_tokenizer(model_cfg)
    algo = cfg.algorithm
    strategy_cls = run.registry.get(Kind.STRATEGY, cfg.strategy.name).load()
    run.strategy = strategy_cls(
        run.component_config(Kind.STRATEGY, cfg.strategy.name, cfg.strategy.config),
        model=model_cfg,
        trainer=cfg.trainer,
        seed=cfg.run.seed,
        need_ref=algo.kl.mode != "none",
        need_critic=needs_critic(run),
        total_optimizer_steps=run.plan.total_optimizer_steps,
    )
    if with_backend:
        backend_config = run.component_config(Kind.BACKEND, cfg.backend.name, cfg.backend.config)
        if cfg.runtime.mode == "ray":  # the backend runs in Ray actors; this object drives them
            from skyrl_core.runtime.engine import RayBackend

            run.backend = RayBackend(cfg.backend.name, backend_config, model=model_cfg, seed=cfg.run.seed)
        else:
            backend_cls = run.registry.get(Kind.BACKEND, cfg.backend.name).load()
            run.backend = backend_cls(backend_config, model=model_cfg, seed=cfg.run.seed)


def check_backend_installed(cfg: RunConfig, registry: Registry) -> None:
    """Fail before any training when the selected backend cannot run here.

    A backend class may define ``check_installed(config)`` (a static or class method taking
    its validated ``[backend]`` options) that raises ``MissingDependencyError`` when a package
    it needs is missing; it must be cheap (no engine start, ideally no heavy import). Backends
    run inside Ray actors (``[runtime] mode = "ray"``) are checked there instead.
    """
    if cfg.runtime.mode == "ray":
        return
    from skyrl_core.config.loader import component_config

    backend_cls = registry.get(Kind.BACKEND, cfg.backend.name).load()
    check = getattr(backend_cls, "check_installed", None)
    if callable(check):
        check(component_config(registry, Kind.BACKEND, cfg.backend.name, cfg.backend.config))


def check_data_sources(cfg: RunConfig) -> None:
    """Missing or unsupported data files fail here, before a warm start (hub names are read later)."""
    from skyrl_core.data.rows import check_source

    for key, sources in (("data.train", cfg.data.train), ("data.eval", cfg.data.eval)):
        for source in sources or []:
            check_source(source, key)


def needs_critic(run: RunContext) -> bool:
    """Whether the selected advantage estimator declares ``requires_critic = True`` (e.g. gae)."""
    estimator = run.registry.get(Kind.ADVANTAGE_ESTIMATOR, run.config.algorithm.advantage.name).load()
    return bool(getattr(estimator, "requires_critic", False))


def build_trackers(run: RunContext) -> None:
    run_config = {"name": run.config.run.name}
    for name in run.config.tracking.trackers:
        cls = run.registry.get(Kind.TRACKER, name).load()
        opts = run.config.tracking.options.get(name) or run.component_config(Kind.TRACKER, name, None)
        run.trackers.append(cls(opts, run_dir=run.run_dir, run_config=run_config))


def setup_run(cfg: RunConfig, registry: Registry, config_path: str | None = None) -> RunContext:
    """Build everything a run needs and restore the latest checkpoint when resuming."""
    from skyrl_core.data import PromptLoader, load_prompts
    from skyrl_core.models.tiny import ensure_model
    from skyrl_core.sft import run_warm_start

    run = _new_context(cfg, registry)
    seed_everything(cfg.run.seed)
    write_manifest(run.run_dir, cfg, registry, config_path)
    ensure_model(cfg.model)
    check_backend_installed(cfg, registry)  # before a warm start that would be wasted
    prepare_data(cfg, registry)
    check_data_sources(cfg)

    resume_from = run.checkpoints.resolve(cfg.checkpoint.resume)
    state = read_state(resume_from) if resume_from else None

    model_path = cfg.model.path
    if cfg.warm_start is not None:
        model_path = str(run_warm_start(run))  # skipped when its export already exists
    if state is not None:
        model_path = state.get("model_path", model_path)
    build_components(run, model_path)

    rows = load_prompts(cfg, registry, run.tokenizer, cfg.data.train, min_rows=cfg.trainer.prompts_per_step)
    run.train_loader = PromptLoader(rows, seed=cfg.run.seed, shuffle=cfg.data.shuffle)
    # off-policy modes draw prompts ahead of training; checkpoints then list them as pending
    run.train_loader = track_prompts(run.train_loader, cfg.trainer.mode, state)

    if state is not None:
        run.strategy.load_checkpoint(resume_from)
        run.step = int(state["step"])
        run.policy_version = int(state.get("policy_version", run.step))
        run.kl_coef = float(state.get("kl_coef", run.kl_coef))
        run.state = dict(state.get("plugin_state", {}))
        run.train_loader.load_state_dict(state["loader"])
        print(f"resumed from {resume_from} at step {run.step} (data position {state['loader']})")
        sync_weights(run, new_version=False)
    build_trackers(run)
    return run


# -- one step, in order ----------------------------------------------------------------------


def rl_step(run: RunContext) -> dict[str, float]:
    """Generate, score, compute advantages, update, sync. Returns the step's metrics."""
    cfg, algo, strategy = run.config, run.config.algorithm, run.strategy
    temperature = cfg.generator.temperature
    metrics: dict[str, float] = {}

    # 1-2. rollouts (reward shaping and group filtering happen inside); generated now, or in the
    # background while earlier steps trained, as [trainer] mode says (skyrl_core.pipeline)
    rollouts = run.pipeline.next_batch()
    metrics.update(rollouts.metrics)
    batch, group_ids = rollouts_to_batch(rollouts)
    mask = batch.tensors["loss_mask"]

    # 3. old log-probs, reference log-probs, values
    with run.timer("old_logprobs"):
        if algo.use_rollout_logprobs:
            batch.tensors["old_logprobs"] = batch.tensors["rollout_logprobs"].clone()
        else:
            batch.tensors["old_logprobs"] = strategy.forward(batch, temperature=temperature).logprobs.float().cpu()
    mismatch = mismatch_metrics(batch.tensors["old_logprobs"], batch.tensors["rollout_logprobs"], mask)
    metrics.update({f"policy/rollout_{k}": float(v) for k, v in mismatch.items()})
    if algo.kl.mode != "none":
        with run.timer("ref_logprobs"):
            batch.tensors["ref_logprobs"] = (
                strategy.forward(batch, role="ref", temperature=temperature).logprobs.float().cpu()
            )
    if needs_critic(run):
        with run.timer("values"):
            batch.tensors["old_values"] = strategy.forward(batch, role="critic").values.float().cpu()

    # 4. KL in the reward, then advantages
    if algo.kl.mode == "reward":
        metrics.update(penalise_rewards_with_kl(batch, algo, run.kl_coef))
    estimator = run.registry.get(Kind.ADVANTAGE_ESTIMATOR, algo.advantage.name).load()
    est_cfg = run.component_config(Kind.ADVANTAGE_ESTIMATOR, algo.advantage.name, algo.advantage.config)
    metrics.update(compute_advantages(estimator, est_cfg, batch, group_ids))

    # 5. policy (and critic) updates over mini-batches and epochs
    policy_loss = run.registry.get(Kind.POLICY_LOSS, algo.policy_loss.name).load()
    loss_cfg = run.component_config(Kind.POLICY_LOSS, algo.policy_loss.name, algo.policy_loss.config)
    norm_tokens = algo.loss_norm_tokens or (cfg.data.max_prompt_tokens + cfg.generator.max_total_tokens)
    loss_fn = make_policy_loss_fn(policy_loss, loss_cfg, algo, norm_tokens, run.kl_coef)
    value_fn = make_value_loss_fn(algo, norm_tokens) if needs_critic(run) else None
    shuffle = torch.Generator().manual_seed(cfg.run.seed * 100003 + run.step)
    updates: list[dict[str, float]] = []
    with run.timer("update"):
        for _ in range(cfg.trainer.epochs_per_step):
            for indices in split_minibatches(group_ids, run.plan.prompts_per_minibatch, shuffle):
                mini = batch.select(indices)
                m = strategy.train_step(mini, loss_fn, temperature=temperature, need_entropy=True)
                if value_fn is not None:
                    m.update(strategy.train_step(mini, value_fn, role="critic"))
                updates.append(m)
    for key, value in mean_metrics(updates).items():
        metrics[key if "/" in key else f"policy/{key}"] = value
    if algo.kl.adaptive and "policy/kl_ref" in metrics:
        run.kl_coef = adaptive_kl(run.kl_coef, metrics["policy/kl_ref"], algo.kl, run.plan.sequences_per_step)

    # 6. weight sync (background generation first stops where no request runs)
    metrics.update(run.pipeline.sync_weights())
    return metrics


def adaptive_kl(coef: float, current: float, kl_cfg: Any, n_steps: int) -> float:
    """Ziegler et al. (2019): move the coefficient so the KL tracks ``target``."""
    from skyrl_core.algorithms.kl import AdaptiveKLController

    ctl = AdaptiveKLController(coef, kl_cfg.target, kl_cfg.horizon)
    ctl.update(current, n_steps)
    return float(ctl.value)


def evaluate(run: RunContext, step: int) -> dict[str, float]:
    """Run ``data.eval`` with the backend's current weights."""
    from skyrl_core.evaluate import run_eval

    if not run.config.data.eval:
        return {}
    with run.timer("eval"):
        return run_eval(
            run.config,
            run.registry,
            backend=run.backend,
            tokenizer=run.tokenizer,
            step=step,
            output_dir=run.run_dir / "eval" / f"step-{step:06d}",
            show_progress=False,
            loop=run.loop,
        )


def save_checkpoint(run: RunContext) -> Path:
    """Atomically write a checkpoint of the current step."""
    state = {
        "policy_version": run.policy_version,
        "kl_coef": run.kl_coef,
        "loader": run.train_loader.state_dict(),
        "model_path": run.model_path,
        "plugin_state": run.state,
    }
    return run.checkpoints.save(run.step, run.strategy.save_checkpoint, state)


def mismatch_gate(run: RunContext, threshold: float) -> dict[str, float]:
    """Compare the backend's log-probs with the trainer's on a few prompts; warn when they differ."""
    from skyrl_core.generator import generate_batch

    cfg = run.config
    rows = run.train_loader.peek_rows(min(MISMATCH_PROMPTS, len(run.train_loader)))
    small = attrs.evolve(
        cfg, generator=attrs.evolve(cfg.generator, max_new_tokens=min(32, cfg.generator.max_new_tokens))
    )
    batch = run.loop.run_until_complete(
        generate_batch(
            rows,
            backend=run.backend,
            tokenizer=run.tokenizer,
            registry=run.registry,
            config=small,
            samples_per_prompt=1,
            policy_version=run.policy_version,
        )
    )
    tb, _ = rollouts_to_batch(batch)
    mask = tb.tensors["loss_mask"]
    trainer_lp = run.strategy.forward(tb, temperature=cfg.generator.temperature).logprobs.float().cpu()
    diff = (trainer_lp - tb.tensors["rollout_logprobs"]).abs() * mask
    mean, worst = float(masked_mean(diff, mask)), float(diff.max()) if diff.numel() else 0.0
    if mean > threshold:
        print(
            f"warning: the backend's log-probs differ from the trainer's by {mean:.4f} on average "
            f"(max {worst:.4f}, threshold {threshold}); check dtype, attention implementation and "
            f"sampling settings, or enable algorithm.tis",
            file=sys.stderr,
        )
    return {"startup/logprob_diff_mean": mean, "startup/logprob_diff_max": worst}


# -- the loop --------------------------------------------------------------------------------


def train(cfg: RunConfig, registry: Registry, config_path: str | None = None) -> dict[str, float]:
    """Run RL training; return the last logged metrics."""
    from tqdm import tqdm

    run = setup_run(cfg, registry, config_path)
    run.loop = LoopThread()  # the run's event loop, served by a thread of its own (every mode)
    last: dict[str, float] = {}
    try:
        registry.hook.skyrl_run_start(run=run)
        if run.step == 0:
            sync_weights(run)
            start = mismatch_gate(run, cfg.trainer.mismatch_warn_threshold)
            if cfg.eval.before_train:
                start.update(evaluate(run, 0))
            run.log(start, 0)
            last = start
        run.pipeline = start_pipeline(run)  # [trainer] mode: generate on demand, or in the background
        bar = tqdm(
            total=cfg.trainer.steps,
            initial=run.step,
            desc="train",
            unit="step",
            file=sys.stdout,
            disable=not sys.stdout.isatty(),
        )
        while run.step < cfg.trainer.steps:
            run.timings = {}
            t0 = time.perf_counter()
            metrics = rl_step(run)
            run.step += 1
            final = run.step == cfg.trainer.steps
            if final or (cfg.eval.every and run.step % cfg.eval.every == 0):
                metrics.update(evaluate(run, run.step))
            metrics.update(run.timings)
            metrics["timing/step"] = time.perf_counter() - t0
            metrics["policy/kl_coef"] = run.kl_coef
            registry.hook.skyrl_step_end(run=run, step=run.step, metrics=metrics)
            # Log before checkpointing: a crash in between repeats the step on resume (its
            # metrics line is then written again and the later one wins), never loses it.
            run.log(metrics, run.step)
            if final or (cfg.checkpoint.every and run.step % cfg.checkpoint.every == 0):
                save_checkpoint(run)
            last = metrics
            bar.update(1)
            bar.set_postfix(reward=f"{metrics.get('reward/mean', math.nan):.3f}")
        bar.close()
        if cfg.checkpoint.export_at_end:
            run.strategy.export_hf(run.run_dir / "export", run.tokenizer)
        if cfg.tracking.plot:
            from skyrl_core.tracking import plot_curves

            plot_curves(run.run_dir / "metrics.jsonl", run.run_dir / "curves.png")
        registry.hook.skyrl_run_end(run=run)
        return last
    finally:
        if run.pipeline is not None:
            run.pipeline.close()
        for tracker in run.trackers:
            tracker.close()
        if run.backend is not None:
            run.backend.shutdown()
        run.loop.close()  # cancels what is left on it (a backend's batching task, abandoned trajectories)
        from skyrl_core import runtime

        runtime.shutdown()  # Ray actors and placement groups of this run (no-op when local)
