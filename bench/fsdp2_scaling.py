"""fsdp2 + Ray benchmark: loss parity, weak scaling, colocated and split placement, weight sync.

Each phase starts its own Ray cluster, builds (or reuses, ``--model-dir``) one model folder
and prints JSON lines, then a summary::

    python bench/fsdp2_scaling.py --phases compare --profile --dcp --out compare.json  # 1 GPU
    python bench/fsdp2_scaling.py --phases train,colocated,split --out fsdp2.json   # 2+ GPUs (NCCL)
    python bench/fsdp2_scaling.py --shape tiny --steps 2                            # CPU smoke run (gloo)

Phases (``--shape 0.5b``: Qwen2.5-0.5B's shape with random weights, no download; ``1.5b``:
Qwen2.5-1.5B's):

``compare``
    On one GPU, for each shape of ``--compare-shapes``: the same GRPO update (ppo_clip with
    entropy, ``--compare-seqs`` sequences of ``--seq-len`` tokens, ``[trainer] micro_batch_tokens``
    16384 and ``gradient_checkpointing = "auto"`` unless given) run by ``local`` in this process
    and by ``fsdp2`` at world size 1 in a Ray worker: tokens/s, MFU (6 N tokens / time / 989
    TFLOP/s), peak memory, first-step loss, and the ratio fsdp2 / local. ``--profile`` adds a
    torch profiler summary of one more update of each (top kernels; compute, copy and
    communication shares). ``--dcp`` saves a DCP checkpoint of the first shape's fsdp2 strategy,
    resumes it in a new one (same log-probs), exports the HF folder and reloads it with
    ``from_pretrained`` (same log-probs up to bf16 rounding).

``train``
    For every world size in ``--world-sizes``: the first step's loss and gradient norm on
    the same batch (parity with the first size: they should agree to summation order), then
    weak scaling: ``--seqs-per-gpu`` sequences of ``--seq-len`` tokens per rank and step,
    training tokens/s per GPU (and MFU on GPUs) and its ratio to the first size (1.0 = perfect);
    strong scaling: the parity batch (``--seqs-per-gpu`` x the largest size sequences) timed at
    every size, the first size's step time over N/first times N's. A ``scaling`` record sums up. Training
    only, so it is placed colocated (no engines are started): N GPUs for world size N.
``reshard``
    A DCP checkpoint (model and optimizer) saved at the largest of ``--world-sizes`` and resumed at
    the smallest: the same log-probs, the same next step (loss, gradient norm); the HF export saved
    at the largest reloads with ``from_pretrained`` with the same log-probs (to rounding).
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

TINY = TinyModelConfig(hidden_size=64, layers=2, heads=4, kv_heads=2, intermediate_size=128)
SHAPES: dict[str, dict[str, Any] | None] = {
    "tiny": None,  # TINY, on CPU
    "0.5b": dict(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,  # Qwen2.5-0.5B
                 num_attention_heads=14, num_key_value_heads=2, tie_word_embeddings=True),
    "1.5b": dict(vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,  # Qwen2.5-1.5B
                 num_attention_heads=12, num_key_value_heads=2, tie_word_embeddings=True),
}
VOCAB = {"tiny": 512, "0.5b": 151936, "1.5b": 151936}


def make_model(shape: str, root: Path) -> Path:
    """A model folder with random weights (and a tokenizer for the engine) under ``root``, reused if there.

    The Qwen shapes are initialised on the GPU when there is one (seconds, not minutes) and saved
    in bfloat16, as released checkpoints are."""
    from skyrl_core.models.tiny import build_tiny_model

    path = root / shape
    if (path / "config.json").is_file():
        return path
    if shape == "tiny":
        return build_tiny_model(path, TINY)
    from transformers import Qwen2Config, Qwen2ForCausalLM

    build_tiny_model(path, TINY)  # its tokenizer files (ids past its vocabulary decode to nothing)
    config = Qwen2Config(**SHAPES[shape], max_position_embeddings=4096)
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = Qwen2ForCausalLM(config)
    dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    model.to(dtype).save_pretrained(path)
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
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


def param_count(path: str) -> int:
    """Parameters of the model folder at ``path`` (built on the meta device: no memory, no weights read)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path))
    return sum(p.numel() for p in model.parameters())


