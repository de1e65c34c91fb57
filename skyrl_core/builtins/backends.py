"""Builtin inference backend (native) and training strategies (local, fsdp2)."""

from __future__ import annotations

from skyrl_core.backends.native_config import NativeBackendConfig
from skyrl_core.specs import ComponentSpec
from skyrl_core.strategies.fsdp2_config import Fsdp2StrategyConfig
from skyrl_core.strategies.local_config import LocalStrategyConfig

BACKENDS: list[ComponentSpec] = [
    ComponentSpec(
        "native",
        "skyrl_core.backends.native:NativeBackend",
        "torch + transformers on CPU or one GPU: batched KV-cache sampling, exact stop strings, seeds.",
        NativeBackendConfig,
    ),
]
STRATEGIES: list[ComponentSpec] = [
    ComponentSpec(
        "local",
        "skyrl_core.strategies.local:LocalStrategy",
        "One process on CPU or one GPU: fp32 or bf16 autocast, token-budget micro-batches, optional ref and critic.",
        LocalStrategyConfig,
    ),
    ComponentSpec(
        "fsdp2",
        "skyrl_core.strategies.fsdp2:Fsdp2Strategy",
        "PyTorch FSDP2 over Ray workers (one per GPU; gloo CPU workers for tests): sharded, bucketed weight sync.",
        Fsdp2StrategyConfig,
    ),
]
