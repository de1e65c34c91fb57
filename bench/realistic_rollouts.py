"""Realistic rollouts (issue 21): mixed prompt lengths and early stops, native backend vs ``generate``.

The forced-length bench (``bench/gpu_bench.py``: every prompt 128 tokens, every reply 512) hides
what real rollouts cost: prompts of many lengths, and replies that stop early while others go on.
This bench times the same requests through our native backend (static engine) and through
transformers ``generate``, in one process on one card, and prints tokens/s and the ratio::

    python bench/realistic_rollouts.py                                 # 0.5b and smollm2 shapes, CUDA
    python bench/realistic_rollouts.py --model-dir models/smollm2-135m-instruct   # + real weights
    python bench/realistic_rollouts.py --shapes tiny --device cpu --rows 16 --max-new 32  # smoke run

Workloads (``--rows`` rows, default 256 = 64 prompts x 4 samples; prompt lengths uniform in
``--prompt-min``..``--prompt-max``, default 32..512; temperature 1):

* ``--shapes``: random bf16 weights of a shape: ``0.5b`` (Qwen2.5-0.5B: 24 layers, hidden 896),
  ``smollm2`` (the deep and narrow llama of SmolLM2-135M: 30 layers, hidden 576, 9/3 heads, tied).
  Random weights almost never sample EOS, so each row's reply length is drawn from a log-normal
  (median ``--median-new``, sigma ``--sigma``, clipped to 8..``--max-new``): the early stops of a real
  policy. Our backend gets the length as the row's ``max_new_tokens``; ``generate`` gets a logits
  processor that forces EOS at the row's length, so both produce the same tokens. ``generate``
  runs the batch until its longest row ends (finished rows decode padding: its real cost).
* ``--model-dir``: real weights (e.g. SmolLM2-135M-Instruct from ``skyrl gsm8k import-gguf``), chat
  prompts of word problems (a question after 0-40 practice problems: from the chat template's own
  length plus one question, ~100 tokens with SmolLM2's system prompt, to ``--prompt-max``), real
  stops at the tokenizer's EOS, up to ``--max-new``.
  Both sides sample freely, so their lengths differ a little; tokens/s counts what each generated.

Each side runs once to warm up (graph capture, allocator), then ``--reps`` timed runs; the median
is reported. Prints JSON lines, then a summary table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.gpu_bench import RESULTS, log, sync  # noqa: E402  (one record list and log format for both benches)

SHAPES: dict[str, dict[str, Any]] = {
    "0.5b": dict(arch="qwen2", vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                 num_attention_heads=14, num_key_value_heads=2),
    "smollm2": dict(arch="llama", vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                    num_attention_heads=9, num_key_value_heads=3, rope_theta=100000.0),
    "tiny": dict(arch="llama", vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2),
}


def build_random_model(shape: str, root: Path, device: torch.device, dtype: torch.dtype) -> Path:
    """A model folder with random weights of ``shape`` and a small local tokenizer."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    from skyrl_core.config.schema import TinyModelConfig
    from skyrl_core.models.tiny import build_tiny_model

    tok_dir = root / "tok"  # one tokenizer for every shape of the run
    tok = AutoTokenizer.from_pretrained(tok_dir if tok_dir.exists() else build_tiny_model(tok_dir, TinyModelConfig()))
    spec = dict(SHAPES[shape])
    arch = spec.pop("arch")
    config_cls, model_cls = (Qwen2Config, Qwen2ForCausalLM) if arch == "qwen2" else (LlamaConfig, LlamaForCausalLM)
    cfg = config_cls(**spec, max_position_embeddings=4096, tie_word_embeddings=True,
                     pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    with torch.device(device):
        model = model_cls(cfg).to(dtype)
    path = root / f"model-{shape}"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    log(model=shape, params=sum(p.numel() for p in model.parameters()), path=str(path))
    del model
    return path


def random_workload(rows: int, vocab: int, args: argparse.Namespace, seed: int) -> tuple[list[list[int]], list[int]]:
    """Prompts of uniform random lengths and reply lengths from a clipped log-normal."""
    rng = random.Random(seed)
    prompts = [[rng.randrange(100, vocab - 100) for _ in range(rng.randint(args.prompt_min, args.prompt_max))]
               for _ in range(rows)]
    lengths = [min(args.max_new, max(8, round(math.exp(rng.gauss(math.log(args.median_new), args.sigma)))))
               for _ in range(rows)]
    return prompts, lengths


def chat_workload(tok: Any, rows: int, args: argparse.Namespace, seed: int) -> list[list[int]]:
    """Chat prompts of word problems: one to many questions before the one to answer (mixed lengths)."""
    rng = random.Random(seed)
    try:
        from skyrl_env_gsm8k.synthetic import make_problems

        questions = [r["question"] for r in make_problems(400, seed=seed)]
    except ImportError:  # the plugin is not installed: plain arithmetic questions
        questions = [f"What is {rng.randint(10, 99)} + {rng.randint(10, 99)}?" for _ in range(400)]
    prompts = []
    for _ in range(rows):
        target = rng.randint(args.prompt_min, args.prompt_max)
        question = "Solve this one and give the final number: " + rng.choice(questions)
        context: list[str] = []
        ids = encode(tok, question)
        while len(ids) < target and len(context) < 40:  # add practice problems up to the drawn length
            extra = rng.choice(questions)
            longer = encode(tok, "Some practice problems:\n" + "\n".join([*context, extra]) + "\n\n" + question)
            if len(longer) > args.prompt_max:
                break
            context.append(extra)
            ids = longer
        prompts.append(ids)
    return prompts


def encode(tok: Any, text: str) -> list[int]:
    ids = tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True)
    return list(ids["input_ids"] if hasattr(ids, "keys") else ids)


