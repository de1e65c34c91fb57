"""fsdp2 + Ray benchmark: loss parity and weak scaling over world sizes, weight-sync time by transport.

Everything runs in one process (the driver) on one Ray cluster, baselines included, and is
printed as JSON lines followed by a summary with ratios::

    python bench/fsdp2_scaling.py --world-sizes 1,2 --out fsdp2.json        # 2+ GPUs (NCCL)
    python bench/fsdp2_scaling.py --shape tiny --world-sizes 1,2 --steps 2  # CPU smoke run (gloo)

What it measures (``--shape 0.5b``: Qwen2.5-0.5B's shape with random weights, no download):

1. loss parity: the first step's loss and gradient norm at every world size vs world size 1
   on the same batch (should agree to float summation order);
2. weak scaling: ``--seqs-per-gpu`` sequences of ``--seq-len`` tokens per rank and step;
   training tokens/s per GPU at each world size, and its ratio to world size 1 (1.0 = perfect);
3. weight sync (largest world size, split placement, one engine): seconds per full sync for
   each transport in ``--transports``, and the ratio to ``object_store`` (through the driver).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import attrs
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from skyrl_core import runtime  # noqa: E402
from skyrl_core.config.schema import ModelConfig, RuntimeConfig, TinyModelConfig, TrainerConfig  # noqa: E402
from skyrl_core.protocols.strategy import TrainBatch  # noqa: E402

SHAPES = {
    "tiny": TinyModelConfig(hidden_size=64, layers=2, heads=4, kv_heads=2, intermediate_size=128),
    "0.5b": None,  # Qwen2.5-0.5B
}


def make_model(shape: str, root: Path) -> Path:
    """A model folder with random weights (and a tokenizer for the engine)."""
    from skyrl_core.models.tiny import build_tiny_model

    if shape == "tiny":
        return build_tiny_model(root / "tiny", SHAPES["tiny"])
    from transformers import Qwen2Config, Qwen2ForCausalLM

    path = build_tiny_model(root / "tok", SHAPES["tiny"])  # borrow its tokenizer files
    config = Qwen2Config(
        vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
        num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=4096, tie_word_embeddings=True,
    )
    Qwen2ForCausalLM(config).save_pretrained(path)
    return path


def make_batch(n: int, seq_len: int, vocab: int, seed: int) -> TrainBatch:
    g = torch.Generator().manual_seed(seed)
    prompt = seq_len // 4
    prompts = torch.randint(0, vocab, (n, prompt), generator=g).tolist()
    responses = torch.randint(0, vocab, (n, seq_len - prompt), generator=g).tolist()
    return TrainBatch(prompts, responses, {"loss_mask": torch.ones(n, seq_len - prompt)})


def emit(record: dict[str, Any], sink: list[dict[str, Any]]) -> None:
    sink.append(record)
    print(json.dumps(record), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="0.5b")
    parser.add_argument("--world-sizes", default="1,2")
    parser.add_argument("--seqs-per-gpu", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per world size (after one warm-up)")
    parser.add_argument("--dtype", default=None, help="float32 or bfloat16 (default: bfloat16 on GPU)")
    parser.add_argument("--transports", default="object_store,broadcast,disk")
    parser.add_argument("--out", default=None, help="also write all records as JSON here")
    args = parser.parse_args()

    import ray

    from skyrl_core.runtime.engine import RayBackend
    from skyrl_core.runtime.weight_sync import transfer_weights
    from skyrl_core.strategies.common import sft_loss_fn
    from skyrl_core.strategies.fsdp2 import Fsdp2Strategy

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    sizes = [int(s) for s in args.world_sizes.split(",")]
    gpu = torch.cuda.is_available()
    dtype = args.dtype or ("bfloat16" if gpu else "float32")
    records: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = make_model(args.shape, Path(tmp))
        model = ModelConfig(path=str(path), dtype=dtype, device="auto" if gpu else "cpu")
        vocab = 512 if args.shape == "tiny" else 151936
        trainer = attrs.evolve(TrainerConfig(), lr=1e-5, micro_batch_tokens=args.seq_len * 2,
                               gradient_checkpointing=gpu)
        need = max(sizes) + 1
        ray.init(num_cpus=max(os.cpu_count() or 1, need), include_dashboard=False, log_to_driver=False)
        parity_batch = make_batch(args.seqs_per_gpu * max(sizes), args.seq_len, vocab, seed=0)
        results: dict[int, dict[str, float]] = {}
        strategy = None
        for ws in sizes:
            runtime.configure(RuntimeConfig(mode="ray", train_gpus=ws, colocate=False, inference_gpus=1))
            strategy = Fsdp2Strategy(None, model=model, trainer=trainer, seed=0)
            first = strategy.train_step(parity_batch, sft_loss_fn())
            batch = make_batch(args.seqs_per_gpu * ws, args.seq_len, vocab, seed=1)
            strategy.train_step(batch, sft_loss_fn())  # warm-up at this size
            start = time.perf_counter()
            for _ in range(args.steps):
                strategy.train_step(batch, sft_loss_fn())
            seconds = (time.perf_counter() - start) / args.steps
            tokens = args.seqs_per_gpu * ws * args.seq_len
            results[ws] = {"loss": first["loss"], "grad_norm": first["grad_norm"],
                           "tok_s_per_gpu": tokens / seconds / ws}
            emit({"what": "train", "world_size": ws, "step_s": seconds, **results[ws]}, records)
            if ws != max(sizes):
                strategy.shutdown()
                strategy = None
        assert strategy is not None
        backend = RayBackend("native", None, model=model, seed=0)
        cfg = RuntimeConfig(mode="ray", train_gpus=max(sizes), colocate=False, inference_gpus=1)
        sync: dict[str, float] = {}
        for transport in args.transports.split(","):
            transfer_weights(strategy, backend, attrs.evolve(cfg, weight_sync=transport))  # warm-up
            start = time.perf_counter()
            stats = transfer_weights(strategy, backend, attrs.evolve(cfg, weight_sync=transport))
            sync[transport] = time.perf_counter() - start
            emit({"what": "weight_sync", "transport": transport, "seconds": sync[transport],
                  "bytes": stats["weight_sync/bytes"], "buckets": stats["weight_sync/buckets"]}, records)
        backend.shutdown()
        strategy.shutdown()
        runtime.shutdown()
        ray.shutdown()

    base = results[sizes[0]]
    print(f"\nfsdp2 on {'GPU' if gpu else 'CPU'} ({args.shape}, {dtype}); baseline: world size {sizes[0]}")
    for ws, r in results.items():
        print(f"  world size {ws}: loss diff {abs(r['loss'] - base['loss']):.2e}, grad-norm diff "
              f"{abs(r['grad_norm'] - base['grad_norm']):.2e}, {r['tok_s_per_gpu']:.0f} tok/s/GPU "
              f"(x{r['tok_s_per_gpu'] / base['tok_s_per_gpu']:.2f} of world size {sizes[0]})")
    ref = sync.get("object_store")
    for transport, seconds in sync.items():
        ratio = f" (x{ref / seconds:.2f} faster than object_store)" if ref else ""
        print(f"  weight sync {transport}: {seconds * 1000:.1f} ms{ratio}")
    if args.out:
        Path(args.out).write_text(json.dumps(records, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
