"""Load the ``[model]`` section's tokenizer and causal LM (shared by backends and strategies).

``ensure_model`` (from ``skyrl_core.models.tiny``) runs first, so a missing folder with
``[model.tiny]`` set is built on the spot; a missing folder without it is a clear error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from skyrl_core.config.schema import ModelConfig
from skyrl_core.errors import SkyrlError
from skyrl_core.models import attention
from skyrl_core.models.tiny import could_be_hub_id, ensure_model

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """Turn 'auto' / 'cpu' / 'cuda' / 'cuda:N' into a ``torch.device``.

    'auto' (or None) is CUDA when available, else CPU. Asking for CUDA on a machine
    without it is an error that says so.
    """
    if isinstance(spec, torch.device):
        return spec
    if spec is None or spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except (RuntimeError, ValueError) as exc:
        raise SkyrlError(f"device = {spec!r}: not a device; use 'auto', 'cpu', 'cuda' or 'cuda:N'.") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SkyrlError(f"device = {spec!r}: CUDA is not available on this machine; use 'auto' or 'cpu'.")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise SkyrlError(f"device = {spec!r}: only {torch.cuda.device_count()} CUDA device(s) are visible.")
    return device


def resolve_dtype(name: str | torch.dtype | None, default: str = "float32") -> torch.dtype:
    """Map 'float32' / 'bfloat16' / 'float16' (or a torch dtype) to a ``torch.dtype``."""
    if isinstance(name, torch.dtype):
        return name
    key = name or default
    if key not in DTYPES:
        raise SkyrlError(f"dtype = {key!r}: unknown; use one of {', '.join(DTYPES)}.")
    return DTYPES[key]


def _chat_template_text(spec: str) -> str:
    """An inline template, or the contents of a ``.jinja`` file."""
    if "{" in spec or "\n" in spec:
        return spec
    path = Path(spec).expanduser()
    if path.is_file():
        return path.read_text(encoding="utf-8")
    raise SkyrlError(
        f"[model] chat_template = {spec!r}: not a Jinja template and no such file. Give the template "
        "text inline or the path of a .jinja file."
    )


#: Files of which a tokenizer folder has at least one (fast, slow BPE/WordPiece, SentencePiece).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "vocab.txt", "tokenizer.model")


def load_tokenizer(model_cfg: ModelConfig) -> Any:
    """Load the tokenizer of ``model_cfg`` (``tokenizer`` or else ``path``).

    Applies the ``chat_template`` override, and sets a pad token when the tokenizer has
    none (the EOS token; generation masks padding, so reusing EOS is safe).
    """
    from transformers import AutoTokenizer

    if model_cfg.tokenizer is None:
        source = str(ensure_model(model_cfg))
    else:
        source = model_cfg.tokenizer
        if not Path(source).expanduser().exists() and not could_be_hub_id(source):
            raise SkyrlError(
                f"[model] tokenizer = {source!r}: no such folder. Fix the path, or remove `tokenizer` "
                "to use the model folder's tokenizer."
            )
    key = "tokenizer" if model_cfg.tokenizer is not None else "path"
    folder = Path(source).expanduser()
    if folder.is_dir() and not any((folder / name).exists() for name in TOKENIZER_FILES):
        raise SkyrlError(
            f"[model] {key} = {source!r}: the folder has no tokenizer files (none of {', '.join(TOKENIZER_FILES)}). "
            "Save the tokenizer there (tokenizer.save_pretrained), point [model] tokenizer at a tokenizer folder, "
            "or, for a tiny test model, remove the folder and set [model.tiny] to build one."
        )
    try:
        tok = AutoTokenizer.from_pretrained(source, trust_remote_code=model_cfg.trust_remote_code)
    except (OSError, ValueError) as exc:
        raise SkyrlError(
            f"[model] {key} = {source!r}: could not load a tokenizer: {exc}\nA local folder needs tokenizer.json "
            "(or vocab files) and tokenizer_config.json; a hub id needs the hub to be reachable."
        ) from exc
    if model_cfg.chat_template is not None:
        tok.chat_template = _chat_template_text(model_cfg.chat_template)
    if tok.pad_token is None:
        if tok.eos_token is None:
            raise SkyrlError(f"tokenizer of {source!r} has neither a pad nor an EOS token; add a pad token to it.")
        tok.pad_token = tok.eos_token
    return tok


def load_causal_lm(
    model_cfg: ModelConfig,
    dtype: str | torch.dtype | None = None,
    device: str | torch.device | None = None,
) -> Any:
    """Load ``model_cfg.path`` as an ``AutoModelForCausalLM`` in eval mode.

    Args:
        model_cfg: the ``[model]`` section (a missing tiny model is built first).
        dtype: parameter dtype; defaults to ``model_cfg.dtype``.
        device: where to put it; defaults to ``model_cfg.device`` ('auto' = CUDA if available).
    """
    from transformers import AutoModelForCausalLM

    path = ensure_model(model_cfg)
    torch_dtype = resolve_dtype(dtype, default=model_cfg.dtype)
    target = resolve_device(device if device is not None else model_cfg.device)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(path),
            dtype=torch_dtype,
            # "sdpa" on the CPU: with grouped-query attention inside the kernel (skyrl_core.models.attention)
            attn_implementation=attention.implementation(model_cfg.attn_implementation, target),
            trust_remote_code=model_cfg.trust_remote_code,
        )
    except (OSError, ValueError) as exc:
        raise SkyrlError(f"[model] path = {model_cfg.path!r}: could not load a causal LM: {exc}") from exc
    return model.to(target).eval()


def companion_config(model_cfg: ModelConfig, path: str, key: str) -> ModelConfig:
    """``[model]`` pointing at another checkpoint of the run (``key``: ``ref_path`` or
    ``critic_path``): the same dtype, device and attention, no tiny model, no LoRA.

    Raises ``SkyrlError`` naming ``[model] key`` when the folder does not exist.
    """
    import attrs

    from skyrl_core.config.schema import LoraConfig

    if not Path(path).expanduser().exists() and not could_be_hub_id(path):
        raise SkyrlError(
            f"[model] {key} = {path!r}: no such folder. Point it at a Hugging Face model folder (it must use the "
            "policy's tokenizer), or remove it to start from the policy's weights."
        )
    return attrs.evolve(model_cfg, path=path, tiny=None, lora=LoraConfig())


def load_companion(
    model_cfg: ModelConfig, path: str, key: str, *, dtype: str | torch.dtype, device: str | torch.device
) -> Any:
    """The causal LM at ``[model] key`` (``ref_path`` or ``critic_path``; see ``companion_config``)."""
    cfg = companion_config(model_cfg, path, key)
    try:
        return load_causal_lm(cfg, dtype=dtype, device=device)
    except SkyrlError as exc:
        raise SkyrlError(f"[model] {key} = {path!r}: could not load a causal LM: {exc.__cause__ or exc}") from exc
