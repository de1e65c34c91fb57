"""Loss reductions: hand values, and micro-batches summing to the mini-batch loss."""

from __future__ import annotations

import math

import pytest
import torch

from skyrl_core.algorithms.reductions import (
    MINIBATCH_REDUCTIONS,
    REDUCTIONS,
    count_sequences,
    count_tokens,
    reduce_loss,
)
from skyrl_core.protocols.strategy import TrainBatch

LOSS = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]
MASK = [[1, 1, 0], [1, 0, 0], [0, 0, 0]]  # the third row is an empty response


def tensors():
    return torch.tensor(LOSS, requires_grad=True), torch.tensor(MASK, dtype=torch.float32)


def test_token_mean_by_hand() -> None:
    loss, mask = tensors()
    assert reduce_loss(loss, mask, "token_mean").item() == pytest.approx((1 + 2 + 4) / 3)


def test_sequence_mean_by_hand() -> None:
    loss, mask = tensors()
    # Two non-empty sequences: means 1.5 and 4.
    assert reduce_loss(loss, mask, "sequence_mean").item() == pytest.approx((1.5 + 4) / 2)


def test_seq_mean_token_sum_norm_by_hand() -> None:
    loss, mask = tensors()
    # Dr. GRPO: token sums 3 and 4, each divided by the constant 10, averaged over 2 sequences.
    assert reduce_loss(loss, mask, "seq_mean_token_sum_norm", norm_tokens=10).item() == pytest.approx((0.3 + 0.4) / 2)


def test_gradients_by_hand() -> None:
    loss, mask = tensors()
    (g,) = torch.autograd.grad(reduce_loss(loss, mask, "sequence_mean"), loss)
    assert torch.allclose(g, torch.tensor([[0.25, 0.25, 0.0], [0.5, 0.0, 0.0], [0.0, 0.0, 0.0]]))
    (g,) = torch.autograd.grad(reduce_loss(loss, mask, "token_mean"), loss)
    assert torch.allclose(g, mask / 3)


def test_explicit_totals_are_used() -> None:
    loss, mask = tensors()
    assert reduce_loss(loss, mask, "token_mean", num_tokens=7).item() == pytest.approx(7 / 7)
    assert reduce_loss(loss, mask, "sequence_mean", num_sequences=5).item() == pytest.approx(5.5 / 5)


@pytest.mark.parametrize("mode", REDUCTIONS)
def test_empty_mask_gives_differentiable_zero(mode: str) -> None:
    loss = torch.full((2, 3), float("nan"), requires_grad=True)  # padding may hold anything
    mask = torch.zeros(2, 3)
    out = reduce_loss(loss, mask, mode, norm_tokens=4)
    assert out.item() == 0.0
    (g,) = torch.autograd.grad(out, loss)
    assert torch.equal(g, torch.zeros(2, 3))


@pytest.mark.parametrize("mode", REDUCTIONS)
def test_masked_nan_is_ignored(mode: str) -> None:
    loss, mask = tensors()
    dirty = loss.detach().clone()
    dirty[2] = float("nan")
    dirty[0, 2] = float("inf")
    clean = reduce_loss(loss, mask, mode, norm_tokens=10)
    assert reduce_loss(dirty, mask, mode, norm_tokens=10).item() == pytest.approx(clean.item())


def _slow_reference(loss: list[list[float]], mask: list[list[int]], mode: str, norm: float) -> float:
    rows = [[x for x, m in zip(lr, mr, strict=True) if m] for lr, mr in zip(loss, mask, strict=True)]
    rows = [r for r in rows if r]
    if mode == "token_mean":
        return sum(sum(r) for r in rows) / sum(len(r) for r in rows)
    if mode == "sequence_mean":
        return sum(sum(r) / len(r) for r in rows) / len(rows)
    return sum(sum(r) / norm for r in rows) / len(rows)


@pytest.mark.parametrize("mode", REDUCTIONS)
def test_micro_batches_sum_to_the_minibatch_loss(mode: str) -> None:
    """Gradient accumulation: reduce each micro-batch with the mini-batch totals and sum."""
    gen = torch.Generator().manual_seed(0)
    lengths = [5, 2, 0, 7, 3, 1, 6, 4]
    responses = [list(range(n)) for n in lengths]
    width = max(lengths)
    mask = torch.tensor([[1.0 if t < n else 0.0 for t in range(width)] for n in lengths])
    mask[3, 2] = 0.0  # an environment token inside a response
    token_loss = torch.randn(len(lengths), width, generator=gen, dtype=torch.float64) * mask
    batch = TrainBatch([[0]] * len(lengths), responses, {"loss_mask": mask, "token_loss": token_loss})
    norm = 16
    scale = {"num_tokens": count_tokens(mask), "num_sequences": count_sequences(mask)}
    assert scale == {"num_tokens": sum(lengths) - 1, "num_sequences": 7}

    whole = reduce_loss(token_loss, mask, mode, norm_tokens=norm)
    expected = _slow_reference(token_loss.tolist(), mask.tolist(), mode, norm)
    assert whole.item() == pytest.approx(expected)

    parts = []
    for idx in ([0, 1, 2], [3, 4], [5, 6, 7]):
        micro = batch.select(idx)  # cut to the micro-batch's own R
        assert micro.tensors["token_loss"].shape[1] == micro.response_len
        parts.append(reduce_loss(micro.tensors["token_loss"], micro.tensors["loss_mask"], mode,
                                 norm_tokens=norm, **scale))
    assert sum(p.item() for p in parts) == pytest.approx(whole.item(), rel=1e-12)


def test_errors_name_the_problem() -> None:
    loss, mask = tensors()
    with pytest.raises(ValueError, match="needs norm_tokens"):
        reduce_loss(loss, mask, "seq_mean_token_sum_norm")
    with pytest.raises(ValueError, match="unknown mode 'token_sum'"):
        reduce_loss(loss, mask, "token_sum")
    with pytest.raises(ValueError, match="must both be"):
        reduce_loss(loss, mask[:, :2], "token_mean")


def test_reduction_names_match_the_config_schema() -> None:
    import typing

    from skyrl_core.config.schema import AlgorithmConfig

    hint = typing.get_type_hints(AlgorithmConfig)["loss_reduction"]
    # REDUCTIONS: those computed from the mini-batch totals; the others need per-token weights
    # (tests/algorithms/test_skyrl_conventions.py)
    assert set(typing.get_args(hint)) == set(REDUCTIONS) | set(MINIBATCH_REDUCTIONS)
    assert not math.isnan(reduce_loss(*tensors(), "token_mean").item())
