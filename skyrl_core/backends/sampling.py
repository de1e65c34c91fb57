"""Per-row sampling for a batch of next-token logits: seeds, random numbers, filters, draws.

One sampler for both decode engines of the native backend (the Hugging Face engine and the
static engine), so one seed gives the same samples whichever runs it. The SGLang plugin's
logit processor uses its filters (``filtered_logprobs``).

Filters. Rows of one batch may use different parameters. The filters run in the order of
transformers' ``generate``: temperature, then top-k, then top-p (on the distribution
renormalised after top-k), then min-p (relative to the most likely token). The reported
log-prob of a token is its log-probability under that final filtered distribution; a
greedy row (temperature 0) takes the argmax and reports the log-softmax of the raw logits.

Seeds and random numbers. Sample ``j`` of a request seeded ``s`` has the seed
``sample_seed(s, j)``; its ``i``-th token (0 = the first) is drawn by inverse-CDF sampling
with the uniform ``counter_uniform(sample_seed(s, j), i)``, a splitmix64 hash of the seed
and the token index. It needs no generator state, so a seeded sample gets the same numbers
whatever else shares its batch, whichever engine, bucket or CUDA graph runs it, and after
rows around it retire. Same numbers are not quite same tokens: the engines' forward passes
round differently (logits differ by ~1e-6 in float32), so a draw that sits on a decision
boundary (a CDF step, a top-p / min-p cut, an argmax tie) can go either way. Measured on
the test model in float32: 3 of 384 samples of 64 tokens parted so between the two engines
on a CPU, each at a token that a 1e-6 change of the logits flips, none of 384 on an H100;
in bfloat16 (logits ~1e-2 apart) most samples part. Bit-equal logits would need the same
kernels in both engines.

CUDA graphs. ``sample`` can be captured in a CUDA graph: no Python branch depends on a
tensor's value and nothing calls ``.item()``. The only branches are on ``SamplingFlags``
(which filters any row of the batch uses), which the static engine makes part of a graph's
key. Flags are a property of the batch, not of a row: a row that does not use a filter the
flags switch on gets the same distribution, to within float rounding.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import torch
from torch import Tensor

from skyrl_core.protocols.backend import SamplingParams

_MASK64 = (1 << 64) - 1


def sample_seed(request_seed: int, sample_index: int) -> int:
    """The seed of sample ``sample_index`` of a request seeded with ``request_seed`` (in ``[0, 2**63)``)."""
    mixed = (request_seed * 0x9E3779B97F4A7C15 + (sample_index + 1) * 0xBF58476D1CE4E5B9) & _MASK64
    mixed ^= mixed >> 31
    return mixed & (2**63 - 1)


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
        seeds: ``(B,)`` int64 per-sample seeds (``sample_seed``).
        counters: ``(B,)`` int64, the index of the token being drawn (0 = first).

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
    """Which filters any sampled row of a batch uses (the static engine keys its CUDA graphs on it).

    Attributes:
        top_k, top_p, min_p: some sampled row uses that filter.
        all_greedy: every row is greedy (no draw needed).
    """

    top_k: bool
    top_p: bool
    min_p: bool
    all_greedy: bool

    @classmethod
    def of(cls, params: Sequence[SamplingParams]) -> SamplingFlags:
        """The flags of a batch whose rows sample with ``params``."""
        sampled = [p for p in params if p.temperature > 0]
        return cls(
            top_k=any(p.top_k > 0 for p in sampled),
            top_p=any(p.top_p < 1 for p in sampled),
            min_p=any(p.min_p > 0 for p in sampled),
            all_greedy=not sampled,
        )

    @property
    def filters(self) -> bool:
        """Some row uses top-k, top-p or min-p."""
        return self.top_k or self.top_p or self.min_p


@attrs.define
class RowSampling:
    """Sampling parameters of the rows of a batch as tensors on the logits' device.

    Mutable so that the static engine can load new rows into the buffers a CUDA graph reads.

    Attributes:
        temperature: ``(B,)`` float32; rows with 0 are greedy (their entry here is 1).
        greedy: ``(B,)`` bool.
        top_k: ``(B,)`` int64; ``<= 0`` means off.
        top_p: ``(B,)`` float32; ``>= 1`` means off.
        min_p: ``(B,)`` float32; ``0`` means off.
        seeds: ``(B,)`` int64 per-sample seeds (``sample_seed``).
        flags: which filters any row uses; ``select`` keeps them (a superset stays correct).
    """

    temperature: Tensor
    greedy: Tensor
    top_k: Tensor
    top_p: Tensor
    min_p: Tensor
    seeds: Tensor
    flags: SamplingFlags

    @classmethod
    def build(
        cls, params: Sequence[SamplingParams], device: torch.device | str, seeds: Sequence[int] | None = None
    ) -> RowSampling:
        """Tensors for ``params`` (one entry per row) and the rows' seeds (default 0: unseeded use)."""
        greedy = [p.temperature == 0 for p in params]
        seeds = [0] * len(params) if seeds is None else list(seeds)
        # Built on the CPU at once, then one host->device copy per field.
        return cls(
            temperature=torch.tensor(
                [1.0 if g else p.temperature for p, g in zip(params, greedy, strict=True)], dtype=torch.float32
            ).to(device),
            greedy=torch.tensor(greedy, dtype=torch.bool).to(device),
            top_k=torch.tensor([p.top_k for p in params], dtype=torch.long).to(device),
            top_p=torch.tensor([p.top_p for p in params], dtype=torch.float32).to(device),
            min_p=torch.tensor([p.min_p for p in params], dtype=torch.float32).to(device),
            seeds=torch.tensor(seeds, dtype=torch.long).to(device),
            flags=SamplingFlags.of(params),
        )

    @classmethod
    def empty(cls, rows: int, device: torch.device | str) -> RowSampling:
        """``rows`` greedy rows (buffers to ``load`` into)."""
        return cls.build([SamplingParams(temperature=0)] * rows, device)

    def load(self, other: RowSampling) -> None:
        """Copy ``other`` into the first rows of this one, in place; the rest become greedy padding."""
        n = other.seeds.shape[0]
        for name in _TENSORS:
            getattr(self, name)[:n].copy_(getattr(other, name))
        self.greedy[n:] = True
        self.temperature[n:] = 1.0
        self.flags = other.flags

    def select(self, rows: Tensor) -> RowSampling:
        """The same parameters for a subset of rows (``rows``: ``(B',)`` indices)."""
        return RowSampling(**{name: getattr(self, name).index_select(0, rows) for name in _TENSORS}, flags=self.flags)


