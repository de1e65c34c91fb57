"""``[model] attn_implementation = "sdpa"`` on the CPU: grouped-query attention inside the SDPA kernel.

transformers' own ``"sdpa"`` copies every key/value head once per query head that shares it
(``repeat_kv``: a copy of K and V in the forward pass, a reduction in the backward) whenever an
attention mask is passed, because CUDA's SDPA kernels fall back to the slow math path for
grouped-query attention with a mask. PyTorch's CPU flash kernel takes both (``enable_gqa=True``):
the outputs are the same, the gradients equal to rounding, and the copies are gone. Training
passes masks whenever sequences are padded or share a prompt (``[strategy] shared_prefix``), so
on the CPU ``"sdpa"`` loads as ``"skyrl_sdpa"``: this forward for masked multi-token GQA
attention, transformers' ``sdpa_attention_forward`` for everything else, and transformers'
SDPA masks. Measured on the CPU anchor's update (bench/RESULTS.md, run 8): 22 ms instead of
28-31 ms per layer's attention forward + backward.
"""

from __future__ import annotations

from typing import Any

import torch

#: The name the CPU ``"sdpa"`` is registered and loaded under.
NAME = "skyrl_sdpa"
_registered: bool | None = None


def gqa_sdpa_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature: ``query`` ``(B, H, T, D)``, ``key``/``value``
    ``(B, G, S, D)``; returns ``(B, T, H, D)``. Masked multi-token grouped-query attention on the CPU
    runs with ``enable_gqa``; every other case is transformers' ``sdpa_attention_forward``."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    groups = getattr(module, "num_key_value_groups", 1)
    plain = kwargs.get("softcap") is None and kwargs.get("position_bias") is None
    if (groups > 1 and attention_mask is not None and query.shape[2] > 1 and query.device.type == "cpu" and plain
            and key.shape[-1] == value.shape[-1]):
        out = torch.nn.functional.scaled_dot_product_attention(
            query, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling, enable_gqa=True
        )
        return out.transpose(1, 2).contiguous(), None
    return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                  is_causal=is_causal, **kwargs)


def register() -> bool:
    """Register ``NAME`` with transformers (once); False where this transformers cannot take it."""
    global _registered
    if _registered is None:
        try:
            from transformers import AttentionInterface
            from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

            AttentionInterface.register(NAME, gqa_sdpa_forward)
            AttentionMaskInterface.register(NAME, sdpa_mask)
            _registered = True
        except (ImportError, AttributeError):
            _registered = False
    return _registered


def implementation(name: str, device: torch.device) -> str:
    """The attention implementation to load ``[model] attn_implementation = name`` with on ``device``."""
    if name == "sdpa" and device.type == "cpu" and register():
        return NAME
    return name
