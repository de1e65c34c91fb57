"""The models a strategy trains, and the parts of a Hugging Face model it reaches into.

A critic is a ``ValueModel`` (a copy of the policy's transformer body plus a scalar head).
``response_logits`` and ``response_values`` run a model on collated inputs and keep only the
positions that predict response tokens; ``local`` calls them on its modules, ``fsdp2`` inside
the forward of its FSDP roots (``fsdp2_model.PolicyScorer``/``CriticScorer``). The rest is
model surgery: dropout off, activation checkpointing, tied-weight dedup.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ValueModel(nn.Module):
    """A critic: a causal-LM transformer body (``backbone``) plus a scalar ``head``.

    The strategy calls the two parts itself: ``head(backbone(...).last_hidden_state)`` maps
    hidden states ``(..., H)`` to values ``(..., 1)``.
    """

    def __init__(self, body: nn.Module, width: int, generator: torch.Generator) -> None:
        super().__init__()
        self.backbone = body
        self.head = nn.Linear(width, 1)
        with torch.no_grad():
            # Small weights so that initial values sit near 0 whatever the hidden-state scale.
            std = 1.0 / (width + 1)
            weight = torch.randn(self.head.weight.shape, generator=generator) * std
            self.head.weight.copy_(weight.to(self.head.weight.device))
            self.head.bias.zero_()


def backbone(model: nn.Module) -> nn.Module | None:
    """The transformer body of a causal LM (``model.model`` for most), or None."""
    body = getattr(model, "base_model", None)
    return body if isinstance(body, nn.Module) and body is not model else None


def hidden_size(model: nn.Module) -> int:
    """The width of ``model``'s hidden states (from its config, or its text config)."""
    config = model.config
    size = getattr(config, "hidden_size", None)
    if size is None and hasattr(config, "get_text_config"):
        size = getattr(config.get_text_config(), "hidden_size", None)
    if size is None:
        raise ValueError(f"{type(model).__name__}: config has no hidden_size; cannot size the critic's value head")
    return int(size)


def check_vocabulary(policy: nn.Module, other: nn.Module, key: str) -> None:
    """A model from ``[model] key`` (``ref_path``, ``critic_path``) must embed every token id the
    policy can produce: it has to use the policy's tokenizer."""
    from skyrl_core.errors import SkyrlError

    ours = int(policy.get_input_embeddings().weight.shape[0])
    theirs = int(other.get_input_embeddings().weight.shape[0])
    if theirs < ours:
        raise SkyrlError(
            f"[model] {key}: that model embeds {theirs} token ids but the policy {ours}; it must use the policy's "
            "tokenizer (every token the policy samples is scored by it)"
        )


@torch.no_grad()
def copy_into_reference(source: dict[str, Tensor], reference: nn.Module) -> None:
    """Copy the policy's state ``source`` (every name; tied tensors as one object under each of
    their names) into ``reference``, name by name (``reset_ref``; sharded tensors shard by shard).

    Every tensor of ``reference`` must have its counterpart of the same shape, and tensors tied in
    ``reference`` must be tied in ``source``: a reference of another architecture (``[model]
    ref_path``) cannot take the policy's weights, and ``reference`` is left unchanged.
    """
    from skyrl_core.errors import SkyrlError

    state = reference.state_dict(keep_vars=True)
    problems = [n for n, t in state.items() if n not in source or tuple(source[n].shape) != tuple(t.shape)]
    problems += [n for n in source if n not in state]
    tied: dict[int, list[str]] = {}
    for name, tensor in state.items():
        tied.setdefault(id(tensor), []).append(name)
    if not problems:
        problems = [names[0] for names in tied.values() if len({id(source[n]) for n in names}) > 1]
    if problems:
        raise SkyrlError(
            f"cannot copy the policy into the reference model: {len(problems)} tensors (e.g. {problems[0]!r}) are "
            "missing on one side, have another shape, or are tied on one side only. The reference from [model] "
            "ref_path has another architecture than the policy; set [algorithm.kl] update_ref_every_epoch = false "
            "or use a reference of the same architecture"
        )
    for name, tensor in state.items():
        tensor.copy_(source[name])


