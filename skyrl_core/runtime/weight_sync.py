"""Weight sync: moving the trainer's weights into the inference engines.

The transport is chosen from what the two components declare (``skyrl_core.protocols.weights``)
and from ``[runtime]``, never from their classes:

* through the driver, which every strategy and backend support: the strategy's
  ``named_weights`` buckets go to the backend's ``update_weights``. Called ``in_process``
  when both live in this process, ``object_store`` when the backend's engines are Ray
  actors (each bucket then crosses Ray's object store once for all engines);
* direct, when the strategy is a ``ShardedWeightSource`` and the backend an ``EngineGroup``
  that share a transport: the strategy's ranks send each bucket straight to the engines and
  the driver only sends names, shapes and dtypes.

  - ``broadcast``: a ``torch.distributed`` group of the source's rank 0 and every engine
    (NCCL on GPUs, across nodes too; gloo on CPU). Each bucket is packed into one flat
    buffer per dtype (``pack``), which rank 0 broadcasts (``SyncGroup``).
  - ``cuda_ipc``: colocated on one GPU. Every rank holds the gathered bucket on its GPU and
    hands the engine sharing that GPU a CUDA IPC handle; the engine copies from it.
  - ``disk``: rank 0 writes each bucket as a safetensors file that the engines load (needs
    a filesystem both see, e.g. one node or a shared mount).

``[runtime] weight_sync = "auto"`` takes ``cuda_ipc`` when both sides offer it and the run is
colocated, else ``broadcast`` when both offer it, else the driver path. A direct transport
named explicitly must be offered by both sides.

With ``verify_weights`` every engine reports a checksum of each tensor it holds
(``ReportsWeights``), which is compared with the trainer's tensor cast to the engine's dtype:
the engine must hold exactly the trainer's weights.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
import weakref
from collections.abc import Iterable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from skyrl_core.config.schema import RuntimeConfig
from skyrl_core.errors import SkyrlError
from skyrl_core.protocols.weights import (
    DIRECT_TRANSPORTS,
    EngineGroup,
    Pending,
    ReportsWeights,
    ShardedWeightSource,
    TensorMeta,
)

TRANSPORTS = ("in_process", "object_store", *DIRECT_TRANSPORTS)


class WeightSyncError(SkyrlError):
    """Weights could not be synced, or the engine does not hold what the trainer sent."""


# -- tensors ---------------------------------------------------------------------------------


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` -> ``"bfloat16"``."""
    return str(dtype).removeprefix("torch.")


def dtype_of(name: str) -> torch.dtype:
    """``"bfloat16"`` -> ``torch.bfloat16``."""
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unknown dtype {name!r}")
    return dtype


def checksum(tensor: Tensor) -> str:
    """A digest of the tensor's dtype, shape and raw bytes (identical bytes give identical digests)."""
    t = tensor.detach().contiguous().cpu()
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{dtype_name(t.dtype)}{tuple(t.shape)}".encode())
    if t.numel():
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def module_tensors(module: nn.Module) -> dict[str, Tensor]:
    """Parameters and buffers of ``module`` by state-dict name (tied names included)."""
    return dict(module.state_dict(keep_vars=True))


def held_checksums(module: nn.Module, names: Iterable[str]) -> dict[str, tuple[str, str]]:
    """``{name: (dtype, checksum)}`` of the tensors ``module`` holds under ``names``."""
    tensors = module_tensors(module)
    out = {}
    for name in names:
        t = tensors.get(name)
        if t is not None:
            out[name] = (dtype_name(t.dtype), checksum(t))
    return out


def held_dtypes(module: nn.Module, names: Iterable[str]) -> dict[str, str]:
    """``{name: dtype}`` of the tensors ``module`` holds under ``names``."""
    tensors = module_tensors(module)
    return {n: dtype_name(tensors[n].dtype) for n in names if n in tensors}


def expected_checksums(tensors: Iterable[tuple[str, Tensor]], dtypes: dict[str, str]) -> dict[str, str]:
    """Checksums of the sender's tensors cast to the receiver's ``dtypes`` (names it lacks are skipped)."""
    return {n: checksum(t.to(dtype_of(dtypes[n]))) for n, t in tensors if n in dtypes}


