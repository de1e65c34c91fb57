"""The static engine's Triton decode attention (skyrl_core.backends.static.triton_attention).

On the CPU the kernels run under Triton's interpreter in a subprocess (triton_interpreter_check.py):
scripts/test.sh installs triton and a numpy its interpreter supports into a folder of their own
(``SKYRL_TRITON_SITE``), put on that subprocess's path only. On CUDA (skipped elsewhere) the compiled
kernels run against the reference and against the SDPA engine, in bfloat16 too.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from skyrl_core.backends.native import NativeBackend
from skyrl_core.backends.native_config import NativeBackendConfig
from skyrl_core.backends.static import triton_attention as ta
from skyrl_core.backends.static.model import StaticDecoder
from skyrl_core.config.schema import ModelConfig
from skyrl_core.protocols.backend import GenerateRequest, SamplingParams

CUDA = torch.cuda.is_available()
CHECK = Path(__file__).with_name("triton_interpreter_check.py")
SITE = os.environ.get("SKYRL_TRITON_SITE", "")
HAVE_TRITON = bool(SITE and Path(SITE, "triton").is_dir()) or importlib.util.find_spec("triton") is not None
needs_triton = pytest.mark.skipif(not HAVE_TRITON, reason="Triton is not installed (scripts/test.sh installs it "
                                  "into SKYRL_TRITON_SITE for these tests)")


def _interpret(*args: str) -> None:
    env = dict(os.environ, TRITON_INTERPRET="1")
    if SITE:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (SITE, env.get("PYTHONPATH", "")) if p)
    done = subprocess.run([sys.executable, str(CHECK), *args], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stdout[-2000:] + done.stderr[-4000:]


@needs_triton
def test_kernel_matches_the_reference_under_the_interpreter():
    """Outputs (one split and several, grouped heads, a head dim of 80), the new keys/values written
    at each row's position and nothing else written, in float32 and float16."""
    _interpret("kernel")


@needs_triton
def test_engine_with_the_kernel_generates_what_sdpa_does_under_the_interpreter(tiny_model_dir):
    """Greedy and seeded samples of mixed prompt lengths: the same tokens and log-probs (float32)."""
    _interpret("engine", str(tiny_model_dir))


def test_split_plan_covers_the_span_with_whole_blocks():
    for rows, heads, span, sms in [(256, 2, 640, 132), (1, 2, 4096, 132), (8, 8, 100, 132), (64, 3, 1, 8)]:
        splits, split_len = ta.split_plan(rows, heads, span, sms)
        assert split_len % ta.BLOCK_N == 0 and splits >= 1
        assert (splits - 1) * split_len < span <= splits * split_len
    assert ta.split_plan(256, 2, 640, 132)[0] <= 2  # many rows: few splits
    assert ta.split_plan(1, 2, 4096, 132)[0] == 4096 // ta.BLOCK_N  # one row: a split per block


def test_split_plan_follows_the_tuning_knobs():
    assert ta.split_plan(256, 2, 640, 132, block_n=32, waves=16) == (5, 128)  # 4,224 programs wanted
    assert ta.split_plan(256, 2, 640, 132, block_n=128, waves=1) == (1, 640)
    splits, split_len = ta.split_plan(1, 1, 1000, 8, block_n=32)
    assert split_len % 32 == 0 and (splits - 1) * split_len < 1000 <= splits * split_len


def test_knobs_from_the_environment_and_a_bad_value_names_the_variable(monkeypatch):
    saved = (ta.BLOCK_N, ta.WAVES, ta.NUM_WARPS, ta.NUM_STAGES)
    try:
        monkeypatch.setenv("SKYRL_TRITON_DECODE_CONFIG", '{"block_n": 32, "waves": 8, "num_warps": 2}')
        ta._env_overrides()
        assert (ta.BLOCK_N, ta.WAVES, ta.NUM_WARPS, ta.NUM_STAGES) == (32, 8, 2, saved[3])
        for bad in ('{"block": 32}', "block_n=32", "32", '{"block_n": 48}', '{"waves": -1}', '{"num_warps": "2"}'):
            monkeypatch.setenv("SKYRL_TRITON_DECODE_CONFIG", bad)
            with pytest.raises(ValueError, match=r"SKYRL_TRITON_DECODE_CONFIG=.*expected a JSON object with block_n"):
                ta._env_overrides()
    finally:
        ta.BLOCK_N, ta.WAVES, ta.NUM_WARPS, ta.NUM_STAGES = saved


def test_auto_is_sdpa_on_the_cpu_and_triton_there_says_what_to_do(tiny_model_dir, monkeypatch):
    from transformers import AutoModelForCausalLM

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    assert StaticDecoder(model, attention="auto").triton_attention is False
    assert StaticDecoder(model, attention="sdpa").triton_attention is False
    with pytest.raises(ValueError, match=r"decode_attention = 'triton': it runs on CUDA devices.*'sdpa'"):
        StaticDecoder(model, attention="triton")


@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_cuda_kernel_matches_the_reference(dtype):
    torch.manual_seed(0)
    shapes = [(256, 2, 7, 64, 768, 640), (3, 3, 3, 64, 2048, 2048), (17, 8, 4, 128, 300, 256)]
    for b, g, groups, d, length, span in shapes:
        q = torch.randn(b, g, groups, d, device="cuda", dtype=dtype)
        kn = torch.randn(b, g, d, device="cuda", dtype=dtype)
        vn = torch.randn(b, g, d, device="cuda", dtype=dtype)
        kc = torch.randn(b + 1, g, length, d, device="cuda", dtype=dtype)
        vc = torch.randn(b + 1, g, length, d, device="cuda", dtype=dtype)
        positions = torch.randint(0, span, (b,), device="cuda")
        want = ta.reference(q, kn, vn, kc.clone(), vc.clone(), positions, d**-0.5)
        got = ta.decode_attention(q, kn, vn, kc, vc, positions, span, d**-0.5)
        tol = 1e-4 if dtype == torch.float32 else 2e-2
        assert (got.float() - want.float()).abs().max().item() <= tol, (b, g, groups, d, span)
    assert ta.probe(torch.device("cuda"), dtype, 2, 7, 64) is None


@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_cuda_engine_with_the_kernel_generates_what_sdpa_does(tiny_model_dir):
    """With CUDA graphs, float32 (TF32 off): the same greedy and seeded tokens as the SDPA engine."""
    torch.backends.cuda.matmul.allow_tf32 = False
    prompts = [[1, 5, 9, 2, 7], [3] * 40, [4, 8], list(range(10, 31))] * 5
    requests = [GenerateRequest(p, SamplingParams(max_new_tokens=48, temperature=t, seed=3, n=2))
                for p in prompts for t in (0.0, 1.0)]
    outs = {}
    for choice in ("triton", "sdpa"):
        backend = NativeBackend(NativeBackendConfig(engine="static", decode_attention=choice),
                                model=ModelConfig(path=str(tiny_model_dir), device="cuda", dtype="float32"), seed=0)
        assert backend.engine.decoder.triton_attention == (choice == "triton")
        outs[choice] = asyncio.run(backend.generate(requests))
        assert backend.engine.stats["graphs_captured"] > 0
        backend.shutdown()
    for a, b in zip(outs["triton"], outs["sdpa"], strict=True):
        for ca, cb in zip(a.completions, b.completions, strict=True):
            assert ca.token_ids == cb.token_ids
            assert max(abs(x - y) for x, y in zip(ca.logprobs, cb.logprobs, strict=True)) < 2e-3
