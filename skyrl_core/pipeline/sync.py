"""``[trainer] mode = "sync"``: the trivial pipeline. Generate, then train, then sync.

Timeline (``v`` is the backend's policy version, ``g`` generation, ``t`` training)::

    g1(v0) t1 sync | g2(v1) t2 sync | g3(v2) t3 sync

Nothing runs in the background: ``next_batch`` collects the step's rollouts when asked, so
every sample comes from the weights the step trains from.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from skyrl_core.pipeline.collect import collect_rollouts, sample_rollouts, sync_weights
from skyrl_core.rollout import RolloutBatch

if TYPE_CHECKING:
    from skyrl_core.run import RunContext


class SyncPipeline:
    """Collects each step's rollouts on demand (see the module docstring).

    Args:
        run: the ``RunContext``.
    """

    def __init__(self, run: RunContext) -> None:
        self.run = run
        self._tickets = 0

    def next_batch(self) -> RolloutBatch:
        """This step's rollouts, generated now (``timing/generate``)."""
        run = self.run
        self._tickets += 1
        ticket = self._tickets
        with run.timer("generate"):
            # This thread only waits meanwhile: it decodes for a CPU backend (skyrl_core.threads).
            batch = collect_rollouts(run, lambda k: sample_rollouts(run, k, ticket, lend=True))
        run.train_loader.release(ticket)
        return batch

    def sync_weights(self) -> dict[str, float]:
        """Sync the weights (``timing/weight_sync``)."""
        with self.run.timer("weight_sync"):
            return sync_weights(self.run)

    def close(self) -> None:
        """Nothing runs in the background."""
