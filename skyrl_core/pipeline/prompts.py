"""``TrackedLoader``: which drawn prompts are not trained yet, so that a resume re-queues them.

In the off-policy modes prompts are drawn before the step that trains them: a checkpoint
(always taken between steps) can find rollouts buffered or still being generated. Their
prompts are *pending*. The checkpoint keeps the loader's position (after them) plus their
uids; a resumed run serves the pending prompts first, generates them again with the
resumed weights and trains each once. Rollouts themselves are not saved: regenerating is
exact bookkeeping at the cost of one buffer's worth of generation after a resume.

Rows are drawn under a *ticket* (one per batch in ``one_step_off``, one per prompt group in
``async``); a step that takes a ticket's rollouts ``release``\\ s it. A prompt whose rollouts
turned out too stale is ``requeue``\\ d: served again before new ones.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Hashable
from typing import Any

from skyrl_core.errors import DataError


class TrackedLoader:
    """Wraps a ``PromptLoader`` (same ``draw`` / ``release`` / ``peek_rows`` / ``state_dict`` interface).

    Thread-safe: the background generation draws while the trainer thread checkpoints.

    Args:
        loader: the run's ``PromptLoader``.
        track: remember drawn rows until released (off in ``sync`` mode, where this wrapper
            only serves prompts left pending by an off-policy checkpoint).
    """

    def __init__(self, loader: Any, *, track: bool = True) -> None:
        self.loader = loader
        self.track = track
        self._lock = threading.RLock()  # state_dict holds it across the loader state and pending()
        self._requeued: collections.deque[Any] = collections.deque()
        self._outstanding: dict[Hashable, list[Any]] = {}

    @property
    def rows(self) -> Any:
        return self.loader.rows

    def __len__(self) -> int:
        return len(self.loader)

    def draw(self, k: int, ticket: Hashable) -> list[Any]:
        """The next ``k`` rows (pending ones first), remembered under ``ticket``."""
        with self._lock:
            rows = [self._requeued.popleft() for _ in range(min(k, len(self._requeued)))]
            if len(rows) < k:
                rows += self.loader.next_rows(k - len(rows))
            if self.track:
                self._outstanding.setdefault(ticket, []).extend(rows)
            return rows

    def peek_rows(self, k: int) -> list[Any]:
        """The rows ``draw(k, ...)`` would return, without drawing them."""
        with self._lock:
            rows = list(self._requeued)[:k]
            return rows + (self.loader.peek_rows(k - len(rows)) if len(rows) < k else [])

    def release(self, ticket: Hashable) -> None:
        """The rows of ``ticket`` were consumed by a step (trained, or dropped by a filter hook)."""
        with self._lock:
            self._outstanding.pop(ticket, None)

    def requeue(self, ticket: Hashable) -> int:
        """Serve the rows of ``ticket`` again, before any others; return how many."""
        with self._lock:
            rows = self._outstanding.pop(ticket, [])
            self._requeued.extendleft(reversed(rows))
            return len(rows)

    def pending(self) -> list[Any]:
        """Rows drawn (or re-queued) and not consumed: re-queued first, then in drawing order."""
        with self._lock:
            return [*self._requeued, *(row for rows in self._outstanding.values() for row in rows)]

    def state_dict(self) -> dict[str, Any]:
        """The loader's state plus ``pending``: the uids of ``pending()`` rows."""
        with self._lock:  # one consistent snapshot of both
            state = dict(self.loader.state_dict())
            rows = self.pending()
        state["pending"] = [_uid(row) for row in rows]
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state``; its ``pending`` prompts are served first, in order."""
        self.loader.load_state_dict({k: v for k, v in state.items() if k != "pending"})
        uids = [str(u) for u in state.get("pending", [])]
        by_uid = {_uid(row): row for row in self.loader.rows} if uids else {}
        missing = [u for u in uids if u not in by_uid]
        if missing:
            raise DataError(
                f"cannot resume: the checkpoint lists prompts {missing[:5]} as generated but not yet trained, and "
                "the training data has no rows with those uids. Use the same [data] train files as the original "
                "run, or start a new run."
            )
        with self._lock:
            self._outstanding.clear()
            self._requeued = collections.deque(by_uid[u] for u in uids)


def _uid(row: Any) -> str:
    uid = getattr(row, "uid", None)
    if uid is None:
        raise DataError(f"prompt rows need a `uid` to be tracked across checkpoints; got {type(row).__name__}")
    return str(uid)


def track_prompts(loader: Any, mode: str, resume_state: dict[str, Any] | None) -> Any:
    """The loader a run draws from: ``loader`` itself in ``sync`` mode, else a ``TrackedLoader``.

    A ``sync`` run resumed from an off-policy checkpoint with pending prompts also gets a
    (non-tracking) wrapper, so those prompts are trained rather than skipped.
    """
    pending = bool(resume_state and resume_state.get("loader", {}).get("pending"))
    if mode == "sync" and not pending:
        return loader
    return TrackedLoader(loader, track=mode != "sync")
