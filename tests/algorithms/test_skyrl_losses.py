"""The policy losses and off-policy corrections that came from SkyRL, against reference formulas.

* ``sapo``: ``-sigmoid(tau (r - 1)) · 4 / tau · A`` with ``tau`` by the advantage's sign;
* ``cross_entropy``: ``-logp``; ``importance_sampling``: ``-r · A``;
* ``rollout_is``: ``-sg[r_roll · 1{1 - eps_low < r_roll < 1 + eps_high}] · A · logp``;
* ``[algorithm.tis]`` masks: per token, outlier sequences, geometric / product sequence masks,
  in NovaSky's order, against loops over plain lists.

Values and gradients are checked token by token (gradients by the closed forms of the
derivatives, not by autograd of the same expression).
"""

from __future__ import annotations

import math

import pytest
import torch

from skyrl_core.algorithms.configs import RolloutISConfig, SAPOConfig
from skyrl_core.algorithms.offpolicy import (
    correction_weights,
    outlier_sequence_mask,
    sequence_mask,
    tis_weights,
    token_mask,
)
from skyrl_core.algorithms.policy_losses import cross_entropy, importance_sampling, rollout_is, sapo
from skyrl_core.config.schema import AlgorithmConfig, TISConfig
from skyrl_core.losses import make_policy_loss_fn
from skyrl_core.protocols.algorithms import PolicyLossInput
from skyrl_core.protocols.strategy import ForwardOutput, TrainBatch
from skyrl_core.strategies.micro_batching import loss_scale

LOGP = [[-1.0, -0.5, -2.0, -0.1], [-0.3, -0.9, -1.0, -4.0], [-0.2, -1.3, -0.7, -0.6]]
OLD = [[-1.2, -0.5, -1.5, -0.1], [-0.3, -0.2, -1.0, -4.0], [-0.9, -1.3, -0.1, -0.6]]
ROLL = [[-1.1, -0.6, -2.2, -0.3], [-0.3, -0.25, -1.4, 9.0], [-0.9, -1.0, -0.1, -0.5]]
ADV = [[1.0, 1.0, 1.0, 1.0], [-0.5, -0.5, -0.5, -0.5], [0.0, 2.0, -1.0, 0.3]]
MASK = [[1, 1, 1, 1], [1, 1, 1, 0], [1, 0, 1, 1]]


def loss_input(with_rollout: bool = True) -> tuple[PolicyLossInput, torch.Tensor]:
    logp = torch.tensor(LOGP, dtype=torch.float64, requires_grad=True)
    inp = PolicyLossInput(logp, torch.tensor(OLD, dtype=torch.float64), torch.tensor(ADV, dtype=torch.float64),
                          torch.tensor(MASK, dtype=torch.float64),
                          torch.tensor(ROLL, dtype=torch.float64) if with_rollout else None)
    return inp, logp


def cells():
    for i in range(3):
        for t in range(4):
            yield i, t, bool(MASK[i][t])


def check(out_loss: torch.Tensor, logp: torch.Tensor, value, grad) -> None:
    """``value(i, t)`` and ``grad(i, t)`` (d loss_t / d logp_t) on the loss tokens, 0 elsewhere."""
    (g,) = torch.autograd.grad(out_loss.sum(), logp)
    for i, t, on in cells():
        assert out_loss[i, t].item() == pytest.approx(value(i, t) if on else 0.0, abs=1e-12), (i, t)
        assert g[i, t].item() == pytest.approx(grad(i, t) if on else 0.0, abs=1e-12), (i, t)


def test_sapo_is_the_soft_gate_of_the_paper() -> None:
    cfg = SAPOConfig(tau_pos=1.0, tau_neg=1.05)
    inp, logp = loss_input()
    out = sapo(inp, cfg)

    def parts(i: int, t: int) -> tuple[float, float, float]:
        r = math.exp(LOGP[i][t] - OLD[i][t])
        tau = cfg.tau_pos if ADV[i][t] > 0 else cfg.tau_neg
        return r, tau, 1.0 / (1.0 + math.exp(-tau * (r - 1.0)))

    def value(i: int, t: int) -> float:
        _, tau, s = parts(i, t)
        return -s * 4.0 / tau * ADV[i][t]

    def grad(i: int, t: int) -> float:  # d/dlogp of -4/tau · s(tau (r - 1)) · A = -4 s (1 - s) r A
        r, _, s = parts(i, t)
        return -4.0 * s * (1.0 - s) * r * ADV[i][t]

    check(out.token_loss, logp, value, grad)
    assert out.metrics["clip_frac"].item() == 0.0