_TENSORS = tuple(f.name for f in attrs.fields(RowSampling) if f.name != "flags")


def filtered_logprobs(logits: Tensor, rows: RowSampling) -> Tensor:
    """Log-probabilities of the distribution each row samples from.

    Args:
        logits: ``(B, V)`` next-token logits (any float dtype; computed in float32).
        rows: per-row parameters.

    Returns:
        ``(B, V)`` float32 log-probs; tokens removed by a filter are ``-inf``. Greedy rows
        hold the log-softmax of the raw logits.
    """
    flags = rows.flags
    logits = logits.float()
    raw = torch.log_softmax(logits, dim=-1)
    if flags.all_greedy:
        return raw
    scaled = logits / rows.temperature[:, None]
    sampled = ~rows.greedy
    vocab = scaled.shape[-1]
    if flags.top_k or flags.top_p:
        sorted_logits, order = torch.sort(scaled, dim=-1, descending=True)
        rank = torch.arange(vocab, device=scaled.device)[None, :]
        k = torch.where(rows.top_k > 0, rows.top_k, vocab)
        remove = rank >= k[:, None]
        if flags.top_p:
            probs = torch.softmax(sorted_logits.masked_fill(remove, float("-inf")), dim=-1)
            mass_before = torch.cumsum(probs, dim=-1) - probs  # exclusive prefix sum
            # Keep the smallest prefix whose mass reaches top_p (the top token always stays).
            over = (mass_before >= rows.top_p[:, None]) & (rows.top_p < 1)[:, None]
            over[:, 0] = False
            remove = remove | over
        remove = remove & sampled[:, None]
        scaled = scaled.masked_fill(torch.zeros_like(remove).scatter(1, order, remove), float("-inf"))
    if flags.min_p:
        probs = torch.softmax(scaled, dim=-1)
        threshold = rows.min_p[:, None] * probs.max(dim=-1, keepdim=True).values
        scaled = scaled.masked_fill((probs < threshold) & sampled[:, None], float("-inf"))
    # Unconditional merge: a value-dependent `if greedy.any()` would break graph capture.
    return torch.where(rows.greedy[:, None], raw, torch.log_softmax(scaled, dim=-1))


def draw(logprobs: Tensor, rows: RowSampling, uniforms: Tensor) -> tuple[Tensor, Tensor]:
    """Pick one token per row by inverse-CDF sampling.

    Args:
        logprobs: ``(B, V)`` from ``filtered_logprobs``.
        rows: per-row parameters (greedy rows take the argmax).
        uniforms: ``(B,)`` numbers in ``[0, 1)``, one per row (ignored for greedy rows).

    Returns:
        ``(token_ids, token_logprobs)``: ``(B,)`` int64 and ``(B,)`` float32.
    """
    argmax = logprobs.argmax(dim=-1)
    if rows.flags.all_greedy:
        tokens = argmax
    else:
        cdf = torch.cumsum(logprobs.exp(), dim=-1)
        target = (uniforms.to(cdf.device, cdf.dtype) * cdf[:, -1]).unsqueeze(-1)
        picked = torch.searchsorted(cdf, target, right=True).squeeze(-1).clamp_(max=logprobs.shape[-1] - 1)
        # Rounding at the very top of the CDF could land on a removed token; fall back to argmax.
        ok = torch.isfinite(logprobs.gather(1, picked[:, None]).squeeze(-1))
        tokens = torch.where(rows.greedy | ~ok, argmax, picked)
    return tokens, logprobs.gather(1, tokens[:, None]).squeeze(-1)