def run_native(backend: Any, prompts: list[list[int]], lengths: list[int] | None, max_new: int,
               stop_ids: tuple[int, ...], seed: int) -> tuple[float, int]:
    from skyrl_core.protocols.backend import GenerateRequest, SamplingParams

    requests = [GenerateRequest(p, SamplingParams(max_new_tokens=lengths[i] if lengths else max_new, temperature=1.0,
                                                  stop_token_ids=stop_ids, seed=seed + i))
                for i, p in enumerate(prompts)]
    sync(backend.device)
    start = time.perf_counter()
    results = asyncio.run(backend.generate(requests))
    sync(backend.device)
    dt = time.perf_counter() - start
    return dt, sum(len(c.token_ids) for r in results for c in r.completions)


def run_hf(model: Any, prompts: list[list[int]], lengths: list[int] | None, max_new: int, pad_id: int,
           eos_id: int) -> tuple[float, int, int]:
    """``generate`` on the left-padded batch; returns seconds, tokens generated (to EOS), decode steps."""
    from transformers import LogitsProcessor, LogitsProcessorList

    device = model.device
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = torch.tensor(p)
        mask[i, width - len(p):] = 1
    ids, mask = ids.to(device), mask.to(device)
    processors = LogitsProcessorList()
    if lengths is not None:
        stop_at = torch.tensor(lengths, device=device) - 1  # index of the reply token that must be EOS

        class ForceStop(LogitsProcessor):
            """EOS for rows at their drawn length; no host sync (generate's own stop check is the step's one)."""

            def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
                done = (stop_at <= input_ids.shape[1] - width).unsqueeze(1)
                eos_only = torch.full_like(scores[:1], float("-inf"))
                eos_only[:, eos_id] = 0.0
                return torch.where(done, eos_only, scores)

        processors.append(ForceStop())
    kwargs = dict(do_sample=True, temperature=1.0, top_p=1.0, top_k=0, pad_token_id=pad_id, eos_token_id=eos_id,
                  max_new_tokens=max(lengths) if lengths else max_new, logits_processor=processors)
    sync(device)
    start = time.perf_counter()
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, **kwargs)
    sync(device)
    dt = time.perf_counter() - start
    reply = out[:, width:]
    is_eos = reply == eos_id
    # tokens up to and including the first EOS (the whole row when it never stopped)
    first = torch.where(is_eos.any(1), is_eos.int().argmax(1) + 1, torch.full_like(is_eos[:, 0], reply.shape[1],
                                                                                  dtype=torch.long))
    return dt, int(first.sum()), int(reply.shape[1])


