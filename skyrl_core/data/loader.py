"""A seeded, shuffling, resumable prompt loader.

``next_batch(k)`` returns the next ``k`` rows of the current epoch; when fewer than ``k``
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
        rows: the dataset (any sequence; usually ``PromptDataset.rows``).
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

    def __len__(self) -> int:
        return len(self.rows)

    def _permutation(self) -> np.ndarray:
        if self._order is None:
            n = len(self.rows)
            if self.shuffle:
                self._order = np.random.default_rng([self.seed, self.epoch]).permutation(n)
            else:
                self._order = np.arange(n)
        return self._order

    def next_batch(self, k: int) -> list[T]:
        """The next ``k`` rows (one epoch never mixes with the next)."""
        if k < 1:
            raise ValueError(f"batch size must be >= 1, got {k}")
        if k > len(self.rows):
            raise DataError(
                f"asked for {k} prompts but the dataset has only {len(self.rows)} rows; add data or lower "
                "[trainer] prompts_per_step"
            )
        if self.position + k > len(self.rows):
            self.epoch += 1
            self.position = 0
            self._order = None
        order = self._permutation()
        batch = [self.rows[int(i)] for i in order[self.position : self.position + k]]
        self.position += k
        return batch

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