def compare_checksums(
    expected: dict[str, str], held: dict[str, tuple[str, str]], *, engine: str, transport: str
) -> None:
    """Raise ``WeightSyncError`` naming every tensor whose checksum differs or is missing."""
    bad = []
    for name, digest in expected.items():
        got = held.get(name)
        if got is None:
            bad.append(f"{name}: not held by the engine")
        elif got[1] != digest:
            bad.append(f"{name}: checksum differs ({got[0]})")
    if bad:
        shown = "\n  - ".join(bad[:10]) + (f"\n  - ... and {len(bad) - 10} more" if len(bad) > 10 else "")
        raise WeightSyncError(
            f"weight sync verification failed: {engine} does not hold the trainer's weights after a "
            f"'{transport}' sync ({len(bad)} of {len(expected)} tensors):\n  - {shown}\nTry [runtime] weight_sync = "
            "'object_store' to rule out the transport, and check that the engine loads every name it is sent."
        )


def plan_buckets(metas: Sequence[TensorMeta], bucket_bytes: int) -> list[list[TensorMeta]]:
    """Split ``metas`` (in order) into buckets of about ``bucket_bytes`` (a bigger tensor is alone)."""
    buckets: list[list[TensorMeta]] = []
    current: list[TensorMeta] = []
    size = 0
    for meta in metas:
        if current and size + meta.nbytes > bucket_bytes:
            buckets.append(current)
            current, size = [], 0
        current.append(meta)
        size += meta.nbytes
    if current:
        buckets.append(current)
    return buckets


def flat_layout(metas: Sequence[TensorMeta]) -> list[tuple[str, int]]:
    """``(dtype, numel)`` of the flat buffers a bucket packs into: one per dtype, in first-seen order."""
    sizes: dict[str, int] = {}
    for meta in metas:
        sizes[meta.dtype] = sizes.get(meta.dtype, 0) + meta.numel
    return list(sizes.items())


def pack(metas: Sequence[TensorMeta], tensors: Sequence[Tensor]) -> list[Tensor]:
    """Concatenate ``tensors`` (described by ``metas``) into the flat buffers of ``flat_layout``."""
    groups: dict[str, list[Tensor]] = {}
    for meta, tensor in zip(metas, tensors, strict=True):
        groups.setdefault(meta.dtype, []).append(tensor.reshape(-1))
    return [torch.cat(groups[dtype]) for dtype, _ in flat_layout(metas)]


def unpack(metas: Sequence[TensorMeta], flats: Sequence[Tensor]) -> list[tuple[str, Tensor]]:
    """Views into ``flats`` for every tensor of ``metas`` (the inverse of ``pack``)."""
    buffers = {dtype: flat for (dtype, _), flat in zip(flat_layout(metas), flats, strict=True)}
    offsets = dict.fromkeys(buffers, 0)
    out = []
    for meta in metas:
        start = offsets[meta.dtype]
        out.append((meta.name, buffers[meta.dtype][start : start + meta.numel].view(meta.shape)))
        offsets[meta.dtype] = start + meta.numel
    return out


# -- the broadcast group ---------------------------------------------------------------------


class SyncGroup:
    """A standalone ``torch.distributed`` process group for weight broadcasts.

    Built from its own TCP store, so it lives next to (not inside) the training group of
    rank 0 and whatever group an engine uses internally. NCCL when ``device`` is CUDA,
    gloo otherwise.
    """

    def __init__(self, host: str, port: int, rank: int, size: int, device: torch.device, timeout_s: float) -> None:
        import torch.distributed as dist

        timeout = timedelta(seconds=timeout_s)
        store = dist.TCPStore(host, port, size, is_master=rank == 0, timeout=timeout)
        store = dist.PrefixStore("skyrl-weight-sync", store)
        self.device = device
        self.rank = rank
        self.size = size
        if device.type == "cuda":
            options = dist.ProcessGroupNCCL.Options()
            self.group = dist.ProcessGroupNCCL(store, rank, size, options)
        else:
            self.group = dist.ProcessGroupGloo(store, rank, size, timeout)

    def broadcast(self, tensor: Tensor, src: int = 0) -> None:
        """Broadcast ``tensor`` (on ``device``) in place from rank ``src``."""
        import torch.distributed as dist

        opts = dist.BroadcastOptions()
        opts.rootRank = src
        self.group.broadcast([tensor], opts).wait()
        if self.device.type == "cuda":
            torch.cuda.current_stream(self.device).synchronize()

    def receive(self, metas: Sequence[TensorMeta]) -> list[tuple[str, Tensor]]:
        """Receive one bucket broadcast by rank 0 (the flat buffers of ``flat_layout(metas)``)."""
        flats = [torch.empty(n, dtype=dtype_of(d), device=self.device) for d, n in flat_layout(metas)]
        for flat in flats:
            self.broadcast(flat)
        return unpack(metas, flats)