def test_sapo_at_ratio_one_is_reinforce() -> None:
    logp = torch.tensor([[-0.7, -1.2]], requires_grad=True)
    inp = PolicyLossInput(logp, logp.detach().clone(), torch.tensor([[2.0, -3.0]]), torch.ones(1, 2))
    (g,) = torch.autograd.grad(sapo(inp, SAPOConfig(tau_pos=3.0, tau_neg=0.5)).token_loss.sum(), logp)
    assert g[0].tolist() == pytest.approx([-2.0, 3.0])  # the gate's slope at r = 1 is 1 for every tau


def test_cross_entropy_is_the_negative_log_likelihood() -> None:
    inp, logp = loss_input()
    out = cross_entropy(inp, None)
    check(out.token_loss, logp, lambda i, t: -LOGP[i][t], lambda i, t: -1.0)
    assert {"clip_frac", "approx_kl", "ratio_mean"} <= set(out.metrics)


def test_importance_sampling_is_the_unclipped_weighted_gradient() -> None:
    inp, logp = loss_input()
    out = importance_sampling(inp, None)

    def ratio(i: int, t: int) -> float:
        return math.exp(LOGP[i][t] - OLD[i][t])

    check(out.token_loss, logp, lambda i, t: -ratio(i, t) * ADV[i][t], lambda i, t: -ratio(i, t) * ADV[i][t])
    on = [ratio(i, t) for i, t, m in cells() if m]
    assert out.metrics["ratio_mean"].item() == pytest.approx(sum(on) / len(on))
    assert out.metrics["clip_frac"].item() == 0.0


def test_rollout_is_keeps_tokens_inside_the_band_only() -> None:
    cfg = RolloutISConfig(eps_low=0.2, eps_high=0.3)
    inp, logp = loss_input()
    out = rollout_is(inp, cfg)

    def weight(i: int, t: int) -> float:
        r = math.exp(LOGP[i][t] - ROLL[i][t])  # anchored on the engine, not on old
        return r if 1 - cfg.eps_low < r < 1 + cfg.eps_high else 0.0

    check(out.token_loss, logp, lambda i, t: -weight(i, t) * ADV[i][t] * LOGP[i][t],
          lambda i, t: -weight(i, t) * ADV[i][t])
    dropped = [weight(i, t) == 0.0 for i, t, m in cells() if m]
    assert 0 < sum(dropped) < len(dropped)
    assert out.metrics["clip_frac"].item() == pytest.approx(sum(dropped) / len(dropped))


def test_rollout_is_needs_the_engines_log_probs() -> None:
    inp, _ = loss_input(with_rollout=False)
    with pytest.raises(ValueError, match="rollout_logprobs is None"):
        rollout_is(inp, None)


# -- [algorithm.tis]: TIS and the rejection masks --------------------------------------------------


def ratios() -> list[list[float]]:
    return [[math.exp(OLD[i][t] - ROLL[i][t]) for t in range(4)] for i in range(3)]


def tensors() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return torch.tensor(OLD), torch.tensor(ROLL), torch.tensor(MASK, dtype=torch.float32)


def test_token_mask_drops_single_tokens_outside_the_band() -> None:
    low, high = 0.8, 1.3
    keep, metrics = token_mask(*tensors(), low, high)
    rho = ratios()
    expected = [[float(MASK[i][t] and low <= rho[i][t] <= high) for t in range(4)] for i in range(3)]
    assert keep.tolist() == expected
    n = sum(map(sum, MASK))
    assert metrics["token_masked_frac"].item() == pytest.approx((n - sum(map(sum, expected))) / n)


def test_outlier_mask_drops_whole_sequences_with_any_outlier_token() -> None:
    rho = ratios()
    keep, metrics = outlier_sequence_mask(*tensors(), None, 1.8)  # only an upper bound
    bad = [any(MASK[i][t] and rho[i][t] > 1.8 for t in range(4)) for i in range(3)]
    assert bad == [True, False, False]  # row 0: exp(0.7) = 2.01; row 1's padding (a bogus exp(-13)) is ignored
    assert keep.tolist() == [[0.0 if bad[i] else float(MASK[i][t]) for t in range(4)] for i in range(3)]
    assert metrics["outlier_seq_masked_frac"].item() == pytest.approx(1 / 3)
    assert metrics["outlier_seq_over_high_frac"].item() == pytest.approx(1 / 3)
    _, metrics = outlier_sequence_mask(*tensors(), 0.92, None)
    under = sum(any(MASK[i][t] and rho[i][t] < 0.92 for t in range(4)) for i in range(3))
    assert under == 2 and metrics["outlier_seq_under_low_frac"].item() == pytest.approx(under / 3)


