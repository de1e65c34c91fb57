"""LoRA adapters (through ``peft``): the pieces a training strategy needs, as plain functions.

``[model.lora] rank > 0`` turns a strategy into a LoRA trainer. The functions here do not
own a model; ``local`` calls them in its process and ``fsdp2`` in each of its workers (every
function that reads weights takes a ``full`` callable that gathers a sharded tensor)::

    peft_model = lora.apply(hf_model, model_cfg.lora, base_path=model_cfg.path)   # base frozen
    with lora.adapters_disabled(peft_model):                                      # the KL reference
        ref_logits = hf_model(...)
    for name, tensor in lora.merged_weights(hf_model):                            # weight sync / export
        ...                                                                       # base + B @ A * alpha / r

What crosses each boundary:

* weight sync, ``sync = "merged"``: full weights under the base model's Hugging Face names,
  ``W + (B @ A) * alpha / r``, computed without touching the trained model;
* weight sync, ``sync = "adapter"``: a ``LoraAdapter`` (peft config + adapter tensors) handed
  to ``backend.load_lora_adapter`` of an engine whose ``capabilities.lora_adapters`` is true
  (the choice is made in ``lora_sync``);
* checkpoints: the adapter tensors only (``ADAPTER_WEIGHTS``, peft key names), never the base;
* export: a merged Hugging Face folder, or the adapter in peft's own folder format.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import torch
from torch import Tensor, nn

from skyrl_core.config.schema import LoraConfig, ModelConfig
from skyrl_core.errors import SkyrlError
from skyrl_core.strategies.checkpoint_files import CheckpointError, replace_dir

if TYPE_CHECKING:
    from peft import PeftModel


ADAPTER = "default"  # the one adapter a strategy trains (peft's default name)
ADAPTER_WEIGHTS = "adapter.safetensors"  # checkpoint file: the policy's adapter tensors (peft keys)
CRITIC_TRAINABLE = "critic_trainable.safetensors"  # checkpoint file: the critic's adapters + value head

Gather = Callable[[Tensor], Tensor]


class LoraError(SkyrlError):
    """A LoRA setting cannot be applied to this model, engine or checkpoint."""


def no_gather(tensor: Tensor) -> Tensor:
    """The ``full`` of an unsharded model: the tensor itself."""
    return tensor


def enabled(model_cfg: ModelConfig) -> bool:
    """Whether ``[model.lora]`` asks for adapters (``rank > 0``)."""
    lora_cfg = getattr(model_cfg, "lora", None)
    return lora_cfg is not None and lora_cfg.rank > 0


# -- building ---------------------------------------------------------------------------------


def import_peft() -> Any:
    """The ``peft`` module, or a ``LoraError`` saying how to install it."""
    try:
        import peft
    except ImportError as exc:
        raise LoraError(
            "[model.lora] rank > 0 needs the peft package: pip install 'skyrl-core[lora]' (or pip install peft)"
        ) from exc
    return peft


def peft_config(lora_cfg: LoraConfig, *, base_path: str | None = None) -> Any:
    """The ``peft.LoraConfig`` for ``[model.lora]`` (bias untouched, B initialised to 0)."""
    peft = import_peft()
    targets: str | list[str] = list(lora_cfg.target_modules)
    if targets == ["all-linear"]:
        targets = "all-linear"
    return peft.LoraConfig(
        r=lora_cfg.rank,
        lora_alpha=lora_cfg.alpha,
        lora_dropout=lora_cfg.dropout,
        target_modules=targets,
        exclude_modules=list(lora_cfg.exclude_modules) or None,
        bias="none",
        init_lora_weights=True,  # A: Kaiming-uniform, B: 0, so training starts at the base model
        base_model_name_or_path=base_path,
    )


def apply(
    model: nn.Module, lora_cfg: LoraConfig, *, base_path: str | None = None, seed: int | None = None
) -> PeftModel:
    """Wrap a Hugging Face model with LoRA adapters; every base weight is frozen.

    The adapters are injected into ``model`` in place (``returned.get_base_model() is
    model``), so calling ``model`` itself runs base + adapters. Adapter weights are float32
    even over a bf16/fp16 base (peft's ``autocast_adapter_dtype``). With ``seed`` the
    adapters' initial ``A`` is drawn from that seed alone (same adapters in every process,
    whatever the global generator went through); ``B`` starts at 0.

    Raises:
        LoraError: no module matches ``target_modules``; a matched layer is not linear; or
            the output layer is targeted while tied to the input embeddings.
    """
    peft = import_peft()
    from peft.tuners.lora import Linear as LoraLinear
    from peft.tuners.lora import LoraLayer

    if lora_cfg.rank <= 0:
        raise ValueError("lora.apply needs [model.lora] rank > 0")
    config = peft_config(lora_cfg, base_path=base_path)
    try:
        with warnings.catch_warnings(), torch.random.fork_rng(devices=[], enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            # peft asks transformers 5 through a deprecated name whether checkpointing is on.
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            wrapped = peft.get_peft_model(model, config, adapter_name=ADAPTER, autocast_adapter_dtype=True)
    except ValueError as exc:
        raise LoraError(
            f"[model.lora] target_modules = {list(lora_cfg.target_modules)!r}, exclude_modules = "
            f"{list(lora_cfg.exclude_modules)!r}: {exc}. Linear layers of {type(model).__name__}: "
            f"{', '.join(linear_module_names(model)) or 'none'}."
        ) from exc
    layers = {n: m for n, m in model.named_modules() if isinstance(m, LoraLayer)}
    odd = [f"{n} ({type(m.get_base_layer()).__name__})" for n, m in layers.items() if not isinstance(m, LoraLinear)]
    if odd:
        raise LoraError(
            f"[model.lora] target_modules: adapters are supported on linear layers only, but these matched: "
            f"{', '.join(odd[:5])}. Leave them out (exclude_modules) or use target_modules = [\"all-linear\"]."
        )
    output = model.get_output_embeddings()
    if output is not None and isinstance(output, LoraLayer) and _tied(model):
        raise LoraError(
            "[model.lora] target_modules: the output layer (lm_head) is tied to the input embeddings in this "
            "model, so an adapter on it cannot be merged into one weight; leave lm_head out"
        )
    return wrapped


def _tied(model: nn.Module) -> bool:
    config = getattr(model, "config", None)
    text = config.get_text_config() if config is not None and hasattr(config, "get_text_config") else config
    return bool(getattr(text, "tie_word_embeddings", False))


def linear_module_names(model: nn.Module) -> list[str]:
    """The distinct last name parts of ``model``'s linear layers (what ``target_modules`` matches)."""
    return sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear) and n})


