"""Log-probabilities and entropy from logits, in chunks.

A full ``(B, T, V)`` float32 log-softmax of a 152k-token vocabulary is tens of GiB; both
functions here walk the positions in chunks of about ``chunk_elements`` logits, upcast
one chunk at a time to float32 (float64 stays float64), and keep only the ``(B, T)``
results. The backward pass is a custom autograd function that recomputes the softmax
chunk by chunk, so no float32 copy of the logits is kept alive for autograd either; the gradient itself has the logits'
shape and dtype, as any gradient of the logits must.

Temperature: the logits are divided by ``temperature`` (in float32) before the softmax,
exactly as the sampler did, so trainer and engine log-probs are comparable.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

__all__ = ["entropy_from_logits", "token_logprobs"]

DEFAULT_CHUNK_ELEMENTS = 1 << 25
"""Logits upcast at once (32 Mi elements = 128 MiB in float32, about 220 positions at 152k)."""


def _compute_dtype(logits: Tensor) -> torch.dtype:
    return torch.float64 if logits.dtype == torch.float64 else torch.float32


def _rows(x: Tensor) -> list[Tensor]:
    """2-D views ``(n, V)`` covering every position of ``x (B, T, V)`` in row-major order.

    A slice like ``logits[:, :-1]`` cannot be flattened without a copy; it is walked one
    batch row at a time instead.
    """
    vocab = x.shape[-1]
    try:
        return [x.view(-1, vocab)]
    except RuntimeError:
        return [row if row.stride(-1) == 1 else row.contiguous() for row in x.reshape(-1, *x.shape[-2:]).unbind(0)]


def _chunks(x: Tensor, chunk_rows: int) -> Iterator[tuple[int, Tensor]]:
    """``(offset, (n, V) view)`` over every position of ``x``; offsets index the flattened ``(B*T,)``."""
    offset = 0
    for part in _rows(x):
        for start in range(0, part.shape[0], chunk_rows):
            piece = part[start : start + chunk_rows]
            yield offset + start, piece
        offset += part.shape[0]


def _chunk_rows(vocab: int, chunk_elements: int | None) -> int:
    return max(1, (chunk_elements or DEFAULT_CHUNK_ELEMENTS) // max(1, vocab))


def _log_softmax(piece: Tensor, dtype: torch.dtype, temperature: float) -> Tensor:
    """Fresh ``(n, V)`` log-softmax of ``piece / temperature`` computed in ``dtype``.

    ``dtype=`` lets the kernel read bf16 and accumulate/write float32 in one pass.
    """
    if temperature == 1.0:
        return torch.log_softmax(piece, dim=-1, dtype=dtype)
    return torch.log_softmax(piece.to(dtype) / temperature, dim=-1)


def _softmax(piece: Tensor, dtype: torch.dtype, temperature: float) -> Tensor:
    """Fresh ``(n, V)`` softmax of ``piece / temperature`` computed in ``dtype``."""
    if temperature == 1.0:
        return torch.softmax(piece, dim=-1, dtype=dtype)
    return torch.softmax(piece.to(dtype) / temperature, dim=-1)


def _check(logits: Tensor, temperature: float) -> None:
    if logits.dim() != 3:
        raise ValueError(f"expected logits of shape (B, T, V), got {tuple(logits.shape)}")
    if not temperature > 0:
        raise ValueError(
            f"temperature must be > 0, got {temperature!r}: greedy decoding has no log-probs to train on; "
            "use the sampling temperature"
        )


class _TokenLogprobs(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, logits: Tensor, token_ids: Tensor, temperature: float, chunk_rows: int) -> Tensor:
        dtype = _compute_dtype(logits)
        n = logits.shape[0] * logits.shape[1]
        flat_ids = token_ids.reshape(-1).to(device=logits.device, dtype=torch.long)
        out = torch.empty(n, dtype=dtype, device=logits.device)
        for start, piece in _chunks(logits, chunk_rows):
            stop = start + piece.shape[0]
            logp = _log_softmax(piece, dtype, temperature)
            out[start:stop] = logp.gather(-1, flat_ids[start:stop, None]).squeeze(-1)
        ctx.save_for_backward(logits, flat_ids)
        ctx.temperature, ctx.chunk_rows, ctx.dtype = temperature, chunk_rows, dtype
        return out.view(logits.shape[:2])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, None, None, None]:
        logits, flat_ids = ctx.saved_tensors
        t = ctx.temperature
        grad = torch.empty(logits.shape, dtype=logits.dtype, device=logits.device)
        flat_grad = grad.view(-1, logits.shape[-1])
        g = grad_out.reshape(-1).to(ctx.dtype)
        for start, piece in _chunks(logits, ctx.chunk_rows):
            stop = start + piece.shape[0]
            scale = g[start:stop, None] / t
            # d log p_id / dx = onehot(id) - softmax(x), times 1/t for x = logits / t.
            # In place on one fresh buffer: this loop is memory-bound.
            chunk = _softmax(piece, ctx.dtype, t).mul_(-scale)
            chunk.scatter_add_(-1, flat_ids[start:stop, None], scale)
            flat_grad[start:stop].copy_(chunk)
        return grad, None, None, None


class _Entropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, logits: Tensor, temperature: float, chunk_rows: int) -> Tensor:
        dtype = _compute_dtype(logits)
        n = logits.shape[0] * logits.shape[1]
        out = torch.empty(n, dtype=dtype, device=logits.device)
        for start, piece in _chunks(logits, chunk_rows):
            stop = start + piece.shape[0]
            logp = _log_softmax(piece, dtype, temperature)
            # -sum p·log p, not lse - E_p[x]: the latter cancels catastrophically at low entropy.
            out[start:stop] = logp.exp().mul_(logp).sum(-1).neg_()
        ctx.save_for_backward(logits, out)
        ctx.temperature, ctx.chunk_rows, ctx.dtype = temperature, chunk_rows, dtype
        return out.view(logits.shape[:2])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, None, None]:
        logits, entropy = ctx.saved_tensors
        t = ctx.temperature
        grad = torch.empty(logits.shape, dtype=logits.dtype, device=logits.device)
        flat_grad = grad.view(-1, logits.shape[-1])
        g = grad_out.reshape(-1).to(ctx.dtype)
        for start, piece in _chunks(logits, ctx.chunk_rows):
            stop = start + piece.shape[0]
            logp = _log_softmax(piece, ctx.dtype, t)
            p = logp.exp()
            # dH/dx_k = -p_k (log p_k + H), times 1/t for x = logits / t
            logp.add_(entropy[start:stop, None]).mul_(p).mul_(-g[start:stop, None] / t)
            flat_grad[start:stop].copy_(logp)
        return grad, None, None


def token_logprobs(
    logits: Tensor, token_ids: Tensor, temperature: float = 1.0, *, chunk_elements: int | None = None
) -> Tensor:
    """Log-probability of ``token_ids`` under ``softmax(logits / temperature)``.

    Args:
        logits: ``(B, T, V)`` in any float dtype (bf16 is fine; the math is float32). Slices
            such as ``logits[:, :-1]`` are handled without copying the tensor.
        token_ids: ``(B, T)`` integer ids in ``[0, V)``; position ``t`` is scored against
            ``logits[:, t]`` (shift the logits yourself: ``logits[:, :-1]`` for ``ids[:, 1:]``).
            Padding positions must still hold a valid id (e.g. 0); mask their results.
        temperature: the sampling temperature (> 0).
        chunk_elements: logits upcast at once (default ``DEFAULT_CHUNK_ELEMENTS``).

    Returns:
        ``(B, T)`` float32 (float64 for float64 logits), differentiable w.r.t. ``logits``.
    """
    _check(logits, temperature)
    if token_ids.shape != logits.shape[:2]:
        raise ValueError(f"token_ids {tuple(token_ids.shape)} must be (B, T) = {tuple(logits.shape[:2])}")
    return _TokenLogprobs.apply(logits, token_ids, float(temperature), _chunk_rows(logits.shape[-1], chunk_elements))


def entropy_from_logits(logits: Tensor, temperature: float = 1.0, *, chunk_elements: int | None = None) -> Tensor:
    """Entropy of ``softmax(logits / temperature)`` at every position.

    Args:
        logits: ``(B, T, V)`` in any float dtype (computed in float32).
        temperature: the sampling temperature (> 0).
        chunk_elements: logits upcast at once (default ``DEFAULT_CHUNK_ELEMENTS``).

    Returns:
        ``(B, T)`` float32 (float64 for float64 logits) in nats, differentiable w.r.t. ``logits``.
    """
    _check(logits, temperature)
    return _Entropy.apply(logits, float(temperature), _chunk_rows(logits.shape[-1], chunk_elements))
