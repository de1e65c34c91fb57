"""Options of the vLLM backends (``[backend] name = "vllm"`` and ``"vllm-remote"``).

Importable without torch and without vLLM, so that ``skyrl config validate`` stays fast.
``engine_kwargs`` are checked against the field names of vLLM's ``EngineArgs``, read from
vLLM's source file with ``ast`` (importing vLLM takes 10 s or more), when vLLM is installed;
the backend checks them again against the real dataclass when it starts the engine.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
from pathlib import Path
from typing import Any, Literal

import attrs

from skyrl_core.api import did_you_mean, fraction, non_negative, option, positive, seed_range

#: ``engine_kwargs`` keys that have their own ``[backend]`` option (the option wins; giving
#: both is an error) or that the backend sets itself.
OWN_OPTIONS = {
    "tensor_parallel_size": "tensor_parallel_size",
    "gpu_memory_utilization": "gpu_memory_utilization",
    "kv_cache_memory_bytes": "kv_cache_gb",
    "max_num_seqs": "max_num_seqs",
    "max_model_len": "max_model_len",
    "enable_prefix_caching": "enable_prefix_caching",
    "enforce_eager": "enforce_eager",
    "dtype": "dtype",
    "seed": "seed",
    "enable_sleep_mode": "sleep_level",
    "distributed_executor_backend": "engine_core",
}
RESERVED = {
    "model": "[model] path",
    "tokenizer": "[model] tokenizer",
    "trust_remote_code": "[model] trust_remote_code",
    "logprobs_mode": "the backend (always 'processed_logprobs': the log-probs of the distribution sampled from)",
    "worker_extension_cls": "the backend (its weight loader)",
}


@functools.lru_cache(maxsize=1)
def engine_arg_names() -> frozenset[str] | None:
    """Field names of the installed vLLM's ``EngineArgs`` (parsed, not imported); None without vLLM."""
    try:
        spec = importlib.util.find_spec("vllm")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    source = Path(next(iter(spec.submodule_search_locations))) / "engine" / "arg_utils.py"
    try:
        tree = ast.parse(source.read_text())
    except (OSError, SyntaxError):
        return None
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "EngineArgs":
            return frozenset(
                n.target.id for n in node.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)
            )
    return None


def engine_kwargs_problems(kwargs: dict[str, Any], known: frozenset[str] | None) -> list[str]:
    """Why ``kwargs`` cannot be passed to vLLM's ``EngineArgs`` (empty when they can).

    ``known`` is the set of ``EngineArgs`` field names, or None to skip the name check.
    """
    problems = []
    for key in kwargs:
        if key in OWN_OPTIONS:
            problems.append(f"{key!r} has its own option: set [backend] {OWN_OPTIONS[key]} instead")
        elif key in RESERVED:
            problems.append(f"{key!r} is set by {RESERVED[key]}; remove it")
        elif known is not None and key not in known:
            problems.append(f"{key!r} is not a vLLM engine argument.{did_you_mean(key, known)}")
    return problems


def _check_engine_kwargs(value: Any) -> str | None:
    if not isinstance(value, dict):
        return f"must be a table of vLLM engine arguments, got {value!r}"
    problems = engine_kwargs_problems(value, engine_arg_names())
    return "; ".join(problems) if problems else None


def _check_sleep_level(value: Any) -> str | None:
    return None if value in (0, 1, 2) else f"must be 0 (off), 1 or 2, got {value!r}"