def hf_model(model: nn.Module) -> nn.Module:
    """The Hugging Face model inside a ``PeftModel`` (or ``model`` itself)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def enable_input_grads(model: nn.Module) -> None:
    """Make the embedding output require grad, so that activation checkpointing (reentrant or
    not) always sees an input with a graph even though every base weight is frozen."""
    hf_model(model).enable_input_require_grads()


def adapters_disabled(model: nn.Module) -> contextlib.AbstractContextManager:
    """Context in which ``model`` computes the base model (the KL reference); no second copy
    of the weights is needed. A ``PeftModel`` uses peft's ``disable_adapter()``; any other
    module (e.g. an FSDP root holding the adapted model) has its LoRA layers switched off."""
    disable = getattr(model, "disable_adapter", None)
    if callable(disable):
        return disable()
    return _layers_off(model)


@contextlib.contextmanager
def _layers_off(model: nn.Module) -> Iterator[None]:
    layers = list(adapter_layers(model).values())
    was = [layer.disable_adapters for layer in layers]
    for layer in layers:
        layer.enable_adapters(False)
    try:
        yield
    finally:
        for layer, off in zip(layers, was, strict=True):
            layer.enable_adapters(not off)


def set_adapter_dropout(model: nn.Module, p: float) -> None:
    """Give every adapter's input dropout probability ``p`` (after a strategy zeroed all dropout
    of the model: ``[model.lora] dropout`` is the user's explicit choice and is kept)."""
    for layer in adapter_layers(model).values():
        dropout = layer.lora_dropout[ADAPTER]
        if isinstance(dropout, nn.Dropout):
            dropout.p = p


