"""Policy losses: values and gradients against hand-computed numbers and Python-float references."""

from __future__ import annotations

import math

import pytest
import torch

from skyrl_core.algorithms import policy_losses as pl
from skyrl_core.algorithms.configs import (
    CISPOConfig,
    ClipCovConfig,
    DualClipConfig,
    GSPOConfig,
    KLCovConfig,
    PPOClipConfig,
)
from skyrl_core.algorithms.reductions import reduce_loss
from skyrl_core.protocols.algorithms import PolicyLossInput

ALL_LOSSES = [pl.ppo_clip, pl.dual_clip, pl.gspo, pl.cispo, pl.clip_cov, pl.kl_cov]
BASE_METRICS = {"clip_frac", "approx_kl", "ratio_mean", "ratio_max", "ratio_min"}

# Three sequences, R = 4; row 2 has padding and an environment token.
OLD = [[-1.0, -2.0, -0.5, -1.5], [-0.7, -0.2, -3.0, -1.0], [-1.2, -0.9, -0.4, -2.0]]
NEW = [[-0.6, -2.3, -0.5, -1.0], [-0.7, -0.9, -1.0, -1.05], [-1.0, -0.9, -0.1, -2.5]]
ADV = [[1.0, 1.0, 1.0, 1.0], [-1.0, -1.0, -1.0, -1.0], [0.5, 0.5, 0.5, 0.5]]
MASK = [[1, 1, 1, 1], [1, 1, 1, 1], [1, 0, 1, 0]]


def make(new=NEW, old=OLD, adv=ADV, mask=MASK, grad_everywhere: bool = False):
    logp = torch.tensor(new, dtype=torch.float64, requires_grad=True)
    old_t = torch.tensor(old, dtype=torch.float64, requires_grad=grad_everywhere)
    adv_t = torch.tensor(adv, dtype=torch.float64, requires_grad=grad_everywhere)
    inp = PolicyLossInput(logp, old_t, adv_t, torch.tensor(mask, dtype=torch.float64))
    return inp, logp, old_t, adv_t


def clip(x: float, lo: float, hi: float) -> float:
    return min(max(x, lo), hi)


def ref_ppo(eps_low: float, eps_high: float, c: float | None = None):
    """Per-token loss, d loss / d logp and whether clipping was active, over Python floats."""
    loss, grad, clipped = [], [], []
    for i in range(len(NEW)):
        lrow, grow, crow = [], [], []
        for t in range(len(NEW[i])):
            if not MASK[i][t]:
                lrow.append(0.0)
                grow.append(0.0)
                crow.append(False)
                continue
            r, a = math.exp(NEW[i][t] - OLD[i][t]), ADV[i][t]
            s1, s2 = -a * r, -a * clip(r, 1 - eps_low, 1 + eps_high)
            value, g, was = (s2, 0.0, True) if s2 > s1 else (s1, -a * r, False)
            if c is not None and a < 0 and -a * c < value:
                value, g, was = -a * c, 0.0, True
            lrow.append(value)
            grow.append(g)
            crow.append(was)
        loss.append(lrow)
        grad.append(grow)
        clipped.append(crow)
    return loss, grad, clipped


def per_token_grad(out, logp: torch.Tensor) -> torch.Tensor:
    (grad,) = torch.autograd.grad(out.token_loss.sum(), logp)
    return grad


def close(actual: torch.Tensor, expected, tol: float = 1e-9) -> bool:
    return torch.allclose(actual.double(), torch.as_tensor(expected, dtype=torch.float64), atol=tol, rtol=tol)


def n_loss_tokens() -> int:
    return sum(sum(row) for row in MASK)


# -- PPO clip, clip-higher, dual clip ---------------------------------------------------------------


@pytest.mark.parametrize(("eps_low", "eps_high"), [(0.2, 0.2), (0.2, 0.28), (0.1, 0.5)])
def test_ppo_clip_matches_reference(eps_low: float, eps_high: float) -> None:
    inp, logp, _, _ = make()
    out = pl.ppo_clip(inp, PPOClipConfig(eps_low=eps_low, eps_high=eps_high))
    loss, grad, clipped = ref_ppo(eps_low, eps_high)
    assert close(out.token_loss, loss)
    assert close(per_token_grad(out, logp), grad)
    flat = [c for i, row in enumerate(clipped) for t, c in enumerate(row) if MASK[i][t]]
    assert out.metrics["clip_frac"].item() == pytest.approx(sum(flat) / len(flat))


