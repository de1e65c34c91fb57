"""``[trainer] mode = "async"``: generation runs all the time; steps take groups from a buffer.

On the run's loop thread a producer keeps prompt groups (one prompt x ``samples_per_prompt``
samples) generating through the ``Gate``; each finished group has its rewards shaped
(``skyrl_shape_rewards``) and goes to the buffer, tagged with the policy version it started
with. A step takes ``prompts_per_step`` groups (the oldest versions first) through
``collect_rollouts`` (``skyrl_core.pipeline.collect``), so a ``skyrl_collect_rollouts`` plugin such as DAPO's
dynamic sampling still decides what a batch is: its ``sample(k)`` takes ``k`` groups from
the buffer instead of generating them.

Staleness (``max_staleness = η``, ``P = prompts_per_step``): a group that starts while the
backend holds version ``v`` is consumed, at the latest, by the step that trains with
version ``v + j`` where ``j`` counts the steps whose groups were started before it. So the
producer starts a group only while ``consumed + buffered + running < K + (η + 1)·P`` (``K``:
groups consumed when ``v`` was synced), as AReaL does. Groups finish out of order, so a
step takes ready groups oldest version first, but it overtakes a still-generating group
only if later steps can still take it in time (earliest deadline first: a group of version
``u`` is due at the step of version ``u + η``; see ``_ready_for``); otherwise it waits for
it. With the admission bound this always fits, so no sample is ever trained staler than
``η`` and a slow prompt is never starved. The one way a group can
still fall behind is a ``skyrl_collect_rollouts`` plugin asking for fewer groups at a time
than are due (``sample(k)`` with a small ``k``); such a group is never trained: its prompt
is re-queued and generated again (``rollout/stale_requeued``).

Weight sync (``in_flight``): the gate pauses generation; ``finish`` waits for the running
model calls, ``abort`` cuts them short and continues them with the new weights. A group's
``policy_version`` is the version it started with, the oldest weights that produced any
of its tokens, so staleness is never under-reported.
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Any

import attrs

from skyrl_core.errors import SkyrlError
from skyrl_core.pipeline.collect import collect_rollouts, staleness_metrics, sync_weights
from skyrl_core.pipeline.gate import Gate
from skyrl_core.pipeline.prompts import TrackedLoader
from skyrl_core.rollout import RolloutBatch


@attrs.define
class _Group:
    ticket: int
    version: int
    batch: RolloutBatch
    start: float
    end: float


class AsyncPipeline:
    """The producer and the buffer (see the module docstring).

    Args:
        run: the ``RunContext``; ``run.train_loader`` must be a ``TrackedLoader`` and
            ``run.loop`` a ``LoopThread``.
    """

    def __init__(self, run: Any) -> None:
        if not isinstance(run.train_loader, TrackedLoader):
            raise TypeError("AsyncPipeline needs run.train_loader to be a TrackedLoader (see track_prompts)")
        self.run = run
        self.loader: TrackedLoader = run.train_loader
        t = run.config.trainer
        self.per_step = t.prompts_per_step
        self.group_size = t.samples_per_prompt
        self.max_staleness = t.max_staleness
        self.abort = t.in_flight == "abort"
        self.max_groups = max(1, run.config.generator.max_concurrent // t.samples_per_prompt)
        self.remaining = t.steps - run.step  # steps still to train, as of the last sync
        self.consumed = 0  # groups taken by steps
        self.base = 0  # groups taken when the backend's current weights were synced
        self.buffer: list[_Group] = []
        self.running: collections.Counter[int] = collections.Counter()  # groups generating, by version
        self.wanted = 0  # groups a waiting step still needs beyond the buffer
        self.requeued = 0
        self.error: BaseException | None = None
        self._tickets = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._intervals: list[tuple[float, float]] = []
        run.loop.call(self._setup)
        self._producer = run.loop.submit(self._produce())

    def _setup(self) -> None:  # objects bound to the loop are made on its thread
        from skyrl_core.generator import Generator, sampling_params

        run = self.run
        self.gate = Gate(run.backend, run.tokenizer)
        self.generator = Generator(self.gate, run.tokenizer, run.registry, run.config)
        self.params = sampling_params(run.config, self.generator.chat)
        self.changed = asyncio.Condition()

    # -- producer (loop thread) --------------------------------------------------------------

    def _may_start(self) -> bool:
        running = self.running.total()
        if self.error is not None or not self.gate.is_open or running >= self.max_groups:
            return False
        live = self.consumed + len(self.buffer) + running
        bound = self.base + min(self.max_staleness + 1, self.remaining) * self.per_step
        return live < bound or self.wanted > len(self.buffer) + running

    async def _produce(self) -> None:
        while True:
            async with self.changed:
                await self.changed.wait_for(self._may_start)
                self._tickets += 1
                ticket = self._tickets
                try:
                    row = self.loader.draw(1, ticket)[0]
                except Exception as exc:  # e.g. a data error: handed to the step waiting for the buffer
                    self.error = exc
                    self.changed.notify_all()
                    return
                version = self.run.policy_version  # stable while the gate is open
                self.running[version] += 1
            task = asyncio.get_running_loop().create_task(self._generate(ticket, row, version))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _generate(self, ticket: int, row: Any, version: int) -> None:
        start = time.perf_counter()
        group: _Group | None = None
        try:
            batch = await self.generator.generate([row], self.group_size, params=self.params, policy_version=version)
            self.run.registry.hook.skyrl_shape_rewards(run=self.run, batch=batch)
            group = _Group(ticket, version, batch, start, time.perf_counter())
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # handed to the step waiting for the buffer
            self.error = self.error or exc
        async with self.changed:
            self.running[version] -= 1
            if group is not None:
                self.buffer.append(group)
            self.changed.notify_all()

    # -- the trainer's side ------------------------------------------------------------------

    async def _take(self, k: int) -> list[_Group]:
        async with self.changed:
            try:
                while True:
                    if self.error is not None:
                        raise SkyrlError(f"background generation failed: {type(self.error).__name__}: {self.error}") \
                            from self.error
                    self._requeue_stale()
                    if self._ready_for(k):
                        break
                    self.wanted = k
                    self.changed.notify_all()
                    await self.changed.wait()
            finally:
                self.wanted = 0
            self.buffer.sort(key=lambda g: (g.version, g.ticket))  # oldest first
            taken, self.buffer = self.buffer[:k], self.buffer[k:]
            self.consumed += k
            for g in taken:
                self.loader.release(g.ticket)
            self.changed.notify_all()
        return taken

    def _ready_for(self, k: int) -> bool:
        """``k`` groups are buffered, and none that this step must take is still generating.

        A group of version ``u`` must be trained by the step of version ``u + η``. Steps
        take ``P`` groups each, so of the groups due by step ``V + j`` (version
        ``<= V - η + j``) this step must take all but ``j·P``: the ``m`` oldest groups
        (earliest deadline first). If one of those is still generating, the step waits.
        """
        version, lag, per_step = self.run.policy_version, self.max_staleness, self.per_step
        groups = sorted(
            [(g.version, 0) for g in self.buffer] + [(v, 1) for v, n in self.running.items() for _ in range(n)]
        )  # by version, ready ones first
        must = max(
            [0] + [sum(v <= version - lag + j for v, _ in groups) - j * per_step for j in range(lag + 1)]
        )
        if any(running for _, running in groups[: min(must, k)]):
            return False
        return len(self.buffer) >= k

    def _requeue_stale(self) -> None:
        oldest = self.run.policy_version - self.max_staleness
        stale = [g for g in self.buffer if g.version < oldest]
        if stale:
            self.buffer = [g for g in self.buffer if g.version >= oldest]
            for g in stale:
                self.loader.requeue(g.ticket)
            self.requeued += len(stale)
            self.changed.notify_all()

    def _sample(self, k: int) -> RolloutBatch:
        """``sample(k)`` for ``collect_rollouts``: ``k`` buffered groups as one batch."""
        groups = self.run.loop.run_until_complete(self._take(k))
        self._intervals += [(g.start, g.end) for g in groups]
        trajectories = []
        for gid, g in enumerate(groups):
            for traj in g.batch.trajectories:
                traj.group_id = gid
                trajectories.append(traj)
        metrics = self.generator.metrics(trajectories)
        weights: dict[str, float] = {}
        sums: dict[str, float] = {}
        for g in groups:  # what shaping hooks added: averaged over groups, weighted by samples
            for key, value in g.batch.metrics.items():
                if key not in metrics:
                    sums[key] = sums.get(key, 0.0) + value * len(g.batch)
                    weights[key] = weights.get(key, 0.0) + len(g.batch)
        metrics.update({key: sums[key] / weights[key] for key in sums if weights[key]})
        return RolloutBatch(trajectories=trajectories, metrics=metrics)

    def next_batch(self) -> RolloutBatch:
        """This step's rollouts from the buffer. Adds ``timing/wait_rollouts``, ``timing/generate``
        (the time any of the batch's groups was generating) and ``rollout/`` buffer metrics."""
        run = self.run
        self._intervals = []
        requeued = self.requeued
        with run.timer("wait_rollouts"):
            batch = collect_rollouts(run, sample=self._sample)
        run.timings["timing/generate"] = _covered(self._intervals)
        batch.metrics.update(staleness_metrics(batch.trajectories, run.policy_version))
        batch.metrics["rollout/stale_requeued"] = float(self.requeued - requeued)
        batch.metrics["rollout/buffered_groups"] = float(len(self.buffer))
        batch.metrics["rollout/continued_requests"] = float(self.gate.stats["continued"])
        return batch

    def sync_weights(self) -> dict[str, float]:
        """Pause generation (``in_flight``), sync, resume (``timing/drain_requests`` is the pause)."""
        run = self.run
        with run.timer("drain_requests"):
            run.loop.run_until_complete(self.gate.pause(self.abort))
        try:
            with run.timer("weight_sync"):
                return sync_weights(run)
        finally:
            run.loop.run_until_complete(self._resume(run.config.trainer.steps - run.step - 1))

    async def _resume(self, remaining: int) -> None:
        async with self.changed:
            self.base = self.consumed
            self.remaining = remaining
            self.gate.resume()
            self.changed.notify_all()

    def close(self) -> None:
        """Stop producing and cancel the groups being generated (their prompts stay pending)."""
        loop = self.run.loop
        if loop.is_closed():
            return

        async def stop() -> None:
            tasks = [t for t in self._tasks if not t.done()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self._producer.cancel()
        loop.run_until_complete(stop())
        self.generator.close()


def _covered(intervals: list[tuple[float, float]]) -> float:
    """Total length of the union of ``(start, end)`` intervals."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(intervals):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total