def adapter_layers(model: nn.Module) -> dict[str, Any]:
    """``{module name: peft LoRA layer}`` of the Hugging Face model (names without a peft prefix)."""
    from peft.tuners.lora import LoraLayer

    return {n: m for n, m in hf_model(model).named_modules() if isinstance(m, LoraLayer)}


# -- merged weights ---------------------------------------------------------------------------


def lora_delta(lora_a: Tensor, lora_b: Tensor, scaling: float, fan_in_fan_out: bool = False) -> Tensor:
    """The weight update of one adapter, exactly as peft merges it.

    Args:
        lora_a: ``(r, in_features)``.
        lora_b: ``(out_features, r)``.
        scaling: ``alpha / r``.
        fan_in_fan_out: the base layer stores ``(in, out)`` (GPT-2's ``Conv1D``).

    Returns:
        ``(out_features, in_features)`` (transposed when ``fan_in_fan_out``), in the
        adapters' dtype.
    """
    delta = lora_b @ lora_a
    return (delta.T if fan_in_fan_out else delta) * scaling


def _is_adapter_tensor(name: str) -> bool:
    return any(part.startswith("lora_") for part in name.split("."))


@attrs.frozen
class MergedSource:
    """Where one tensor of the merged model comes from: a base tensor and, for an adapted
    linear weight, its LoRA layer (whose delta is added)."""

    tensor: Tensor
    layer: Any = None


def merged_sources(model: nn.Module) -> dict[str, MergedSource]:
    """``{Hugging Face name: MergedSource}`` of the merged model, in state-dict order.

    Adapter tensors are left out, ``.base_layer`` is dropped from names, and each tensor comes
    once under its first name (tied embeddings: ``lm_head.weight`` is left out, as
    ``save_pretrained`` does). Tensors are the live (possibly sharded) ones, not copies.
    """
    inner = hf_model(model)
    layers = adapter_layers(inner)
    seen: set[int] = set()
    out: dict[str, MergedSource] = {}
    for name, tensor in inner.state_dict(keep_vars=True).items():
        if id(tensor) in seen or _is_adapter_tensor(name):
            continue
        seen.add(id(tensor))
        layer_name, sep, leaf = name.partition(".base_layer.")
        if sep and layer_name in layers:
            out[f"{layer_name}.{leaf}"] = MergedSource(tensor, layers[layer_name] if leaf == "weight" else None)
        else:
            out[name] = MergedSource(tensor)
    return out


def merged_tensor(source: MergedSource, *, full: Gather = no_gather) -> Tensor:
    """The full tensor of ``source``: ``W + lora_delta(A, B, alpha / r)`` (computed in float32,
    returned in ``W``'s dtype) for an adapted weight, the base tensor (detached) otherwise.

    ``full`` gathers a sharded tensor (``fsdp2`` passes its all-gather, which every rank must
    call in the same order: one call for a plain tensor, three for an adapted weight).
    """
    base = full(source.tensor.detach())
    layer = source.layer
    if layer is None:
        return base
    if layer.merged:
        raise LoraError("an adapter is merged into its base weight; unmerge it before reading merged weights")
    with torch.no_grad():
        a = full(layer.lora_A[ADAPTER].weight.detach()).float()
        b = full(layer.lora_B[ADAPTER].weight.detach()).float()
        delta = lora_delta(a, b, float(layer.scaling[ADAPTER]), bool(layer.fan_in_fan_out))
        return (base.float() + delta).to(base.dtype)


def merged_weights(model: nn.Module, *, full: Gather = no_gather) -> Iterator[tuple[str, Tensor]]:
    """The policy as full weights under the base model's Hugging Face names (see
    ``merged_sources`` and ``merged_tensor``); the model is not modified.

    Args:
        model: the Hugging Face model with adapters injected (or its ``PeftModel``).
        full: applied to each tensor before use (an all-gather for sharded models).
    """
    for name, source in merged_sources(model).items():
        yield name, merged_tensor(source, full=full)


