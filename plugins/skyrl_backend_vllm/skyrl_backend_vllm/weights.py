"""Weight files for vLLM workers in another process: named tensors to one safetensors file."""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def write_safetensors(named: Sequence[tuple[str, Any]], folder: Path) -> Path:
    """Write ``(name, tensor)`` pairs to a new safetensors file in ``folder``; return its path.

    Tensors are copied to CPU. Ones that share memory with another (tied embeddings,
    views) are cloned, since safetensors refuses shared storage. The file appears under
    its final name only once complete.
    """
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, Any] = {}
    seen: set[int] = set()
    for name, tensor in named:
        t = tensor.detach().to("cpu").contiguous()
        storage = t.untyped_storage()
        if storage.data_ptr() in seen or storage.nbytes() != t.numel() * t.element_size():
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        tensors[name] = t
    path = folder / f"skyrl-weights-{os.getpid()}-{uuid.uuid4().hex[:12]}.safetensors"
    partial = path.with_name(path.name + ".partial")
    save_file(tensors, str(partial))
    partial.replace(path)
    return path
