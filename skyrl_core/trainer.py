"""The RL training loop: one controller, read top to bottom.

    skyrl train examples/quickstart.toml                 # CPU quickstart
    skyrl train my_run.toml trainer.lr=1e-6 run.name=x   # dotted overrides

One step (``rl_step``, DESIGN.md section 4):

1. rollouts: ``prompts_per_step`` prompts x ``samples_per_prompt`` samples through the
   environments, from the run's pipeline (generated now in ``sync`` mode, in the background
   in ``one_step_off`` and ``async``; plugins may take over collection, e.g. DAPO's dynamic
   sampling);
2. reward shaping hooks (inside sampling), then ``[algorithm] zero_variance_filter``;
3. old log-probs (or the rollout log-probs), reference log-probs, critic values;
4. optional KL penalty in the reward, then advantages;
5. policy (and critic) updates over mini-batches and epochs;
6. weight sync to the inference backend.

The loop (``train``) runs steps, with evaluation, metrics and checkpoints between them.
Everything before the first step (checks, data, warm start, models, resume) is in
``skyrl_core.startup``; the CLI entry points are in ``skyrl_core.commands``.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any

import attrs
import torch

from skyrl_core.algorithms.masked import masked_mean
from skyrl_core.algorithms.offpolicy import mismatch_metrics
from skyrl_core.batches import (
    attach_reduction_weights,
    compute_advantages,
    filter_zero_variance,
    mean_metrics,
    penalise_rewards_with_kl,
    rollouts_to_batch,
    split_minibatches,
)
from skyrl_core.config.schema import RunConfig
from skyrl_core.losses import make_policy_loss_fn, make_value_loss_fn
from skyrl_core.notices import failure_warning, warn
from skyrl_core.pipeline import LoopThread, start_pipeline
from skyrl_core.pipeline.collect import generate_rows, sync_weights
from skyrl_core.plugins import Registry
from skyrl_core.run import RunContext
from skyrl_core.startup import close_run, export_checkpoint, setup_run

MISMATCH_PROMPTS = 8


# -- one step, in order ----------------------------------------------------------------------


def rl_step(run: RunContext) -> dict[str, float]:
    """Generate, score, compute advantages, update, sync. Returns the step's metrics."""
    cfg, algo, strategy, parts = run.config, run.config.algorithm, run.strategy, run.components
    assert parts is not None
    temperature = cfg.generator.temperature
    metrics: dict[str, float] = {}

    # 1-2. rollouts (reward shaping and group filtering happen inside); generated now, or in the
    # background while earlier steps trained, as [trainer] mode says (skyrl_core.pipeline)
    rollouts = run.pipeline.next_batch()
    metrics.update(rollouts.metrics)
    warn(failure_warning(rollouts.trajectories, f"step {run.step + 1}", rollouts.metrics.get("rollout/env_errors")))
    batch, group_ids = rollouts_to_batch(rollouts)
    batch, group_ids, filtered = filter_zero_variance(batch, group_ids, algo)
    metrics.update(filtered)
    if len(batch) == 0:  # every group was dropped: nothing to learn from this step
        metrics.update(run.pipeline.sync_weights())
        return metrics
    mask = batch.tensors["loss_mask"]

    # 3. old log-probs (or, on-policy, from the update's own forward pass), reference log-probs, values
    num_minibatches = math.ceil(len(set(group_ids.tolist())) / run.plan.prompts_per_minibatch)
    fused = old_logprobs_from_update(cfg, num_minibatches)
    metrics["policy/old_logprobs_from_update"] = float(fused)
    if not fused:
        with run.timer("old_logprobs"):
            if algo.use_rollout_logprobs:
                batch.tensors["old_logprobs"] = batch.tensors["rollout_logprobs"].clone()
            else:
                batch.tensors["old_logprobs"] = strategy.forward(batch, temperature=temperature).logprobs.float().cpu()
        mismatch = mismatch_metrics(batch.tensors["old_logprobs"], batch.tensors["rollout_logprobs"], mask)
        metrics.update({f"policy/rollout_{k}": float(v) for k, v in mismatch.items()})
    if parts.need_ref:
        with run.timer("ref_logprobs"):
            batch.tensors["ref_logprobs"] = (
                strategy.forward(batch, role="ref", temperature=temperature).logprobs.float().cpu()
            )
    if parts.requires_critic:
        with run.timer("values"):
            batch.tensors["old_values"] = strategy.forward(batch, role="critic").values.float().cpu()

    # 4. KL in the reward, then advantages
    if algo.kl.mode == "reward":
        metrics.update(penalise_rewards_with_kl(batch, algo, run.kl_coef))
    metrics.update(compute_advantages(parts.estimator.impl, parts.estimator.config, batch, group_ids))

    # 5. policy (and critic) updates over mini-batches and epochs
    norm_tokens = run.plan.loss_norm_tokens
    loss_fn = make_policy_loss_fn(
        parts.policy_loss.impl, parts.policy_loss.config, algo, norm_tokens, run.kl_coef, old_from_forward=fused
    )
    value_fn = make_value_loss_fn(algo, norm_tokens) if parts.requires_critic else None
    shuffle = shuffle_generator(run)
    updates: list[dict[str, float]] = []
    with run.timer("update"):
        for _ in range(cfg.trainer.epochs_per_step):
            for indices in split_minibatches(group_ids, run.plan.prompts_per_minibatch, shuffle):
                mini = batch.select(indices)
                attach_reduction_weights(mini, group_ids[indices], algo, norm_tokens)
                m = strategy.train_step(mini, loss_fn, temperature=temperature, need_entropy=True)
                if value_fn is not None:
                    m.update(strategy.train_step(mini, value_fn, role="critic"))
                updates.append(m)
    for key, value in mean_metrics(updates).items():
        metrics[key if "/" in key else f"policy/{key}"] = value
    if algo.kl.adaptive and "policy/kl_ref" in metrics:
        run.kl_coef = adaptive_kl(run.kl_coef, metrics["policy/kl_ref"], algo.kl, run.plan.sequences_per_step)
    if parts.need_ref and algo.kl.update_ref_every_epoch and ref_update_due(run):
        strategy.reset_ref()  # a ResetsReference (checked when the components were resolved)
        metrics["policy/ref_updated"] = 1.0

    # 6. weight sync (background generation first stops where no request runs)
    metrics.update(run.pipeline.sync_weights())
    return metrics


