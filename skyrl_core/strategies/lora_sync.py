"""How a LoRA run's weights reach an inference engine: merged weights, or the adapter alone.

``transfer_weights`` (``skyrl_core.runtime.weight_sync``) asks ``sync_mode`` first: without
LoRA (a strategy that is not ``TrainsLoraAdapters``, or one whose ``lora_config()`` is None),
or when the engine cannot load adapters, the strategy's ``named_weights`` (merged for LoRA)
are sent as usual; when ``[model.lora] sync`` and the engine (``LoadsLoraAdapters`` with
``capabilities.lora_adapters``) choose ``adapter``, ``push_adapter`` hands the engine a
``LoraAdapter`` through its ``load_lora_adapter`` method.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from skyrl_core.config.schema import LoraConfig
from skyrl_core.protocols.backend import LoadsLoraAdapters
from skyrl_core.protocols.strategy import TrainsLoraAdapters
from skyrl_core.strategies.lora import LoraError

if TYPE_CHECKING:

    from skyrl_core.protocols.backend import BackendCapabilities

SyncMode = Literal["full", "merged", "adapter"]


# -- weight sync ------------------------------------------------------------------------------


def choose_sync(lora_cfg: LoraConfig, capabilities: BackendCapabilities | None, backend_name: str) -> SyncMode:
    """``merged`` or ``adapter`` for ``[model.lora] sync`` and the engine's capabilities.

    ``auto`` sends the adapter when the engine declares ``lora_adapters``, else merged weights.

    Raises:
        LoraError: ``sync = "adapter"`` with an engine that cannot load adapters.
    """
    supports = capabilities is not None and capabilities.lora_adapters
    if lora_cfg.sync == "merged":
        return "merged"
    if lora_cfg.sync == "adapter" and not supports:
        raise LoraError(
            f"[model.lora] sync = 'adapter': the {backend_name} backend cannot load LoRA adapters "
            "(capabilities.lora_adapters is false); use sync = 'merged' or 'auto' (full merged weights)"
        )
    return "adapter" if supports else "merged"


def sync_mode(strategy: Any, backend: Any) -> SyncMode:
    """How ``strategy``'s weights reach ``backend``: ``full`` without LoRA, else ``choose_sync``."""
    lora_cfg = strategy.lora_config() if isinstance(strategy, TrainsLoraAdapters) else None
    if lora_cfg is None or lora_cfg.rank <= 0:
        return "full"
    capabilities = backend.capabilities if isinstance(backend, LoadsLoraAdapters) else None
    return choose_sync(lora_cfg, capabilities, type(backend).__name__)


def push_adapter(strategy: Any, backend: Any) -> dict[str, float]:
    """Hand ``strategy.lora_adapter()`` to ``backend.load_lora_adapter``; return sync metrics."""
    adapter = strategy.lora_adapter()
    backend.load_lora_adapter(adapter)
    nbytes = sum(t.numel() * t.element_size() for _, t in adapter.tensors)
    return {"weight_sync/bytes": float(nbytes), "weight_sync/buckets": 1.0, "weight_sync/verified": 0.0,
            "weight_sync/adapter": 1.0}
