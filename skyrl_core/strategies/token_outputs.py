"""Per-token outputs of a collated micro-batch, and their ``(B, R)`` layout.

Both strategies compute what a pass returns the same way: log-probs (and entropy) from the
logits at the response positions through ``ops.fused_logprobs.logprobs_and_entropy`` (one
fused Triton pass on CUDA, chunked torch ops elsewhere), values from the critic's head, and
results scattered to ``(B, R)`` float32 tensors, 0 past each response's end.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from skyrl_core.ops.fused_logprobs import logprobs_and_entropy
from skyrl_core.protocols.strategy import ForwardOutput
from skyrl_core.strategies.batch_layout import Collated


def effective_temperature(temperature: float) -> float:
    """The divisor the sampler applied: greedy decoding (0) reports raw log-softmax, so it is 1."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    return 1.0 if temperature == 0 else float(temperature)


def output_names(role: str, need_entropy: bool) -> list[str]:
    """The ``ForwardOutput`` fields a pass of ``role`` fills: ``values`` for the critic, else
    ``logprobs`` (and ``entropy`` when asked)."""
    return ["values"] if role == "critic" else ["logprobs", *(["entropy"] if need_entropy else [])]


def logprob_outputs(logits: Tensor, targets: Tensor, temperature: float, need_entropy: bool) -> dict[str, Tensor]:
    """``{"logprobs": (N,), "entropy": (N,) when asked}`` of ``targets`` under ``softmax(logits / temperature)``.

    ``logits`` is ``(N, V)`` at the positions that predict the ``N`` response tokens; both
    results are float32 and differentiable w.r.t. ``logits``.
    """
    logprobs, entropy = logprobs_and_entropy(logits, targets, temperature, need_entropy)
    out = {"logprobs": logprobs}
    if entropy is not None:
        out["entropy"] = entropy
    return out


def scattered(c: Collated, per_token: dict[str, Tensor]) -> ForwardOutput:
    """The per-token outputs ``(N,)`` of a micro-batch as a ``ForwardOutput`` of ``(B, R)`` tensors
    (what a ``LossFn`` receives; still differentiable)."""
    return ForwardOutput(**{name: c.scatter(v) for name, v in per_token.items()})


def empty_results(num_seqs: int, response_len: int, names: Sequence[str]) -> dict[str, Tensor]:
    """Zeroed ``(B, R)`` float32 CPU tensors for a no-grad pass to fill (``place``)."""
    return {n: torch.zeros(num_seqs, response_len, dtype=torch.float32) for n in names}


def place(results: dict[str, Tensor], index: Sequence[int], c: Collated, per_token: dict[str, Tensor]) -> None:
    """Write a micro-batch's per-token outputs into rows ``index`` of the ``(B, R)`` ``results``."""
    rows = torch.tensor(list(index), dtype=torch.long)
    for name, values in results.items():
        block = c.scatter(per_token[name]).cpu()
        values[rows, : block.shape[1]] = block
