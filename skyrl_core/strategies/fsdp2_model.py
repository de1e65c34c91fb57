"""Building the FSDP2-sharded modules of one ``fsdp2`` worker (runs inside the Ray actor).

Every rank builds the model skeleton on the ``meta`` device (no memory), wraps it, and
shards it with ``fully_shard`` per decoder layer and then the root; only rank 0 loads the
weights from disk, and ``set_model_state_dict(..., broadcast_from_rank0=True)`` sends each
rank its shards. So host memory holds one full copy (on rank 0's node), not one per GPU.

The FSDP root is a small wrapper (``PolicyScorer`` / ``CriticScorer``) whose forward runs
the transformer body and then the output layer at the response positions only
(``model_parts.response_logits``/``response_values``, what ``local`` runs too), so that the
root's pre-forward hook gathers the embeddings, final norm and LM head once per pass.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from skyrl_core.config.schema import ModelConfig
from skyrl_core.errors import SkyrlError
from skyrl_core.strategies import model_parts
from skyrl_core.strategies.model_parts import ValueModel

PREFIX = "lm."  # state-dict prefix of the Hugging Face model inside PolicyScorer


class PolicyScorer(nn.Module):
    """FSDP root around a causal LM: logits ``(N, V)`` at the ``N`` positions that predict
    response tokens (``rows``, ``cols`` from ``batch_layout.collate``)."""

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm = lm

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None, position_ids: Tensor, rows: Tensor, cols: Tensor,
        sliced: bool = True,
    ) -> Tensor:
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids}
        return model_parts.response_logits(self.lm, inputs, rows, cols, sliced=sliced)


class CriticScorer(nn.Module):
    """FSDP root around a ``ValueModel``: values ``(N,)`` (float32) at the same positions."""

    def __init__(self, critic: ValueModel) -> None:
        super().__init__()
        self.critic = critic

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None, position_ids: Tensor, rows: Tensor, cols: Tensor
    ) -> Tensor:
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids}
        return model_parts.response_values(self.critic, inputs, rows, cols)


def hf_model(root: nn.Module) -> nn.Module:
    """The Hugging Face model inside a scorer (the LM, or the critic's transformer body)."""
    return root.lm if isinstance(root, PolicyScorer) else root.critic.backbone


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The repeated blocks to shard one by one: modules named in the model's ``_no_split_modules``
    (Hugging Face's own list of blocks), else the entries of a ``layers`` module list."""
    names = set(getattr(model, "_no_split_modules", None) or ())
    found = [m for m in model.modules() if type(m).__name__ in names]
    if found:
        return found
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] == "layers" and isinstance(module, nn.ModuleList):
            return list(module)
    raise SkyrlError(
        f"fsdp2: cannot find the decoder layers of {type(model).__name__} (no _no_split_modules and no "
        "model.layers); it cannot be sharded layer by layer. Use the local strategy for this model."
    )


def meta_skeleton(model_cfg: ModelConfig) -> nn.Module:
    """The model's architecture on the ``meta`` device (float32, no memory)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    path = str(model_cfg.path)
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=model_cfg.trust_remote_code)
    except (OSError, ValueError) as exc:
        raise SkyrlError(f"[model] path = {path!r}: a Ray worker could not read the model config: {exc}. In "
                         "multi-node runs the model folder must exist on every node (shared filesystem).") from exc
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(
            config,
            attn_implementation=model_cfg.attn_implementation,
            trust_remote_code=model_cfg.trust_remote_code,
            dtype=torch.float32,
        )


def build_roots(
    role: str, model_cfg: ModelConfig, *, seed: int, lm: nn.Module | None
) -> tuple[nn.Module, nn.Module | None]:
    """``(skeleton root, real root)`` for ``role`` (policy, ref or critic).

    The skeleton is on ``meta``; the real root (rank 0 only, ``lm`` is the loaded model) has
    the weights to broadcast. The critic's head is initialised exactly as ``local`` does
    (``ValueModel`` with a generator seeded by ``seed``).
    """
    skeleton_lm = meta_skeleton(model_cfg)
    if role != "critic":
        return PolicyScorer(skeleton_lm), (PolicyScorer(lm) if lm is not None else None)
    body = model_parts.backbone(skeleton_lm)
    if body is None:
        raise SkyrlError(
            f"[model] path = {model_cfg.path!r}: {type(skeleton_lm).__name__} exposes no transformer body "
            "(base_model), so fsdp2 cannot build a critic from it; use an estimator other than 'gae'"
        )
    width = model_parts.hidden_size(skeleton_lm)
    skeleton = CriticScorer(ValueModel(body, width, torch.Generator().manual_seed(seed)))
    real = None
    if lm is not None:
        real_body = copy.deepcopy(model_parts.backbone(lm))
        real = CriticScorer(ValueModel(real_body, width, torch.Generator().manual_seed(seed)))
    return skeleton, real


def shard(
    root: nn.Module,
    *,
    mesh: Any,
    param_dtype: torch.dtype | None,
    reduce_dtype: torch.dtype,
    reshard_after_forward: bool,
    prefetch_layers: int = 1,
) -> None:
    """``fully_shard`` every decoder layer, then ``root``; gradients are summed (not averaged)
    over ranks, because each rank's micro-batch losses are already scaled by the global totals.

    Mixed precision: parameters are gathered in ``param_dtype`` (bf16) from float32 shards and
    gradients reduced in ``reduce_dtype`` (float32 by default). With ``prefetch_layers`` N > 0 each
    layer asks for the next N layers' all-gathers when its forward starts, and for the previous
    N when its backward starts (FSDP2's explicit prefetching), so communication overlaps compute.
    """
    from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard

    mp = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=reduce_dtype) if param_dtype else None
    kwargs: dict[str, Any] = {"mesh": mesh, "reshard_after_forward": reshard_after_forward}
    if mp is not None:
        kwargs["mp_policy"] = mp
    layers = decoder_layers(hf_model(root))
    for layer in layers:
        fully_shard(layer, **kwargs)
    fully_shard(root, **kwargs)
    if prefetch_layers > 0:
        for i, layer in enumerate(layers):
            layer.set_modules_to_forward_prefetch(layers[i + 1 : i + 1 + prefetch_layers])
            layer.set_modules_to_backward_prefetch(layers[max(0, i - prefetch_layers) : i][::-1])
    for module in root.modules():
        if isinstance(module, FSDPModule):
            module.set_gradient_divide_factor(1.0)
            module.set_force_sum_reduction_for_comms(True)  # plain SUM: gloo has no PREMUL_SUM


def materialize(root: nn.Module, real: nn.Module | None, device: torch.device, rank: int) -> None:
    """Allocate the sharded ``root`` on ``device`` and fill it from rank 0's ``real`` module.

    Parameters and persistent buffers come through ``set_model_state_dict`` (which frees the
    source tensors on rank 0: ``real`` is unusable afterwards); non-persistent buffers (rotary
    tables) are broadcast separately since no state dict carries them.
    """
    import torch.distributed as dist
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    root.to_empty(device=device)
    source: dict[str, Tensor] = {}
    if rank == 0:
        assert real is not None
        source = {k: v.detach().clone() for k, v in real.state_dict().items()}
    set_model_state_dict(
        root, source, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True, strict=True)
    )
    real_modules = dict(real.named_modules()) if real is not None else {}
    for name, module in root.named_modules():
        for buffer_name in sorted(module._non_persistent_buffers_set):
            buf = module._buffers.get(buffer_name)
            if buf is None:
                continue
            if rank == 0:
                buf.copy_(real_modules[name]._buffers[buffer_name].to(device))
            dist.broadcast(buf, src=0)


def unique_weights(root: nn.Module) -> list[tuple[str, Tensor]]:
    """The Hugging Face model's parameters and persistent buffers (sharded), each tensor once
    under its first state-dict name (tied LM head left out, as ``save_pretrained`` does)."""
    lm = root.lm
    seen: set[int] = set()
    out = []
    for name, tensor in lm.state_dict(keep_vars=True).items():
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        out.append((name, tensor))
    return out


def full(tensor: Tensor) -> Tensor:
    """The whole tensor: all-gathered for a sharded ``DTensor`` (a collective: every rank
    must call it in the same order), the tensor itself otherwise."""
    from torch.distributed.tensor import DTensor

    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def offload(modules: list[nn.Module], optimizers: list[torch.optim.Optimizer]) -> None:
    """Move sharded parameters and optimizer states to CPU and free cached GPU memory."""
    _move(modules, optimizers, torch.device("cpu"))
    torch.cuda.empty_cache()


def onload(modules: list[nn.Module], optimizers: list[torch.optim.Optimizer], device: torch.device) -> None:
    """Undo ``offload``."""
    _move(modules, optimizers, device)


def _move(modules: list[nn.Module], optimizers: list[torch.optim.Optimizer], device: torch.device) -> None:
    for module in modules:
        module.to(device)  # FSDP2 moves its sharded parameters (DTensors) along
    for optimizer in optimizers:
        for state in optimizer.state.values():
            for key, value in state.items():
                if isinstance(value, Tensor) and value.device != device:
                    state[key] = value.to(device, non_blocking=True)
    if device.type == "cuda":
        torch.cuda.synchronize()


def export_hf(root: nn.Module, names: set[str], model_cfg: ModelConfig, path: Path, rank: int) -> bool:
    """Gather the full policy on rank 0 and ``save_pretrained`` the tensors ``names`` to ``path`` in
    ``[model] dtype`` (every rank must call it; returns whether this rank wrote)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    gathered = get_model_state_dict(root, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if rank != 0:
        return False
    dtype = getattr(torch, model_cfg.dtype)
    state = {}
    for key, tensor in gathered.items():
        name = key.removeprefix(PREFIX)
        if name in names:
            state[name] = tensor.to(dtype) if tensor.is_floating_point() else tensor
    meta_skeleton(model_cfg).save_pretrained(path, state_dict=state)  # empties ``state``
    # save_pretrained records the skeleton's float32; the files hold ``dtype``.
    config_file = Path(path) / "config.json"
    config = json.loads(config_file.read_text())
    config["dtype"] = model_cfg.dtype
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return True
