"""Contracts of weight transfer: how new weights get from a strategy into inference engines.

Every strategy yields its full weights (``TrainingStrategy.named_weights``) and every backend
loads them (``InferenceBackend.update_weights``): that path, through the driver, always works.
A strategy and a backend may also declare a *direct* path, where the strategy's ranks send
each bucket straight to the engines (``skyrl_core.runtime.weight_sync`` picks it from these
protocols and ``[runtime]``, never from a class):

* ``ShardedWeightSource`` (the strategy side): plans buckets of ``TensorMeta`` and sends each
  one by a transport it drives (``broadcast``: a torch.distributed group from its rank 0 to
  every engine; ``disk``: safetensors files; ``cuda_ipc``: handles to GPU memory shared with
  engines on the same GPU);
* ``EngineGroup`` (the backend side): joins the broadcast group and receives buckets.

Both return ``Pending`` operations (``concurrent.futures.Future`` is one) so that the core
can run the two sides of a collective at once and stop the other side when one fails.

``ReportsWeights`` lets ``[runtime] verify_weights`` compare per-tensor checksums of what an
engine holds with what the trainer sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import attrs

DIRECT_TRANSPORTS = ("broadcast", "disk", "cuda_ipc")


@attrs.frozen
class TensorMeta:
    """Name (Hugging Face), shape and dtype (``"bfloat16"``) of one tensor of a bucket."""

    name: str
    shape: tuple[int, ...] = attrs.field(converter=tuple)
    dtype: str

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        import torch

        return self.numel * getattr(torch, self.dtype).itemsize


@attrs.frozen
class BucketSent:
    """What sending one bucket returned.

    Attributes:
        checksums: ``{name: digest}`` of the sent tensors cast to the engines' dtypes (only
            when asked for, with ``dtypes``; see ``skyrl_core.runtime.weight_sync.checksum``).
        handles: ``cuda_ipc`` only: per source rank, the IPC handles of its packed buffers.
    """

    checksums: dict[str, str] = attrs.field(factory=dict)
    handles: tuple[Any, ...] = ()


@runtime_checkable
class Pending(Protocol):
    """An operation running in the background (``concurrent.futures.Future`` satisfies it)."""

    def done(self) -> bool:
        """Whether it finished (successfully or not)."""
        ...

    def result(self, timeout: float | None = None) -> Any:
        """Wait for it and return its result, or raise its error."""
        ...

    def cancel(self) -> bool:
        """Give up on it: the other side of a collective failed, so this one would wait forever.
        Implementations stop whatever is blocked (e.g. kill the actors stuck in the collective)."""
        ...


@runtime_checkable
class ShardedWeightSource(Protocol):
    """The strategy side of a direct weight transfer (see the module docstring)."""

    def direct_transports(self) -> tuple[str, ...]:
        """The direct transports this strategy can drive now, of ``DIRECT_TRANSPORTS`` (e.g. no
        ``cuda_ipc`` without GPUs). Empty: weights go through the driver."""
        ...

    def weight_plan(self, bucket_bytes: int) -> list[list[TensorMeta]]:
        """Every tensor of the policy (Hugging Face names, transfer dtype) in buckets of about
        ``bucket_bytes``; the same plan on every call while the model is unchanged."""
        ...

    def rendezvous(self) -> tuple[str, int]:
        """Host and a free port where the broadcast group can meet (the source's rank 0)."""
        ...

    def join_weight_group(self, host: str, port: int, world_size: int) -> Pending:
        """Join the broadcast group at ``host:port`` as its rank 0 (engines take ranks 1..)."""
        ...

    def send_bucket(
        self, names: Sequence[str], transport: str, *, path: str | None = None, dtypes: dict[str, str] | None = None
    ) -> Pending:
        """Start sending the tensors ``names`` (one bucket of the plan) by ``transport``; the
        result is a ``BucketSent``. ``disk`` writes a safetensors file to ``path``;
        ``dtypes`` asks for checksums of the tensors cast to those dtypes."""
        ...

    def release_bucket(self) -> None:
        """``cuda_ipc``: the engines copied the bucket; free what was kept alive for them."""
        ...


@runtime_checkable
class EngineGroup(Protocol):
    """The backend side of a direct weight transfer: one or more engines that receive buckets."""

    def direct_transports(self) -> tuple[str, ...]:
        """The direct transports the engines can receive now, of ``DIRECT_TRANSPORTS``."""
        ...

    def engine_names(self) -> list[str]:
        """One label per engine (used in errors and checksum reports)."""
        ...

    def join_weight_group(self, host: str, port: int, first_rank: int, world_size: int) -> Pending:
        """Every engine joins the broadcast group at ``host:port``; engine ``e`` takes rank
        ``first_rank + e`` of ``world_size``."""
        ...

    def receive_bucket(
        self, metas: Sequence[TensorMeta], transport: str, *, path: str | None = None, handles: Sequence[Any] = ()
    ) -> Pending:
        """Start receiving one bucket (``broadcast``: from the group's rank 0; ``disk``: the file
        ``path``; ``cuda_ipc``: ``handles`` of the source rank on the same GPU as each engine) and
        loading it into the engines' weights."""
        ...


@runtime_checkable
class ReportsWeights(Protocol):
    """A backend that can say exactly which weights its engines hold (``[runtime] verify_weights``)."""

    def weight_dtypes(self) -> dict[str, str]:
        """``{name: dtype}`` of the engines' weights (what sent tensors are cast to)."""
        ...

    def weight_checksums(self, names: Sequence[str]) -> list[tuple[str, dict[str, tuple[str, str]]]]:
        """For every engine: ``(label, {name: (dtype, digest)})`` of the tensors it holds."""
        ...
