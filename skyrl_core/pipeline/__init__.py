"""Where a step's rollouts come from: one interface for every ``[trainer] mode`` (docs/async.md).

Every mode is a ``Pipeline``: the step asks it for the next batch and, after its updates,
for a weight sync; nothing in the step depends on the mode.

* ``sync`` (``SyncPipeline``): the trivial case; the batch is generated when asked for.
* ``one_step_off`` (``OneStepOff``): the next step's rollouts are collected in the
  background while the current step trains; samples are exactly one version old.
* ``async`` (``AsyncPipeline``): prompt groups are generated continuously into a buffer;
  each step takes groups at most ``max_staleness`` versions old.

::

    run.loop = LoopThread()                         # every mode: the run's event loop
    run.train_loader = track_prompts(loader, mode, resume_state)
    run.pipeline = start_pipeline(run)              # after the first weight sync
    rollouts = run.pipeline.next_batch()            # in each step
    metrics = run.pipeline.sync_weights()           # at its end

Pieces: ``collect`` (sampling, collection and weight sync, used by every mode), ``loop``
(the event loop in a thread of its own), ``prompts`` (pending-prompt bookkeeping for
resume), ``gate`` (no request runs while weights are written), and the three modes.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Protocol

from skyrl_core.errors import SkyrlError
from skyrl_core.pipeline.collect import staleness_metrics
from skyrl_core.pipeline.loop import LoopThread
from skyrl_core.pipeline.prompts import TrackedLoader, track_prompts
from skyrl_core.protocols.backend import AbortsRequests
from skyrl_core.rollout import RolloutBatch

if TYPE_CHECKING:
    from skyrl_core.run import RunContext

__all__ = [
    "LoopThread",
    "Pipeline",
    "TrackedLoader",
    "staleness_metrics",
    "start_pipeline",
    "startup_warnings",
    "track_prompts",
]


class Pipeline(Protocol):
    """What the training step asks of its source of rollouts."""

    def next_batch(self) -> RolloutBatch:
        """This step's rollouts (``prompts_per_step`` groups); adds its ``timing/`` entries to
        ``run.timings``."""
        ...

    def sync_weights(self) -> dict[str, float]:
        """Push the trained weights to the backend once nothing generates with the old ones;
        returns the sync's metrics."""
        ...

    def close(self) -> None:
        """Stop whatever runs in the background (idempotent)."""
        ...


def startup_warnings(cfg: Any) -> list[str]:
    """What an off-policy run's config leaves uncorrected (printed at start-up)."""
    mode, algo = cfg.trainer.mode, cfg.algorithm
    if mode == "sync":
        return []
    out = []
    if algo.tis.mode == "off":
        out.append(
            f"[trainer] mode = {mode!r} trains on samples from older weights, but [algorithm.tis] mode = 'off' "
            "was set explicitly, so nothing corrects for the policy lag; remove it to get the default 'token'"
        )
    elif algo.use_rollout_logprobs:
        out.append(
            "[algorithm] use_rollout_logprobs = true makes the engine's (older) log-probs the 'old' policy, so "
            f"[algorithm.tis] has nothing to correct in mode = {mode!r}; PPO's clip then bounds the ratio to the "
            "weights that generated the samples"
        )
    return out


def start_pipeline(run: RunContext) -> Pipeline:
    """The pipeline of ``[trainer] mode``; off-policy ones start generating at once, so call this
    after the first weight sync."""
    cfg = run.config
    mode = cfg.trainer.mode
    if mode == "sync":
        from skyrl_core.pipeline.sync import SyncPipeline

        return SyncPipeline(run)
    for line in startup_warnings(cfg):
        print(f"warning: {line}", file=sys.stderr)
    if mode == "one_step_off":
        from skyrl_core.pipeline.one_step_off import OneStepOff

        return OneStepOff(run)
    can_abort = isinstance(run.backend, AbortsRequests) and run.backend.capabilities.abort
    if cfg.trainer.in_flight == "abort" and not can_abort:
        raise SkyrlError(
            f"[trainer] in_flight = 'abort': the {cfg.backend.name!r} backend cannot abort running requests "
            "(its capabilities.abort is false). Use in_flight = 'finish', or a backend that implements "
            "abort_requests()."
        )
    from skyrl_core.pipeline.asynchronous import AsyncPipeline

    return AsyncPipeline(run)