def shuffle_generator(run: RunContext) -> torch.Generator:
    """The generator that orders a step's mini-batches (seeded by the run's seed and the step)."""
    return torch.Generator().manual_seed(run.config.run.seed * 100003 + run.step)


def old_logprobs_from_update(cfg: Any, num_minibatches: int) -> bool:
    """Whether this step takes its old log-probs from the update's forward pass
    (``[trainer] old_logprobs_from_update``): only when that is exact, i.e. no optimizer step runs
    before the update's forward pass sees each sequence (one mini-batch, one epoch), and nothing
    needs the old log-probs before the update (KL in the reward) or takes them from elsewhere
    (``use_rollout_logprobs``)."""
    algo = cfg.algorithm
    return (
        cfg.trainer.old_logprobs_from_update
        and num_minibatches == 1
        and cfg.trainer.epochs_per_step == 1
        and algo.kl.mode != "reward"
        and not algo.use_rollout_logprobs
    )


def ref_update_due(run: RunContext) -> bool:
    """``[algorithm.kl] update_ref_every_epoch``: the step now ending completes an epoch of prompts
    (every ``len(train data) // prompts_per_step`` steps) and is not the run's last."""
    done, t = run.step + 1, run.config.trainer
    per_epoch = max(1, len(run.train_loader) // t.prompts_per_step)
    return done % per_epoch == 0 and done < t.steps


def adaptive_kl(coef: float, current: float, kl_cfg: Any, n_steps: int) -> float:
    """Ziegler et al. (2019): move the coefficient so the KL tracks ``target``."""
    from skyrl_core.algorithms.kl import AdaptiveKLController

    ctl = AdaptiveKLController(coef, kl_cfg.target, kl_cfg.horizon)
    ctl.update(current, n_steps)
    return float(ctl.value)


# -- the loop --------------------------------------------------------------------------------


def train(cfg: RunConfig, registry: Registry, config_path: str | None = None) -> dict[str, float]:
    """Run RL training; return the last logged metrics (none when the run was already complete)."""
    from tqdm import tqdm

    run = setup_run(cfg, registry, config_path)
    assert run.manifest is not None
    if run.step >= cfg.trainer.steps:  # already complete (setup_run said so and loaded nothing)
        return finish_complete_run(run)
    run.loop = LoopThread()  # the run's event loop, served by a thread of its own (every mode)
    last: dict[str, float] = {}
    try:
        registry.hook.skyrl_run_start(run=run)
        if run.step == 0:
            sync_weights(run)
            start = mismatch_gate(run, cfg.trainer.mismatch_warn_threshold)
            if cfg.eval.before_train:
                start.update(eval_step(run, 0))
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
                metrics.update(eval_step(run, run.step))
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
        run.manifest.end("completed")
        return last
    except BaseException as exc:
        run.manifest.fail(exc)
        raise
    finally:
        close_run(run)


def finish_complete_run(run: RunContext) -> dict[str, float]:
    """A re-run of a finished run trains nothing; it only writes the export if it is missing
    (e.g. the process was killed while exporting)."""
    export = run.run_dir / "export"
    assert run.manifest is not None and run.resumed_from is not None
    try:
        if run.config.checkpoint.export_at_end and not export.exists():
            export_checkpoint(run, run.resumed_from, export)
            print(f"the export was missing: wrote step {run.step} to {export}")
        run.manifest.end("already_complete")
    except BaseException as exc:
        run.manifest.fail(exc)
        raise
    finally:
        close_run(run)
    return {}


# -- between steps: evaluation, checkpoints, the start-up check ----------------------------


def eval_step(run: RunContext, step: int) -> dict[str, float]:
    """Evaluate ``data.eval`` with the backend's current weights (``eval/`` metrics)."""
    from skyrl_core.evaluation import run_eval

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
    assert run.checkpoints is not None
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
    cfg = run.config
    rows = run.train_loader.peek_rows(min(MISMATCH_PROMPTS, len(run.train_loader)))
    small = attrs.evolve(
        cfg, generator=attrs.evolve(cfg.generator, max_new_tokens=min(32, cfg.generator.max_new_tokens))
    )
    batch = generate_rows(run, rows, 1, small, lend=True)
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