def sample(logits: Tensor, rows: RowSampling, counters: Tensor) -> tuple[Tensor, Tensor]:
    """One token per row, drawn with ``counter_uniform(rows.seeds, counters)`` (what both engines call).

    Args:
        logits: ``(B, V)`` next-token logits.
        rows: per-row parameters and seeds.
        counters: ``(B,)`` int64 index of the token each row draws (0 = its first token).

    Returns:
        ``(tokens, logprobs)``: ``(B,)`` int64 and ``(B,)`` float32.
    """
    if not rows.flags.filters:
        return _sample_plain(logits, rows, counters)
    return draw(filtered_logprobs(logits, rows), rows, counter_uniform(rows.seeds, counters))


#: Vocabulary entries per block of the two-level inverse CDF of ``_sample_plain``.
CDF_BLOCK = 128


def _sample_plain(logits: Tensor, rows: RowSampling, counters: Tensor) -> tuple[Tensor, Tensor]:
    """``sample`` without filters (see ``sample_plain``)."""
    return sample_plain(logits, rows.temperature, rows.greedy, rows.seeds, counters, all_greedy=rows.flags.all_greedy)


def sample_plain(logits: Tensor, temperature: Tensor, greedy: Tensor, seeds: Tensor, counters: Tensor, *,
                 all_greedy: bool) -> tuple[Tensor, Tensor]:
    """Temperature sampling by a two-level inverse CDF, never materialising the ``(B, V)`` CDF.

    The draw is the token at which the cumulative (unnormalised) probability first exceeds
    ``u * total`` (``u = counter_uniform(seed, counter)``), as a full ``cumsum`` + ``searchsorted``
    would find it: here the vocabulary is cut into blocks of ``CDF_BLOCK`` tokens, the block
    sums' prefix sums pick the block, and the prefix sums of that one block pick the token. So
    the ``(B, V)`` passes are the scaled logits, their row max (and argmax, for greedy rows and
    the fallback) and ``exp`` summed per block: about half the memory traffic of a softmax + a
    full ``cumsum`` over a 152k vocabulary, and all shapes static (CUDA graphs). The log-prob is
    the chosen token's log-softmax, ``x - max - log(total)``. Greedy rows (temperature 1 here)
    take the argmax of the logits with its log-softmax.

    Args:
        logits: ``(B, V)`` next-token logits (any float dtype; computed in float32).
        temperature, greedy, seeds: ``RowSampling``'s fields; counters: ``(B,)`` token indices.
        all_greedy: no row samples (skip the draw).

    Returns:
        ``(tokens, logprobs)``: ``(B,)`` int64 and ``(B,)`` float32.
    """
    x = logits.float() / temperature[:, None]
    b, vocab = x.shape
    top, argmax = x.max(dim=-1)
    blocks = -(-vocab // CDF_BLOCK)
    if blocks * CDF_BLOCK != vocab:  # pad with -inf: probability 0, never drawn
        x = torch.nn.functional.pad(x, (0, blocks * CDF_BLOCK - vocab), value=float("-inf"))
    shifted = (x - top[:, None]).view(b, blocks, CDF_BLOCK)
    block_cdf = torch.cumsum(shifted.exp().sum(dim=-1), dim=-1)  # (B, blocks)
    total = block_cdf[:, -1]
    if all_greedy:
        tokens = argmax
    else:
        target = counter_uniform(seeds, counters) * total
        j = torch.searchsorted(block_cdf, target[:, None], right=True).clamp_(max=blocks - 1)  # (B, 1)
        before = torch.where(j > 0, block_cdf.gather(1, (j - 1).clamp(min=0)), 0.0).squeeze(-1)
        inner = shifted.gather(1, j[:, :, None].expand(b, 1, CDF_BLOCK)).squeeze(1).exp()  # (B, CDF_BLOCK)
        k = torch.searchsorted(torch.cumsum(inner, dim=-1), (target - before)[:, None], right=True)
        picked = (j * CDF_BLOCK + k.clamp_(max=CDF_BLOCK - 1)).clamp_(max=vocab - 1)  # (B, 1)
        # Rounding at the very top of a CDF could land past the last drawable token: take the argmax.
        ok = torch.isfinite(x.gather(1, picked)).squeeze(-1) & (inner.gather(1, k).squeeze(-1) > 0)
        tokens = torch.where(greedy | ~ok, argmax, picked.squeeze(-1))
    chosen = x.gather(1, tokens[:, None]).squeeze(-1)
    return tokens, chosen - top - total.log()