def profile_native(backend: Any, prompts: list[list[int]], lengths: list[int] | None, args: argparse.Namespace,
                   stop_ids: tuple[int, ...], name: str) -> None:
    """One more native call under the torch profiler: the top ops by device and by host time."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if backend.device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        run_native(backend, prompts, lengths, args.max_new, stop_ids, seed=99)
    averages = prof.key_averages()
    device_key = "self_cuda_time_total" if backend.device.type == "cuda" else "self_cpu_time_total"
    for key in dict.fromkeys((device_key, "self_cpu_time_total")):
        table = averages.table(sort_by=key, row_limit=args.profile_rows, max_name_column_width=60)
        print(f"== profile of {name}, sorted by {key} ==\n{table}", flush=True)
        if args.out:
            Path(args.out).with_suffix(f".{name}.{key}.txt").write_text(table)


def bench_one(name: str, model_path: Path, device: torch.device, dtype: str, args: argparse.Namespace,
              real: bool) -> dict[str, Any]:
    from transformers import AutoTokenizer

    from skyrl_core.backends.native import NativeBackend
    from skyrl_core.backends.native_config import NativeBackendConfig
    from skyrl_core.config.schema import ModelConfig

    tok = AutoTokenizer.from_pretrained(model_path)
    backend = NativeBackend(
        NativeBackendConfig(engine="static", dtype=dtype, max_batch_size=args.rows, max_tokens_in_flight=1 << 30,
                            compile=args.engine_compile, attention_chunks=args.attention_chunks,
                            decode_attention=args.decode_attention),
        model=ModelConfig(path=str(model_path), device=str(device), dtype=dtype),
        seed=0,
    )
    eos = tok.eos_token_id
    if real:
        prompts, lengths, stop_ids = chat_workload(tok, args.rows, args, seed=5), None, (eos,)
    else:
        vocab = backend.model.config.vocab_size
        (prompts, lengths), stop_ids = random_workload(args.rows, vocab, args, seed=5), ()
    plens = [len(p) for p in prompts]
    log(workload=name, rows=len(prompts), prompt_len_min=min(plens), prompt_len_mean=round(statistics.mean(plens), 1),
        prompt_len_max=max(plens), reply_len_mean=round(statistics.mean(lengths), 1) if lengths else None,
        reply_len_max=max(lengths) if lengths else args.max_new, real_stops=real)
    native, hf = [], []
    for rep in range(args.reps + 1):  # rep 0 warms up
        dt, tokens = run_native(backend, prompts, lengths, args.max_new, stop_ids, seed=1000 * rep)
        if rep:
            native.append((dt, tokens))
        log(workload=name, engine="native-static", rep=rep, seconds=round(dt, 3), tokens=tokens,
            tokens_per_s=round(tokens / dt), stats=dict(backend.engine.stats) if backend.engine else None)
    if args.profile:
        profile_native(backend, prompts, lengths, args, stop_ids, name)
    if args.hf:
        model = backend.model
        pad = tok.pad_token_id if tok.pad_token_id is not None else eos
        for rep in range(args.reps + 1):
            if rep == 0:  # a short warm-up only: generate has no graphs to capture
                run_hf(model, prompts[:8], [8] * 8 if lengths else None, 8, pad, eos)
                continue
            dt, tokens, steps = run_hf(model, prompts, lengths, args.max_new, pad, eos)
            hf.append((dt, tokens))
            log(workload=name, engine="transformers-generate", rep=rep, seconds=round(dt, 3), tokens=tokens,
                tokens_per_s=round(tokens / dt), decode_steps=steps,
                padded_row_steps_wasted=len(prompts) * steps - tokens)
    del backend
    if device.type == "cuda":
        torch.cuda.empty_cache()

    def med(xs: list[tuple[float, int]]) -> float:
        return statistics.median(t / s for s, t in xs)

    out = {"native_tok_s": med(native)}
    if hf:
        out["hf_tok_s"] = med(hf)
        out["ratio"] = out["native_tok_s"] / out["hf_tok_s"]
    log(workload=name, summary=out)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", default="0.5b,smollm2", help="comma list of random-weight shapes (or '')")
    parser.add_argument("--model-dir", default=None, help="real model folders (real stops), comma separated")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--prompt-min", type=int, default=32)
    parser.add_argument("--prompt-max", type=int, default=512)
    parser.add_argument("--max-new", type=int, default=512)
    parser.add_argument("--median-new", type=float, default=128.0)
    parser.add_argument("--sigma", type=float, default=0.8)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--no-hf", dest="hf", action="store_false", help="skip transformers generate")
    parser.add_argument("--attention-chunks", type=int, default=None,
                        help="[backend] attention_chunks of the static engine (default: the backend's, 1 on CUDA)")
    parser.add_argument("--decode-attention", choices=["auto", "triton", "sdpa"], default="auto",
                        help="[backend] decode_attention of the static engine")
    parser.add_argument("--engine-compile", type=lambda s: s if s == "auto" else s == "true", default="auto",
                        help="[backend] compile of the static engine: auto (on for CUDA graphs), true or false")
    parser.add_argument("--profile", action="store_true", help="one more native call under the torch profiler")
    parser.add_argument("--profile-rows", type=int, default=30)
    parser.add_argument("--out", default=None, help="also write every record as a JSON list here")
    args = parser.parse_args()
    device = torch.device(args.device)
    dtype = "bfloat16" if device.type == "cuda" else "float32"
    log(gpu=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu", torch=torch.__version__,
        transformers=__import__("transformers").__version__, argv=sys.argv[1:])
    summary: dict[str, Any] = {}
    root = Path(tempfile.mkdtemp(prefix="skyrl-rollouts-"))
    for shape in filter(None, args.shapes.split(",")):
        path = build_random_model(shape, root, device, getattr(torch, dtype))
        summary[f"random-{shape}"] = bench_one(f"random-{shape}", path, device, dtype, args, real=False)
    for model_dir in filter(None, (args.model_dir or "").split(",")):
        summary[f"real-{Path(model_dir).name}"] = bench_one(f"real-{Path(model_dir).name}", Path(model_dir), device,
                                                            dtype, args, real=True)
    log(summary=summary)
    if args.out:
        Path(args.out).write_text(json.dumps(RESULTS, indent=1) + "\n")
    print("\n== summary (" + RESULTS[0]["gpu"] + ") ==")
    for name, res in summary.items():
        print(f"{name:36s} " + "  ".join(f"{k} {v:,.1f}" for k, v in res.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