def test_ppo_clip_by_hand() -> None:
    # eps_high = 0.28 (clip-higher), eps_low = 0.2:
    # ratio 1.5, A = +1: clipped at 1.28 -> loss -1.28, no gradient.
    # ratio 0.5, A = -1: clipped at 0.8 -> loss 0.8, no gradient.
    # ratio 1.5, A = -1: unclipped (pessimistic) -> loss 1.5, gradient -A·r = 1.5.
    # ratio 1.25, A = +1: inside 1.28 (symmetric 0.2 would clip it) -> loss -1.25.
    new = [[math.log(1.5), math.log(0.5), math.log(1.5), math.log(1.25)]]
    inp, logp, _, _ = make(new=new, old=[[0.0] * 4], adv=[[1.0, -1.0, -1.0, 1.0]], mask=[[1] * 4])
    out = pl.ppo_clip(inp, PPOClipConfig(eps_high=0.28))
    assert close(out.token_loss, [[-1.28, 0.8, 1.5, -1.25]])
    assert close(per_token_grad(out, logp), [[0.0, 0.0, 1.5, -1.25]])
    assert out.metrics["clip_frac"].item() == pytest.approx(0.5)
    assert out.metrics["ratio_max"].item() == pytest.approx(1.5)
    assert out.metrics["ratio_min"].item() == pytest.approx(0.5)
    assert out.metrics["ratio_mean"].item() == pytest.approx((1.5 + 0.5 + 1.5 + 1.25) / 4)
    kl = sum(r - 1 - math.log(r) for r in (1.5, 0.5, 1.5, 1.25)) / 4
    assert out.metrics["approx_kl"].item() == pytest.approx(kl)


def test_dual_clip_matches_reference_and_bounds_negative_advantages() -> None:
    inp, logp, _, _ = make()
    out = pl.dual_clip(inp, DualClipConfig(clip_ratio_c=1.5))
    loss, grad, _ = ref_ppo(0.2, 0.2, c=1.5)
    assert close(out.token_loss, loss)
    assert close(per_token_grad(out, logp), grad)
    # By hand: ratio 5, A = -1, c = 3 -> PPO would give 5, dual clip gives 3 and no gradient.
    inp, logp, _, _ = make(new=[[math.log(5.0), math.log(5.0)]], old=[[0.0, 0.0]], adv=[[-1.0, 1.0]], mask=[[1, 1]])
    out = pl.dual_clip(inp, None)
    assert close(out.token_loss, [[3.0, -1.2]])
    assert close(per_token_grad(out, logp), [[0.0, 0.0]])
    assert out.metrics["dual_clip_frac"].item() == pytest.approx(0.5)


# -- GSPO -------------------------------------------------------------------------------------------


def test_gspo_token_values_use_the_sequence_ratio() -> None:
    inp, _, _, _ = make()
    cfg = GSPOConfig(eps_low=0.05, eps_high=0.05)
    out = pl.gspo(inp, cfg)
    for i in range(len(NEW)):
        valid = [t for t in range(4) if MASK[i][t]]
        s = math.exp(sum(NEW[i][t] - OLD[i][t] for t in valid) / len(valid))
        for t in range(4):
            a = ADV[i][t]
            expected = max(-a * s, -a * clip(s, 0.95, 1.05)) if MASK[i][t] else 0.0
            assert out.token_loss[i, t].item() == pytest.approx(expected)


@pytest.mark.parametrize("eps", [3e-4, 0.2, 10.0])
def test_gspo_gradient_equals_sequence_level_objective(eps: float) -> None:
    """GSPO-token with sequence advantages + sequence_mean = GSPO's sequence objective (Zheng et al. 2025)."""
    inp, logp, _, _ = make()
    out = pl.gspo(inp, GSPOConfig(eps_low=eps, eps_high=eps))
    mask = torch.tensor(MASK, dtype=torch.float64)
    (grad_token,) = torch.autograd.grad(reduce_loss(out.token_loss, mask, "sequence_mean"), logp)

    x = torch.tensor(NEW, dtype=torch.float64, requires_grad=True)
    old, adv = torch.tensor(OLD, dtype=torch.float64), torch.tensor(ADV, dtype=torch.float64)[:, 0]
    s = torch.exp(((x - old) * mask).sum(-1) / mask.sum(-1))
    objective = torch.minimum(s * adv, s.clamp(1 - eps, 1 + eps) * adv).mean()
    (grad_seq,) = torch.autograd.grad(-objective, x)
    assert close(grad_token, grad_seq * mask)