def disable_dropout(model: nn.Module) -> None:
    """Set every dropout probability in ``model`` to 0 (``nn.Dropout`` and HF attention dropout)."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
        for attr in ("attention_dropout", "dropout_p"):
            if isinstance(getattr(module, attr, None), float):
                setattr(module, attr, 0.0)


def enable_checkpointing(model: nn.Module) -> None:
    """Non-reentrant activation checkpointing of a Hugging Face model (active in train mode only)."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def unique_state(module: nn.Module) -> list[tuple[str, Tensor]]:
    """``module.state_dict()`` items (detached), each storage once under its first name."""
    seen: set[tuple[int, tuple[int, ...], tuple[int, ...]]] = set()
    items = []
    for name, tensor in module.state_dict().items():
        key = (tensor.data_ptr(), tuple(tensor.shape), tuple(tensor.stride()))
        if key not in seen:
            seen.add(key)
            items.append((name, tensor.detach()))
    return items


def response_logits(
    lm: nn.Module, inputs: dict[str, Tensor | None], rows: Tensor, cols: Tensor, *, sliced: bool
) -> Tensor:
    """Logits ``(N, V)`` of the causal LM ``lm`` at the ``N`` positions ``(rows, cols)`` that predict
    response tokens (``Collated.rows``/``cols``; ``inputs`` is ``Collated.model_inputs()``).

    ``sliced`` runs the LM head on the gathered hidden states only (``N`` rows instead of
    ``b * L``); otherwise the model computes its full logits and they are gathered.
    """
    if not sliced:
        return lm(**inputs, use_cache=False).logits[rows, cols]
    hidden = backbone(lm)(**inputs, use_cache=False).last_hidden_state
    return lm.get_output_embeddings()(hidden[rows, cols])


def response_values(critic: ValueModel, inputs: dict[str, Tensor | None], rows: Tensor, cols: Tensor) -> Tensor:
    """The critic's values ``(N,)`` (float32) at the same positions as ``response_logits``."""
    hidden = critic.backbone(**inputs, use_cache=False).last_hidden_state
    return critic.head(hidden[rows, cols]).squeeze(-1).float()


def compile_blocks(model: nn.Module, *, dynamic: bool | None = None) -> int:
    """``torch.compile`` every transformer block of ``model`` in place (regional compilation).

    The blocks are the instances of the classes a Hugging Face model names in
    ``_no_split_modules`` (its decoder layers); the layers share code, so they share their
    compilations, and the parts between them (embeddings, masks, the LM head) stay eager.
    ``Module.compile`` keeps parameter names, so state dicts, checkpoints and weight sync are
    unchanged. A block is compiled once per kind of call (training or no-grad pass, plain or
    shared-prompt layout, first shape then dynamic shapes; a key/value cache's updates run
    outside the graphs, ``shared_prefix``), more than dynamo's default limit of 8 per code
    object: the limit is raised to ``RECOMPILE_LIMIT`` for the process. Returns how many blocks
    were compiled (0: nothing to compile).
    """
    names = set(getattr(model, "_no_split_modules", None) or ())
    # by class or base class name: fsdp2's fully_shard swaps a layer's class for an `FSDP<name>` subclass
    blocks = [m for m in model.modules() if any(c.__name__ in names for c in type(m).__mro__)]
    if blocks:
        import torch._dynamo

        config = torch._dynamo.config
        name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"  # torch < 2.6
        setattr(config, name, max(getattr(config, name), RECOMPILE_LIMIT))
    for block in blocks:
        block.compile(dynamic=dynamic)
    return len(blocks)


#: Compilations per compiled code object ``compile_blocks`` allows (dynamo's default is 8).
RECOMPILE_LIMIT = 64


def uncompile_blocks(model: nn.Module) -> None:
    """Undo ``compile_blocks``: every module of ``model`` runs its eager ``forward`` again."""
    for m in model.modules():
        if getattr(m, "_compiled_call_impl", None) is not None:
            m._compiled_call_impl = None


def resolve_compile(setting: bool | str, device: torch.device) -> bool:
    """``[strategy] compile``: whether to compile the transformer blocks.

    ``"auto"`` compiles on CUDA when Triton is importable (one H100, the GRPO bench's 0.5B update:
    23 % -> 37 % MFU; bench/RESULTS.md) and not on the CPU, where inductor's C++ compile costs ~55 s
    of start-up for ~10 % of update time (bench/RESULTS.md).
    """
    if setting != "auto":
        return bool(setting)
    if device.type != "cuda":
        return False
    from torch.utils._triton import has_triton

    return bool(has_triton())
