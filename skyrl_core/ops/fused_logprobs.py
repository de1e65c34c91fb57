"""Token log-probs and entropy of ``(N, V)`` logits in one fused Triton pass (CUDA), else chunked torch.

``logprobs_and_entropy(logits, targets, temperature, need_entropy)`` returns what
``token_logprobs`` and ``entropy_from_logits`` of ``skyrl_core.ops.logprobs`` return for
``logits[None]``, with the same gradients. On CUDA with Triton, one kernel per direction
walks each row of the (bf16) logits: the forward reads a row twice (max, then sums of
``exp`` for the log-normaliser and the entropy) and writes three floats; the backward
reads it once and writes its gradient once. The torch path instead materialises float32
chunks several times per op; for a 152k vocabulary this is most of the non-matmul time
of a training step.

The Triton path checks itself once per dtype against the torch ops on random inputs
(values and gradients) and is abandoned, with a warning, if it disagrees or fails.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor

from skyrl_core.ops.logprobs import entropy_from_logits, token_logprobs

try:  # Triton ships with CUDA builds of torch; CPU installs fall back to torch ops.
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the install
    triton = None

__all__ = ["logprobs_and_entropy"]

_BLOCK = 4096
_VERIFIED: dict[torch.dtype, bool] = {}

if triton is not None:

    @triton.jit
    def _fwd_kernel(logits, stride, targets, out_lp, out_ent, out_lse, vocab, inv_t, BLOCK: tl.constexpr):
        row = tl.program_id(0)
        base = logits + row.to(tl.int64) * stride
        cols = tl.arange(0, BLOCK)
        m_vec = tl.full((BLOCK,), float("-inf"), tl.float32)
        for off in range(0, vocab, BLOCK):
            x = tl.load(base + off + cols, mask=off + cols < vocab, other=float("-inf")).to(tl.float32) * inv_t
            m_vec = tl.maximum(m_vec, x)
        m = tl.max(m_vec, axis=0)
        s_vec = tl.zeros((BLOCK,), tl.float32)
        a_vec = tl.zeros((BLOCK,), tl.float32)
        for off in range(0, vocab, BLOCK):
            valid = off + cols < vocab
            x = tl.load(base + off + cols, mask=valid, other=0.0).to(tl.float32) * inv_t
            d = x - m
            e = tl.where(valid, tl.exp(d), 0.0)
            s_vec += e
            a_vec += tl.where(valid, e * d, 0.0)
        s = tl.sum(s_vec, axis=0)
        a = tl.sum(a_vec, axis=0)
        log_s = tl.log(s)
        lse = m + log_s
        target = tl.load(targets + row)
        xt = tl.load(base + target).to(tl.float32) * inv_t
        tl.store(out_lp + row, xt - lse)
        # -sum p log p with log p = d - log s, relative to the max: no cancellation at low entropy.
        tl.store(out_ent + row, log_s - a / s)
        tl.store(out_lse + row, lse)

    @triton.jit
    def _bwd_kernel(logits, stride, grad, grad_stride, targets, lse_ptr, ent_ptr, g_lp_ptr, g_ent_ptr, vocab, inv_t,
                    BLOCK: tl.constexpr):
        row = tl.program_id(0)
        base = logits + row.to(tl.int64) * stride
        gbase = grad + row.to(tl.int64) * grad_stride
        cols = tl.arange(0, BLOCK)
        lse = tl.load(lse_ptr + row)
        ent = tl.load(ent_ptr + row)
        g_lp = tl.load(g_lp_ptr + row)
        g_ent = tl.load(g_ent_ptr + row)
        target = tl.load(targets + row)
        for off in range(0, vocab, BLOCK):
            idx = off + cols
            valid = idx < vocab
            x = tl.load(base + idx, mask=valid, other=0.0).to(tl.float32) * inv_t
            logp = x - lse
            p = tl.exp(logp)
            # d logp_target/dx = onehot - p;  dH/dx = -p (log p + H);  both times 1/t.
            g = -p * (g_lp + g_ent * (logp + ent))
            g = tl.where(idx == target, g + g_lp, g) * inv_t
            tl.store(gbase + idx, g.to(gbase.dtype.element_ty), mask=valid)


class _Fused(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, logits: Tensor, targets: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
        n, vocab = logits.shape
        targets = targets.to(device=logits.device, dtype=torch.long).contiguous()
        lp = torch.empty(n, dtype=torch.float32, device=logits.device)
        ent = torch.empty_like(lp)
        lse = torch.empty_like(lp)
        if n:
            _fwd_kernel[(n,)](logits, logits.stride(0), targets, lp, ent, lse, vocab, 1.0 / temperature,
                              BLOCK=_BLOCK, num_warps=8)
        ctx.save_for_backward(logits, targets, lse, ent)
        ctx.temperature = temperature
        return lp, ent

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, g_lp: Tensor, g_ent: Tensor) -> tuple[Tensor, None, None]:
        logits, targets, lse, ent = ctx.saved_tensors
        n, vocab = logits.shape
        grad = torch.empty_like(logits, memory_format=torch.contiguous_format)
        if n:
            _bwd_kernel[(n,)](logits, logits.stride(0), grad, grad.stride(0), targets, lse, ent,
                              g_lp.float().contiguous(), g_ent.float().contiguous(), vocab, 1.0 / ctx.temperature,
                              BLOCK=_BLOCK, num_warps=8)
        return grad, None, None


def _torch_path(
    logits: Tensor, targets: Tensor, temperature: float, need_entropy: bool
) -> tuple[Tensor, Tensor | None]:
    lp = token_logprobs(logits[None], targets[None], temperature)[0]
    ent = entropy_from_logits(logits[None], temperature)[0] if need_entropy else None
    return lp, ent


def _self_check(dtype: torch.dtype, device: torch.device) -> bool:
    """Compare the Triton path with the torch path on random inputs (values and gradients).

    Runs with gradients enabled whatever the caller's mode (the first call is often a no-grad pass).
    """
    try:
        with torch.inference_mode(False), torch.enable_grad():
            return _compare(dtype, device)
    except Exception as exc:  # any compile/launch problem: use the torch path
        warnings.warn(f"fused log-prob kernel unavailable ({type(exc).__name__}: {exc}); using torch ops", stacklevel=3)
        return False


def _compare(dtype: torch.dtype, device: torch.device) -> bool:
    gen = torch.Generator(device=device).manual_seed(0)
    vocab = 3 * _BLOCK + 77  # several blocks and a ragged tail
    x = (torch.randn(37, vocab, device=device, generator=gen) * 4).to(dtype)
    x[3] = x[3] * 50  # a very peaked row (low entropy)
    targets = torch.randint(0, vocab, (37,), device=device, generator=gen)
    g_lp, g_ent = torch.randn(37, device=device, generator=gen), torch.randn(37, device=device, generator=gen)
    results = []
    for fused in (True, False):
        leaf = x.detach().clone().requires_grad_(True)
        lp, ent = _Fused.apply(leaf, targets, 0.7) if fused else _torch_path(leaf, targets, 0.7, True)
        ((lp * g_lp).sum() + (ent * g_ent).sum()).backward()
        results.append((lp.detach(), ent.detach(), leaf.grad.float()))
    (lp1, ent1, gr1), (lp2, ent2, gr2) = results
    ok = torch.allclose(lp1, lp2, atol=2e-3, rtol=1e-4) and torch.allclose(ent1, ent2, atol=2e-3, rtol=1e-4)
    scale = float(gr2.abs().max())
    return ok and bool(torch.isfinite(gr1).all()) and float((gr1 - gr2).abs().max()) <= 2e-2 * scale + 1e-4


def fused_available(logits: Tensor) -> bool:
    """Whether ``logits`` will take the Triton path (CUDA, Triton present, self-check passed)."""
    if triton is None or logits.device.type != "cuda" or logits.dim() != 2 or logits.stride(-1) != 1:
        return False
    if logits.dtype not in _VERIFIED:
        _VERIFIED[logits.dtype] = _self_check(logits.dtype, logits.device)
        if not _VERIFIED[logits.dtype]:
            warnings.warn(f"fused log-prob kernel disagrees with torch ops for {logits.dtype}; using torch ops",
                          stacklevel=3)
    return _VERIFIED[logits.dtype]


def logprobs_and_entropy(
    logits: Tensor, targets: Tensor, temperature: float = 1.0, need_entropy: bool = True
) -> tuple[Tensor, Tensor | None]:
    """Log-probability of ``targets`` and entropy under ``softmax(logits / temperature)``.

    Args:
        logits: ``(N, V)`` any float dtype.
        targets: ``(N,)`` ids in ``[0, V)``.
        temperature: > 0.
        need_entropy: also return the entropy (free on the fused path).

    Returns:
        ``(logprobs, entropy)``: ``(N,)`` float32 each (entropy None unless asked), both
        differentiable w.r.t. ``logits``.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    if fused_available(logits):
        lp, ent = _Fused.apply(logits, targets, float(temperature))
        return lp, (ent if need_entropy else None)
    return _torch_path(logits, targets, temperature, need_entropy)