def test_gspo_empty_row_has_ratio_one_and_no_loss() -> None:
    inp, logp, _, _ = make(mask=[[1, 1, 1, 1], [0, 0, 0, 0], [1, 0, 0, 0]])
    out = pl.gspo(inp, None)
    assert torch.equal(out.token_loss[1], torch.zeros(4, dtype=torch.float64))
    assert torch.isfinite(per_token_grad(out, logp)).all()


# -- CISPO ------------------------------------------------------------------------------------------


def test_cispo_keeps_gradient_on_clipped_tokens() -> None:
    # ratios 0.5, 1.0, 10.0; weights clamped to [0.8, 1.2].
    new = [[math.log(0.5) - 1.0, -1.0, math.log(10.0) - 3.0]]
    inp, logp, _, _ = make(new=new, old=[[-1.0, -1.0, -3.0]], adv=[[1.0, -1.0, -4.0]], mask=[[1, 1, 1]])
    out = pl.cispo(inp, CISPOConfig(eps_low=0.2, eps_high=0.2))
    weights = [0.8, 1.0, 1.2]
    adv = [1.0, -1.0, -4.0]
    assert close(out.token_loss, [[-a * w * x for a, w, x in zip(adv, weights, new[0], strict=True)]])
    assert close(per_token_grad(out, logp), [[-a * w for a, w in zip(adv, weights, strict=True)]])
    assert out.metrics["clip_frac"].item() == pytest.approx(2 / 3)


def test_cispo_default_has_no_lower_bound() -> None:
    inp, logp, _, _ = make(new=[[math.log(0.1)]], old=[[0.0]], adv=[[2.0]], mask=[[1]])
    out = pl.cispo(inp, None)  # eps_low = 1.0 -> clamp at 0, i.e. none
    assert close(per_token_grad(out, logp), [[-2.0 * 0.1]])
    assert out.metrics["clip_frac"].item() == 0.0


# -- Clip-Cov and KL-Cov ---------------------------------------------------------------------------


def ref_cov() -> dict[tuple[int, int], float]:
    cells = [(i, t) for i in range(len(NEW)) for t in range(4) if MASK[i][t]]
    mean_a = sum(ADV[i][t] for i, t in cells) / len(cells)
    mean_l = sum(NEW[i][t] for i, t in cells) / len(cells)
    return {(i, t): (ADV[i][t] - mean_a) * (NEW[i][t] - mean_l) for i, t in cells}


def test_clip_cov_detaches_exactly_the_candidates() -> None:
    cov = ref_cov()
    _, ref_grad, clipped = ref_ppo(0.2, 0.2)
    lb, ub = -0.05, 0.5
    candidates = {cell for cell, c in cov.items() if lb < c < ub and not clipped[cell[0]][cell[1]]}
    assert 0 < len(candidates) < len(cov)  # the data must exercise both sides

    inp, logp, _, _ = make()
    out = pl.clip_cov(inp, ClipCovConfig(clip_ratio=1.0, clip_cov_lb=lb, clip_cov_ub=ub))
    loss, _, _ = ref_ppo(0.2, 0.2)
    assert close(out.token_loss, loss)  # values unchanged, only gradients stop
    grad = per_token_grad(out, logp)
    for i in range(len(NEW)):
        for t in range(4):
            expected = 0.0 if (i, t) in candidates else ref_grad[i][t]
            assert grad[i, t].item() == pytest.approx(expected)
    assert out.metrics["cov_detach_frac"].item() == pytest.approx(len(candidates) / n_loss_tokens())


def test_clip_cov_detaches_at_least_one_random_candidate() -> None:
    torch.manual_seed(0)
    inp, logp, _, _ = make()
    out = pl.clip_cov(inp, ClipCovConfig(clip_ratio=1e-4, clip_cov_lb=-10.0, clip_cov_ub=10.0))
    _, ref_grad, _ = ref_ppo(0.2, 0.2)
    grad = per_token_grad(out, logp)
    changed = [(i, t) for i in range(3) for t in range(4) if abs(grad[i, t].item() - ref_grad[i][t]) > 1e-12]
    assert len(changed) == 1  # max(1, int(1e-4 · 10)) tokens
    assert out.metrics["cov_detach_frac"].item() == pytest.approx(1 / n_loss_tokens())


