"""A seeded, shuffling, resumable prompt loader.

``next_rows(k)`` returns the next ``k`` rows of the current epoch; when fewer than ``k``
rows are left, the rest of the epoch is skipped (like ``drop_last``) and a new epoch starts
with a new permutation. The permutation of epoch ``e`` depends only on ``(seed, e)``, so
``state_dict()`` (seed, epoch, position) is enough to continue exactly where a run stopped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Generic, TypeVar

import numpy as np

from skyrl_core.errors import DataError

T = TypeVar("T")


class PromptLoader(Generic[T]):
    """Draws batches of rows epoch by epoch.

    Args:
        rows: the dataset (a ``PromptDataset`` or any sequence).
        seed: seeds the per-epoch permutation.
        shuffle: when False, every epoch walks the rows in order.
    """

    def __init__(self, rows: Sequence[T], *, seed: int = 0, shuffle: bool = True) -> None:
        if len(rows) == 0:
            raise DataError("the prompt loader got an empty dataset; check [data] train")
        self.rows = rows
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0
        self.position = 0
        self._order: np.ndarray | None = None
        self._order_epoch = -1

    def __len__(self) -> int:
        return len(self.rows)

    def _permutation(self, epoch: int) -> np.ndarray:
        if self._order is None or self._order_epoch != epoch:
            n = len(self.rows)
            if self.shuffle:
                self._order = np.random.default_rng([self.seed, epoch]).permutation(n)
            else:
                self._order = np.arange(n)
            self._order_epoch = epoch
        return self._order

    def next_rows(self, k: int) -> list[T]:
        """The next ``k`` rows (one epoch never mixes with the next); advances the position."""
        batch, self.epoch, self.position = self._take(k)
        return batch

    def draw(self, k: int, ticket: Any = None) -> list[T]:
        """``next_rows(k)``: the interface the pipelines draw through (a plain loader tracks no
        tickets; ``skyrl_core.pipeline.prompts.TrackedLoader`` does)."""
        return self.next_rows(k)

    def release(self, ticket: Any) -> None:
        """Nothing to forget: a plain loader remembers no drawn rows."""

    def peek_rows(self, k: int) -> list[T]:
        """The rows ``next_rows(k)`` would return, without advancing."""
        batch, _, _ = self._take(k)
        return batch

    def _take(self, k: int) -> tuple[list[T], int, int]:
        if k < 1:
            raise ValueError(f"batch size must be >= 1, got {k}")
        if k > len(self.rows):
            raise DataError(
                f"asked for {k} prompts but the dataset has only {len(self.rows)} rows; add data or lower "
                "[trainer] prompts_per_step"
            )
        epoch, position = self.epoch, self.position
        if position + k > len(self.rows):
            epoch, position = epoch + 1, 0
        order = self._permutation(epoch)
        batch = [self.rows[int(i)] for i in order[position : position + k]]
        return batch, epoch, position + k

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue: seed, epoch, position (plus checks)."""
        return {
            "seed": self.seed,
            "shuffle": self.shuffle,
            "epoch": self.epoch,
            "position": self.position,
            "num_rows": len(self.rows),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state``; raises ``DataError`` if the dataset size changed."""
        if int(state["num_rows"]) != len(self.rows):
            raise DataError(
                f"cannot resume the data loader: the checkpoint was taken with {state['num_rows']} training rows "
                f"but the dataset now has {len(self.rows)}. Use the same data files (and max_prompt_tokens) as the "
                "original run, or start a new run."
            )
        self.seed = int(state["seed"])
        self.shuffle = bool(state["shuffle"])
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
        self._order = None
        self._order_epoch = -1
