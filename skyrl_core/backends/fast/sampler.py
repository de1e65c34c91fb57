"""Sampling on the device with no host synchronisation: counter-based random numbers and filters.

The rules are those of ``skyrl_core.backends.sampling`` (temperature, then top-k, then
top-p on the renormalised top-k distribution, then min-p; a greedy row takes the argmax
and reports the raw log-softmax), written so that one step can be captured in a CUDA
graph: no Python branch depends on a tensor's value, and no ``.item()``.

Random numbers: row ``r`` draws its ``i``-th token with the uniform
``counter_uniform(seed_r, i)``, a splitmix64 hash of the row's seed and the token index.
It needs no generator state, so a seeded sample gets the same numbers whatever else
shares its batch, whichever bucket or graph runs it, and after rows around it retire.
(The HF engine uses a per-row ``torch.Generator`` instead; the two engines give different
samples for one seed, each reproducible on its own.)
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import torch
from torch import Tensor

from skyrl_core.protocols.backend import SamplingParams


def _signed(x: int) -> int:
    """A 64-bit pattern as the int64 torch stores."""
    return x - (1 << 64) if x >= 1 << 63 else x


_GOLDEN = _signed(0x9E3779B97F4A7C15)
_MIX1 = _signed(0xBF58476D1CE4E5B9)
_MIX2 = _signed(0x94D049BB133111EB)


def _shr(x: Tensor, bits: int) -> Tensor:
    """Logical right shift of int64 (torch's ``>>`` is arithmetic)."""
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def counter_uniform(seeds: Tensor, counters: Tensor) -> Tensor:
    """Uniform numbers in ``[0, 1)`` from ``(seed, counter)`` pairs (splitmix64; int64 math wraps).

    Args:
        seeds: ``(B,)`` int64.
        counters: ``(B,)`` int64, e.g. the index of the token being drawn.

    Returns:
        ``(B,)`` float32 with 24 random bits each.
    """
    x = seeds + (counters + 1) * _GOLDEN
    x = (x ^ _shr(x, 30)) * _MIX1
    x = (x ^ _shr(x, 27)) * _MIX2
    x = x ^ _shr(x, 31)
    return _shr(x, 40).to(torch.float32) * (1.0 / (1 << 24))


@attrs.frozen
class SamplingFlags:
    """Which filters any row of a batch uses: part of a captured graph's key."""

    top_k: bool
    top_p: bool
    min_p: bool
    all_greedy: bool

    @classmethod
    def of(cls, params: Sequence[SamplingParams]) -> SamplingFlags:
        sampled = [p for p in params if p.temperature > 0]
        return cls(
            top_k=any(p.top_k > 0 for p in sampled),
            top_p=any(p.top_p < 1 for p in sampled),
            min_p=any(p.min_p > 0 for p in sampled),
            all_greedy=not sampled,
        )


@attrs.define
class SamplingState:
    """Per-row parameters as device tensors (rows of a bucket; padding rows are greedy).

    Attributes:
        temperature: ``(B,)`` float32, 1 for greedy rows.
        greedy: ``(B,)`` bool.
        top_k: ``(B,)`` int64, ``<= 0`` off.
        top_p: ``(B,)`` float32, ``>= 1`` off.
        min_p: ``(B,)`` float32, 0 off.
        seeds: ``(B,)`` int64 per-row seeds.
    """

    temperature: Tensor
    greedy: Tensor
    top_k: Tensor
    top_p: Tensor
    min_p: Tensor
    seeds: Tensor

    @classmethod
    def empty(cls, rows: int, device: torch.device | str) -> SamplingState:
        """``rows`` greedy rows (to be overwritten with ``load``)."""
        return cls(
            temperature=torch.ones(rows, device=device),
            greedy=torch.ones(rows, dtype=torch.bool, device=device),
            top_k=torch.zeros(rows, dtype=torch.long, device=device),
            top_p=torch.ones(rows, device=device),
            min_p=torch.zeros(rows, device=device),
            seeds=torch.zeros(rows, dtype=torch.long, device=device),
        )

    @classmethod
    def build(cls, params: Sequence[SamplingParams], seeds: Sequence[int], device: torch.device | str) -> SamplingState:
        """Parameters of ``len(params)`` rows with their per-row seeds."""
        greedy = [p.temperature == 0 for p in params]
        # One host->device copy per field, from CPU tensors built at once.
        return cls(
            temperature=torch.tensor([1.0 if g else p.temperature for p, g in zip(params, greedy, strict=True)]).to(
                device
            ),
            greedy=torch.tensor(greedy, dtype=torch.bool).to(device),
            top_k=torch.tensor([p.top_k for p in params], dtype=torch.long).to(device),
            top_p=torch.tensor([p.top_p for p in params], dtype=torch.float32).to(device),
            min_p=torch.tensor([p.min_p for p in params], dtype=torch.float32).to(device),
            seeds=torch.tensor(list(seeds), dtype=torch.long).to(device),
        )

    def load(self, other: SamplingState) -> None:
        """Copy ``other`` into the first rows of this state, in place; the rest become greedy padding."""
        n = other.seeds.shape[0]
        for field in attrs.fields(SamplingState):
            getattr(self, field.name)[:n].copy_(getattr(other, field.name))
        self.greedy[n:] = True
        self.temperature[n:] = 1.0

    def select(self, rows: Tensor) -> SamplingState:
        """A new state holding the rows ``rows``."""
        return SamplingState(
            **{f.name: getattr(self, f.name).index_select(0, rows) for f in attrs.fields(SamplingState)}
        )


def filtered_logprobs(logits: Tensor, st: SamplingState, flags: SamplingFlags) -> Tensor:
    """``(B, V)`` float32 log-probs each row samples from; filtered-out tokens are ``-inf``.

    Same function as ``skyrl_core.backends.sampling.filtered_logprobs``, without value-dependent
    branches (greedy rows are merged with ``torch.where`` unconditionally).
    """
    logits = logits.float()
    raw = torch.log_softmax(logits, dim=-1)
    if flags.all_greedy:
        return raw
    scaled = logits / st.temperature[:, None]
    sampled = ~st.greedy
    vocab = scaled.shape[-1]
    if flags.top_k or flags.top_p:
        sorted_logits, order = torch.sort(scaled, dim=-1, descending=True)
        rank = torch.arange(vocab, device=scaled.device)[None, :]
        k = torch.where(st.top_k > 0, st.top_k, vocab)
        remove = rank >= k[:, None]
        if flags.top_p:
            probs = torch.softmax(sorted_logits.masked_fill(remove, float("-inf")), dim=-1)
            mass_before = torch.cumsum(probs, dim=-1) - probs
            over = (mass_before >= st.top_p[:, None]) & (st.top_p < 1)[:, None]
            over[:, 0] = False
            remove = remove | over
        remove = remove & sampled[:, None]
        scaled = scaled.masked_fill(torch.zeros_like(remove).scatter(1, order, remove), float("-inf"))
    if flags.min_p:
        probs = torch.softmax(scaled, dim=-1)
        threshold = st.min_p[:, None] * probs.max(dim=-1, keepdim=True).values
        scaled = scaled.masked_fill((probs < threshold) & sampled[:, None], float("-inf"))
    return torch.where(st.greedy[:, None], raw, torch.log_softmax(scaled, dim=-1))


def sample(logits: Tensor, st: SamplingState, flags: SamplingFlags, counters: Tensor) -> tuple[Tensor, Tensor]:
    """One token per row by inverse-CDF sampling with ``counter_uniform(st.seeds, counters)``.

    Args:
        logits: ``(B, V)`` next-token logits.
        st: per-row parameters.
        flags: which filters any row uses.
        counters: ``(B,)`` int64 index of the token each row draws.

    Returns:
        ``(tokens, logprobs)``: ``(B,)`` int64 and ``(B,)`` float32.
    """
    if not (flags.top_k or flags.top_p or flags.min_p):
        return _sample_plain(logits, st, flags, counters)
    logprobs = filtered_logprobs(logits, st, flags)
    argmax = logprobs.argmax(dim=-1)
    if flags.all_greedy:
        tokens = argmax
    else:
        cdf = torch.cumsum(logprobs.exp(), dim=-1)
        target = (counter_uniform(st.seeds, counters) * cdf[:, -1]).unsqueeze(-1)
        picked = torch.searchsorted(cdf, target, right=True).squeeze(-1).clamp_(max=logprobs.shape[-1] - 1)
        # Rounding at the very top of the CDF could land on a removed token; fall back to argmax.
        ok = torch.isfinite(logprobs.gather(1, picked[:, None]).squeeze(-1))
        tokens = torch.where(st.greedy | ~ok, argmax, picked)
    return tokens, logprobs.gather(1, tokens[:, None]).squeeze(-1)


def _sample_plain(logits: Tensor, st: SamplingState, flags: SamplingFlags, counters: Tensor) -> tuple[Tensor, Tensor]:
    """``sample`` without filters in five passes over ``(B, V)``: scale, softmax, argmax, CDF, search.

    The log-prob is ``log`` of the chosen token's float32 probability (within ~1e-7 of the
    log-softmax; a token whose probability underflows to 0 is never drawn). Greedy rows have
    temperature 1 here, so their log-prob is that of the raw logits.
    """
    probs = torch.softmax(logits / st.temperature[:, None], dim=-1)  # bf16 / float32 -> float32
    argmax = logits.argmax(dim=-1)
    if flags.all_greedy:
        tokens = argmax
    else:
        cdf = torch.cumsum(probs, dim=-1)
        target = (counter_uniform(st.seeds, counters) * cdf[:, -1]).unsqueeze(-1)
        picked = torch.searchsorted(cdf, target, right=True).squeeze(-1).clamp_(max=probs.shape[-1] - 1)
        ok = probs.gather(1, picked[:, None]).squeeze(-1) > 0
        tokens = torch.where(st.greedy | ~ok, argmax, picked)
    return tokens, probs.gather(1, tokens[:, None]).squeeze(-1).log()