def scaling_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Weak and strong scaling and loss parity of the ``train`` records, each against the first world size.

    Weak: tokens/s per GPU at N over the first size's (same work per GPU; 1.0 is perfect). Strong: the
    fixed global batch's step time at the first size over N/first times the step time at N (1.0 is
    perfect). Parity: the first step's loss and gradient norm on the same batch, as differences.
    """
    base = rows[0]
    out = {"what": "scaling", "base_world_size": base["world_size"], "sizes": {}}
    for r in rows:
        n = r["world_size"] / base["world_size"]
        out["sizes"][str(r["world_size"])] = {
            "weak": r["tok_s_per_gpu"] / base["tok_s_per_gpu"],
            "strong": base["strong_step_s"] / (n * r["strong_step_s"]),
            "loss_diff": r["parity_loss"] - base["parity_loss"],
            "grad_norm_rel_diff": (r["parity_grad_norm"] - base["parity_grad_norm"]) / base["parity_grad_norm"],
            "mfu_989": r.get("mfu_989"),
        }
    return out


def train_phase(args: argparse.Namespace, model: ModelConfig, trainer: TrainerConfig, sink: list) -> None:
    """Loss parity, weak and strong scaling over ``--world-sizes`` (see the module docstring)."""
    from skyrl_core.losses import sft_loss
    from skyrl_core.strategies.fsdp2 import Fsdp2Strategy

    sizes = [int(s) for s in args.world_sizes.split(",")]
    vocab = VOCAB[args.shape]
    params = param_count(model.path)
    # One batch for the parity step and the strong-scaling timing: the same global batch at every size.
    parity_batch = make_batch(args.seqs_per_gpu * max(sizes), args.seq_len, vocab, seed=0)
    rows = []
    for ws in sizes:
        runtime.configure(RuntimeConfig(mode="ray", train_gpus=ws, colocate=True, inference_gpus=0))
        start = time.perf_counter()
        strategy = Fsdp2Strategy(None, model=model, trainer=trainer, seed=0)
        setup_s = time.perf_counter() - start
        first = strategy.train_step(parity_batch, sft_loss)
        start = time.perf_counter()
        for _ in range(args.steps):  # strong scaling: the fixed global batch (the first step warmed it up)
            strategy.train_step(parity_batch, sft_loss)
        strong_s = (time.perf_counter() - start) / args.steps
        batch = make_batch(args.seqs_per_gpu * ws, args.seq_len, vocab, seed=1)
        strategy.train_step(batch, sft_loss)  # warm-up at this size
        start = time.perf_counter()
        for _ in range(args.steps):
            metrics = strategy.train_step(batch, sft_loss)
        seconds = (time.perf_counter() - start) / args.steps
        tokens = args.seqs_per_gpu * ws * args.seq_len
        row = {"what": "train", "world_size": ws, "setup_s": setup_s, "step_s": seconds,
               "parity_loss": first["sft/loss"], "parity_grad_norm": first["grad_norm"],
               "tok_s_per_gpu": tokens / seconds / ws, "fwd_bwd_s": metrics["fwd_bwd_s"],
               "optimizer_s": metrics["optimizer_s"], "gpu": strategy.gpu, "params": params,
               "strong_tokens": len(parity_batch.prompt_ids) * args.seq_len, "strong_step_s": strong_s,
               "mfu_989": 6 * params * tokens / seconds / ws / 989e12 if strategy.gpu else None}
        rows.append(row)
        emit(row, sink)
        strategy.shutdown()
        runtime.shutdown()
    emit(scaling_summary(rows), sink)


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
              "loss": metrics["sft/loss"], "grad_norm": metrics["grad_norm"], "sync_transport": default,
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


def rl_batch(n: int, seq_len: int, vocab: int, seed: int) -> TrainBatch:
    """``make_batch`` with GRPO's tensors: advantages (one per sequence, on every token)."""
    batch = make_batch(n, seq_len, vocab, seed)
    g = torch.Generator().manual_seed(seed + 1)
    adv = torch.randn(n, 1, generator=g).expand_as(batch.tensors["loss_mask"]).contiguous()
    batch.tensors["advantages"] = adv
    return batch


#: Kernels kept per profile: the 2026-12-08 H100 compare showed fsdp2 ~50 ms of GPU time above local
#: outside the top 15, where the two lists agreed.
PROFILE_TOP = 60


