"""fsdp2 + Ray benchmark: loss parity, weak scaling, colocated and split placement, weight sync.

Each phase starts its own Ray cluster, builds (or reuses, ``--model-dir``) one model folder
and prints JSON lines, then a summary::

    python bench/fsdp2_scaling.py --phases train,colocated,split --out fsdp2.json   # 2+ GPUs (NCCL)
    python bench/fsdp2_scaling.py --shape tiny --steps 2                            # CPU smoke run (gloo)

Phases (``--shape 0.5b``: Qwen2.5-0.5B's shape with random weights, no download):

``train``
    For every world size in ``--world-sizes``: the first step's loss and gradient norm on
    the same batch (parity with the first size: they should agree to summation order), then
    weak scaling: ``--seqs-per-gpu`` sequences of ``--seq-len`` tokens per rank and step,
    training tokens/s per GPU and its ratio to the first size (1.0 = perfect). Training
    only, so it is placed colocated (no engines are started): N GPUs for world size N.
``colocated``
    ``--colocated-gpus`` trainer ranks and one engine per GPU sharing it: ``--placement-steps``
    rounds of generate (trainer offloads, engines wake), SFT step on the samples (engines
    sleep, trainer onloads) and a verified weight sync; then seconds per sync for each
    transport of ``--transports`` that colocated placement allows (``cuda_ipc`` on GPUs).
``split``
    ``--split-train-gpus`` trainer ranks plus one engine on its own GPU: the same rounds, and
    the transports split placement allows (``broadcast``, ``disk``, ``object_store``).

Weight sync: the first sync of each transport verifies checksums (the engine must hold
exactly the trainer's weights) and is not timed; the next ``--sync-repeats`` are timed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
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
VOCAB = {"tiny": 512, "0.5b": 151936}


def make_model(shape: str, root: Path) -> Path:
    """A model folder with random weights (and a tokenizer for the engine) under ``root``, reused if there."""
    from skyrl_core.models.tiny import build_tiny_model

    path = root / shape
    if (path / "config.json").is_file():
        return path
    if shape == "tiny":
        return build_tiny_model(path, SHAPES["tiny"])
    from transformers import Qwen2Config, Qwen2ForCausalLM

    build_tiny_model(path, SHAPES["tiny"])  # its tokenizer files (ids past its vocabulary decode to nothing)
    config = Qwen2Config(
        vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
        num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=4096, tie_word_embeddings=True,
    )
    Qwen2ForCausalLM(config).save_pretrained(path)
    return path


def make_batch(n: int, seq_len: int, vocab: int, seed: int) -> TrainBatch:
    """``n`` random sequences of ``seq_len`` tokens (a quarter prompt), every response token in the loss."""
    g = torch.Generator().manual_seed(seed)
    prompt = seq_len // 4
    prompts = torch.randint(0, vocab, (n, prompt), generator=g).tolist()
    responses = torch.randint(0, vocab, (n, seq_len - prompt), generator=g).tolist()
    return TrainBatch(prompts, responses, {"loss_mask": torch.ones(n, seq_len - prompt)})


def emit(record: dict[str, Any], sink: list[dict[str, Any]]) -> None:
    sink.append(record)
    print(json.dumps(record), flush=True)


def train_phase(args: argparse.Namespace, model: ModelConfig, trainer: TrainerConfig, sink: list) -> None:
    """Loss parity and weak scaling over ``--world-sizes`` (see the module docstring)."""
    from skyrl_core.losses import sft_loss
    from skyrl_core.strategies.fsdp2 import Fsdp2Strategy

    sizes = [int(s) for s in args.world_sizes.split(",")]
    vocab = VOCAB[args.shape]
    parity_batch = make_batch(args.seqs_per_gpu * max(sizes), args.seq_len, vocab, seed=0)
    for ws in sizes:
        runtime.configure(RuntimeConfig(mode="ray", train_gpus=ws, colocate=True, inference_gpus=0))
        start = time.perf_counter()
        strategy = Fsdp2Strategy(None, model=model, trainer=trainer, seed=0)
        setup_s = time.perf_counter() - start
        first = strategy.train_step(parity_batch, sft_loss)
        batch = make_batch(args.seqs_per_gpu * ws, args.seq_len, vocab, seed=1)
        strategy.train_step(batch, sft_loss)  # warm-up at this size
        start = time.perf_counter()
        for _ in range(args.steps):
            metrics = strategy.train_step(batch, sft_loss)
        seconds = (time.perf_counter() - start) / args.steps
        tokens = args.seqs_per_gpu * ws * args.seq_len
        emit({"what": "train", "world_size": ws, "setup_s": setup_s, "step_s": seconds,
              "parity_loss": first["sft/loss"], "parity_grad_norm": first["grad_norm"],
              "tok_s_per_gpu": tokens / seconds / ws, "fwd_bwd_s": metrics["fwd_bwd_s"],
              "optimizer_s": metrics["optimizer_s"], "gpu": strategy.gpu}, sink)
        strategy.shutdown()
        runtime.shutdown()


def samples_batch(requests: list[Any], results: list[Any]) -> TrainBatch:
    """An SFT batch of the generated samples (every generated token in the loss)."""
    prompts, responses = [], []
    for request, result in zip(requests, results, strict=True):
        for completion in result.completions:
            prompts.append(list(request.prompt_ids))
            responses.append(list(completion.token_ids))
    width = max(len(r) for r in responses)
    mask = torch.zeros(len(responses), width)
    for i, r in enumerate(responses):
        mask[i, : len(r)] = 1.0
    return TrainBatch(prompts, responses, {"loss_mask": mask})


def placement_phase(
    args: argparse.Namespace, model: ModelConfig, trainer: TrainerConfig, sink: list, *, colocate: bool, gpus: int
) -> None:
    """Generate -> train -> sync rounds with engines placed colocated or split, then sync times by transport."""
    from skyrl_core.backends.native_config import NativeBackendConfig
    from skyrl_core.errors import SkyrlError
    from skyrl_core.losses import sft_loss
    from skyrl_core.protocols.backend import GenerateRequest, SamplingParams
    from skyrl_core.runtime.engine import RayBackend
    from skyrl_core.runtime.weight_sync import choose_transport, transfer_weights
    from skyrl_core.strategies.fsdp2 import Fsdp2Strategy

    placement = "colocated" if colocate else "split"
    cfg = RuntimeConfig(mode="ray", train_gpus=gpus, colocate=colocate, inference_gpus=0 if colocate else 1)
    runtime.configure(cfg)
    start = time.perf_counter()
    strategy = Fsdp2Strategy(None, model=model, trainer=trainer, seed=0)
    backend = RayBackend("native", NativeBackendConfig(engine=args.engine), model=model, seed=0)
    setup_s = time.perf_counter() - start
    transports = []
    for transport in args.transports.split(","):
        if transport == "broadcast" and colocate and strategy.gpu:
            continue  # NCCL refuses two ranks of one group on one GPU (trainer rank r and engine r share it)
        try:
            choose_transport(attrs.evolve(cfg, weight_sync=transport), direct=True, gpu=strategy.gpu)
            transports.append(transport)
        except SkyrlError:
            pass  # not available with this placement (cuda_ipc needs GPUs and colocation)
    default = choose_transport(cfg, direct=True, gpu=strategy.gpu)  # what `auto` picks: cuda_ipc or broadcast
    vocab = VOCAB[args.shape]
    g = torch.Generator().manual_seed(2)
    requests = [
        GenerateRequest(torch.randint(0, vocab, (args.seq_len // 4,), generator=g).tolist(),
                        SamplingParams(max_new_tokens=args.gen_tokens, n=2))
        for _ in range(args.seqs_per_gpu)
    ]
    rt = runtime.ray_runtime()
    loop = asyncio.new_event_loop()
    for step in range(args.placement_steps):
        t0 = time.perf_counter()
        rt.enter("generate")  # colocated: trainer offloads, engines wake (no-op when split)
        t1 = time.perf_counter()
        results = loop.run_until_complete(backend.generate(requests))
        t2 = time.perf_counter()
        rt.enter("train")  # colocated: engines sleep, trainer onloads
        t3 = time.perf_counter()
        metrics = strategy.train_step(samples_batch(requests, results), sft_loss)
        t4 = time.perf_counter()
        try:
            stats = transfer_weights(strategy, backend, attrs.evolve(cfg, weight_sync=default, verify_weights=True))
        except Exception as exc:  # record it, and go on with the driver's object store
            emit({"what": "error", "placement": placement, "transport": default, "error": repr(exc)[:2000]}, sink)
            default = "object_store"
            stats = transfer_weights(strategy, backend, attrs.evolve(cfg, weight_sync=default, verify_weights=True))
        t5 = time.perf_counter()
        emit({"what": placement, "step": step, "train_gpus": gpus, "engines": len(backend.engines),
              "to_generate_s": t1 - t0, "generate_s": t2 - t1, "to_train_s": t3 - t2, "train_step_s": t4 - t3,
              "loss": metrics["loss"], "grad_norm": metrics["grad_norm"], "sync_transport": default,
              "verified_sync_s": t5 - t4, "verified": stats["weight_sync/verified"], "setup_s": setup_s}, sink)
    for transport in transports:
        sync_cfg = attrs.evolve(cfg, weight_sync=transport)
        times = []
        try:
            stats = transfer_weights(strategy, backend, attrs.evolve(sync_cfg, verify_weights=True))
            for _ in range(args.sync_repeats):
                start = time.perf_counter()
                transfer_weights(strategy, backend, sync_cfg)
                times.append(time.perf_counter() - start)
        except Exception as exc:  # one broken transport must not hide the others
            emit({"what": "error", "placement": placement, "transport": transport, "error": repr(exc)[:2000]}, sink)
            continue
        emit({"what": "weight_sync", "placement": placement, "transport": transport,
              "median_s": statistics.median(times), "times_s": times, "verified": stats["weight_sync/verified"],
              "bytes": stats["weight_sync/bytes"], "buckets": stats["weight_sync/buckets"]}, sink)
    loop.close()
    backend.shutdown()
    strategy.shutdown()
    runtime.shutdown()


def summary(records: list[dict[str, Any]]) -> None:
    train = [r for r in records if r["what"] == "train"]
    if train:
        base = train[0]
        print(f"\nfsdp2 training on {'GPU' if base['gpu'] else 'CPU'}; baseline: world size {base['world_size']}")
        for r in train:
            print(f"  world size {r['world_size']}: loss {r['parity_loss']:.6f} (diff "
                  f"{abs(r['parity_loss'] - base['parity_loss']):.2e}), grad norm {r['parity_grad_norm']:.4f} (diff "
                  f"{abs(r['parity_grad_norm'] - base['parity_grad_norm']):.2e}), {r['tok_s_per_gpu']:.0f} tok/s/GPU "
                  f"(x{r['tok_s_per_gpu'] / base['tok_s_per_gpu']:.3f} of world size {base['world_size']})")
    for r in records:
        if r["what"] in ("colocated", "split"):
            print(f"  {r['what']} step {r['step']}: to generate {r['to_generate_s']:.2f} s, generate "
                  f"{r['generate_s']:.2f} s, to train {r['to_train_s']:.2f} s, train {r['train_step_s']:.2f} s, "
                  f"verified {r['sync_transport']} sync {r['verified_sync_s']:.2f} s, loss {r['loss']:.4f}")
    for r in records:
        if r["what"] == "error":
            print(f"  FAILED {r['placement']} {r['transport']}: {r['error'][:300]}")
    syncs = [r for r in records if r["what"] == "weight_sync"]
    for r in syncs:
        ref = next((s["median_s"] for s in syncs if s["placement"] == r["placement"]
                    and s["transport"] == "object_store"), None)
        ratio = f" (x{ref / r['median_s']:.2f} vs object_store)" if ref else ""
        print(f"  weight sync {r['placement']} {r['transport']}: {r['median_s'] * 1000:.1f} ms for "
              f"{r['bytes'] / 2**20:.0f} MiB in {r['buckets']:.0f} buckets{ratio}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="0.5b")
    parser.add_argument("--phases", default="train,colocated,split")
    parser.add_argument("--world-sizes", default="1,2")
    parser.add_argument("--colocated-gpus", type=int, default=2, help="trainer ranks (= engines) when colocated")
    parser.add_argument("--split-train-gpus", type=int, default=1, help="trainer ranks when split (+1 engine GPU)")
    parser.add_argument("--seqs-per-gpu", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per world size (after one warm-up)")
    parser.add_argument("--placement-steps", type=int, default=2, help="generate/train/sync rounds per placement")
    parser.add_argument("--gen-tokens", type=int, default=32, help="new tokens per sample in placement rounds")
    parser.add_argument("--engine", default="auto", help="native backend engine: auto, hf or static")
    parser.add_argument("--sync-repeats", type=int, default=3)
    parser.add_argument("--checkpointing", choices=("auto", "on", "off"), default="auto",
                        help="gradient checkpointing (auto: on GPU)")
    parser.add_argument("--dtype", default=None, help="float32 or bfloat16 (default: bfloat16 on GPU)")
    parser.add_argument("--transports", default="cuda_ipc,broadcast,object_store,disk",
                        help="timed after the rounds, where the placement allows them")
    parser.add_argument("--model-dir", default=None, help="build the model here, or reuse the one there")
    parser.add_argument("--out", default=None, help="also write all records as JSON here")
    args = parser.parse_args()

    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `timeout`: still write what was measured
    gpu = torch.cuda.is_available()
    dtype = args.dtype or ("bfloat16" if gpu else "float32")
    records: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = make_model(args.shape, Path(args.model_dir or tmp))
        model = ModelConfig(path=str(path), dtype=dtype, device="auto" if gpu else "cpu")
        checkpointing = gpu if args.checkpointing == "auto" else args.checkpointing == "on"
        trainer = attrs.evolve(TrainerConfig(), lr=1e-5, micro_batch_tokens=args.seq_len * 2,
                               gradient_checkpointing=checkpointing)
        workers = max(int(s) for s in args.world_sizes.split(",")) + args.colocated_gpus + args.split_train_gpus + 1
        ray.init(num_cpus=max(os.cpu_count() or 1, workers), include_dashboard=False, log_to_driver=False)
        try:
            for phase in args.phases.split(","):
                if phase == "train":
                    train_phase(args, model, trainer, records)
                elif phase in ("colocated", "split"):
                    gpus = args.colocated_gpus if phase == "colocated" else args.split_train_gpus
                    placement_phase(args, model, trainer, records, colocate=phase == "colocated", gpus=gpus)
                else:
                    parser.error(f"--phases: unknown phase {phase!r} (train, colocated, split)")
        finally:
            if args.out:
                Path(args.out).write_text(json.dumps(records, indent=2))
            runtime.shutdown()
            ray.shutdown()
    summary(records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
