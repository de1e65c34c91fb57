"""KL estimators, the reward penalty and the KL coefficient controllers."""

from __future__ import annotations

import math

import pytest
import torch

from skyrl_core.algorithms.kl import (
    ESTIMATORS,
    AdaptiveKLController,
    FixedKLController,
    apply_kl_penalty,
    kl_estimate,
    make_kl_controller,
)
from skyrl_core.config.schema import KLConfig

LOGP = [[-1.0, -0.5, -2.0], [-0.1, -3.0, -0.7]]
REF = [[-1.2, -0.5, -1.0], [-0.4, -2.0, -0.7]]


def ref_kl(lp: float, ref: float, estimator: str) -> float:
    d = lp - ref  # log(π / π_ref)
    return {
        "k1": d,
        "k2": 0.5 * d * d,
        "k3": math.exp(-d) - 1 + d,
        "abs": abs(d),
    }[estimator]


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_estimators_match_reference(estimator: str) -> None:
    out = kl_estimate(torch.tensor(LOGP, dtype=torch.float64), torch.tensor(REF, dtype=torch.float64), estimator)
    for i in range(2):
        for t in range(3):
            assert out[i, t].item() == pytest.approx(ref_kl(LOGP[i][t], REF[i][t], estimator))


def test_k3_is_unbiased_and_non_negative_on_samples() -> None:
    # Sample from π, estimate KL(π || π_ref) with k1 and k3, compare with the exact value.
    gen = torch.Generator().manual_seed(0)
    p = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    q = torch.tensor([0.3, 0.3, 0.4], dtype=torch.float64)
    exact = float((p * (p / q).log()).sum())
    idx = torch.multinomial(p, 200_000, replacement=True, generator=gen)
    lp, lq = p.log()[idx][None], q.log()[idx][None]
    k3 = kl_estimate(lp, lq, "k3")
    assert (k3 >= 0).all()
    assert k3.mean().item() == pytest.approx(exact, abs=3e-3)
    assert kl_estimate(lp, lq, "k1").mean().item() == pytest.approx(exact, abs=5e-3)


def test_k3_is_clamped_for_extreme_log_ratios() -> None:
    out = kl_estimate(torch.tensor([[0.0, -200.0, 200.0]]), torch.tensor([[0.0, 0.0, 0.0]]), "k3")
    assert torch.isfinite(out).all() and (out >= 0).all() and (out <= 10).all()
    assert out[0, 0].item() == 0.0


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_gradient_flows_through_logprobs_only(estimator: str) -> None:
    lp = torch.tensor(LOGP, requires_grad=True)
    ref = torch.tensor(REF, requires_grad=True)
    g_lp, g_ref = torch.autograd.grad(kl_estimate(lp, ref, estimator).sum(), [lp, ref], allow_unused=True)
    assert g_lp is not None and torch.isfinite(g_lp).all()
    assert g_ref is None
    if estimator == "k3":  # d/dlogp [exp(ref - lp) - 1 + (lp - ref)] = 1 - exp(ref - lp)
        expected = 1 - torch.exp(torch.tensor(REF) - torch.tensor(LOGP))
        assert torch.allclose(g_lp, expected, atol=1e-6)


def test_unknown_estimator_lists_the_choices() -> None:
    with pytest.raises(ValueError, match="choose one of k1, k2, k3, abs"):
        kl_estimate(torch.zeros(1, 1), torch.zeros(1, 1), "k4")


def test_estimator_names_match_the_config_schema() -> None:
    import typing

    hint = typing.get_type_hints(KLConfig)["estimator"]
    assert set(typing.get_args(hint)) == set(ESTIMATORS)


def test_apply_kl_penalty_by_hand() -> None:
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.0, 2.0, 0.0]])
    kl = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]], requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    out = apply_kl_penalty(rewards, kl, mask, coef=0.5)
    assert torch.allclose(out, torch.tensor([[-0.05, -0.1, 0.85], [-0.2, 1.75, 0.0]]))
    assert not out.requires_grad
    assert rewards[0, 2].item() == 1.0  # not modified in place


def test_fixed_controller_never_moves() -> None:
    ctl = FixedKLController(0.05)
    ctl.update(10.0, 1000)
    assert ctl.value == 0.05


def test_adaptive_controller_by_hand() -> None:
    ctl = AdaptiveKLController(value=0.1, target=0.1, horizon=100)
    ctl.update(current_kl=0.2, n_steps=10)  # error clipped to +0.2
    assert ctl.value == pytest.approx(0.1 * (1 + 0.2 * 10 / 100))
    ctl.update(current_kl=0.11, n_steps=10)  # error 0.1
    assert ctl.value == pytest.approx(0.1 * 1.02 * (1 + 0.1 * 10 / 100))
    before = ctl.value
    ctl.update(current_kl=0.0, n_steps=50)  # error clipped to -0.2
    assert ctl.value == pytest.approx(before * 0.9)
    state = ctl.state_dict()
    fresh = AdaptiveKLController(value=1.0, target=0.1, horizon=100)
    fresh.load_state_dict(state)
    assert fresh.value == ctl.value


def test_make_kl_controller_from_config() -> None:
    assert isinstance(make_kl_controller(KLConfig(coef=0.01)), FixedKLController)
    ctl = make_kl_controller(KLConfig(coef=0.01, adaptive=True, target=0.5, horizon=20))
    assert isinstance(ctl, AdaptiveKLController) and (ctl.value, ctl.target, ctl.horizon) == (0.01, 0.5, 20)
    with pytest.raises(ValueError, match="must be > 0"):
        AdaptiveKLController(value=0.1, target=0.0, horizon=10)