def timed_updates(strategy: Any, batch: TrainBatch, loss_fn: Any, steps: int, profile: bool) -> dict[str, Any]:
    """One warm-up update, ``steps`` timed ones, then (``profile``) one under the profiler."""
    from skyrl_core.strategies import profiling

    first = strategy.train_step(batch, loss_fn, temperature=1.0, need_entropy=True)
    start = time.perf_counter()
    for _ in range(steps):
        metrics = strategy.train_step(batch, loss_fn, temperature=1.0, need_entropy=True)
    seconds = (time.perf_counter() - start) / steps
    out = {"first": first, "last": metrics, "step_s": seconds, "profile": None}
    if profile:
        if hasattr(strategy, "start_profile"):  # fsdp2: each worker traces itself
            strategy.start_profile()
            strategy.train_step(batch, loss_fn, temperature=1.0, need_entropy=True)
            out["profile"] = strategy.stop_profile(top=PROFILE_TOP)[0]
        else:
            prof = profiling.start(torch.cuda.is_available())
            strategy.train_step(batch, loss_fn, temperature=1.0, need_entropy=True)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            out["profile"] = profiling.stop(prof, top=PROFILE_TOP)
    return out


def fsdp2_config(compile_setting: Any, text: str) -> Any:
    """The compare phase's fsdp2 ``[strategy]`` table: ``--compile`` plus ``--fsdp2-options
    "reshard_after_forward=true,prefetch_layers=2"``, each value read by its option's declared type and
    the table checked as a config file's would be (``skyrl_core.config``)."""
    from skyrl_core.config.converter import structure
    from skyrl_core.config.overrides import field_type, parse_value
    from skyrl_core.strategies.fsdp2_config import Fsdp2StrategyConfig

    table: dict[str, Any] = {"compile": compile_setting}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = (p.strip() for p in item.partition("="))
        if not sep:
            raise SystemExit(f"--fsdp2-options: {item!r} is not KEY=VALUE (e.g. reshard_after_forward=true)")
        table[key] = parse_value(value, field_type(Fsdp2StrategyConfig, [key]))
    config, issues = structure(table, Fsdp2StrategyConfig, ["strategy"])
    if issues:
        raise SystemExit("--fsdp2-options: " + "; ".join(map(str, issues)))
    return config


