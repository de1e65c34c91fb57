"""The native backend's static engine (``[backend] engine = "static"``): a static KV cache, decode
steps in CUDA graphs, sampling on the device, host checks once per window (see ``engine``).

Selected with ``[backend] engine``: ``"auto"`` (the default) uses it on CUDA (with graphs) and
on the CPU (eager steps) for supported models (Llama, Qwen2, Qwen3, Mistral), and the Hugging
Face engine otherwise (other devices, other models); ``"static"`` forces it; ``"hf"`` never
uses it. On an H100 it is 24.6x transformers ``generate`` at batch 256 (bench/RESULTS.md); on the CPU
anchor shape it is level with ``generate`` (an earlier 1.5x was OpenMP interference, RESULTS.md).
It samples and stops exactly as the Hugging Face engine does (``skyrl_core.backends.rows``).
"""

from __future__ import annotations

from typing import Any

from skyrl_core.backends.static.engine import StaticEngine
from skyrl_core.backends.static.model import unsupported_reason

__all__ = ["AUTO_DEVICES", "StaticEngine", "make_engine", "unsupported_reason"]

#: Device types on which ``engine = "auto"`` picks the static engine for a supported model.
AUTO_DEVICES = ("cuda", "cpu")


def make_engine(config: Any, model: Any, tokenizer: Any, device: Any) -> StaticEngine | None:
    """The static engine if ``[backend] engine`` asks for it: a ``StaticEngine``, or None for the HF engine.

    Raises:
        ValueError: ``engine = "static"`` with a model the static engine cannot run.
    """
    choice = config.engine
    if choice == "hf" or (choice == "auto" and getattr(device, "type", str(device)) not in AUTO_DEVICES):
        return None
    reason = unsupported_reason(model)
    if reason is not None:
        if choice == "static":
            raise ValueError(
                f"[backend] engine = 'static': {reason}. Use engine = 'auto' (falls back to the Hugging Face "
                "engine) or 'hf'."
            )
        return None
    compile_ = config.compile
    if compile_ == "auto":
        # On CUDA, where a decode step is bound by its kernel count; the CPU runs steps eagerly,
        # where per-call guard checks and compile time outweigh the fusion for the models run there.
        compile_ = getattr(device, "type", str(device)) == "cuda" and config.cuda_graphs
    return StaticEngine(
        model,
        tokenizer,
        cuda_graphs=config.cuda_graphs,
        sync_every=config.sync_every,
        prefill_tokens=config.prefill_tokens,
        compile=bool(compile_),
        attention_chunks=config.attention_chunks or (4 if getattr(device, "type", str(device)) == "cpu" else 1),
        decode_attention=config.decode_attention,
    )
