"""Builtin inference backend (native) and training strategy (local)."""

from __future__ import annotations

from skyrl_core.specs import ComponentSpec
from skyrl_core.strategies.local_config import LocalStrategyConfig

BACKENDS: list[ComponentSpec] = []
STRATEGIES: list[ComponentSpec] = [
    ComponentSpec(
        "local",
        "skyrl_core.strategies.local:LocalStrategy",
        "One process on CPU or one GPU: fp32 or bf16 autocast, token-budget micro-batches, optional ref and critic.",
        LocalStrategyConfig,
    ),
]