# -- CUDA IPC --------------------------------------------------------------------------------


def ipc_handle(tensor: Tensor) -> tuple[Any, tuple[Any, ...]]:
    """A picklable handle to a CUDA tensor for a process on the same GPU (keep ``tensor`` alive
    until the receiver has copied it)."""
    from torch.multiprocessing.reductions import reduce_tensor

    return reduce_tensor(tensor)


def from_ipc(handle: tuple[Any, tuple[Any, ...]]) -> Tensor:
    """Open a handle from ``ipc_handle`` on this process's current CUDA device.

    Both sides see the shared GPU as their device 0 when Ray placed them in one bundle, but
    the device index is rewritten anyway so other layouts work too.
    """
    rebuild, args = handle
    args = list(args)
    args[6] = torch.cuda.current_device()  # the device index of the sender's tensor
    return rebuild(*args)


# -- files -----------------------------------------------------------------------------------


def write_bucket(path: Path, named: Sequence[tuple[str, Tensor]]) -> None:
    """Write a bucket as a safetensors file (a temporary name, then renamed)."""
    import safetensors.torch

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    safetensors.torch.save_file({n: t.detach().contiguous().cpu() for n, t in named}, str(tmp))
    os.replace(tmp, path)


def read_bucket(path: Path) -> list[tuple[str, Tensor]]:
    """Read a file written by ``write_bucket``."""
    import safetensors.torch

    if not Path(path).is_file():
        raise WeightSyncError(
            f"weight file {path} is not visible to this engine: [runtime] weight_sync = 'disk' needs a filesystem "
            "that trainer rank 0 and every engine share (one node, or a shared mount); use 'broadcast' otherwise"
        )
    return list(safetensors.torch.load_file(str(path)).items())


# -- driver: choose and run a transport ------------------------------------------------------


def direct_transports(strategy: Any, backend: Any) -> tuple[str, ...]:
    """The direct transports both sides declare (``ShardedWeightSource`` / ``EngineGroup``), in
    ``DIRECT_TRANSPORTS`` order; empty when either side has no direct path."""
    if not isinstance(strategy, ShardedWeightSource) or not isinstance(backend, EngineGroup):
        return ()
    source, engines = set(strategy.direct_transports()), set(backend.direct_transports())
    return tuple(t for t in DIRECT_TRANSPORTS if t in source and t in engines)


def choose_transport(cfg: RuntimeConfig, offered: tuple[str, ...]) -> str:
    """The transport for ``[runtime]`` and the direct transports both sides ``offered``.

    Returns a direct transport, or ``in_process`` / ``object_store`` for the path through the
    driver (``object_store`` when the engines are Ray actors, ``mode = "ray"``).

    Raises:
        SkyrlError: ``weight_sync`` names a direct transport the components do not both offer.
    """
    driver = "object_store" if cfg.mode == "ray" else "in_process"
    wanted = cfg.weight_sync
    if wanted == "auto":
        if cfg.mode == "local":
            return driver  # one process: a plain copy is the cheapest transfer
        if "cuda_ipc" in offered and cfg.colocate:
            return "cuda_ipc"
        return "broadcast" if "broadcast" in offered else driver
    if wanted == "object_store":
        return driver
    if wanted not in offered or (wanted == "cuda_ipc" and not cfg.colocate):
        if wanted == "cuda_ipc" and offered:
            why = ("it shares GPU memory between a trainer and an engine on the same GPU, so it needs GPUs and "
                   "colocate = true")
        elif offered:
            why = f"the strategy and the backend both offer only {', '.join(offered)}"
        else:
            why = ("the strategy and the backend share no direct transport (a direct transfer needs a strategy "
                   "that is a ShardedWeightSource, like fsdp2, and a backend that is an EngineGroup, like engines "
                   "in Ray actors)")
        raise SkyrlError(
            f"[runtime] weight_sync = {wanted!r}: {why}; use 'auto' or 'object_store' (through the driver)"
        )
    return wanted


