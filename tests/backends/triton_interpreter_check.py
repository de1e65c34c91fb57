"""Run by tests/backends/test_triton_attention.py in a subprocess with ``TRITON_INTERPRET=1`` (Triton's
interpreter runs the kernels on CPU tensors; it must be set before Triton is imported, so not in
pytest's process). Exits non-zero with a message on the first disagreement.

    TRITON_INTERPRET=1 python tests/backends/triton_interpreter_check.py kernel
    TRITON_INTERPRET=1 python tests/backends/triton_interpreter_check.py engine MODEL_DIR
"""

from __future__ import annotations

import asyncio
import sys

import torch


def check_kernel() -> None:
    from skyrl_core.backends.static import triton_attention as ta

    torch.manual_seed(0)
    # (rows, kv heads, groups, head dim, cache length, span): one split and several, grouped and
    # not, a head dim that is not a power of two; float16 and float32 (the interpreter's bf16 dot
    # multiplies raw bits, so bfloat16 is checked on CUDA only).
    shapes = [(3, 2, 7, 64, 300, 300), (4, 1, 1, 64, 130, 128), (6, 3, 3, 64, 700, 640), (2, 2, 4, 80, 200, 200),
              (40, 2, 2, 16, 90, 80)]
    for dtype in (torch.float32, torch.float16):
        for b, g, groups, d, length, span in shapes:
            q = torch.randn(b, g, groups, d).to(dtype)
            kn, vn = torch.randn(b, g, d).to(dtype), torch.randn(b, g, d).to(dtype)
            kc, vc = torch.randn(b + 2, g, length, d).to(dtype), torch.randn(b + 2, g, length, d).to(dtype)
            positions = torch.randint(0, span, (b,))
            positions[0], positions[-1] = span - 1, 0
            want = ta.reference(q, kn, vn, kc.clone(), vc.clone(), positions, d**-0.5)
            kc2, vc2 = kc.clone(), vc.clone()
            got = ta.decode_attention(q, kn, vn, kc2, vc2, positions, span, d**-0.5)
            rows = torch.arange(b)
            err = (got.float() - want.float()).abs().max().item()
            tol = 1e-5 if dtype == torch.float32 else 2e-3
            where = f"{dtype} rows={b} kv_heads={g} groups={groups} head_dim={d} span={span}"
            assert got.shape == q.shape and got.dtype == dtype, where
            assert err <= tol, f"{where}: output differs from the reference by {err}"
            assert torch.equal(kc2[rows, :, positions], kn) and torch.equal(vc2[rows, :, positions], vn), where
            untouched = torch.ones(b + 2, length, dtype=torch.bool)
            untouched[rows, positions] = False
            assert torch.equal(kc2.transpose(1, 2)[untouched], kc.transpose(1, 2)[untouched]), f"{where}: stray writes"
            assert torch.equal(vc2.transpose(1, 2)[untouched], vc.transpose(1, 2)[untouched]), f"{where}: stray writes"
    # the launch knobs of bench/decode_attention_tune.py: other block sizes and split counts, same results
    for knobs in ({"block_n": 32, "waves": 16}, {"block_n": 128, "waves": 1}):
        for b, g, groups, d, length, span in shapes:
            q = torch.randn(b, g, groups, d)
            kn, vn = torch.randn(b, g, d), torch.randn(b, g, d)
            kc, vc = torch.randn(b + 1, g, length, d), torch.randn(b + 1, g, length, d)
            positions = torch.randint(0, span, (b,))
            want = ta.reference(q, kn, vn, kc.clone(), vc.clone(), positions, d**-0.5)
            got = ta.decode_attention(q, kn, vn, kc, vc, positions, span, d**-0.5, **knobs)
            err = (got - want).abs().max().item()
            assert err <= 1e-5, f"{knobs} rows={b} span={span}: output differs from the reference by {err}"
    assert ta.probe(torch.device("cpu"), torch.float32, 2, 7, 64) is None


def check_engine(model_dir: str) -> None:
    from skyrl_core.backends.native import NativeBackend
    from skyrl_core.backends.native_config import NativeBackendConfig
    from skyrl_core.config.schema import ModelConfig
    from skyrl_core.protocols.backend import GenerateRequest, SamplingParams

    prompts = [[1, 5, 9, 2, 7], [3] * 40, [4, 8], list(range(10, 31))]
    requests = [GenerateRequest(p, SamplingParams(max_new_tokens=12, temperature=t, seed=3, n=2))
                for p in prompts for t in (0.0, 1.0)]
    outs = {}
    for choice in ("triton", "sdpa"):
        backend = NativeBackend(NativeBackendConfig(engine="static", decode_attention=choice, sync_every=4),
                                model=ModelConfig(path=model_dir, device="cpu", dtype="float32"), seed=0)
        assert backend.engine.decoder.triton_attention == (choice == "triton"), choice
        outs[choice] = asyncio.run(backend.generate(requests))
        backend.shutdown()
    for i, (a, b) in enumerate(zip(outs["triton"], outs["sdpa"], strict=True)):
        for sa, sb in zip(a.completions, b.completions, strict=True):
            assert sa.token_ids == sb.token_ids, f"request {i}: tokens differ: {sa.token_ids} vs {sb.token_ids}"
            diff = max((abs(x - y) for x, y in zip(sa.logprobs, sb.logprobs, strict=True)), default=0.0)
            assert diff < 1e-4, f"request {i}: log-probs differ by {diff}"


if __name__ == "__main__":
    if sys.argv[1] == "kernel":
        check_kernel()
    else:
        check_engine(sys.argv[2])
    print("ok")
