"""skyrl_core.ops.fused_logprobs: same values and gradients as the chunked torch ops, on CPU (torch
path) and, when CUDA is present, through the Triton kernels at the 152k-vocabulary size."""

from __future__ import annotations

import pytest
import torch

from skyrl_core.ops import fused_logprobs
from skyrl_core.ops.fused_logprobs import logprobs_and_entropy
from skyrl_core.ops.logprobs import entropy_from_logits, token_logprobs


def _both(logits: torch.Tensor, targets: torch.Tensor, temperature: float, fused: bool):
    gen = torch.Generator(device=logits.device).manual_seed(3)
    g_lp = torch.randn(logits.shape[0], device=logits.device, generator=gen)
    g_ent = torch.randn(logits.shape[0], device=logits.device, generator=gen)
    leaf = logits.detach().clone().requires_grad_(True)
    if fused:
        lp, ent = logprobs_and_entropy(leaf, targets, temperature)
    else:
        lp = token_logprobs(leaf[None], targets[None], temperature)[0]
        ent = entropy_from_logits(leaf[None], temperature)[0]
    ((lp * g_lp).sum() + (ent * g_ent).sum()).backward()
    return lp.detach(), ent.detach(), leaf.grad.float()


@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_cpu_matches_the_chunked_ops(temperature):
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(9, 301, generator=gen) * 3
    targets = torch.randint(0, 301, (9,), generator=gen)
    got, expected = _both(logits, targets, temperature, True), _both(logits, targets, temperature, False)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b)


def test_entropy_only_when_asked_and_bad_temperature_rejected():
    logits, targets = torch.randn(2, 5), torch.tensor([0, 4])
    lp, ent = logprobs_and_entropy(logits, targets, 1.0, need_entropy=False)
    assert ent is None and lp.shape == (2,)
    with pytest.raises(ValueError, match="temperature"):
        logprobs_and_entropy(logits, targets, 0.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_cuda_triton_path_matches_at_qwen_vocabulary(dtype):
    gen = torch.Generator(device="cuda").manual_seed(1)
    vocab = 151936
    logits = (torch.randn(64, vocab, device="cuda", generator=gen) * 3).to(dtype)
    logits[5] *= 40  # nearly one-hot: low entropy
    targets = torch.randint(0, vocab, (64,), device="cuda", generator=gen)
    assert fused_logprobs.fused_available(logits)
    (lp1, ent1, g1), (lp2, ent2, g2) = _both(logits, targets, 0.8, True), _both(logits, targets, 0.8, False)
    torch.testing.assert_close(lp1, lp2, atol=2e-3, rtol=1e-4)
    torch.testing.assert_close(ent1, ent2, atol=2e-3, rtol=1e-4)
    tol = 2e-2 if dtype == torch.bfloat16 else 1e-4
    assert float((g1 - g2).abs().max()) <= tol * float(g2.abs().max()) + 1e-6


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_first_use_in_a_no_grad_pass_still_verifies_the_kernel(monkeypatch):
    monkeypatch.setattr(fused_logprobs, "_VERIFIED", {})
    logits = torch.randn(4, 1000, device="cuda", dtype=torch.bfloat16)
    with torch.no_grad():
        assert fused_logprobs.fused_available(logits)
        lp, _ = logprobs_and_entropy(logits, torch.tensor([1, 2, 3, 4], device="cuda"))
    expected = token_logprobs(logits[None], torch.tensor([[1, 2, 3, 4]], device="cuda"))[0]
    torch.testing.assert_close(lp, expected, atol=1e-4, rtol=0)