@pytest.mark.parametrize(("metric", "low", "high"), [("geometric", 0.95, 1.05), ("product", 0.5, 1.5)])
def test_sequence_mask_by_geometric_mean_or_product(metric: str, low: float, high: float) -> None:
    keep, metrics = sequence_mask(*tensors(), metric, low, high)
    out = []
    for i in range(3):
        logs = [OLD[i][t] - ROLL[i][t] for t in range(4) if MASK[i][t]]
        seq = math.exp(sum(logs) / len(logs)) if metric == "geometric" else math.exp(sum(logs))
        out.append(not low <= seq <= high)
    assert keep.tolist() == [[0.0 if out[i] else float(MASK[i][t]) for t in range(4)] for i in range(3)]
    assert metrics["seq_masked_frac"].item() == pytest.approx(sum(out) / 3)
    assert 0 < sum(out) < 3  # the bounds split this batch


def test_correction_weights_apply_the_pieces_in_novaskys_order() -> None:
    """Outlier sequences, then tokens; TIS and the geometric sequence mask on what is left."""
    rho = ratios()
    cap, tok, geo = 1.2, (0.7, 1.6), (0.9, 1.1)
    weights, metrics = correction_weights(*tensors(), tis_mode="token", cap=cap, token_bounds=tok,
                                          outlier_bounds=(None, 5.0), sequence_metric="geometric",
                                          sequence_bounds=geo)
    expected = []
    for i in range(3):
        live = [bool(MASK[i][t]) for t in range(4)]
        if any(live[t] and rho[i][t] > 5.0 for t in range(4)):
            live = [False] * 4
        live = [live[t] and tok[0] <= rho[i][t] <= tok[1] for t in range(4)]
        logs = [math.log(rho[i][t]) for t in range(4) if live[t]]
        geo_mean = math.exp(sum(logs) / max(len(logs), 1))
        seq_ok = geo[0] <= geo_mean <= geo[1]
        expected.append([min(rho[i][t], cap) if live[t] and seq_ok else 0.0 for t in range(4)])
    flat = [w for row in expected for w in row]
    assert weights.flatten().tolist() == pytest.approx(flat, rel=1e-6)
    assert 0 < sum(w > 0 for w in flat) < sum(map(sum, MASK))  # some kept, some dropped
    assert {"token_masked_frac", "outlier_seq_masked_frac", "seq_masked_frac", "weight_mean", "capped_frac"} <= set(
        metrics
    )
    # nothing configured: the mask itself
    plain, metrics = correction_weights(*tensors())
    assert plain.tolist() == [[float(m) for m in row] for row in MASK] and metrics == {}
    # TIS alone: what tis_weights gives
    tis, _ = correction_weights(*tensors(), tis_mode="sequence", cap=5.0)
    assert torch.equal(tis, tis_weights(*tensors(), mode="sequence", cap=5.0)[0])


def test_masked_tokens_leave_the_denominators_unchanged() -> None:
    """As in NovaSky's SkyRL (reductions fixed before the masks apply): a dropped token's loss is 0
    but the token mean still divides by every loss token of the mini-batch."""
    mask = torch.tensor(MASK, dtype=torch.float32)
    n = mask.sum().item()
    batch = TrainBatch([[1]] * 3, [[0] * 4] * 3, {
        "loss_mask": mask, "old_logprobs": torch.tensor(OLD), "rollout_logprobs": torch.tensor(ROLL),
        "advantages": torch.ones(3, 4) * mask,
    })
    algo = AlgorithmConfig(tis=TISConfig(token_mask_low=0.7, token_mask_high=1.6))
    assert algo.tis.enabled and not TISConfig().enabled
    from skyrl_core.algorithms.policy_losses import ppo_clip

    fn = make_policy_loss_fn(ppo_clip, None, algo, 100, 0.0)
    logp = torch.tensor(OLD)  # ratio 1: the PPO token loss is -A = -1
    loss, metrics = fn(batch, ForwardOutput(logprobs=logp), loss_scale(batch))
    kept = sum(1 for i, t, m in cells() if m and 0.7 <= ratios()[i][t] <= 1.6)
    assert loss.item() == pytest.approx(-kept / n)
    assert metrics["policy/tis_token_masked_frac"] == pytest.approx((n - kept) / n)
