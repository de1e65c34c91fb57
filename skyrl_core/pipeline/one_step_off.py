"""``[trainer] mode = "one_step_off"``: step k+1's rollouts are collected while step k trains.

Timeline (``v`` is the backend's policy version, ``g`` generation, ``t`` training)::

    sync:          g1(v0) t1 sync | g2(v1) t2 sync | g3(v2) t3 sync
    one_step_off:  g1(v0) t1 ------ sync t2 ------ sync t3 ...
                          g2(v0) -/      g3(v1) -/

A step takes the batch collected in the background, starts collecting the next one with
the weights it has now (so the next step trains on samples exactly one version old), and
trains. Before its weight sync it waits for that collection to end: every sample of a batch
comes from one version, and no request runs while the weights are written (see ``gate``
for why that matters). A step then lasts about max(generation, training) + sync.

Collection is ``collect_rollouts`` (``skyrl_core.pipeline.collect``, as in ``sync`` mode) run
on a background thread, so the ``skyrl_collect_rollouts`` and ``skyrl_shape_rewards`` hooks
work as in ``sync`` mode (DAPO's dynamic sampling included); they run on that thread while
the step before trains. Each collection draws its prompts under a ticket of its own, passed
down as an argument.
"""

from __future__ import annotations

import concurrent.futures
import time
from typing import Any

from skyrl_core.pipeline.collect import collect_rollouts, sample_rollouts, staleness_metrics, sync_weights
from skyrl_core.pipeline.prompts import TrackedLoader
from skyrl_core.rollout import RolloutBatch


class OneStepOff:
    """The background collection of one batch ahead (see the module docstring).

    Args:
        run: the ``RunContext``; ``run.train_loader`` must be a ``TrackedLoader`` and
            ``run.loop`` a ``LoopThread``.
    """

    def __init__(self, run: Any) -> None:
        if not isinstance(run.train_loader, TrackedLoader):
            raise TypeError("OneStepOff needs run.train_loader to be a TrackedLoader (see track_prompts)")
        self.run = run
        self.loader: TrackedLoader = run.train_loader
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="skyrl-rollouts")
        self._next: concurrent.futures.Future[tuple[RolloutBatch, int, float]] | None = None
        self._tickets = 0

    def _collect(self, ticket: int) -> tuple[RolloutBatch, int, float]:
        run = self.run
        start = time.perf_counter()
        batch = collect_rollouts(run, lambda k: sample_rollouts(run, k, ticket))  # rows belong to this ticket
        return batch, ticket, time.perf_counter() - start

    def _start(self) -> None:
        self._tickets += 1
        self._next = self._executor.submit(self._collect, self._tickets)

    def next_batch(self) -> RolloutBatch:
        """This step's rollouts (collected in the background, or now for the first step); starts
        collecting the next step's. Adds ``timing/generate`` and ``timing/wait_rollouts``."""
        run = self.run
        if self._next is None:
            self._start()
        assert self._next is not None
        with run.timer("wait_rollouts"):
            batch, ticket, seconds = self._next.result()
        self._next = None
        self.loader.release(ticket)
        run.timings["timing/generate"] = seconds
        batch.metrics.update(staleness_metrics(batch.trajectories, run.policy_version))
        if run.step + 2 <= run.config.trainer.steps:  # a step after this one: collect its rollouts now
            self._start()
        return batch

    def sync_weights(self) -> dict[str, float]:
        """Wait for the running collection, then sync (``timing/weight_sync`` is the sync alone)."""
        run = self.run
        if self._next is not None:
            with run.timer("wait_rollouts"):
                concurrent.futures.wait([self._next])
        with run.timer("weight_sync"):
            return sync_weights(run)

    def close(self) -> None:
        """Stop collecting (a running collection ends when the loop closes; nothing waits for it)."""
        self._executor.shutdown(wait=False, cancel_futures=True)
