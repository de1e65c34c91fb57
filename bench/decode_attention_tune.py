"""Tune the static engine's Triton decode attention, and time the decode layer's matmuls, on a GPU.

Part 1 sweeps the split kernel's launch knobs (``block_n``, ``waves``, ``num_warps``,
``num_stages`` of ``skyrl_core.backends.static.triton_attention.decode_attention``) over decode
shapes of the two bench models: each configuration runs 24 times (one decode step's layers) inside
a CUDA graph, so the time is the kernels' own, as in the engine. It prints, per shape, the current
default, the best configuration and their bandwidth (bytes of the rows' live cache over time), and
the configuration best over all shapes (geometric mean of time relative to each shape's best).

Part 2 (``--matmuls``) times the 0.5B shape's four layer projections and the LM head at 256 rows
the same way, against the card's bytes floor, with cuBLAS (``F.linear``) and with inductor's
``max-autotune`` choice.

    python3 bench/decode_attention_tune.py --out tune.json [--matmuls] [--quick]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from skyrl_core.backends.static import triton_attention as ta

LAYERS = 24
DEVICE = "cuda"  # a smoke run of this script patches these to the CPU (Triton interpreter)
DTYPE = torch.bfloat16


def graph_time(fn, reps: int = 20) -> float:
    """Seconds per call of ``fn`` (which launches LAYERS kernels' worth of work), replayed in a graph."""
    fn()
    torch.cuda.synchronize()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    graph.replay()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    best = math.inf
    for _ in range(3):
        start.record()
        for _ in range(reps):
            graph.replay()
        end.record()
        end.synchronize()
        best = min(best, start.elapsed_time(end) / 1e3 / reps)
    return best


def shapes() -> list[dict]:
    """Decode shapes: the forced bench (every row at one length) and mixed lengths."""
    out = []
    for model, kv, groups in (("qwen0.5b", 2, 7), ("smollm2", 3, 3)):
        for rows in (256, 64):
            for span in (192, 640):
                out.append(dict(model=model, kv=kv, groups=groups, rows=rows, span=span, mixed=False))
        out.append(dict(model=model, kv=kv, groups=groups, rows=256, span=800, mixed=True))
    return out


def make_inputs(s: dict, gen: torch.Generator) -> dict:
    dev, dt, d = DEVICE, DTYPE, 64
    rows, kv, groups, span = s["rows"], s["kv"], s["groups"], s["span"]
    length = 1024

    def rnd(*shape):
        return torch.randn(*shape, generator=gen, device=dev, dtype=torch.float32).to(dt)

    if s["mixed"]:
        positions = torch.randint(32, span, (rows,), generator=gen, device=dev)
    else:
        positions = torch.full((rows,), span - 1, device=dev)
    return dict(
        q=rnd(rows, kv, groups, d), kn=rnd(rows, kv, d), vn=rnd(rows, kv, d),
        kc=[rnd(rows, kv, length, d) for _ in range(2)], vc=[rnd(rows, kv, length, d) for _ in range(2)],
        positions=positions, span=int(positions.max()) + 1,
        live_bytes=int((positions + 1).sum()) * kv * d * 2 * 2,
    )


def summarize(results: list[dict]) -> dict:
    """The configuration best over the shapes measured so far: geometric mean of its time over each
    shape's best (a configuration that failed on any shape is out)."""
    keys = set.intersection(*[{k for k, v in r["times"].items() if isinstance(v, float)} for r in results])
    score = {}
    for k in keys:
        rel = [r["times"][k] / min(v for v in r["times"].values() if isinstance(v, float)) for r in results]
        score[k] = math.exp(sum(math.log(v) for v in rel) / len(rel))
    ranked = sorted(score, key=score.get)
    return {"shapes_done": len(results),
            "overall_best": [dict(config=json.loads(k), geo_rel=round(score[k], 3)) for k in ranked[:8]],
            "default_geo_rel": round(score.get(results[0]["default"], float("nan")), 3),
            "per_shape": [{"shape": r["shape"], "default_us": round(r["times"][r["default"]] * 1e6, 2),
                           "overall_best_us": round(r["times"][ranked[0]] * 1e6, 2)} for r in results]}


def attention_sweep(quick: bool, save) -> dict:
    """Sweep the knobs shape by shape; ``save(summary)`` after each shape (a timeout keeps what ran)."""
    gen = torch.Generator(device=DEVICE).manual_seed(0)
    grid = dict(block_n=(32, 64, 128), waves=(1, 2, 4, 8, 16), num_warps=(1, 2, 4), num_stages=(1, 2, 3))
    if quick:
        grid = dict(block_n=(32, 64), waves=(2, 4), num_warps=(2, 4), num_stages=(2, 3))
    configs = [dict(zip(grid, vals, strict=True)) for vals in itertools.product(*grid.values())]
    default = dict(block_n=ta.BLOCK_N, waves=ta.WAVES, num_warps=ta.NUM_WARPS, num_stages=ta.NUM_STAGES)
    results = []
    summary: dict = {}
    for s in shapes():
        x = make_inputs(s, gen)
        ref = ta.reference(x["q"], x["kn"], x["vn"], x["kc"][0].clone(), x["vc"][0].clone(), x["positions"], 0.125)

        def run(cfg, x=x):
            def fn():
                for i in range(LAYERS):  # alternate two cache layers, as consecutive layers do
                    ta.decode_attention(x["q"], x["kn"], x["vn"], x["kc"][i % 2], x["vc"][i % 2], x["positions"],
                                        x["span"], 0.125, **cfg)
            return graph_time(fn) / LAYERS

        row = dict(shape=s, live_mb=x["live_bytes"] / 1e6, times={}, default=json.dumps(default, sort_keys=True))
        for cfg in [default, *configs]:
            key = json.dumps(cfg, sort_keys=True)
            if key in row["times"]:
                continue
            try:
                out = ta.decode_attention(x["q"], x["kn"], x["vn"], x["kc"][0].clone(), x["vc"][0].clone(),
                                          x["positions"], x["span"], 0.125, **cfg)
                err = (out.float() - ref.float()).abs().max().item()
                row["times"][key] = run(cfg) if err < 3e-2 else f"wrong ({err:.3g})"
            except Exception as exc:  # a config Triton cannot compile (e.g. out of shared memory)
                row["times"][key] = f"{type(exc).__name__}"
        ok = {k: v for k, v in row["times"].items() if isinstance(v, float)}
        if row["default"] not in ok:
            failures = sorted({str(v) for v in row["times"].values() if not isinstance(v, float)})
            raise SystemExit(f"decode_attention_tune: the kernel's default configuration failed on {s} "
                             f"({', '.join(failures)}); run tests/backends/test_triton_attention.py on this card")
        best = min(ok, key=ok.get)
        row["best"] = best
        print(json.dumps({"shape": s, "live_MB": round(row["live_mb"], 1),
                          "default_us": round(ok[row["default"]] * 1e6, 2),
                          "default_GBps": round(x["live_bytes"] / ok[row["default"]] / 1e9),
                          "best_us": round(ok[best] * 1e6, 2), "best_GBps": round(x["live_bytes"] / ok[best] / 1e9),
                          "best": json.loads(best)}), flush=True)
        results.append(row)
        summary = summarize(results)
        save({"shapes": results, **summary})
    print(json.dumps({"summary": {k: v for k, v in summary.items() if k != "per_shape"}}), flush=True)
    for r in summary["per_shape"]:  # time with the overall best against the default, per shape
        print(json.dumps(r))
    return {"shapes": results, **summary}


def matmul_times() -> dict:
    m, hidden, inter, heads, kv, d, vocab = 256, 896, 4864, 14, 2, 64, 151936
    dev, dt = "cuda", torch.bfloat16
    projs = {"qkv": (hidden, (heads + 2 * kv) * d), "o": (heads * d, hidden), "gate_up": (hidden, 2 * inter),
             "down": (inter, hidden), "lm_head": (hidden, vocab)}
    bw = 3.35e12 if "H100" in torch.cuda.get_device_name() else 4.8e12
    out = {}
    for name, (k, n) in projs.items():
        x = torch.randn(m, k, device=dev, dtype=dt)
        ws = [torch.randn(n, k, device=dev, dtype=dt) * 0.02 for _ in range(2 if name == "lm_head" else LAYERS)]
        y = torch.empty(m, n, device=dev, dtype=dt)

        def eager(ws=ws, x=x, y=y):
            for w in ws:
                torch.matmul(x, w.t(), out=y)

        t_eager = graph_time(eager) / len(ws)
        if name in ("o", "down"):  # the compiled decode step adds the residual in the matmul (addmm)
            res = torch.randn(m, n, device=dev, dtype=dt)

            def fused(ws=ws, x=x, y=y, res=res):
                for w in ws:
                    torch.addmm(res, x, w.t(), out=y)

            t_fused = graph_time(fused) / len(ws)
        else:
            t_fused = None
        floor = (n * k + m * k + m * n) * 2 / bw
        row = {"M": m, "K": k, "N": n, "cublas_us": round(t_eager * 1e6, 2), "bytes_floor_us": round(floor * 1e6, 2),
               "tflops_cublas": round(2 * m * n * k / t_eager / 1e12, 1)}
        if t_fused is not None:
            row["cublas_addmm_us"] = round(t_fused * 1e6, 2)
        try:
            t0 = time.perf_counter()
            lin = torch.compile(lambda a, b: F.linear(a, b), mode="max-autotune-no-cudagraphs", dynamic=False)
            lin(x, ws[0])

            def tuned(ws=ws, x=x, lin=lin):
                for w in ws:
                    lin(x, w)

            row["autotune_compile_s"] = round(time.perf_counter() - t0, 1)
            row["autotune_us"] = round(graph_time(tuned) / len(ws) * 1e6, 2)
        except Exception as exc:
            row["autotune"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        print(json.dumps({"matmul": name, **row}), flush=True)
        out[name] = row
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--matmuls", action="store_true")
    parser.add_argument("--quick", action="store_true", help="a small grid (a smoke run)")
    parser.add_argument("--skip-attention", action="store_true")
    parser.add_argument("--best-out", type=Path, help="write the overall best attention config here (JSON)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("decode_attention_tune.py needs a CUDA device")
    import triton

    result = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__}
    print(json.dumps(result), flush=True)
    if not args.skip_attention:
        def save(attention: dict) -> None:
            result["attention"] = attention
            if args.best_out and attention["overall_best"]:
                best = attention["overall_best"][0]["config"]
                args.best_out.write_text(json.dumps({k: v for k, v in best.items() if v is not None}))
            if args.out:
                args.out.write_text(json.dumps(result, indent=1))

        attention_sweep(args.quick, save)
    if args.matmuls:
        result["matmuls"] = matmul_times()
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