@attrs.define(kw_only=True)
class VllmBackendConfig:
    """``[backend]`` options of the in-process vLLM engine (``name = "vllm"``)."""

    tensor_parallel_size: int = option(
        1,
        help="GPUs one engine shards the model over (vLLM tensor parallelism). Above 1 the engine's "
        "workers are separate processes and weights are synced through files in shared memory.",
        check=positive,
    )
    gpu_memory_utilization: float = option(
        0.9,
        help="Fraction of the GPU's memory vLLM may use for weights, activations and the KV cache "
        "(lower it when the trainer shares the GPU without sleep). Unused on CPU, see kv_cache_gb.",
        check=fraction,
    )
    kv_cache_gb: float | None = option(
        None,
        help="KV cache size in GiB. Default: on GPU whatever gpu_memory_utilization leaves; on CPU 1 GiB "
        "(vLLM's own CPU default reserves a share of all RAM).",
        check=positive,
    )
    max_num_seqs: int = option(
        256, help="Most sequences the engine decodes at once (vLLM max_num_seqs).", check=positive
    )
    max_model_len: int | None = option(
        None,
        help="Longest prompt + response in tokens (a sample that reaches it ends with finish reason "
        "'length'); default: the model's max_position_embeddings.",
        check=positive,
    )
    enable_prefix_caching: bool = option(
        True, help="Reuse the KV cache of shared prompt prefixes (reset after every weight update)."
    )
    enforce_eager: bool | None = option(
        None,
        help="Run the model eagerly: no torch.compile, no CUDA graphs. Default: true on CPU (compiling "
        "takes about a minute there), false on GPU.",
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] | None = option(
        None, help="Inference dtype; default: the [model] dtype. 'auto' = the checkpoint's dtype."
    )
    seed: int | None = option(
        None,
        help="Engine seed; default: the run seed. Every sample is seeded on its own (from its request's "
        "seed, or from this backend's seeded generator), so results do not depend on batching.",
        check=seed_range,
    )
    engine_core: Literal["in_process", "subprocess"] = option(
        "in_process",
        help="Where vLLM's scheduler and (with tensor_parallel_size = 1) the model run: 'in_process' = in "
        "this process (starts fastest; weight updates hand tensors over without copies, so every "
        "[runtime] weight_sync transport works), 'subprocess' = vLLM's engine-core process (the "
        "scheduler overlaps with this process' Python work; weights go through shared-memory files).",
    )
    weight_transfer: Literal["auto", "direct", "shm", "disk"] = option(
        "auto",
        help="How update_weights reaches the model: 'direct' = tensors handed to the in-process worker, "
        "'shm' = a safetensors file in /dev/shm read by the worker, 'disk' = the same in weight_dir. "
        "'auto' = direct when the worker runs in this process, else shm (disk without /dev/shm).",
    )
    weight_dir: str | None = option(
        None, help="Folder for weight files with weight_transfer = 'disk'; default: a temporary folder."
    )
    sleep_level: int = option(
        0,
        help="GPU only. 0 = sleep/wake are no-ops; 1 = sleep offloads the weights to CPU memory and drops "
        "the KV cache; 2 = sleep drops both (the next weight sync refills them). Enables vLLM's sleep "
        "mode, needed when the trainer shares the GPU (colocated placement).",
        check=_check_sleep_level,
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = option(
        "WARNING", help="vLLM's log level in this process (set before vLLM is first imported)."
    )
    engine_kwargs: dict[str, Any] = option(
        factory=dict,
        help="More vLLM engine arguments, passed through as given (e.g. block_size = 32, "
        "max_num_batched_tokens = 8192); names are checked against vLLM's EngineArgs.",
        check=_check_engine_kwargs,
    )


@attrs.define(kw_only=True)
class VllmRemoteConfig:
    """``[backend]`` options for an already running ``vllm serve`` (``name = "vllm-remote"``)."""

    url: str = option(help="Base URL of the server, e.g. 'http://127.0.0.1:8000' (the /v1 API lives under it).")
    served_model_name: str | None = option(
        None, help="Model name to request; default: the first (usually only) model the server lists."
    )
    api_key: str | None = option(None, help="Bearer token if the server was started with --api-key.")
    timeout_s: float = option(600.0, help="Seconds one HTTP request may take.", check=positive)
    max_concurrency: int = option(
        64, help="Most HTTP requests in flight at once (the server batches them).", check=positive
    )
    weight_dir: str | None = option(
        None,
        help="A folder both this process and the server can read and write (same machine or a shared "
        "file system). Needed for update_weights, which also requires the server to run with "
        "VLLM_SERVER_DEV_MODE=1 and --worker-extension-cls skyrl_backend_vllm.worker.SkyrlWorkerExtension.",
    )
    max_model_len: int | None = option(
        None, help="Longest prompt + response the server accepts; default: read from the server.", check=non_negative
    )
