"""Per-row sampling for a batch of next-token logits: filters, log-probs, draws.

Rows of one batch may use different parameters. The filters run in the order of
transformers' ``generate``: temperature, then top-k, then top-p (on the distribution
renormalised after top-k), then min-p (relative to the most likely token). The reported
log-prob of a token is its log-probability under that final filtered distribution; a
greedy row (temperature 0) takes the argmax and reports the log-softmax of the raw logits.

Draws use inverse-CDF sampling with one uniform number per row, taken from that row's
own ``torch.Generator``: a seeded sample therefore gets the same random numbers whatever
else shares its batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import torch
from torch import Tensor

from skyrl_core.protocols.backend import SamplingParams


@attrs.frozen
class RowSampling:
    """Sampling parameters of the rows of a batch as tensors on the logits' device.

    Attributes:
        temperature: ``(B,)`` float; rows with 0 are greedy (their entry here is 1).
        greedy: ``(B,)`` bool.
        top_k: ``(B,)`` long; ``<= 0`` means off.
        top_p: ``(B,)`` float; ``>= 1`` means off.
        min_p: ``(B,)`` float; ``0`` means off.
        use_top_k, use_top_p, use_min_p, all_greedy: whether any row needs that step
            (lets a batch skip the sort when no row filters).
    """

    temperature: Tensor
    greedy: Tensor
    top_k: Tensor
    top_p: Tensor
    min_p: Tensor
    use_top_k: bool
    use_top_p: bool
    use_min_p: bool
    all_greedy: bool

    @classmethod
    def build(cls, params: Sequence[SamplingParams], device: torch.device | str) -> RowSampling:
        """Tensors for ``params`` (one entry per row)."""
        greedy = [p.temperature == 0 for p in params]
        sampled = [p for p, g in zip(params, greedy, strict=True) if not g]
        return cls(
            temperature=torch.tensor(
                [1.0 if g else p.temperature for p, g in zip(params, greedy, strict=True)], device=device
            ),
            greedy=torch.tensor(greedy, dtype=torch.bool, device=device),
            top_k=torch.tensor([p.top_k for p in params], dtype=torch.long, device=device),
            top_p=torch.tensor([p.top_p for p in params], device=device),
            min_p=torch.tensor([p.min_p for p in params], device=device),
            use_top_k=any(p.top_k > 0 for p in sampled),
            use_top_p=any(p.top_p < 1 for p in sampled),
            use_min_p=any(p.min_p > 0 for p in sampled),
            all_greedy=not sampled,
        )

    def select(self, rows: Tensor) -> RowSampling:
        """The same parameters for a subset of rows (``rows``: ``(B',)`` indices)."""
        return attrs.evolve(
            self,
            temperature=self.temperature[rows],
            greedy=self.greedy[rows],
            top_k=self.top_k[rows],
            top_p=self.top_p[rows],
            min_p=self.min_p[rows],
        )


def filtered_logprobs(logits: Tensor, rs: RowSampling) -> Tensor:
    """Log-probabilities of the distribution each row samples from.

    Args:
        logits: ``(B, V)`` next-token logits (any float dtype; computed in float32).
        rs: per-row parameters.

    Returns:
        ``(B, V)`` float32 log-probs; tokens removed by a filter are ``-inf``. Greedy rows
        hold the log-softmax of the raw logits.
    """
    logits = logits.float()
    if rs.all_greedy:
        return torch.log_softmax(logits, dim=-1)
    scaled = logits / rs.temperature[:, None]
    sampled = ~rs.greedy
    if rs.use_top_k or rs.use_top_p:
        sorted_logits, order = torch.sort(scaled, dim=-1, descending=True)
        remove = torch.zeros_like(sorted_logits, dtype=torch.bool)
        if rs.use_top_k:
            rank = torch.arange(scaled.shape[-1], device=scaled.device)[None, :]
            k = torch.where(rs.top_k > 0, rs.top_k, scaled.shape[-1])
            remove |= rank >= k[:, None]
        if rs.use_top_p:
            probs = torch.softmax(sorted_logits.masked_fill(remove, float("-inf")), dim=-1)
            mass_before = torch.cumsum(probs, dim=-1) - probs  # exclusive prefix sum
            # Keep the smallest prefix whose mass reaches top_p (the top token always stays).
            over = (mass_before >= rs.top_p[:, None]) & (rs.top_p < 1)[:, None]
            over[:, 0] = False
            remove |= over
        remove &= sampled[:, None]
        scaled = scaled.masked_fill(torch.zeros_like(remove).scatter(1, order, remove), float("-inf"))
    if rs.use_min_p:
        probs = torch.softmax(scaled, dim=-1)
        threshold = rs.min_p[:, None] * probs.max(dim=-1, keepdim=True).values
        scaled = scaled.masked_fill((probs < threshold) & sampled[:, None], float("-inf"))
    out = torch.log_softmax(scaled, dim=-1)
    if rs.greedy.any():
        out = torch.where(rs.greedy[:, None], torch.log_softmax(logits, dim=-1), out)
    return out


def draw(logprobs: Tensor, rs: RowSampling, uniforms: Tensor) -> tuple[Tensor, Tensor]:
    """Pick one token per row.

    Args:
        logprobs: ``(B, V)`` from ``filtered_logprobs``.
        rs: per-row parameters (greedy rows take the argmax).
        uniforms: ``(B,)`` numbers in ``[0, 1)``, one per row (ignored for greedy rows).

    Returns:
        ``(token_ids, token_logprobs)``, both ``(B,)``.
    """
    argmax = logprobs.argmax(dim=-1)
    if rs.all_greedy:
        tokens = argmax
    else:
        cdf = torch.cumsum(torch.exp(logprobs.double()), dim=-1)
        target = (uniforms.to(cdf.device, torch.float64) * cdf[:, -1]).unsqueeze(-1)
        picked = torch.searchsorted(cdf, target, right=True).squeeze(-1).clamp_(max=logprobs.shape[-1] - 1)
        # Rounding at the very top of the CDF could land on a removed token; fall back to argmax.
        picked = torch.where(torch.isfinite(logprobs.gather(1, picked[:, None]).squeeze(-1)), picked, argmax)
        tokens = torch.where(rs.greedy, argmax, picked)
    return tokens, logprobs.gather(1, tokens[:, None]).squeeze(-1)


def sample_seed(request_seed: int, sample_index: int) -> int:
    """The generator seed of sample ``sample_index`` of a request seeded with ``request_seed``."""
    mixed = (request_seed * 0x9E3779B97F4A7C15 + (sample_index + 1) * 0xBF58476D1CE4E5B9) & (2**64 - 1)
    mixed ^= mixed >> 31
    return mixed & (2**63 - 1)
