"""Options of the SGLang backend (``[backend] name = "sglang"``).

Importable without torch and without SGLang: config validation stays fast. The common
engine settings have their own fields (mapped to SGLang ``ServerArgs`` by
``skyrl_backend_sglang.server_args``); anything else goes through ``server_args``, a table
checked against the ``ServerArgs`` fields of the installed SGLang with "did you mean"
(SGLang's server_args module is imported for that only when the table is not empty).

In server mode the engine settings are the running server's own (its launch flags, read from
``/get_server_info``); the fields apply to engine mode and to ``server_args.server_command``.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
from typing import Any, Literal

import attrs

from skyrl_core.api import did_you_mean, option, positive, seed_range, unit_interval

#: ServerArgs set by the plugin itself (from [model] and the fields below); not allowed in ``server_args``.
MANAGED_ARGS = frozenset({"model_path", "tokenizer_path", "skip_tokenizer_init", "device", "log_level"})


@functools.lru_cache(maxsize=1)
def installed_server_arg_names() -> frozenset[str] | None:
    """Field names of ``sglang.srt.server_args.ServerArgs`` in the installed SGLang, or None if absent.

    Imports SGLang's server_args module (a few seconds), so callers use it only when there is
    something to check. Handles ``msgspec.Struct`` (0.5.2x) and dataclass (older) ServerArgs.
    """
    if importlib.util.find_spec("sglang") is None:
        return None
    try:
        from sglang.srt.server_args import ServerArgs
    except Exception:
        return None
    fields = getattr(ServerArgs, "__struct_fields__", None)
    if fields is None and dataclasses.is_dataclass(ServerArgs):
        fields = [f.name for f in dataclasses.fields(ServerArgs)]
    return frozenset(fields) if fields is not None else None


def check_server_args(value: dict[str, Any]) -> str | None:
    """Config check of ``server_args``: known ``ServerArgs`` fields only (when SGLang is installed)."""
    if not isinstance(value, dict):
        return f"must be a table of SGLang ServerArgs fields, got {type(value).__name__}"
    if not value:
        return None
    problems = []
    managed = sorted(set(value) & MANAGED_ARGS)
    if managed:
        problems.append(f"{managed} are set by skyrl from [model] and [backend]; remove them here")
    known = installed_server_arg_names()
    if known is not None:
        for key in sorted(set(value) - known - MANAGED_ARGS):
            problems.append(f"{key!r} is not a field of the installed SGLang's ServerArgs.{did_you_mean(key, known)}")
    return "; ".join(problems) or None


def check_url(value: str | None) -> str | None:
    if value is None or value.startswith(("http://", "https://")):
        return None
    return f"must start with http:// or https://, got {value!r}"


@attrs.define(kw_only=True)
class SGLangBackendConfig:
    """``[backend]`` options of the SGLang inference backend."""

    mode: Literal["engine", "server"] = option(
        "engine",
        help="'engine': an in-process sglang.Engine (its scheduler runs in child processes); 'server': "
        "a running SGLang HTTP server at `url` (python -m sglang.launch_server ...), driven through its "
        "native API (/generate with input ids, weight updates, /flush_cache, memory release/resume).",
    )
    url: str | None = option(
        None, help="mode = 'server': the server's base URL, e.g. 'http://127.0.0.1:30000'.", check=check_url
    )
    device: str | None = option(
        None, help="'cpu', 'cuda' (or 'auto'); default: the [model] device. Engine mode only."
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] | None = option(
        None, help="Inference dtype (ServerArgs.dtype); default: the [model] dtype."
    )
    mem_fraction_static: float | None = option(
        None,
        help="Fraction of accelerator memory for weights + KV cache (ServerArgs.mem_fraction_static); "
        "lower it when a trainer shares the GPU. Default: SGLang's choice.",
        check=unit_interval,
    )
    max_total_tokens: int | None = option(
        None,
        help="KV-cache size in tokens (ServerArgs.max_total_tokens); overrides mem_fraction_static. "
        "Default: 4096 on CPU (a small pool starts fast), SGLang's choice on GPU.",
        check=positive,
    )
    max_running_requests: int | None = option(
        None, help="Most sequences decoded together (ServerArgs.max_running_requests).", check=positive
    )
    chunked_prefill_size: int | None = option(
        None, help="Prefill chunk in tokens (ServerArgs.chunked_prefill_size); -1 disables chunking."
    )
    context_length: int | None = option(
        None,
        help="Longest prompt + response in tokens (ServerArgs.context_length); default: the model's.",
        check=positive,
    )
    radix_cache: bool = option(True, help="Prefix (radix) cache; false sets ServerArgs.disable_radix_cache.")
    tp_size: int = option(1, help="Tensor-parallel GPUs per engine (ServerArgs.tp_size).", check=positive)
    dp_size: int = option(1, help="Data-parallel replicas inside one engine (ServerArgs.dp_size).", check=positive)
    attention_backend: str | None = option(
        None,
        help="ServerArgs.attention_backend, e.g. 'flashinfer', 'fa3', 'triton'; default: 'torch_native' on "
        "CPU, SGLang's choice on GPU.",
    )
    seed: int | None = option(
        None, help="ServerArgs.random_seed; default: the run seed.", check=seed_range
    )
    seeded_sampling: Literal["auto", "engine", "serial", "off"] = option(
        "auto",
        help="How per-request seeds are honoured. 'engine': SGLang's own seeded sampler (needs "
        "enable_deterministic_inference, CUDA only). 'serial': one sequence at a time, the plugin's "
        "sampler re-seeds each draw (exact and reproducible on CPU, slow). 'off': seeds are ignored "
        "(full batching; samples are not reproducible). 'auto': 'engine' on CUDA, 'serial' on CPU.",
    )
    weight_transport: Literal["auto", "tensor", "disk", "distributed"] = option(
        "auto",
        help="How update_weights reaches SGLang: 'tensor' (update_weights_from_tensor, same host), "
        "'disk' (safetensors files + update_weights_from_disk; client and server must share "
        "`weight_dir`), 'distributed' (init_weights_update_group + update_weights_from_distributed over "
        "NCCL; GPUs). 'auto': 'tensor' in engine mode, 'disk' in server mode.",
    )
    weight_dir: str | None = option(
        None, help="Folder for 'disk' weight updates (default: a temporary folder, which suits loopback)."
    )
    sync_after_release: bool = option(
        True,
        help="After sleep() released the weights (release_memory_occupation with weights), wake() pushes "
        "the last synced weights again before generating.",
    )
    flush_cache_retries: int = option(
        20, help="Attempts of flush_cache (it fails while requests are in flight) before an error.", check=positive
    )
    request_timeout_s: float = option(
        600.0, help="Server mode: seconds to wait for one HTTP call.", check=positive
    )
    startup_timeout_s: float = option(
        300.0, help="Server mode: seconds to wait for /health at start-up.", check=positive
    )
    server_args: dict[str, Any] = option(
        factory=dict,
        help="Any other sglang ServerArgs fields, passed through in engine mode (checked against the "
        "installed SGLang with 'did you mean'), e.g. {enable_torch_compile = true}.",
        check=check_server_args,
    )