def transfer_weights(
    strategy: Any, backend: Any, cfg: RuntimeConfig, *, bucket_bytes: int | None = None
) -> dict[str, float]:
    """Push the policy's weights from ``strategy`` into ``backend``; return sync metrics.

    A LoRA run (``[model.lora] rank > 0``) sends merged weights like any other run, or, when
    ``lora_sync.sync_mode`` chooses ``adapter``, only the adapter (``backend.load_lora_adapter``).
    ``bucket_bytes`` overrides ``cfg.weight_sync_bucket_mb``. Metrics:
    ``weight_sync/bytes``, ``weight_sync/buckets``, ``weight_sync/seconds``,
    ``weight_sync/verified`` (1.0 when checksums were compared) and ``weight_sync/direct``
    (1.0 when the strategy's ranks sent straight to the engines).
    """
    from skyrl_core.strategies import lora_sync

    start = time.perf_counter()
    if lora_sync.sync_mode(strategy, backend) == "adapter":  # LoRA run, engine loads adapters: send only those
        stats = lora_sync.push_adapter(strategy, backend)
        stats["weight_sync/seconds"] = time.perf_counter() - start
        return stats
    bucket_bytes = bucket_bytes or cfg.weight_sync_bucket_mb << 20
    transport = choose_transport(cfg, direct_transports(strategy, backend))
    if transport in DIRECT_TRANSPORTS:
        stats = _direct(strategy, backend, transport, bucket_bytes, cfg.verify_weights)
    else:
        stats = _through_driver(strategy, backend, transport, bucket_bytes, cfg.verify_weights)
    stats["weight_sync/direct"] = float(transport in DIRECT_TRANSPORTS)
    stats["weight_sync/seconds"] = time.perf_counter() - start
    return stats


def _through_driver(
    strategy: Any, backend: Any, transport: str, bucket_bytes: int, verify: bool
) -> dict[str, float]:
    """``named_weights`` buckets handed to ``backend.update_weights`` (in-process or object store)."""
    expected: dict[str, str] = {}
    dtypes: dict[str, str] | None = None
    nbytes = buckets = 0
    for bucket in strategy.named_weights(bucket_bytes):
        if verify:
            if dtypes is None:
                dtypes = _reporter(backend).weight_dtypes()
            expected.update(expected_checksums(bucket, dtypes))
        backend.update_weights(bucket)
        nbytes += sum(t.numel() * t.element_size() for _, t in bucket)
        buckets += 1
    if verify:
        for engine, held in _reporter(backend).weight_checksums(list(expected)):
            compare_checksums(expected, held, engine=engine, transport=transport)
    return _stats(nbytes, buckets, verify)


def _reporter(backend: Any) -> ReportsWeights:
    if not isinstance(backend, ReportsWeights):
        raise SkyrlError(
            f"[runtime] verify_weights: the {type(backend).__name__} backend does not report the weights it holds "
            "(it implements no weight_dtypes()/weight_checksums(), skyrl_core.api.ReportsWeights), so they cannot "
            "be checked; turn verify_weights off"
        )
    return backend


# Broadcast groups already formed: engine group -> the source it was formed with.
_GROUPS: weakref.WeakKeyDictionary[Any, weakref.ref[Any]] = weakref.WeakKeyDictionary()


def _ensure_group(source: ShardedWeightSource, engines: EngineGroup) -> None:
    """Form the broadcast group of the source's rank 0 and every engine (once per pair)."""
    formed = _GROUPS.get(engines)
    if formed is not None and formed() is source:
        return
    host, port = source.rendezvous()
    size = 1 + len(engines.engine_names())
    wait_together(
        [source.join_weight_group(host, port, size), engines.join_weight_group(host, port, 1, size)],
        what="forming the weight broadcast group",
    )
    _GROUPS[engines] = weakref.ref(source)


