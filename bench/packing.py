"""Sequence packing vs right-padded micro-batches: the log-prob pass and the update, one card.

Same model, same batch, same token budget, both layouts in one run (the padded one is the
baseline: longest-first micro-batches, which already keep padding low)::

    python bench/packing.py                          # Qwen2.5-0.5B shape, bf16 autocast, on CUDA
    python bench/packing.py --shape tiny --device cpu --sequences 32   # a smoke run of the script

The batch: ``--sequences`` sequences of a 128-token prompt and a response of uniformly
random length in ``[--min-response, --max-response]`` (RL responses vary that much). For
each layout it prints the cells the model computes on (rows x width, summed over
micro-batches), the no-grad log-prob pass time and one optimizer step's time (median of
``--reps`` after a warm-up), real tokens per second, and the speed-ups over the padded
layout. Layouts: padded (sdpa); packed into rows as wide as the longest sequence (sdpa,
block-diagonal mask); packed into rows as wide as the update budget on ``--wide-attn``
(default flex_attention, which skips the masked blocks).
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.gpu_bench import build_model_dir  # noqa: E402


def make_batch(n: int, prompt_len: int, lo: int, hi: int, vocab: int, seed: int = 0):
    from skyrl_core.protocols.strategy import TrainBatch

    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(lo, hi + 1, (n,), generator=g).tolist()
    prompts = torch.randint(100, vocab - 100, (n, prompt_len), generator=g).tolist()
    responses = [torch.randint(100, vocab - 100, (r,), generator=g).tolist() for r in lengths]
    width = max(lengths)
    mask = torch.zeros(n, width)
    for i, r in enumerate(lengths):
        mask[i, :r] = 1.0
    advantages = torch.randn(n, 1, generator=g).expand(n, width) * mask
    old = torch.zeros(n, width)
    return TrainBatch(prompts, responses, {"loss_mask": mask, "advantages": advantages, "old_logprobs": old})


def pg_loss(micro, out, scale):
    mask = micro.tensors["loss_mask"]
    return -(micro.tensors["advantages"] * out.logprobs * mask).sum() / scale.num_tokens, {}


def cells(batch, budget: int, packed: bool, width: int | None) -> int:
    from skyrl_core.strategies.micro_batching import pack_by_token_budget, pack_rows

    lengths = [batch.seq_len(i) for i in range(len(batch))]
    total = 0
    for group in pack_by_token_budget(lengths, budget, packed=packed, row_width=width):
        if packed:
            w = max(max(lengths[i] for i in group), width or 0)
            total += len(pack_rows([lengths[i] for i in group], w)) * w
        else:
            total += len(group) * max(lengths[i] for i in group)
    return total


def measure(model_dir: Path, device: str, batch, args, packed: bool, width: int | None = None,
            attn: str = "sdpa") -> dict[str, float]:
    from skyrl_core.config.schema import ModelConfig, TrainerConfig
    from skyrl_core.strategies.local import LocalStrategy
    from skyrl_core.strategies.local_config import LocalStrategyConfig

    dtype = "bfloat16" if device.startswith("cuda") else "float32"
    strategy = LocalStrategy(
        LocalStrategyConfig(packing=packed, packing_width=width,
                            forward_micro_batch_tokens=args.forward_micro_batch_tokens),
        model=ModelConfig(path=str(model_dir), device=device, dtype=dtype, attn_implementation=attn),
        trainer=TrainerConfig(micro_batch_tokens=args.micro_batch_tokens, gradient_checkpointing=True),
        seed=0,
    )

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def timed(fn) -> float:
        sync()
        start = time.perf_counter()
        fn()
        sync()
        return time.perf_counter() - start

    fwd = [timed(lambda: strategy.forward(batch)) for _ in range(args.reps + 1)][1:]
    upd = [timed(lambda: strategy.train_step(batch, pg_loss)) for _ in range(args.reps + 1)][1:]
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else 0.0
    tokens = sum(batch.seq_len(i) for i in range(len(batch)))
    out = {
        "layout": ("packed" if packed else "padded") + (f"-w{width}" if width else "") + f"-{attn}",
        "cells_fwd": cells(batch, args.forward_micro_batch_tokens, packed, width),
        "cells_update": cells(batch, args.micro_batch_tokens, packed, width),
        "tokens": tokens,
        "logprob_pass_s": statistics.median(fwd),
        "update_s": statistics.median(upd),
        "peak_gib": round(peak, 2),
    }
    out["logprob_tok_per_s"] = tokens / out["logprob_pass_s"]
    out["update_tok_per_s"] = tokens / out["update_s"]
    print(json.dumps(out), flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", default="0.5b")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--sequences", type=int, default=256)
    parser.add_argument("--prompt-len", type=int, default=128)
    parser.add_argument("--min-response", type=int, default=32)
    parser.add_argument("--max-response", type=int, default=512)
    parser.add_argument("--micro-batch-tokens", type=int, default=16384)
    parser.add_argument("--forward-micro-batch-tokens", type=int, default=32768)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--wide-attn", default="flex_attention",
                        help="also run packing with rows as wide as the update budget on this attention "
                        "implementation ('' to skip)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        model_dir, _ = build_model_dir(args.shape, Path(tmp), torch.device(args.device))
        from transformers import AutoConfig

        vocab = AutoConfig.from_pretrained(model_dir).vocab_size
        batch = make_batch(args.sequences, args.prompt_len, args.min_response, args.max_response, vocab)
        padded = measure(model_dir, args.device, batch, args, packed=False)
        runs = [padded]
        layouts = [(None, "sdpa")]
        if args.wide_attn:
            layouts.append((args.micro_batch_tokens, args.wide_attn))
        for width, attn in layouts:
            gc.collect()
            if args.device.startswith("cuda"):
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            try:
                runs.append(measure(model_dir, args.device, batch, args, packed=True, width=width, attn=attn))
            except Exception as exc:  # report and go on: the other layouts still count
                print(json.dumps({"layout": f"packed-w{width}-{attn}", "error": f"{type(exc).__name__}: {exc}"[:800]}))
    print(f"{'layout':28} {'cells(upd)':>11} {'tokens':>8} {'logprob s':>10} {'update s':>9} {'peak GiB':>9}"
          f" {'logprob x':>9} {'update x':>9}")
    for r in runs:
        print(f"{r['layout']:28} {r['cells_update']:>11} {r['tokens']:>8} {r['logprob_pass_s']:>10.3f} "
              f"{r['update_s']:>9.3f} {r['peak_gib']:>9} {padded['logprob_pass_s'] / r['logprob_pass_s']:>9.2f}"
              f" {padded['update_s'] / r['update_s']:>9.2f}")
    if args.out:
        Path(args.out).write_text(json.dumps(runs, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