def compare_phase(args: argparse.Namespace, root: Path, dtype: str, trainer: TrainerConfig, sink: list) -> None:
    """``local`` vs ``fsdp2`` at world size 1 (a Ray worker) on the same GPU, the same model and the
    same GRPO update (ppo_clip, entropy), for each shape of ``--compare-shapes``; with ``--dcp`` the
    first shape's fsdp2 strategy also saves, resumes and exports (``dcp_check``)."""
    import gc

    from skyrl_core.algorithms.configs import PPOClipConfig
    from skyrl_core.algorithms.policy_losses import ppo_clip
    from skyrl_core.config.schema import AlgorithmConfig
    from skyrl_core.losses import make_policy_loss_fn
    from skyrl_core.strategies.fsdp2 import Fsdp2Strategy
    from skyrl_core.strategies.local import LocalStrategy

    gpu = torch.cuda.is_available()
    loss_fn = make_policy_loss_fn(ppo_clip, PPOClipConfig(), AlgorithmConfig(), args.seq_len, 0.0)
    fsdp2_cfg = fsdp2_config(args.compile, args.fsdp2_options)  # a mistake stops here, before any model is built
    for k, shape in enumerate(args.compare_shapes.split(",")):
        path = make_model(shape, root)
        model = ModelConfig(path=str(path), dtype=dtype, device="auto" if gpu else "cpu")
        batch = rl_batch(args.compare_seqs, args.seq_len, VOCAB[shape], seed=3)
        tokens = args.compare_seqs * args.seq_len
        rows = {}
        for name in ("local", "fsdp2"):
            # free memory decides `gradient_checkpointing = "auto"`: what the strategy started with
            free_gib = torch.cuda.mem_get_info()[0] / 2**30 if gpu else None
            if gpu:
                torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            if name == "local":
                from skyrl_core.strategies.local_config import LocalStrategyConfig

                local_cfg = LocalStrategyConfig(compile=args.compile, shared_prefix=False)
                strategy: Any = LocalStrategy(local_cfg, model=model, trainer=trainer, seed=0)
                params = sum(p.numel() for p in strategy.policy.parameters())
                batch.tensors["old_logprobs"] = strategy.forward(batch, temperature=1.0).logprobs.float().cpu()
            else:
                runtime.configure(RuntimeConfig(mode="ray", train_gpus=1, colocate=True, inference_gpus=0))
                strategy = Fsdp2Strategy(fsdp2_cfg, model=model, trainer=trainer, seed=0)
                strategy.peak_memory_gib()  # reset after start-up
            setup_s = time.perf_counter() - start
            result = timed_updates(strategy, batch, loss_fn, args.steps, args.profile)
            if name == "local":
                peak = torch.cuda.max_memory_allocated() / 2**30 if gpu else 0.0
            else:
                peak = strategy.peak_memory_gib()[0]
            row = {"what": "compare", "shape": shape, "strategy": name, "params": params, "tokens": tokens,
                   "setup_s": setup_s, "step_s": result["step_s"], "tok_s": tokens / result["step_s"],
                   "mfu_989": 6 * params * tokens / result["step_s"] / 989e12, "peak_gib": peak,
                   "first_loss": result["first"]["policy/loss"], "first_grad_norm": result["first"]["grad_norm"],
                   "micro_batches": result["last"]["micro_batches"], "fwd_bwd_s": result["last"]["fwd_bwd_s"],
                   "optimizer_s": result["last"]["optimizer_s"], "checkpointing": strategy.checkpointing.reason
                   if strategy.checkpointing.on else "off", "free_gib_at_start": free_gib, "profile": result["profile"]}
            if name == "fsdp2":
                row["fused_optimizer"] = strategy.fused_optimizer
                if args.dcp and k == 0:
                    dcp_check(strategy, model, trainer, batch, root, sink)
                strategy.shutdown()
                runtime.shutdown()
            rows[name] = row
            emit(row, sink)
            del strategy, result
            # Free what the finished strategy held before the next one measures its free memory
            # (which decides `gradient_checkpointing = "auto"`): the compiled layers' code cache can
            # keep a model alive. `free_gib_at_start` in each row shows what each one started with.
            torch._dynamo.reset()
            gc.collect()
            if gpu:
                torch.cuda.empty_cache()
        ratio = {"what": "compare_ratio", "shape": shape, "fsdp2_over_local_tok_s": rows["fsdp2"]["tok_s"]
                 / rows["local"]["tok_s"], "first_loss_diff": abs(rows["fsdp2"]["first_loss"]
                 - rows["local"]["first_loss"])}
        if rows["local"]["profile"] and rows["fsdp2"]["profile"]:
            from skyrl_core.strategies import profiling

            ratio["kernel_diff"] = profiling.diff(rows["local"]["profile"], rows["fsdp2"]["profile"])
        emit(ratio, sink)


def dcp_check(strategy: Any, model: ModelConfig, trainer: TrainerConfig, batch: TrainBatch, root: Path,
              sink: list) -> None:
    """Save a DCP checkpoint, resume it in a new fsdp2 strategy (same log-probs), export the HF
    folder, reload it with ``from_pretrained`` and compare its log-probs (to bf16 rounding)."""
    from transformers import AutoTokenizer

    from skyrl_core.strategies.fsdp2 import Fsdp2Strategy

    ckpt, export = root / "dcp-ckpt", root / "dcp-export"
    t0 = time.perf_counter()
    strategy.save_checkpoint(ckpt)
    save_s = time.perf_counter() - t0
    before = strategy.forward(batch, temperature=1.0).logprobs.float()
    t0 = time.perf_counter()
    strategy.export_hf(export, AutoTokenizer.from_pretrained(model.path))
    export_s = time.perf_counter() - t0
    resumed = Fsdp2Strategy(None, model=model, trainer=trainer, seed=1)
    t0 = time.perf_counter()
    resumed.load_checkpoint(ckpt)
    load_s = time.perf_counter() - t0
    after = resumed.forward(batch, temperature=1.0).logprobs.float()
    resumed.shutdown()
    mask = batch.tensors["loss_mask"] > 0
    emit({"what": "dcp", "save_s": save_s, "load_s": load_s, "export_s": export_s,
          "resume_max_abs_diff": float((after - before).abs()[mask].max()),
          "export_mean_abs_diff": export_logprob_diff(export, model, batch, before),
          "export_files": sorted(p.name for p in export.iterdir())}, sink)


