"""GPU benchmark: native backend vs transformers ``generate``, and one GRPO step by phase.

Everything is measured in one process on one card, baselines included, and printed as
JSON lines (one per measurement) followed by a summary table with ratios::

    python bench/gpu_bench.py --out bench_results.json            # Qwen2.5-0.5B shape, on CUDA
    python bench/gpu_bench.py --shape tiny --device cpu           # a seconds-long smoke run of the script

What it measures (``--shape 0.5b``: Qwen2Config with the Qwen2.5-0.5B shape, random bf16
weights, no download; prompts of 128 random tokens, 512 new tokens forced: no stop token):

1. ceilings: a bf16 matmul and a device-to-device copy (what "fast" is relative to);
2. generation at batch 64 and 256, temperature 1: the native backend (static engine,
   first call = with graph capture, then steady) vs ``model.generate`` on the same model;
3. a GRPO step, 64 prompts x 4 samples: generation (native backend), old and reference
   log-probs, advantages, one optimizer step over the 256 sequences (local strategy,
   fp32 master weights + bf16 autocast, micro-batches by token budget), in-process weight
   sync; peak memory per phase; the training MFU (6 N tokens / time / matmul ceiling);
4. the same GRPO step with ``generate`` rollouts: the measured ``generate`` time at batch
   256 plus the same other phases (they are identical code), so the ratio isolates rollouts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SHAPES = {
    # Qwen2.5-0.5B: 494M parameters (tied embeddings), vocab 151,936.
    "0.5b": dict(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                 num_attention_heads=14, num_key_value_heads=2),
    "tiny": dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2),
}
RESULTS: list[dict[str, Any]] = []


def log(**kw: Any) -> None:
    RESULTS.append(kw)
    print(json.dumps(kw), flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")


def timed(fn: Any, device: torch.device) -> tuple[float, Any]:
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - start, out


def section(name: str, fn: Any) -> Any:
    """Run one part; a failure is logged and the next part still runs."""
    try:
        return fn()
    except Exception as exc:  # a benchmark run is one shot on a leased machine: keep going
        log(section=name, error=f"{type(exc).__name__}: {exc}", trace=traceback.format_exc()[-2000:])
        return None


# -- setup -------------------------------------------------------------------------------------


def _matmul_tflops(device: torch.device) -> float:
    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    b = torch.randn_like(a)
    for _ in range(3):
        a @ b
    dt, _ = timed(lambda: [a @ b for _ in range(10)], device)
    return 2 * 8192**3 * 10 / dt / 1e12


def _copy_tbps(device: torch.device) -> float:
    x = torch.randn(2 * 1024**3 // 2, device=device, dtype=torch.bfloat16)
    y = torch.empty_like(x)
    y.copy_(x)
    dt, _ = timed(lambda: [y.copy_(x) for _ in range(10)], device)
    return 2 * x.numel() * 2 * 10 / dt / 1e12


def ceilings(device: torch.device) -> dict[str, float]:
    tflops, tbps = _matmul_tflops(device), _copy_tbps(device)
    torch.cuda.empty_cache()
    log(bench="ceilings", bf16_matmul_tflops=round(tflops, 1), copy_tbps_read_write=round(tbps, 2))
    return {"tflops": tflops, "tbps": tbps}


def build_model_dir(shape: str, root: Path, device: torch.device) -> tuple[Path, int]:
    """A model folder: random bf16 Qwen2 weights of ``shape`` + a small local tokenizer."""
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    from skyrl_core.config.schema import TinyModelConfig
    from skyrl_core.models.tiny import build_tiny_model

    tok_dir = build_tiny_model(root / "tok", TinyModelConfig())  # only its tokenizer files are used
    tok = AutoTokenizer.from_pretrained(tok_dir)
    cfg = Qwen2Config(**SHAPES[shape], max_position_embeddings=4096, tie_word_embeddings=True,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2ForCausalLM(cfg).to(torch.bfloat16)
    path = root / "model"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    params = sum(p.numel() for p in model.parameters())
    del model
    log(model=shape, params=params, path=str(path))
    return path, params


# -- generation --------------------------------------------------------------------------------


def random_prompts(count: int, length: int, vocab: int, seed: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(100, vocab - 100, (count, length), generator=g).tolist()


def native_generate(backend: Any, prompts: list[list[int]], new: int, n: int = 1, seed: int = 0) -> tuple[float, list]:
    from skyrl_core.protocols.backend import GenerateRequest, SamplingParams

    params = SamplingParams(max_new_tokens=new, temperature=1.0, n=n, seed=seed)
    requests = [GenerateRequest(p, params) for p in prompts]
    return timed(lambda: asyncio.run(backend.generate(requests)), backend.device)


def hf_generate(model: Any, prompts: list[list[int]], new: int) -> float:
    ids = torch.tensor(prompts, device=model.device)
    kwargs = dict(do_sample=True, temperature=1.0, top_p=1.0, top_k=0, pad_token_id=0, eos_token_id=None)
    with torch.no_grad():
        model.generate(input_ids=ids[:, :16], attention_mask=torch.ones_like(ids[:, :16]), max_new_tokens=8, **kwargs)
        dt, out = timed(
            lambda: model.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=new, min_new_tokens=new, **kwargs
            ),
            model.device,
        )
    assert out.shape[1] == ids.shape[1] + new, out.shape
    return dt


def generation(backend: Any, args: argparse.Namespace, vocab: int) -> dict[str, float]:
    out: dict[str, float] = {}
    dev = backend.device
    for batch in args.batches:
        prompts = random_prompts(batch, args.prompt_len, vocab, seed=batch)
        reset_peak(dev)
        cold, _ = native_generate(backend, prompts, args.new_tokens, seed=1)
        warm, results = native_generate(backend, prompts, args.new_tokens, seed=2)
        lengths = [len(c.token_ids) for r in results for c in r.completions]
        assert all(n == args.new_tokens for n in lengths), "outputs must be forced to full length"
        tokens = batch * args.new_tokens
        out[f"native_{batch}"] = tokens / warm
        log(bench="generate", engine="native-static", batch=batch, prompt=args.prompt_len, new=args.new_tokens,
            seconds=round(warm, 3), first_call_seconds=round(cold, 3), tokens_per_s=round(tokens / warm),
            peak_gib=round(peak_gib(dev), 2), engine_stats=dict(backend.engine.stats) if backend.engine else None)
        if batch in args.hf_batches:
            reset_peak(dev)
            dt = hf_generate(backend.model, prompts, args.new_tokens)
            out[f"hf_{batch}"] = tokens / dt
            out[f"hf_seconds_{batch}"] = dt
            log(bench="generate", engine="transformers-generate", batch=batch, prompt=args.prompt_len,
                new=args.new_tokens, seconds=round(dt, 3), tokens_per_s=round(tokens / dt),
                peak_gib=round(peak_gib(dev), 2))
            ratio = out[f"native_{batch}"] / out[f"hf_{batch}"]
            log(bench="generate_ratio", batch=batch, native_over_generate=round(ratio, 2))
    return out


# -- GRPO step ---------------------------------------------------------------------------------


def grpo_parts(model_path: Path, device: torch.device, args: argparse.Namespace) -> dict[str, Any]:
    from skyrl_core.config.schema import AlgorithmConfig, ModelConfig, TrainerConfig
    from skyrl_core.plugins import build_registry
    from skyrl_core.specs import Kind
    from skyrl_core.strategies.local import LocalStrategy
    from skyrl_core.strategies.local_config import LocalStrategyConfig

    dtype = "bfloat16" if device.type == "cuda" else "float32"
    strategy = LocalStrategy(
        LocalStrategyConfig(
            forward_micro_batch_tokens=args.forward_micro_batch_tokens,
            shared_prefix={"auto": "auto", "true": True, "false": False}[args.shared_prefix],
            compile=args.compile,
        ),
        model=ModelConfig(path=str(model_path), device=str(device), dtype=dtype),
        trainer=TrainerConfig(micro_batch_tokens=args.micro_batch_tokens, gradient_checkpointing=args.checkpointing),
        seed=0,
        need_ref=True,
    )
    registry = build_registry(entry_points=False)
    algo = AlgorithmConfig()
    from skyrl_core.components import choose

    estimator_choice = choose(registry, Kind.ADVANTAGE_ESTIMATOR, algo.advantage.name, algo.advantage.config)
    loss_choice = choose(registry, Kind.POLICY_LOSS, algo.policy_loss.name, algo.policy_loss.config)
    estimator, est_cfg = estimator_choice.impl, estimator_choice.config
    policy_loss, loss_cfg = loss_choice.impl, loss_choice.config
    return dict(strategy=strategy, algo=algo, estimator=estimator, est_cfg=est_cfg, policy_loss=policy_loss,
                loss_cfg=loss_cfg)


def grpo_step(backend: Any, parts: dict[str, Any], prompts: list[list[int]], args: argparse.Namespace,
              step: int, with_ref: bool = False) -> dict[str, float]:
    """One GRPO step, timed by phase (seconds) with each phase's peak GPU memory (GiB).

    ``with_ref`` adds the reference model's log-prob pass (a KL term, as with ``[algorithm.kl]
    mode = "loss"``); without it the step is our default config and TRL's anchor (``beta = 0``).
    """
    from skyrl_core.batches import compute_advantages
    from skyrl_core.losses import make_policy_loss_fn
    from skyrl_core.protocols.strategy import TrainBatch

    strategy, dev = parts["strategy"], backend.device
    t: dict[str, float] = {}

    def phase(name: str, fn: Any) -> Any:
        reset_peak(dev)
        dt, out = timed(fn, dev)
        t[f"{name}_s"] = dt
        t[f"{name}_peak_gib"] = peak_gib(dev)
        return out

    g = args.samples
    results = phase("generate", lambda: native_generate(backend, prompts, args.new_tokens, n=g, seed=100 + step)[1])
    prompt_ids, response_ids, rollout_lps, rewards = [], [], [], []
    for p, r in zip(prompts, results, strict=True):
        for c in r.completions:
            prompt_ids.append(p)
            response_ids.append(list(c.token_ids))
            rollout_lps.append(list(c.logprobs))
            rewards.append(float(sum(c.token_ids) % 7) / 6)  # any deterministic score of the text
    width = max(len(r) for r in response_ids)
    mask = torch.zeros(len(response_ids), width)
    token_rewards = torch.zeros(len(response_ids), width)
    rollout = torch.zeros(len(response_ids), width)
    for i, r in enumerate(response_ids):
        mask[i, : len(r)] = 1
        token_rewards[i, len(r) - 1] = rewards[i]
        rollout[i, : len(r)] = torch.tensor(rollout_lps[i])
    batch = TrainBatch(prompt_ids, response_ids,
                       {"loss_mask": mask, "token_rewards": token_rewards, "rollout_logprobs": rollout})
    group_ids = torch.arange(len(prompts)).repeat_interleave(g)

    # one mini-batch, one epoch: the loop takes the old log-probs from the update's own forward
    # pass ([trainer] old_logprobs_from_update, the default); --old-logprobs separate times the extra pass
    fused = args.old_logprobs == "update"
    if not fused:
        old = phase("old_logprobs", lambda: strategy.forward(batch, temperature=1.0).logprobs)
        batch.tensors["old_logprobs"] = old.float().cpu()
        diff = ((old.float().cpu() - rollout).abs() * mask).sum() / mask.sum()
        t["rollout_vs_trainer_logprob_mean_abs_diff"] = float(diff)
    if with_ref:
        ref = phase("ref_logprobs", lambda: strategy.forward(batch, role="ref", temperature=1.0).logprobs)
        batch.tensors["ref_logprobs"] = ref.float().cpu()
    compute_advantages(parts["estimator"], parts["est_cfg"], batch, group_ids)
    loss_fn = make_policy_loss_fn(parts["policy_loss"], parts["loss_cfg"], parts["algo"], 640, 0.0,
                                  old_from_forward=fused)
    metrics = phase("update", lambda: strategy.train_step(batch, loss_fn, temperature=1.0, need_entropy=True))
    if fused:
        t["rollout_vs_trainer_logprob_mean_abs_diff"] = metrics["policy/rollout_logprob_diff_mean"]
    from skyrl_core.ops import fused_logprobs

    t["fused_logprobs_kernel"] = float(any(fused_logprobs._VERIFIED.values()))
    t["update_micro_batches"] = metrics["micro_batches"]
    t["update_tokens"] = metrics["tokens"]

    def sync_weights() -> None:
        for bucket in strategy.named_weights():
            backend.update_weights(bucket)
        backend.reset_prefix_cache()

    phase("weight_sync", sync_weights)
    t["step_s"] = sum(v for k, v in t.items() if k.endswith("_s"))
    return t


def weight_sync_only(backend: Any, strategy: Any, reps: int = 5) -> list[float]:
    times = []
    for _ in range(reps):
        dt, _ = timed(lambda: [backend.update_weights(b) for b in strategy.named_weights()], backend.device)
        times.append(dt)
    return times


def trl_baseline(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """TRL's GRPOTrainer on the anchor shape, in a child process (its GPU memory is freed on exit)."""
    from bench.trl_anchor import find_anchor, run_anchor

    anchor = find_anchor(args.trl_anchor)
    env = {}
    if args.trl_site:  # wheels of trl, datasets, dill, multiprocess installed for the child only
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [args.trl_site, os.environ.get("PYTHONPATH", "")]))
    result = run_anchor(anchor, args.shape, args.trl_steps, root, env=env, timeout=args.trl_timeout)
    ours = {"prompts": args.prompts, "samples": args.samples, "prompt_len": args.prompt_len,
            "completion_len": args.new_tokens}
    result["same_shape"] = all(result["shape"].get(k) == v for k, v in ours.items())
    log(bench="trl_grpo_step", anchor=str(anchor), **result)
    return result


