"""How much GPU memory a training pass needs, and whether activation checkpointing is worth it.

``[trainer] gradient_checkpointing = "auto"`` (the default) turns checkpointing on only when a
micro-batch's activations would not fit: recomputing every layer's forward in the backward
pass costs about a third more compute, so it is only paid where memory demands it. Both
strategies decide with ``decide_checkpointing`` once, at start-up, before the model trains.

The estimate is deliberately simple and errs towards "on":

- activations kept for the backward pass of one decoder layer with fused (sdpa / flash)
  attention: about ``12 h + 4 i`` values per token (``h`` the hidden size, ``i`` the MLP width:
  the attention block's inputs, q/k/v and output, the gated MLP's three ``i``-wide tensors and
  its output), in the compute dtype, times the number of layers;
- the logits of the response positions and their gradient: ``tokens * vocab`` values in the
  compute dtype plus float32 for the log-softmax;
- what the optimizer still has to allocate (gradients and AdamW's two moments, float32), the
  caller's ``pending_bytes``.

When that exceeds ``HEADROOM`` of the free memory of the device, checkpointing goes on. On a
CPU ``auto`` means off (host memory is not measured; set ``true`` there to trade compute for
memory).
"""

from __future__ import annotations

from typing import Any

import attrs
import torch

HEADROOM = 0.85  # share of the free device memory a pass may plan to use without checkpointing
GIB = float(1 << 30)


@attrs.frozen
class CheckpointingChoice:
    """The decision and the one line that explains it (shown at start-up when ``auto`` turns it on)."""

    on: bool
    reason: str


def text_config(config: Any) -> Any:
    """The text model's config of a Hugging Face config (itself for plain causal LMs)."""
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def activation_bytes_per_token(config: Any, compute_bytes: int) -> int:
    """Estimated bytes of activations one token keeps for the backward pass (all layers,
    logits included), for a Hugging Face decoder config (see the module docstring)."""
    c = text_config(config)
    h = int(c.hidden_size)
    i = int(getattr(c, "intermediate_size", None) or 4 * h)
    layers = int(c.num_hidden_layers)
    vocab = int(c.vocab_size)
    return layers * (12 * h + 4 * i) * compute_bytes + vocab * (compute_bytes + 4)


def decide_checkpointing(
    setting: bool | str,
    *,
    config: Any,
    tokens: int,
    device: torch.device,
    compute_bytes: int,
    pending_bytes: int,
) -> CheckpointingChoice:
    """``[trainer] gradient_checkpointing`` resolved for this model and device.

    Args:
        setting: ``True``, ``False`` or ``"auto"``.
        config: the model's Hugging Face config.
        tokens: the largest micro-batch in tokens (``[trainer] micro_batch_tokens``).
        device: where the pass runs.
        compute_bytes: bytes per activation value (2 under bf16/fp16 autocast, 4 in float32).
        pending_bytes: memory the step will still allocate besides activations (gradients,
            optimizer moments not yet created).
    """
    if setting is True or setting is False:
        return CheckpointingChoice(bool(setting), "set in [trainer] gradient_checkpointing")
    if device.type != "cuda":
        return CheckpointingChoice(False, "auto: off on CPU")
    free, _total = torch.cuda.mem_get_info(device)
    need = activation_bytes_per_token(config, compute_bytes) * tokens + pending_bytes
    return fits_or_checkpoint(need, free, tokens)


def fits_or_checkpoint(need_bytes: int, free_bytes: int, tokens: int) -> CheckpointingChoice:
    """``auto``'s verdict: on when ``need_bytes`` exceeds ``HEADROOM`` of ``free_bytes``."""
    on = need_bytes > HEADROOM * free_bytes
    verdict = "on" if on else "off"
    return CheckpointingChoice(
        on,
        f"auto: {verdict}: a {tokens}-token micro-batch needs about {need_bytes / GIB:.1f} GiB (activations, "
        f"logits, gradients and optimizer states), {free_bytes / GIB:.1f} GiB of the GPU is free; set "
        "[trainer] gradient_checkpointing = true or false to choose, or lower micro_batch_tokens",
    )


def announce(choice: CheckpointingChoice, setting: bool | str, who: str) -> None:
    """Print the decision when ``auto`` turned checkpointing on (the case that costs compute)."""
    if setting == "auto" and choice.on:
        print(f"{who}: gradient checkpointing {choice.reason}", flush=True)


def optimizer_bytes(numel: int) -> int:
    """float32 gradients plus AdamW's two float32 moments for ``numel`` trainable values."""
    return 12 * numel