def fold_into_base(model: nn.Module) -> None:
    """Add every adapter's delta to its base weight and zero ``B``: the model computes the same
    function, now with the adapters at their starting point (used to reset the KL reference)."""
    with torch.no_grad():
        for layer in adapter_layers(model).values():
            a, b = layer.lora_A[ADAPTER].weight, layer.lora_B[ADAPTER].weight
            weight = layer.get_base_layer().weight
            delta = lora_delta(a.float(), b.float(), float(layer.scaling[ADAPTER]), bool(layer.fan_in_fan_out))
            weight.copy_((weight.float() + delta).to(weight.dtype))
            b.zero_()


# -- adapter state (checkpoints) --------------------------------------------------------------


def adapter_state(peft_model: PeftModel) -> dict[str, Tensor]:
    """The adapter tensors under peft's key names (``base_model.model.<module>.lora_A.weight``),
    sharing storage with the live parameters."""
    from peft import get_peft_model_state_dict

    return dict(get_peft_model_state_dict(peft_model, adapter_name=ADAPTER))


def save_adapter_file(peft_model: PeftModel, file: Path, *, full: Gather = no_gather) -> None:
    """Write the adapter tensors (CPU copies) to a safetensors file."""
    import safetensors.torch

    state = {k: full(v.detach()).cpu().contiguous() for k, v in adapter_state(peft_model).items()}
    safetensors.torch.save_file(state, str(file))


def load_adapter_file(peft_model: PeftModel, file: Path) -> None:
    """Copy the adapter tensors of ``file`` into ``peft_model`` exactly (bytes included).

    Raises:
        LoraError: the file's tensors do not match this model's adapters (names or shapes:
            a different rank, different target modules, or a different base model).
    """
    import safetensors.torch

    load_state_into(adapter_state(peft_model), safetensors.torch.load_file(str(file)), source=str(file))


def trainable_state(module: nn.Module) -> dict[str, Tensor]:
    """``{name: parameter}`` of the parameters that require grad (adapters, a value head)."""
    return {n: p for n, p in module.named_parameters() if p.requires_grad}


def save_trainable_file(module: nn.Module, file: Path) -> None:
    """Write the parameters of ``module`` that require grad (CPU copies) to a safetensors file."""
    import safetensors.torch

    state = {k: v.detach().cpu().contiguous() for k, v in trainable_state(module).items()}
    safetensors.torch.save_file(state, str(file))


def load_trainable_file(module: nn.Module, file: Path) -> None:
    """Copy what ``save_trainable_file`` wrote back into ``module`` (names and shapes must match)."""
    import safetensors.torch

    load_state_into(trainable_state(module), safetensors.torch.load_file(str(file)), source=str(file))


def load_state_into(live: dict[str, Tensor], saved: dict[str, Tensor], *, source: str) -> None:
    """Copy ``saved`` into the ``live`` tensors in place, after checking names and shapes all match."""
    missing = sorted(set(live) - set(saved))
    extra = sorted(set(saved) - set(live))
    shapes = [
        f"{k}: saved {tuple(saved[k].shape)}, model {tuple(live[k].shape)}"
        for k in sorted(set(live) & set(saved))
        if tuple(saved[k].shape) != tuple(live[k].shape)
    ]
    if missing or extra or shapes:
        details = [f"missing {', '.join(missing[:3])}" if missing else "", f"unexpected {', '.join(extra[:3])}" if extra
                   else "", f"shape {shapes[0]}" if shapes else ""]
        raise LoraError(
            f"{source}: the saved adapter does not fit this model's adapters ({'; '.join(d for d in details if d)}). "
            "Was it written with the same [model.lora] rank, target_modules and exclude_modules, on the same base "
            "model? Use those settings, or start without this checkpoint."
        )
    with torch.no_grad():
        for name, tensor in live.items():
            tensor.copy_(saved[name].to(tensor.device))