# -- main --------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="0.5b")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--prompt-len", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=512)
    parser.add_argument("--batches", type=lambda s: [int(x) for x in s.split(",")], default=[64, 256])
    parser.add_argument("--hf-batches", type=lambda s: [int(x) for x in s.split(",") if x], default=[64, 256])
    parser.add_argument("--prompts", type=int, default=64, help="GRPO prompts per step")
    parser.add_argument("--samples", type=int, default=4, help="GRPO samples per prompt")
    parser.add_argument("--steps", type=int, default=3, help="GRPO steps (the first includes warm-up)")
    parser.add_argument("--micro-batch-tokens", type=int, default=16384)
    parser.add_argument("--forward-micro-batch-tokens", type=int, default=32768)
    parser.add_argument("--checkpointing", action="store_true", help="gradient checkpointing in the update")
    parser.add_argument("--old-logprobs", choices=["update", "separate"], default="update",
                        help="old log-probs from the update's forward pass (the loop's default on-policy) "
                        "or from a separate pass")
    parser.add_argument("--sync-every", type=int, default=16)
    parser.add_argument("--attention-chunks", type=int, default=None,
                        help="[backend] attention_chunks of the static engine (default: the backend's, 1 on CUDA)")
    parser.add_argument("--decode-attention", choices=["auto", "triton", "sdpa"], default="auto",
                        help="[backend] decode_attention of the static engine")
    parser.add_argument("--engine-compile", type=lambda s: s if s == "auto" else s == "true", default="auto",
                        help="[backend] compile of the static engine: auto (on for CUDA graphs), true or false")
    parser.add_argument("--shared-prefix", choices=["auto", "true", "false"], default="auto",
                        help="[strategy] shared_prefix of the local strategy (auto is off on CUDA until measured)")
    parser.add_argument("--compile", nargs="?", const="true", default="auto",
                        type=lambda s: s if s == "auto" else s == "true",
                        help="[strategy] compile: auto (the default: on CUDA with Triton), true (also plain "
                        "--compile) or false")
    parser.add_argument("--ref-steps", type=int, default=2,
                        help="GRPO steps with a reference model (KL loss) after the default ones (0: none)")
    parser.add_argument("--trl-anchor", default=None, help="TRL anchor script (default: bench/trl_anchor.py's search)")
    parser.add_argument("--trl-site", default=os.environ.get("TRL_SITE"),
                        help="a folder with trl, datasets, dill, multiprocess, put first on the TRL child's PYTHONPATH")
    parser.add_argument("--trl-steps", type=int, default=4, help="TRL steps (median of steps 2..N)")
    parser.add_argument("--trl-timeout", type=float, default=300.0)
    parser.add_argument("--skip", default="", help="comma list of parts to skip: trl,ceilings,generate,grpo")
    parser.add_argument("--out", default=None, help="also write every record as a JSON list here")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    device = torch.device(args.device)

    from skyrl_core.backends.native import NativeBackend
    from skyrl_core.backends.native_config import NativeBackendConfig
    from skyrl_core.config.schema import ModelConfig

    log(gpu=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu", torch=torch.__version__,
        transformers=__import__("transformers").__version__, argv=sys.argv[1:])
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    root = Path(tempfile.mkdtemp(prefix="skyrl-bench-"))
    # TRL first, in its own process, so neither run shares the card's memory with the other
    trl = section("trl", lambda: trl_baseline(args, root)) if "trl" not in skip else None
    ceil = section("ceilings", lambda: ceilings(device)) if device.type == "cuda" and "ceilings" not in skip else None
    model_path, params = build_model_dir(args.shape, root, device)
    vocab = SHAPES[args.shape]["vocab_size"]
    dtype = "bfloat16" if device.type == "cuda" else "float32"
    rows = max([*args.batches, args.prompts * args.samples])
    backend = NativeBackend(
        NativeBackendConfig(engine="static", dtype=dtype, max_batch_size=rows, max_tokens_in_flight=1 << 30,
                            sync_every=args.sync_every, compile=args.engine_compile,
                            attention_chunks=args.attention_chunks,
                            decode_attention=args.decode_attention),
        model=ModelConfig(path=str(model_path), device=str(device), dtype=dtype),
        seed=0,
    )
    gen = section("generate", lambda: generation(backend, args, vocab)) if "generate" not in skip else None

    steps: list[dict[str, float]] = []
    ref_steps: list[dict[str, float]] = []
    parts = None
    if "grpo" not in skip:
        parts = section("grpo_setup", lambda: grpo_parts(model_path, device, args))
    if parts is not None:
        prompts = random_prompts(args.prompts, args.prompt_len, vocab, seed=7)
        for k in range(args.steps):
            res = section(f"grpo_step_{k}", lambda k=k: grpo_step(backend, parts, prompts, args, k))
            if res is None:
                break
            steps.append(res)
            log(bench="grpo_step", step=k, **{key: round(v, 4) for key, v in res.items()})
        for k in range(args.ref_steps if steps else 0):
            res = section(f"grpo_step_ref_{k}",
                          lambda k=k: grpo_step(backend, parts, prompts, args, args.steps + k, with_ref=True))
            if res is None:
                break
            ref_steps.append(res)
            log(bench="grpo_step_with_ref", step=k, **{key: round(v, 4) for key, v in res.items()})
        ws = section("weight_sync", lambda: weight_sync_only(backend, parts["strategy"]))
        if ws:
            log(bench="weight_sync", seconds_each=[round(x, 4) for x in ws],
                median_ms=round(1000 * statistics.median(ws), 1), params=params, dtype_from="float32", dtype_to=dtype)

    # -- summary ----------------------------------------------------------------------------
    summary: dict[str, Any] = {}
    if gen:
        for batch in args.batches:
            if f"hf_{batch}" in gen:
                summary[f"generate_ratio_b{batch}"] = gen[f"native_{batch}"] / gen[f"hf_{batch}"]
            summary[f"native_tok_s_b{batch}"] = gen[f"native_{batch}"]
            if f"hf_{batch}" in gen:
                summary[f"hf_tok_s_b{batch}"] = gen[f"hf_{batch}"]
    if steps:
        steady = steps[1:] or steps
        med = {k: statistics.median(s[k] for s in steady) for k in steady[0]}
        summary["grpo_phases_s"] = {k: round(v, 4) for k, v in med.items() if k.endswith("_s")}
        summary["grpo_peak_gib"] = {k: round(v, 2) for k, v in med.items() if k.endswith("_peak_gib")}
        tokens = med["update_tokens"]
        train_flops = 6 * params * tokens
        summary["update_tokens_per_s"] = tokens / med["update_s"]
        if ceil:
            summary["update_mfu_vs_measured_matmul"] = train_flops / med["update_s"] / (ceil["tflops"] * 1e12)
        summary["update_mfu_vs_989_tflops"] = train_flops / med["update_s"] / 989e12
        hf_gen = gen.get(f"hf_seconds_{args.prompts * args.samples}") if gen else None
        if hf_gen is not None:
            baseline = med["step_s"] - med["generate_s"] + hf_gen
            summary["grpo_step_s"] = med["step_s"]
            summary["grpo_step_with_generate_rollouts_s"] = baseline
            summary["grpo_step_ratio"] = baseline / med["step_s"]
        summary["grpo_step_s"] = med["step_s"]
        if ref_steps:
            # the first of these steps is steady too: the ref pass is the forward already warmed up
            summary["grpo_step_with_ref_s"] = statistics.median(s["step_s"] for s in ref_steps)
            summary["ref_logprobs_s"] = statistics.median(s["ref_logprobs_s"] for s in ref_steps)
        if trl:
            summary["trl_step_s"] = trl["steady_median_s"]
            summary["trl_same_shape"] = trl["same_shape"]
            if trl["same_shape"]:
                summary["ratio_vs_trl"] = trl["steady_median_s"] / med["step_s"]
                if ref_steps:
                    summary["ratio_vs_trl_ours_with_ref"] = trl["steady_median_s"] / summary["grpo_step_with_ref_s"]
    if ws := [r for r in RESULTS if r.get("bench") == "weight_sync"]:
        summary["weight_sync_ms"] = ws[0]["median_ms"]
    log(summary=summary)
    if args.out:
        Path(args.out).write_text(json.dumps(RESULTS, indent=1) + "\n")
    print("\n== summary (" + RESULTS[0]["gpu"] + ") ==")
    for key, value in summary.items():
        shown = round(value, 3) if isinstance(value, float) and not math.isnan(value) else value
        print(f"{key:45s} {shown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
