"""How a LoRA run's weights reach an inference engine: merged weights, or the adapter alone.

``transfer_weights`` (``skyrl_core.runtime.weight_sync``) asks ``sync_mode`` first: without
LoRA (a strategy that is not ``TrainsLoraAdapters``, or one whose ``lora_config()`` is None),
or when the engine cannot load adapters, the strategy's ``named_weights`` (merged for LoRA)
are sent as usual; when ``[model.lora] sync`` and the engine (``LoadsLoraAdapters`` with
``capabilities.lora_adapters``) choose ``adapter``, ``push_adapter`` hands the engine a
``LoraAdapter`` through its ``load_lora_adapter`` method.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import attrs
from torch import Tensor

from skyrl_core.config.schema import LoraConfig
from skyrl_core.protocols.backend import LoadsLoraAdapters
from skyrl_core.protocols.strategy import TrainsLoraAdapters
from skyrl_core.strategies.lora import ADAPTER, Gather, LoraError, adapter_state, no_gather

if TYPE_CHECKING:
    from peft import PeftModel

    from skyrl_core.protocols.backend import BackendCapabilities

SyncMode = Literal["full", "merged", "adapter"]


# -- weight sync ------------------------------------------------------------------------------


@attrs.frozen
class LoraAdapter:
    """One version of the trained adapter, as an engine with LoRA support loads it.

    Attributes:
        name: the adapter's name (``"skyrl-policy"``); a new version replaces the old one.
        version: increases with every sync (engines that key adapters by an integer id,
            like vLLM's ``LoRARequest``, can use it).
        config: peft's ``adapter_config.json`` content (``r``, ``lora_alpha``,
            ``target_modules``, ...).
        tensors: ``(peft key, tensor)`` pairs, e.g.
            ``base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`` ``(r, in)``.
    """

    name: str
    version: int
    config: dict[str, Any]
    tensors: tuple[tuple[str, Tensor], ...] = attrs.field(converter=tuple)

    def save(self, path: Path) -> Path:
        """Write the adapter as a peft folder (for engines that load adapters from disk)."""
        import safetensors.torch

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / "adapter_config.json").write_text(json.dumps(self.config, indent=2, sort_keys=True) + "\n")
        tensors = {k: t.detach().cpu().contiguous() for k, t in self.tensors}
        safetensors.torch.save_file(tensors, str(path / "adapter_model.safetensors"))
        return path


def adapter_payload(peft_model: PeftModel, version: int, *, full: Gather = no_gather) -> LoraAdapter:
    """The current adapter of ``peft_model`` as a ``LoraAdapter`` (tensors detached, on their device)."""
    config = peft_model.peft_config[ADAPTER].to_dict()
    config = {k: sorted(v) if isinstance(v, set) else v for k, v in config.items()}
    config = json.loads(json.dumps(config, default=str))  # enums and other objects as plain JSON
    tensors = [(k, full(v.detach())) for k, v in adapter_state(peft_model).items()]
    return LoraAdapter(name="skyrl-policy", version=version, config=config, tensors=tensors)


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
