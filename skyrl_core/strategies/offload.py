"""Moving a strategy's modules and optimizer states between an accelerator and pinned host memory.

``local`` offloads with ``HostOffloader`` while colocated inference engines use the GPU;
``fsdp2`` moves its sharded tensors with ``fsdp2_model.offload``/``onload``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn


class HostOffloader:
    """Moves modules and optimizer states between an accelerator and reusable pinned host memory.

    Each tensor gets one pinned host buffer, allocated at its first offload and reused by
    every later one: copies into pinned memory run at full bus speed, whereas a fresh
    pageable allocation per offload is several times slower (first-touch page faults). The
    buffers stay allocated while the tensors are on the device (host memory is traded for
    offload speed). Parameters keep their identity (``param.data`` is swapped), so
    optimizers keep pointing at them.
    """

    def __init__(self) -> None:
        self._host: dict[tuple[Any, ...], Tensor] = {}

    def _to_host(self, key: tuple[Any, ...], tensor: Tensor) -> Tensor:
        buf = self._host.get(key)
        if buf is None or buf.shape != tensor.shape or buf.dtype != tensor.dtype:
            buf = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
            self._host[key] = buf
        buf.copy_(tensor, non_blocking=True)
        return buf

    def offload(self, modules: Iterable[nn.Module], optimizers: Iterable[torch.optim.Optimizer]) -> None:
        """Copy every parameter, buffer and optimizer-state tensor into pinned host memory."""
        self._move(modules, optimizers, lambda key, t: self._to_host(key, t) if t.device.type != "cpu" else t)
        torch.cuda.synchronize()

    def onload(
        self, modules: Iterable[nn.Module], optimizers: Iterable[torch.optim.Optimizer], device: torch.device
    ) -> None:
        """Copy everything back to ``device`` (the pinned buffers are kept for the next offload)."""
        self._move(modules, optimizers, lambda key, t: t.to(device, non_blocking=True))
        torch.cuda.synchronize()

    @staticmethod
    def _move(modules: Iterable[nn.Module], optimizers: Iterable[torch.optim.Optimizer], move: Any) -> None:
        for module in modules:
            for param in module.parameters():
                param.grad = None
                param.data = move(("param", id(param)), param.data)
            for owner in module.modules():
                for name, buf in owner._buffers.items():
                    if buf is not None:
                        owner._buffers[name] = move(("buffer", id(owner), name), buf)
        for optimizer in optimizers:
            for param, state in optimizer.state.items():
                for key, value in state.items():
                    if isinstance(value, Tensor):
                        state[key] = move(("state", id(param), key), value)
