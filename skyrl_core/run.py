"""``RunContext``: everything one run holds, built once at start-up (``skyrl_core.startup``).

Plugins receive it in their pipeline hooks (``skyrl_run_start``, ``skyrl_collect_rollouts``,
``skyrl_shape_rewards``, ``skyrl_step_end``, ``skyrl_run_end``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from skyrl_core.checkpoint import CheckpointManager
from skyrl_core.config.plan import BatchPlan, make_plan
from skyrl_core.config.schema import RunConfig
from skyrl_core.plugins import Registry

if TYPE_CHECKING:
    from skyrl_core.components import RunComponents
    from skyrl_core.manifest import RunManifest


@attrs.define
class RunContext:
    """The state of a run.

    Attributes:
        config: the validated run config.
        registry: the plugin registry of this process.
        run_dir: where metrics, checkpoints, exports and plots go.
        plan: the derived batch plan.
        components: the run's components, resolved once (``skyrl_core.components``).
        model_path: the model the RL phase starts from (after a warm start, its export).
        tokenizer: the Hugging Face tokenizer.
        backend: the inference backend (``InferenceBackend``).
        strategy: the training strategy (``TrainingStrategy``).
        train_loader: the stateful prompt loader (``draw(k, ticket)``).
        trackers: metric trackers.
        checkpoints: the checkpoint manager.
        step: the last finished training step (0 before the first).
        policy_version: increments at every weight sync.
        kl_coef: the current KL coefficient (changes with the adaptive controller).
        loop: the run's event loop (``skyrl_core.pipeline.LoopThread``): generation runs on it.
        pipeline: where each step's rollouts come from (``skyrl_core.pipeline.Pipeline``).
        state: free-form state that plugins may keep across steps (saved in checkpoints
            when JSON-serialisable).
        timings: this step's ``timing/<phase>`` seconds (``timer``).
        manifest: the run's ``manifest.json`` (``skyrl_core.manifest.RunManifest``), which
            records every attempt and the last step each one logged.
        resumed_from: the checkpoint this attempt resumed from (None when it started at step 0).
    """

    config: RunConfig
    registry: Registry
    run_dir: Path
    plan: BatchPlan
    components: RunComponents | None = None
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
    loop: Any = None
    pipeline: Any = None
    state: dict[str, Any] = attrs.field(factory=dict)
    timings: dict[str, float] = attrs.field(factory=dict)
    manifest: RunManifest | None = None
    resumed_from: Path | None = None

    def section(self, name: str) -> Any:
        """A plugin-owned config section (``[name]``), or None when absent."""
        return self.config.sections.get(name)

    @contextmanager
    def timer(self, name: str) -> Iterator[None]:
        """Add the elapsed seconds of the block to ``timings['timing/<name>']``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            key = f"timing/{name}"
            self.timings[key] = self.timings.get(key, 0.0) + time.perf_counter() - start

    def log(self, metrics: dict[str, float], step: int) -> None:
        """Send metrics to every tracker, then note the step in the manifest (``last_step``)."""
        for tracker in self.trackers:
            tracker.log(metrics, step)
        if self.manifest is not None:
            self.manifest.update(last_step=step)


def new_context(cfg: RunConfig, registry: Registry, components: RunComponents | None = None) -> RunContext:
    """A context with the run directory created and nothing built yet."""
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return RunContext(
        config=cfg,
        registry=registry,
        run_dir=run_dir,
        plan=make_plan(cfg),
        components=components,
        checkpoints=CheckpointManager(run_dir, cfg.checkpoint.keep_last),
        kl_coef=cfg.algorithm.kl.coef,
    )
