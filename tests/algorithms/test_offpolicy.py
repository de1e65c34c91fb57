"""Truncated importance sampling and engine/trainer mismatch metrics."""

from __future__ import annotations

import math

import pytest
import torch

from skyrl_core.algorithms.offpolicy import mismatch_metrics, tis_weights

OLD = [[-1.0, -0.5, -2.0, -0.1], [-0.3, -0.3, -1.0, -4.0], [-0.2, -0.2, -0.2, -0.2]]
ROLLOUT = [[-1.5, -0.5, -1.0, -0.1], [-0.1, -2.0, -1.0, 9.0], [-0.2, -0.2, -0.2, -0.2]]
MASK = [[1, 1, 1, 1], [1, 1, 1, 0], [0, 0, 0, 0]]  # padding holds a bogus 9.0; the last row is empty


def inputs():
    return torch.tensor(OLD), torch.tensor(ROLLOUT), torch.tensor(MASK, dtype=torch.float32)


def test_token_weights_match_reference() -> None:
    cap = 2.0
    weights, metrics = tis_weights(*inputs(), mode="token", cap=cap)
    expected, capped = [], 0
    for i in range(3):
        row = []
        for t in range(4):
            w = min(math.exp(OLD[i][t] - ROLLOUT[i][t]), cap) if MASK[i][t] else 0.0
            capped += bool(MASK[i][t] and math.exp(OLD[i][t] - ROLLOUT[i][t]) >= cap)
            row.append(w)
        expected.append(row)
    assert torch.allclose(weights, torch.tensor(expected), atol=1e-6)
    n = sum(map(sum, MASK))
    assert metrics["capped_frac"].item() == pytest.approx(capped / n)
    assert capped == 1  # only exp(1.7) reaches the cap; exp(0.5) does not
    assert metrics["weight_mean"].item() == pytest.approx(sum(map(sum, expected)) / n, rel=1e-6)
    assert metrics["weight_max"].item() == pytest.approx(2.0)


def test_sequence_weights_are_the_capped_product_of_token_ratios() -> None:
    weights, metrics = tis_weights(*inputs(), mode="sequence", cap=5.0)
    # Row 0: exp(0.5 + 0 - 1 + 0) = exp(-0.5); row 1: exp(-0.2 + 1.7 + 0) = exp(1.5) = 4.48 < 5.
    assert torch.allclose(weights[0], torch.full((4,), math.exp(-0.5)))
    assert torch.allclose(weights[1], torch.tensor([math.exp(1.5)] * 3 + [0.0]))
    assert torch.equal(weights[2], torch.zeros(4))
    assert metrics["capped_frac"].item() == 0.0
    capped, metrics = tis_weights(*inputs(), mode="sequence", cap=2.0)
    assert torch.allclose(capped[1, :3], torch.full((3,), 2.0))
    assert metrics["capped_frac"].item() == pytest.approx(0.5)  # 1 of 2 non-empty sequences


def test_extreme_mismatch_is_capped_without_overflow() -> None:
    old = torch.tensor([[0.0] * 50, [0.0] * 50])
    rollout = torch.tensor([[-30.0] * 50, [30.0] * 50])  # sum of log-ratios ±1500
    for mode in ("token", "sequence"):
        weights, metrics = tis_weights(old, rollout, torch.ones(2, 50), mode=mode, cap=3.0)
        assert torch.isfinite(weights).all()
        assert torch.allclose(weights[0], torch.full((50,), 3.0))
        assert (weights[1] < 1e-12).all()
        assert all(math.isfinite(float(v)) for v in metrics.values())


def test_weights_are_constants() -> None:
    old = torch.tensor(OLD, requires_grad=True)
    weights, _ = tis_weights(old, torch.tensor(ROLLOUT), torch.tensor(MASK, dtype=torch.float32))
    assert not weights.requires_grad


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="mode must be 'token' or 'sequence'"):
        tis_weights(*inputs(), mode="off")
    with pytest.raises(ValueError, match="cap must be > 0"):
        tis_weights(*inputs(), cap=0.0)
    with pytest.raises(ValueError, match="must all be"):
        tis_weights(torch.zeros(2, 3), torch.zeros(2, 4), torch.ones(2, 3))


def test_mismatch_metrics_match_reference() -> None:
    m = mismatch_metrics(*inputs())
    diffs = [OLD[i][t] - ROLLOUT[i][t] for i in range(3) for t in range(4) if MASK[i][t]]
    probs = [abs(math.exp(OLD[i][t]) - math.exp(ROLLOUT[i][t])) for i in range(3) for t in range(4) if MASK[i][t]]
    n = len(diffs)
    assert m["logprob_diff_mean"].item() == pytest.approx(sum(abs(d) for d in diffs) / n, rel=1e-6)
    assert m["logprob_diff_max"].item() == pytest.approx(max(abs(d) for d in diffs))
    assert m["logprob_diff_bias"].item() == pytest.approx(sum(diffs) / n, rel=1e-6)
    assert m["prob_diff_mean"].item() == pytest.approx(sum(probs) / n, rel=1e-6)
    assert m["approx_kl"].item() == pytest.approx(sum(math.exp(d) - 1 - d for d in diffs) / n, rel=1e-6)


def test_mismatch_metrics_identical_and_empty() -> None:
    same = mismatch_metrics(torch.tensor(OLD), torch.tensor(OLD), torch.ones(3, 4))
    assert all(float(v) == 0.0 for v in same.values())
    empty = mismatch_metrics(torch.tensor(OLD), torch.tensor(ROLLOUT), torch.zeros(3, 4))
    assert all(float(v) == 0.0 for v in empty.values())