def export_logprob_diff(export: Path, model: ModelConfig, batch: TrainBatch, before: torch.Tensor) -> float:
    """Load the HF export with ``from_pretrained`` and return the mean absolute difference of its
    log-probs from ``before`` (the strategy's) on the first few sequences of ``batch``."""
    from transformers import AutoModelForCausalLM

    mask = batch.tensors["loss_mask"] > 0
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    hf = AutoModelForCausalLM.from_pretrained(export, dtype=getattr(torch, model.dtype)).to(dev).eval()
    ids = [p + r for p, r in zip(batch.prompt_ids, batch.response_ids, strict=True)]
    diffs = []
    with torch.no_grad():
        for i, seq in enumerate(ids[:4]):  # a few sequences suffice (the whole model is compared)
            x = torch.tensor([seq], device=dev)
            logits = hf(input_ids=x).logits.float()[0]
            p = len(batch.prompt_ids[i])
            target = x[0, p:]
            lp = torch.log_softmax(logits[p - 1 : -1], -1).gather(-1, target[:, None])[:, 0].cpu()
            diffs.append(float((lp - before[i, : len(target)]).abs()[mask[i, : len(target)]].mean()))
    del hf
    return statistics.mean(diffs)


def reshard_phase(args: argparse.Namespace, model: ModelConfig, trainer: TrainerConfig, root: Path,
                  sink: list) -> None:
    """A DCP checkpoint saved at the largest of ``--world-sizes`` and resumed at the smallest (issue 25):
    after one step at N, save (model and optimizer) and export; then one more step at N. A new strategy
    at M loads the checkpoint: its log-probs must equal N's at the save (to reduction order), and the
    same next step must give the same loss and gradient norm (the optimizer state came back too). The
    HF export of N reloads with ``from_pretrained`` and gives N's log-probs (to rounding)."""
    from transformers import AutoTokenizer

    from skyrl_core.losses import sft_loss
    from skyrl_core.strategies.fsdp2 import Fsdp2Strategy

    sizes = sorted({int(s) for s in args.world_sizes.split(",")})
    if len(sizes) < 2:
        raise SystemExit("the reshard phase needs two different --world-sizes (saved at the largest, "
                         "resumed at the smallest)")
    n, m = sizes[-1], sizes[0]
    vocab = VOCAB[args.shape]
    first, second = (make_batch(args.seqs_per_gpu * n, args.seq_len, vocab, seed=s) for s in (5, 6))
    ckpt, export = root / f"reshard-ckpt-{n}", root / f"reshard-export-{n}"
    results = {}
    for ws in (n, m):
        runtime.configure(RuntimeConfig(mode="ray", train_gpus=ws, colocate=True, inference_gpus=0))
        strategy = Fsdp2Strategy(None, model=model, trainer=trainer, seed=0 if ws == n else 1)
        t0 = time.perf_counter()
        if ws == n:
            strategy.train_step(first, sft_loss)
            strategy.save_checkpoint(ckpt)
            save_s = time.perf_counter() - t0
            strategy.export_hf(export, AutoTokenizer.from_pretrained(model.path))
        else:
            strategy.load_checkpoint(ckpt)
            load_s = time.perf_counter() - t0
        logprobs = strategy.forward(second, temperature=1.0).logprobs.float()
        step = strategy.train_step(second, sft_loss)
        results[ws] = (logprobs, step["sft/loss"], step["grad_norm"])
        strategy.shutdown()
        runtime.shutdown()
    mask = second.tensors["loss_mask"] > 0
    (lp_n, loss_n, gn_n), (lp_m, loss_m, gn_m) = results[n], results[m]
    emit({"what": "reshard", "saved_at": n, "resumed_at": m, "save_s": save_s, "load_s": load_s,
          "resume_logprob_max_abs_diff": float((lp_m - lp_n).abs()[mask].max()),
          "next_step_loss": [loss_n, loss_m], "next_step_grad_norm": [gn_n, gn_m],
          "export_mean_abs_diff": export_logprob_diff(export, model, second, lp_n)}, sink)


