"""Asynchronous training: generation overlaps training (``[trainer] mode``, docs/async.md).

* ``sync`` (default): the loop of ``skyrl_core.trainer`` as written; nothing here runs.
* ``one_step_off`` (``OneStepOff``): the next step's rollouts are collected in the
  background while the current step trains; samples are exactly one version old.
* ``async`` (``AsyncPipeline``): prompt groups are generated continuously into a buffer;
  each step takes groups at most ``max_staleness`` versions old.

The trainer asks for three things and otherwise runs as in ``sync`` mode::

    run.loop = event_loop(cfg)                  # a LoopThread in the off-policy modes
    run.train_loader = track_prompts(loader, mode, resume_state)
    run.pipeline = start_pipeline(run)          # after the first weight sync; None in sync
    ...
    rollouts = run.pipeline.next_batch()        # instead of collect_rollouts(run)
    run.pipeline.sync_weights()                 # instead of sync_weights(run)

Pieces: ``loop`` (the event loop in a thread of its own), ``prompts`` (pending-prompt
bookkeeping for resume), ``gate`` (no request runs while weights are written),
``one_step_off`` and ``asynchronous`` (the two modes).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from typing import Any

from skyrl_core.errors import SkyrlError
from skyrl_core.pipeline.loop import LoopThread
from skyrl_core.pipeline.prompts import TrackedLoader, track_prompts
from skyrl_core.rollout import Trajectory

__all__ = [
    "LoopThread",
    "TrackedLoader",
    "event_loop",
    "staleness_metrics",
    "start_pipeline",
    "startup_warnings",
    "track_prompts",
]


def event_loop(cfg: Any) -> Any:
    """The run's event loop: a plain one in ``sync`` mode, a ``LoopThread`` otherwise."""
    return asyncio.new_event_loop() if cfg.trainer.mode == "sync" else LoopThread()


def staleness_metrics(trajectories: Sequence[Trajectory], version: int) -> dict[str, float]:
    """``rollout/staleness/mean`` and ``/max``: how many versions each sample's weights lag behind
    ``version`` (the weights the step trains from)."""
    lags = [version - t.policy_version for t in trajectories]
    if not lags:
        return {}
    return {"rollout/staleness/mean": sum(lags) / len(lags), "rollout/staleness/max": float(max(lags))}


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


def start_pipeline(run: Any) -> Any:
    """The background generation for ``[trainer] mode`` (None in ``sync`` mode)."""
    cfg = run.config
    mode = cfg.trainer.mode
    if mode == "sync":
        return None
    for line in startup_warnings(cfg):
        print(f"warning: {line}", file=sys.stderr)
    if not isinstance(run.loop, LoopThread):
        raise SkyrlError(f"[trainer] mode = {mode!r} needs run.loop = event_loop(cfg) (a LoopThread)")
    if mode == "one_step_off":
        from skyrl_core.pipeline.one_step_off import OneStepOff

        return OneStepOff(run)
    if cfg.trainer.in_flight == "abort" and not getattr(run.backend.capabilities, "abort", False):
        raise SkyrlError(
            f"[trainer] in_flight = 'abort': the {cfg.backend.name!r} backend cannot abort running requests "
            "(its capabilities.abort is false). Use in_flight = 'finish', or a backend that implements "
            "abort_requests()."
        )
    from skyrl_core.pipeline.asynchronous import AsyncPipeline

    return AsyncPipeline(run)
