"""Weight updates into SGLang: name checks, transports, re-sync after a release, checksums.

Transports (``[backend] weight_transport``):

* ``tensor``: ``update_weights_from_tensor`` (same host: tensors travel as multiprocessing
  handles), wrapped in ``begin_weight_update()`` / ``end_weight_update()`` where the
  installed SGLang has them (0.5.21+; without them it answers ``success = False``). The
  success flag is always checked.
* ``disk``: each update is written as a safetensors file (plus the model's config.json) to
  a folder and loaded with ``update_weights_from_disk``; client and server must see the
  same folder. The fallback for remote servers.
* ``distributed``: ``init_weights_update_group`` once, then per update
  ``update_weights_from_distributed`` while this process broadcasts the tensors as rank 0
  of an NCCL group. For engines on other GPUs or nodes. Needs CUDA; it is not exercised by
  the CPU tests of this package (unverified here).

Names are Hugging Face parameter names (SGLang fuses q/k/v and gate/up itself). Unknown
names and shape mismatches are checked against the model folder's safetensors headers
before anything is sent: SGLang would otherwise skip or crash on them.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from skyrl_core.api import SkyrlError, did_you_mean


class WeightSync:
    """Weight updates of one ``SGLangBackend``.

    Args:
        backend: the owner (its ``client`` and ``device``).
        config: ``[backend]`` options.
        model_dir: the model folder (safetensors headers give names, shapes and dtypes).
        hf: the model's config.json.
    """

    def __init__(self, backend: Any, config: Any, model_dir: Path, hf: dict[str, Any]) -> None:
        self.backend = backend
        self.config = config
        self.model_dir = model_dir
        self.shapes = _checkpoint_shapes(model_dir)
        self.tied = bool(hf.get("tie_word_embeddings", False))
        if self.tied and "lm_head.weight" not in self.shapes and "model.embed_tokens.weight" in self.shapes:
            self.shapes["lm_head.weight"] = self.shapes["model.embed_tokens.weight"]
        remote = config.mode == "server"
        wanted = config.weight_transport
        self.transport = ("disk" if remote else "tensor") if wanted == "auto" else wanted
        if self.transport == "distributed" and backend.device != "cuda":
            raise SkyrlError(
                "[backend] weight_transport = 'distributed' broadcasts over NCCL and needs CUDA; "
                "use 'tensor' (same host) or 'disk'."
            )
        self.engine_dtype = str(backend.args.get("dtype", "float32"))
        # A release that drops the weights (SGLang's memory saver, GPUs) needs them pushed again on wake.
        self.drops_weights = bool(backend.args.get("enable_memory_saver", False))
        self.held: dict[str, Any] = {}
        self.synced = False
        self._group: Any = None
        self._tmp: Path | None = None

    def transports(self) -> tuple[str, ...]:
        return ("in_process",) if self.transport == "tensor" and not self.backend.client.remote else (self.transport,)

    # -- updates ------------------------------------------------------------------------------

    def update(self, named_tensors: Iterable[tuple[str, Any]], *, asleep: bool) -> None:
        """Send ``(name, tensor)`` pairs; raise listing unknown names / shape mismatches (after the rest)."""
        known: list[tuple[str, Any]] = []
        unknown: list[str] = []
        mismatched: list[str] = []
        for name, tensor in named_tensors:
            shape = self.shapes.get(name)
            if shape is None:
                unknown.append(name)
            elif tuple(shape) != tuple(tensor.shape):
                mismatched.append(f"{name}: got {tuple(tensor.shape)}, model has {tuple(shape)}")
            else:
                known.append((name, tensor.detach()))
        if known:
            if self.drops_weights:
                self.held.update((n, t.to("cpu", copy=True)) for n, t in known)
            if not (asleep and self.drops_weights):  # else pushed by after_resume()
                self._send(known)
            self.synced = True
        if unknown or mismatched:
            lines = [f"SGLangBackend.update_weights: {len(known)} tensors sent, but:"]
            lines += [f"  - unknown name {n!r}.{did_you_mean(n, self.shapes)}" for n in unknown[:20]]
            if len(unknown) > 20:
                lines.append(f"  - ... and {len(unknown) - 20} more unknown names")
            lines += [f"  - shape mismatch {m}" for m in mismatched]
            lines.append("Send Hugging Face parameter names of this model (see model.state_dict()).")
            raise ValueError("\n".join(lines))

    def _send(self, named: list[tuple[str, Any]]) -> None:
        client = self.backend.client
        if self.transport == "tensor":
            ok, message = client.update_weights_from_tensor(named)
        elif self.transport == "disk":
            ok, message = client.update_weights_from_disk(str(self._write(named)))
        else:
            ok, message = self._distributed(named)
        if not ok:
            raise RuntimeError(
                f"SGLang rejected a weight update ({self.transport}, {len(named)} tensors, SGLang "
                f"{self.backend.version}): {message}"
            )

    def _write(self, named: list[tuple[str, Any]]) -> Path:
        """A folder with config.json and one safetensors file holding ``named`` (replaced each time)."""
        from safetensors.torch import save_file

        base = Path(self.config.weight_dir) if self.config.weight_dir else self._tmp_dir()
        folder = base / "skyrl-sglang-update"
        staging = base / "skyrl-sglang-update.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        shutil.copy(self.model_dir / "config.json", staging / "config.json")
        tensors = {n: t.to("cpu").contiguous() for n, t in named}
        save_file(tensors, str(staging / "model.safetensors"), metadata={"format": "pt"})
        shutil.rmtree(folder, ignore_errors=True)
        staging.rename(folder)
        return folder

    def _tmp_dir(self) -> Path:
        if self._tmp is None:
            self._tmp = Path(tempfile.mkdtemp(prefix="skyrl-sglang-weights-"))
        return self._tmp

    def _distributed(self, named: list[tuple[str, Any]]) -> tuple[bool, str]:
        """NCCL broadcast from this process (rank 0) to the engine's ranks (unverified on CPU-only hosts)."""
        import torch
        import torch.distributed as dist

        group = self._ensure_group()
        tensors = [t.to("cuda", non_blocking=True).contiguous() for _, t in named]
        result: dict[str, Any] = {}
        call = threading.Thread(target=lambda: result.update(out=self.backend.client.update_weights_from_distributed(
            names=[n for n, _ in named], dtypes=[str(t.dtype).removeprefix("torch.") for t in tensors],
            shapes=[list(t.shape) for t in tensors], group_name="skyrl_weights", flush_cache=False)))
        call.start()
        for tensor in tensors:
            dist.broadcast(tensor, src=0, group=group)
        call.join()
        torch.cuda.synchronize()
        return result.get("out", (False, "update_weights_from_distributed did not answer"))

    def _ensure_group(self) -> Any:
        if self._group is not None:
            return self._group
        import socket

        import torch.distributed as dist

        with socket.socket() as s:
            s.bind(("", 0))
            port = s.getsockname()[1]
        host = socket.gethostbyname(socket.gethostname())
        engine_ranks = int(self.backend.args.get("tp_size", 1)) * int(self.backend.args.get("dp_size", 1))
        result: dict[str, Any] = {}
        call = threading.Thread(target=lambda: result.update(out=self.backend.client.init_weights_update_group(
            master_address=host, master_port=port, rank_offset=1, world_size=engine_ranks + 1,
            group_name="skyrl_weights", backend="nccl")))
        call.start()
        store = dist.TCPStore(host, port, engine_ranks + 1, is_master=True)
        self._group = _new_group(store, engine_ranks + 1)
        call.join()
        ok, message = result.get("out", (False, "no answer"))
        if not ok:
            raise RuntimeError(f"SGLang init_weights_update_group failed: {message}")
        return self._group

    def after_resume(self) -> None:
        """After ``resume_memory_occupation``: push the held weights again if the release dropped them."""
        if not (self.drops_weights and self.config.sync_after_release):
            return
        if self.held:
            self._send(list(self.held.items()))
        else:  # never synced: the checkpoint's own weights
            ok, message = self.backend.client.update_weights_from_disk(str(self.model_dir))
            if not ok:
                raise RuntimeError(f"SGLang could not reload {self.model_dir} after a memory release: {message}")

    # -- verification -------------------------------------------------------------------------

    def dtypes(self) -> dict[str, str]:
        dtype = {"auto": "float32", "half": "float16"}.get(self.engine_dtype, self.engine_dtype)
        return dict.fromkeys(self.shapes, dtype)

    def checksums(self, names: list[str]) -> dict[str, tuple[str, str]]:
        """``{name: (dtype, checksum)}`` of what SGLang holds, read back with ``get_weights_by_name``."""
        import torch

        from skyrl_core.api import checksum, dtype_of

        dtypes = self.dtypes()
        out: dict[str, tuple[str, str]] = {}
        for name in names:
            shape = self.shapes.get(name)
            if shape is None:
                continue
            numel = 1
            for d in shape:
                numel *= d
            values = self.backend.client.get_weights_by_name(name, truncate_size=max(numel, shape[0] if shape else 1))
            if values is None:
                raise SkyrlError(
                    f"SGLang {self.backend.version} cannot read back {name!r} (get_weights_by_name returned nothing; "
                    "its model class may not implement it, e.g. Qwen2 in 0.5.20). Turn [runtime] verify_weights off."
                )
            held = torch.tensor(values, dtype=torch.float32).reshape(shape).to(dtype_of(dtypes[name]))
            out[name] = (dtypes[name], checksum(held))
        return out


def _new_group(store: Any, world_size: int) -> Any:
    """A process group of ``world_size`` ranks over ``store`` where this process is rank 0."""
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl", store=store, rank=0, world_size=world_size)
        return dist.group.WORLD
    raise SkyrlError(
        "[backend] weight_transport = 'distributed' needs its own NCCL group, but torch.distributed is already "
        "initialized in this process; use 'tensor' or 'disk' here."
    )


def _checkpoint_shapes(model_dir: Path) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes from the safetensors headers of ``model_dir`` (no tensor is read)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for file in sorted(model_dir.glob("*.safetensors")):
        with file.open("rb") as fh:
            size = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(size))
        for name, meta in header.items():
            if name != "__metadata__":
                shapes[name] = tuple(meta["shape"])
    if not shapes:
        raise SkyrlError(
            f"{model_dir}: no *.safetensors files, so weight names cannot be checked. The SGLang backend needs a "
            "local Hugging Face folder with safetensors weights ([model] path)."
        )
    return shapes