def summary(records: list[dict[str, Any]]) -> None:
    from skyrl_core.strategies import profiling

    for r in records:
        if r["what"] == "compare":
            print(f"  {r['shape']} {r['strategy']:6s}: {r['tok_s']:9.0f} tok/s, MFU {r['mfu_989']:.1%} (989 TFLOP/s), "
                  f"step {r['step_s']:.3f} s ({r['micro_batches']:.0f} micro-batches, optimizer "
                  f"{r['optimizer_s']:.3f} s), peak {r['peak_gib']:.1f} GiB, first loss {r['first_loss']:.5f}, "
                  f"checkpointing {r['checkpointing'][:40]}")
            if r["profile"]:
                print(profiling.render(r["profile"], f"    profile {r['shape']} {r['strategy']}"))
        elif r["what"] == "compare_ratio":
            print(f"  {r['shape']}: fsdp2 / local tokens/s = {r['fsdp2_over_local_tok_s']:.3f} "
                  f"(first-step loss diff {r['first_loss_diff']:.2e})")
            for d in r.get("kernel_diff", []):
                print(f"    fsdp2 - local {d['delta_ms']:+8.2f} ms ({d['a_ms']:.2f} -> {d['b_ms']:.2f})  {d['name']}")
        elif r["what"] == "dcp":
            print(f"  DCP: save {r['save_s']:.1f} s, resume {r['load_s']:.1f} s (max log-prob diff "
                  f"{r['resume_max_abs_diff']:.2e}), HF export {r['export_s']:.1f} s (from_pretrained log-probs "
                  f"mean diff {r['export_mean_abs_diff']:.2e})")
        elif r["what"] == "reshard":
            print(f"  DCP {r['saved_at']} -> {r['resumed_at']} ranks: resumed log-probs max diff "
                  f"{r['resume_logprob_max_abs_diff']:.2e}, next step loss {r['next_step_loss'][0]:.6f} / "
                  f"{r['next_step_loss'][1]:.6f}, grad norm {r['next_step_grad_norm'][0]:.4f} / "
                  f"{r['next_step_grad_norm'][1]:.4f}; HF export log-probs mean diff {r['export_mean_abs_diff']:.2e}")
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
                        help="[trainer] gradient_checkpointing (auto: on when memory needs it)")
    parser.add_argument("--dtype", default=None, help="float32 or bfloat16 (default: bfloat16 on GPU)")
    parser.add_argument("--transports", default="cuda_ipc,broadcast,object_store,disk",
                        help="timed after the rounds, where the placement allows them")
    parser.add_argument("--model-dir", default=None, help="build the model here, or reuse the one there")
    parser.add_argument("--compare-shapes", default="0.5b,1.5b", help="shapes of the compare phase")
    parser.add_argument("--compare-seqs", type=int, default=64, help="sequences per update in the compare phase")
    parser.add_argument("--micro-batch-tokens", type=int, default=None,
                        help="[trainer] micro_batch_tokens (default: 16384 on GPU, 2 sequences on CPU)")
    parser.add_argument("--fsdp2-options", default="", help="compare phase: fsdp2 [strategy] options, "
                        "e.g. 'reshard_after_forward=true,defer_gradient_sync=false'")
    parser.add_argument("--profile", action="store_true", help="compare phase: profile one more update of each")
    parser.add_argument("--compile", nargs="?", const="true", default="auto",
                        type=lambda s: s if s == "auto" else s == "true",
                        help="compare phase: [strategy] compile: auto (the default: on CUDA with Triton), true "
                        "(also plain --compile) or false")
    parser.add_argument("--dcp", action="store_true",
                        help="compare phase: DCP save, resume and HF export of the first shape's fsdp2 strategy")
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
        checkpointing = {"auto": "auto", "on": True, "off": False}[args.checkpointing]
        micro = args.micro_batch_tokens or (16384 if gpu else args.seq_len * 2)
        trainer = attrs.evolve(TrainerConfig(), lr=1e-5, micro_batch_tokens=micro,
                               gradient_checkpointing=checkpointing)
        workers = max(int(s) for s in args.world_sizes.split(",")) + args.colocated_gpus + args.split_train_gpus + 1
        ray.init(num_cpus=max(os.cpu_count() or 1, workers), include_dashboard=False, log_to_driver=False)
        try:
            for phase in args.phases.split(","):
                if phase == "train":
                    train_phase(args, model, trainer, records)
                elif phase == "reshard":
                    reshard_phase(args, model, trainer, Path(args.model_dir or tmp), records)
                elif phase == "compare":
                    compare_phase(args, Path(args.model_dir or tmp), dtype, trainer, records)
                elif phase in ("colocated", "split"):
                    gpus = args.colocated_gpus if phase == "colocated" else args.split_train_gpus
                    placement_phase(args, model, trainer, records, colocate=phase == "colocated", gpus=gpus)
                else:
                    parser.error(f"--phases: unknown phase {phase!r} (train, compare, colocated, split)")
        finally:
            if args.out:
                Path(args.out).write_text(json.dumps(records, indent=2))
            runtime.shutdown()
            ray.shutdown()
    summary(records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