def trainable_only(module: nn.Module, state: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``module``'s (possibly sharded) state dict that belong to parameters
    requiring grad: what a LoRA checkpoint keeps (the base is the model folder itself)."""
    names = {n for n, p in module.named_parameters() if p.requires_grad}
    return {k: v for k, v in state.items() if k in names}


def describe(lora_cfg: LoraConfig) -> dict[str, Any]:
    """The settings that must match between a checkpoint and the run resuming it."""
    return {
        "rank": lora_cfg.rank,
        "alpha": lora_cfg.alpha,
        "target_modules": list(lora_cfg.target_modules),
        "exclude_modules": list(lora_cfg.exclude_modules),
    }


def check_checkpoint(meta: dict[str, Any], lora_cfg: LoraConfig, path: Path) -> None:
    """Refuse a checkpoint written with LoRA settings other than this run's (or without LoRA)."""
    saved = meta.get("lora")
    wanted = describe(lora_cfg) if lora_cfg.rank > 0 else None
    if saved == wanted:
        return
    if saved is None or wanted is None:
        what = "full fine-tuning" if saved is None else f"LoRA {saved}"
        now = "full fine-tuning" if wanted is None else f"LoRA {wanted}"
    else:
        what, now = f"LoRA {saved}", f"LoRA {wanted}"
    raise CheckpointError(
        f"checkpoint {path} was written by {what}, but this run uses {now} ([model.lora]). Resume with the "
        "same [model.lora] settings, or set checkpoint.resume = 'never' to start over."
    )


# -- the adapter as engines load it -----------------------------------------------------------


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


# -- export -----------------------------------------------------------------------------------


def export_adapter(peft_model: PeftModel, path: Path, tokenizer: Any, *, full: Gather = no_gather) -> None:
    """Write the adapter in peft's folder format (``adapter_config.json`` +
    ``adapter_model.safetensors``, plus the tokenizer) to ``path``, atomically.

    Load it with ``PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), path)``.
    """
    path = Path(path)
    tmp = _tmp_sibling(path)
    try:
        adapter_payload(peft_model, 0, full=full).save(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        replace_dir(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def export_merged(model: nn.Module, path: Path, tokenizer: Any, *, dtype: str, full: Gather = no_gather) -> None:
    """Write the merged model as a plain Hugging Face folder (weights in ``dtype``), atomically.

    The folder loads with ``AutoModelForCausalLM.from_pretrained`` and needs no peft.
    """
    inner = hf_model(model)
    state = {n: t.to("cpu", getattr(torch, dtype)) for n, t in merged_weights(inner, full=full)}
    write_hf_folder(inner.config, state, path, tokenizer, dtype=dtype)


def export_sharded(
    peft_model: PeftModel, path: Path, *, adapter: bool, dtype: str, rank: int, full: Gather
) -> bool:
    """What ``export_adapter`` (``adapter``) or ``export_merged`` write, from a sharded model:
    every rank must call it (the gathers are collectives); rank 0 writes ``path`` (no
    tokenizer). Returns whether this rank wrote."""
    if adapter:
        payload = adapter_payload(peft_model, 0, full=full)
        if rank == 0:
            payload.save(Path(path))
        return rank == 0
    state = {}
    for name, tensor in merged_weights(peft_model, full=full):  # every rank gathers, rank 0 keeps
        if rank == 0:
            state[name] = tensor.to("cpu", getattr(torch, dtype))
    if rank == 0:
        write_hf_folder(hf_model(peft_model).config, state, Path(path), None, dtype=dtype)
    return rank == 0


def write_hf_folder(config: Any, state: dict[str, Tensor], path: Path, tokenizer: Any, *, dtype: str) -> None:
    """``save_pretrained`` of a model with ``config`` holding ``state`` (Hugging Face names), written
    to a temporary sibling and renamed into place. ``state`` is emptied (transformers does that)."""
    from transformers import AutoModelForCausalLM

    path = Path(path)
    tmp = _tmp_sibling(path)
    try:
        with torch.device("meta"):
            skeleton = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
        skeleton.save_pretrained(tmp, state_dict=state)
        config_file = tmp / "config.json"
        data = json.loads(config_file.read_text())
        data["dtype"] = dtype
        config_file.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        replace_dir(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _tmp_sibling(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    return tmp
