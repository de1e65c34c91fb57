"""From ``[model]`` + ``[backend]`` to SGLang ``ServerArgs`` (engine keyword arguments or server flags).

Feature detection is against the installed SGLang: the pass-through table is checked
against the fields of its ``ServerArgs``, and ``seeded_sampling = "engine"`` turns on
``enable_deterministic_inference`` only where SGLang can run it (CUDA).
"""

from __future__ import annotations

from typing import Any

from skyrl_backend_sglang.config import MANAGED_ARGS, SGLangBackendConfig, installed_server_arg_names
from skyrl_core.api import ModelConfig, SkyrlError, did_you_mean

#: ServerArgs with a dedicated [backend] field: set them there, not in ``server_args``.
DEDICATED = {
    "dtype": "dtype",
    "mem_fraction_static": "mem_fraction_static",
    "max_total_tokens": "max_total_tokens",
    "max_running_requests": "max_running_requests",
    "chunked_prefill_size": "chunked_prefill_size",
    "context_length": "context_length",
    "disable_radix_cache": "radix_cache",
    "tp_size": "tp_size",
    "dp_size": "dp_size",
    "attention_backend": "attention_backend",
    "random_seed": "seed",
}

#: KV-cache tokens on CPU when [backend] max_total_tokens is unset (SGLang's default takes ~1 GB and starts slower).
CPU_KV_TOKENS = 4096


def resolve_device(config: SGLangBackendConfig, model: ModelConfig) -> str:
    """'cpu' or 'cuda' (SGLang takes a device type; GPUs are chosen with tp_size/base_gpu_id)."""
    spec = (config.device or model.device or "auto").split(":")[0]
    if spec == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return spec


def resolve_seeded_sampling(config: SGLangBackendConfig, device: str) -> str:
    """The effective ``seeded_sampling`` mode: 'engine', 'serial' or 'off'."""
    mode = config.seeded_sampling
    if mode == "auto":
        return "engine" if device == "cuda" else "serial"
    if mode == "engine" and device != "cuda":
        raise SkyrlError(
            "[backend] seeded_sampling = 'engine' uses SGLang's enable_deterministic_inference, which needs CUDA "
            f"(device here: {device!r}). Use 'serial' (exact, one sequence at a time) or 'off' (seeds ignored)."
        )
    return mode


def engine_kwargs(config: SGLangBackendConfig, model: ModelConfig, seed: int) -> dict[str, Any]:
    """Keyword arguments of ``sglang.Engine`` for this run (every key is a ``ServerArgs`` field)."""
    device = resolve_device(config, model)
    seeded = resolve_seeded_sampling(config, device)
    args: dict[str, Any] = {
        "model_path": model.path,
        "tokenizer_path": model.tokenizer or model.path,
        "skip_tokenizer_init": True,  # token ids in and out; the plugin detokenizes for stop strings
        "device": device,
        "dtype": config.dtype or model.dtype,
        "trust_remote_code": model.trust_remote_code,
        "random_seed": config.seed if config.seed is not None else seed,
        "enable_custom_logit_processor": True,  # the contract's filters (skyrl_backend_sglang.processor)
        "log_level": "error",
        "tp_size": config.tp_size,
        "dp_size": config.dp_size,
        "disable_radix_cache": not config.radix_cache,
    }
    optional = {
        "mem_fraction_static": config.mem_fraction_static,
        "max_total_tokens": config.max_total_tokens,
        "max_running_requests": config.max_running_requests,
        "chunked_prefill_size": config.chunked_prefill_size,
        "context_length": config.context_length,
        "attention_backend": config.attention_backend,
    }
    args.update({k: v for k, v in optional.items() if v is not None})
    if device == "cpu":
        args.setdefault("attention_backend", "torch_native")
        args.setdefault("max_total_tokens", CPU_KV_TOKENS)
        args["disable_cuda_graph"] = True
    if seeded == "engine":
        args["enable_deterministic_inference"] = True
    elif seeded == "serial":
        args["max_running_requests"] = 1
    clash = sorted(set(config.server_args) & set(DEDICATED))
    if clash:
        fields = ", ".join(f"{k} -> [backend] {DEDICATED[k]}" for k in clash)
        raise SkyrlError(f"[backend] server_args: set these through their own [backend] fields: {fields}")
    args.update(config.server_args)
    check_known(args)
    return args


def check_known(args: dict[str, Any]) -> None:
    """Raise if a key is not a ``ServerArgs`` field of the installed SGLang (with "did you mean")."""
    known = _server_arg_fields()
    if known is None:
        return
    unknown = sorted(set(args) - known)
    if unknown:
        lines = [f"  - {k!r}.{did_you_mean(k, known)}" for k in unknown]
        raise SkyrlError(
            "[backend] (sglang): not ServerArgs fields of the installed SGLang:\n" + "\n".join(lines)
            + "\nSee python -m sglang.launch_server --help for the fields of this version."
        )


def _server_arg_fields() -> frozenset[str] | None:
    fields = installed_server_arg_names()
    return None if fields is None else fields | MANAGED_ARGS


def server_command(config: SGLangBackendConfig, model: ModelConfig, seed: int, port: int,
                   host: str = "127.0.0.1") -> list[str]:
    """``python -m sglang.launch_server`` arguments serving this [model]/[backend] (for mode = 'server')."""
    args = engine_kwargs(config, model, seed)
    args.pop("log_level", None)
    cmd = ["-m", "sglang.launch_server", "--host", host, "--port", str(port)]
    for key, value in args.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            if value:
                cmd.append(flag)
        elif value is not None:
            cmd += [flag, str(value)]
    return cmd