def test_kl_cov_penalises_the_top_covariance_tokens() -> None:
    cov = ref_cov()
    k = max(1, int(0.25 * n_loss_tokens()))  # 2 of 10
    top = sorted(cov, key=cov.get, reverse=True)[:k]
    inp, logp, _, _ = make()
    out = pl.kl_cov(inp, KLCovConfig(kl_cov_ratio=0.25, kl_coef=0.7))
    grad = per_token_grad(out, logp)
    for i in range(len(NEW)):
        for t in range(4):
            if not MASK[i][t]:
                assert out.token_loss[i, t].item() == 0.0
                continue
            lr = NEW[i][t] - OLD[i][t]
            r, a = math.exp(lr), ADV[i][t]
            value, g = -a * r, -a * r
            if (i, t) in top:
                value += 0.7 * abs(lr)
                g += 0.7 * (lr > 0) - 0.7 * (lr < 0)  # d|x|/dx = sign(x), 0 at 0 as in torch
            assert out.token_loss[i, t].item() == pytest.approx(value)
            assert grad[i, t].item() == pytest.approx(g)
    assert out.metrics["kl_cov_frac"].item() == pytest.approx(k / n_loss_tokens())
    assert out.metrics["clip_frac"].item() == 0.0


# -- the contract every loss keeps --------------------------------------------------------------------


@pytest.mark.parametrize("fn", ALL_LOSSES)
def test_gradient_only_through_logprobs(fn) -> None:
    inp, logp, old, adv = make(grad_everywhere=True)
    out = fn(inp, None)
    loss = reduce_loss(out.token_loss, inp.mask, "token_mean")
    grads = torch.autograd.grad(loss, [logp, old, adv], allow_unused=True)
    assert grads[0] is not None and torch.isfinite(grads[0]).all()
    assert grads[1] is None and grads[2] is None
    for key, value in out.metrics.items():
        assert not torch.as_tensor(value).requires_grad, key
    assert BASE_METRICS <= set(out.metrics)


@pytest.mark.parametrize("fn", ALL_LOSSES)
def test_padding_is_zero_and_garbage_there_does_not_leak(fn) -> None:
    new = [row[:] for row in NEW]
    new[2][1], new[2][3] = float("nan"), float("-inf")  # masked positions
    inp, logp, _, _ = make(new=new)
    out = fn(inp, None)
    assert out.token_loss.shape == (3, 4)
    assert torch.isfinite(out.token_loss).all()
    assert out.token_loss[2, 1].item() == 0.0 and out.token_loss[2, 3].item() == 0.0
    grad = per_token_grad(out, logp)
    assert torch.isfinite(grad).all() and grad[2, 1].item() == 0.0 and grad[2, 3].item() == 0.0
    assert all(math.isfinite(float(v)) for v in out.metrics.values())


@pytest.mark.parametrize("fn", ALL_LOSSES)
def test_extreme_ratios_stay_finite(fn) -> None:
    new = [[100.0, -100.0, 0.0], [-50.0, 60.0, 0.0]]
    inp, logp, _, _ = make(new=new, old=[[0.0, 0.0, 0.0], [0.0, 0.0, -80.0]], adv=[[1.0, -1.0, 2.0], [-3.0, 3.0, -1.0]],
                           mask=[[1, 1, 1], [1, 1, 1]])
    out = fn(inp, None)
    assert torch.isfinite(out.token_loss).all()
    assert torch.isfinite(per_token_grad(out, logp)).all()
    assert all(math.isfinite(float(v)) for v in out.metrics.values())


@pytest.mark.parametrize("fn", ALL_LOSSES)
def test_all_zero_mask(fn) -> None:
    inp, logp, _, _ = make(mask=[[0] * 4] * 3)
    out = fn(inp, None)
    assert torch.equal(out.token_loss, torch.zeros(3, 4, dtype=torch.float64))
    assert all(float(v) == 0.0 for v in out.metrics.values())
    assert torch.equal(per_token_grad(out, logp), torch.zeros(3, 4, dtype=torch.float64))


@pytest.mark.parametrize("fn", ALL_LOSSES)
def test_on_policy_gradient_is_reinforce(fn) -> None:
    """At ratio 1 every loss has gradient -A per token (kl_cov's |log r| penalty has gradient 0 at 0)."""
    inp, logp, _, _ = make(new=OLD)
    # clip_cov would detach one token by design; put its covariance window out of reach.
    out = fn(inp, ClipCovConfig(clip_cov_lb=100.0, clip_cov_ub=200.0) if fn is pl.clip_cov else None)
    expected = [[-ADV[i][t] * MASK[i][t] for t in range(4)] for i in range(3)]
    assert close(per_token_grad(out, logp), expected)


def test_shape_mismatch_is_reported() -> None:
    inp = PolicyLossInput(torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(2, 3), torch.ones(2, 3))
    with pytest.raises(ValueError, match="old_logprobs has shape"):
        pl.ppo_clip(inp, None)