def _direct(strategy: Any, backend: Any, transport: str, bucket_bytes: int, verify: bool) -> dict[str, float]:
    """The strategy's ranks send straight to the engines; the driver only sends metadata."""
    source: ShardedWeightSource = strategy
    engines: EngineGroup = backend
    plan = source.weight_plan(bucket_bytes)
    dtypes = _reporter(backend).weight_dtypes() if verify else None
    expected: dict[str, str] = {}
    if transport == "broadcast":
        _ensure_group(source, engines)
    tmp_dir = Path(tempfile.mkdtemp(prefix="skyrl-weights-")) if transport == "disk" else None
    try:
        for i, metas in enumerate(plan):
            names = [m.name for m in metas]
            what = f"weight sync ({transport}, bucket {i + 1} of {len(plan)})"
            if transport == "broadcast":
                sent, _ = wait_together(
                    [source.send_bucket(names, "broadcast", dtypes=dtypes), engines.receive_bucket(metas, "broadcast")],
                    what=what,
                )
            elif transport == "disk":
                assert tmp_dir is not None
                path = str(tmp_dir / f"bucket-{i:05d}.safetensors")
                (sent,) = wait_together([source.send_bucket(names, "disk", path=path, dtypes=dtypes)], what=what)
                wait_together([engines.receive_bucket(metas, "disk", path=path)], what=what)
                os.unlink(path)
            else:  # cuda_ipc
                (sent,) = wait_together([source.send_bucket(names, "cuda_ipc", dtypes=dtypes)], what=what)
                wait_together([engines.receive_bucket(metas, "cuda_ipc", handles=sent.handles)], what=what)
                source.release_bucket()
            if verify:
                expected.update(sent.checksums)
    finally:
        if tmp_dir is not None:
            shutil.rmtree(tmp_dir, ignore_errors=True)
    if verify:
        for engine, held in _reporter(backend).weight_checksums(list(expected)):
            compare_checksums(expected, held, engine=engine, transport=transport)
    nbytes = sum(m.nbytes for metas in plan for m in metas)
    return _stats(nbytes, len(plan), verify)


def wait_together(pendings: Sequence[Pending], *, what: str, poll_s: float = 0.2) -> list[Any]:
    """Wait for operations that belong together (the two sides of a collective); return their results.

    As soon as one fails, the others are cancelled (they would otherwise wait forever for the
    failed peer) and its error is raised.
    """
    delay = 0.001
    while not all(p.done() for p in pendings):
        for p in pendings:
            if p.done() and _failed(p):
                _cancel_others(pendings, p)
                p.result()  # raises the failure
        time.sleep(delay)
        delay = min(poll_s, delay * 2)
    results = []
    for p in pendings:
        try:
            results.append(p.result())
        except BaseException:
            _cancel_others(pendings, p)
            raise
    return results


def _failed(p: Pending) -> bool:
    try:
        p.result(timeout=0)
    except Exception:
        return True
    return False


def _cancel_others(pendings: Sequence[Pending], failed: Pending) -> None:
    for other in pendings:
        if other is not failed and not other.done():
            other.cancel()


def _stats(nbytes: int, buckets: int, verified: bool) -> dict[str, float]:
    return {
        "weight_sync/bytes": float(nbytes),
        "weight_sync/buckets": float(buckets),
        "weight_sync/verified": float(verified),
    }


def verify_engine_weights(strategy: Any, backend: Any, bucket_bytes: int = 1 << 28) -> int:
    """Check, without syncing, that every engine of ``backend`` holds exactly the policy's weights.

    Returns:
        The number of tensors compared.

    Raises:
        WeightSyncError: naming every tensor that differs.
    """
    reporter = _reporter(backend)
    dtypes = reporter.weight_dtypes()
    expected: dict[str, str] = {}
    for bucket in strategy.named_weights(bucket_bytes):
        expected.update(expected_checksums(bucket, dtypes))
    for engine, held in reporter.weight_checksums(list(expected)):
        compare_checksums(expected, held, engine=engine, transport="none (verification only)")
    return len(expected)
