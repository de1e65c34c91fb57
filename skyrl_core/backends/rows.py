"""What the native backend's decode engines share: the samples (rows) they decode and what each produced.

The backend turns every request into ``n`` ``RowSpec`` (one per sample, each with its own
seed and length limit) and hands them, with the distinct prompts, to its engine (the
Hugging Face engine, ``skyrl_core.backends.hf_engine``, or the static engine,
``skyrl_core.backends.static``); the engine returns one ``RowOutput`` per row. Both
engines sample with ``skyrl_core.backends.sampling`` and end rows with
``skyrl_core.backends.stops.StopChecker``, so a row's output does not depend on which one
ran it, up to float rounding of the forward passes (see ``sampling``: a draw on a decision
boundary can go either way).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import attrs

from skyrl_core.protocols.backend import SamplingParams


@attrs.define(eq=False)
class RowSpec:
    """One sample to generate: which prompt, how, and how far.

    Attributes:
        prompt: index into the ``prompts`` handed to the engine.
        params: the request's sampling parameters.
        limit: most new tokens (``max_new_tokens`` capped by the model length), ``>= 1``.
        seed: this sample's own seed (``sampling.sample_seed(request_seed, j)``).
    """

    prompt: int
    params: SamplingParams
    limit: int
    seed: int


@attrs.define(eq=False)
class RowOutput:
    """What one sample produced (``finish_reason`` None only if the batch was cut short)."""

    ids: list[int] = attrs.field(factory=list)
    logprobs: list[float] = attrs.field(factory=list)
    finish_reason: str | None = None
    stop_reason: str | int | None = None


class DecodeEngine(Protocol):
    """A decode engine of the native backend (``[backend] engine``).

    Attributes:
        stats: the engine's own counters (e.g. ``decode_steps``), for benchmarks and tests.
    """

    stats: dict[str, int]

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        rows: Sequence[RowSpec],
        should_abort: Callable[[], bool] = ...,
    ) -> list[RowOutput]:
        """Generate every row; outputs are in ``rows`` order. Once ``should_abort()`` turns true
        the live rows end with finish reason ``"abort"`` (keeping what they produced)."""
        ...

    def release(self) -> None:
        """Drop device memory held between batches (before the weights move, or at shutdown)."""
        ...
