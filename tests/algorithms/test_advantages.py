"""Advantage estimators against hand-computed values and slow Python-float references."""

from __future__ import annotations

import math

import pytest
import torch

from skyrl_core.algorithms.advantages import gae, grpo, reinforce_pp, reinforce_pp_baseline, rloo
from skyrl_core.algorithms.configs import GAEConfig, GRPOConfig, ReinforcePPConfig, RLOOConfig
from skyrl_core.protocols.algorithms import AdvantageInput

# Six sequences, R = 5. Groups: {0, 1, 2}, {3, 4}, {5} (a singleton).
# Row 1 has an environment token at position 2 (mask 0 inside the response);
# row 4 is an empty response (all-zero mask); the others are right-padded.
MASK = [
    [1, 1, 1, 1, 0],
    [1, 1, 0, 1, 1],
    [1, 1, 0, 0, 0],
    [1, 1, 1, 1, 1],
    [0, 0, 0, 0, 0],
    [1, 1, 1, 0, 0],
]
REWARDS = [
    [0, 0, 0, 1.0, 0],
    [0, 0.5, 0.125, 0, 0.25],  # per-turn rewards at 1 and on the environment token 2; outcome at 4
    [0, 0.0, 0, 0, 0],
    [0, 0, 0, 0, 2.0],
    [0, 0, 0, 0, 0],
    [0, 0, 3.0, 0, 0],
]
GROUPS = [7, 7, 7, 3, 3, 11]
VALUES = [
    [0.1, 0.2, 0.3, 0.4, 0.0],
    [0.5, 0.1, 9.0, -0.2, 0.3],  # 9.0 sits on the environment token and must be ignored
    [0.0, 0.4, 0.0, 0.0, 0.0],
    [1.0, 0.9, 0.8, 0.7, 0.6],
    [0.0, 0.0, 0.0, 0.0, 0.0],
    [0.2, 0.2, 0.2, 0.0, 0.0],
]


def make_input(values: bool = False) -> AdvantageInput:
    return AdvantageInput(
        token_rewards=torch.tensor(REWARDS),
        response_mask=torch.tensor(MASK, dtype=torch.float32),
        group_ids=torch.tensor(GROUPS),
        values=torch.tensor(VALUES) if values else None,
    )


# -- slow references over Python floats -------------------------------------------------------------


def ref_scores() -> list[float]:
    return [sum(row) for row in REWARDS]


def ref_group_adv(kind: str, norm_by_std: bool = True, eps: float = 1e-6) -> list[list[float]]:
    scores = ref_scores()
    out = []
    for i, s in enumerate(scores):
        members = [scores[j] for j in range(len(scores)) if GROUPS[j] == GROUPS[i]]
        n = len(members)
        mean = sum(members) / n
        if n == 1:
            a = 0.0
        elif kind == "grpo":
            std = math.sqrt(sum((m - mean) ** 2 for m in members) / (n - 1))
            a = (s - mean) / (std + eps) if norm_by_std else s - mean
        else:  # rloo: minus the mean of the others
            others = [scores[j] for j in range(len(scores)) if GROUPS[j] == GROUPS[i] and j != i]
            a = s - sum(others) / len(others)
        out.append([a * m for m in MASK[i]])
    return out


def ref_returns(rewards: list[list[float]], gamma: float) -> list[list[float]]:
    """Reward-to-go over the model tokens; a reward on a masked token goes to the model token before it."""
    out = []
    for row, mask in zip(rewards, MASK, strict=True):
        valid = [t for t, m in enumerate(mask) if m]
        credited = {t: 0.0 for t in valid}
        for t, r in enumerate(row):
            before = [v for v in valid if v <= t]
            if before:
                credited[before[-1]] += r
        ret = [0.0] * len(row)
        running = 0.0
        for t in reversed(valid):
            running = credited[t] + gamma * running
            ret[t] = running
        out.append(ret)
    return out


def ref_whiten(x: list[list[float]], eps: float) -> list[list[float]]:
    vals = [x[i][t] for i in range(len(x)) for t in range(len(x[i])) if MASK[i][t]]
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / len(vals))
    return [[(x[i][t] - mean) / (std + eps) if MASK[i][t] else 0.0 for t in range(len(x[i]))] for i in range(len(x))]


def ref_gae(gamma: float, lam: float) -> tuple[list[list[float]], list[list[float]]]:
    advs, rets = [], []
    for i, (row, mask) in enumerate(zip(REWARDS, MASK, strict=True)):
        valid = [t for t, m in enumerate(mask) if m]
        credited = {t: 0.0 for t in valid}
        for t, r in enumerate(row):
            before = [v for v in valid if v <= t]
            if before:
                credited[before[-1]] += r
        adv = [0.0] * len(row)
        ret = [0.0] * len(row)
        last, next_v = 0.0, 0.0
        for t in reversed(valid):
            delta = credited[t] + gamma * next_v - VALUES[i][t]
            last = delta + gamma * lam * last
            adv[t] = last
            ret[t] = last + VALUES[i][t]
            next_v = VALUES[i][t]
        advs.append(adv)
        rets.append(ret)
    return advs, rets


def assert_close(actual: torch.Tensor, expected: list[list[float]], tol: float = 1e-5) -> None:
    assert torch.allclose(actual.double(), torch.tensor(expected, dtype=torch.float64), atol=tol, rtol=tol), (
        actual,
        expected,
    )


def check_clean(out) -> None:
    mask = torch.tensor(MASK) > 0
    for t in (out.advantages, out.returns):
        assert torch.isfinite(t).all()
        assert not t.requires_grad
        assert (t[~mask] == 0).all()


# -- GRPO / Dr. GRPO ------------------------------------------------------------------------------


@pytest.mark.parametrize("norm_by_std", [True, False])
def test_grpo_matches_reference(norm_by_std: bool) -> None:
    out = grpo(make_input(), GRPOConfig(norm_by_std=norm_by_std))
    assert_close(out.advantages, ref_group_adv("grpo", norm_by_std))
    assert_close(out.returns, ref_group_adv("grpo", norm_by_std))
    check_clean(out)


def test_grpo_by_hand() -> None:
    # Scores 1, 0, 0, 1: mean 0.5, unbiased std sqrt(1/3); advantages ±0.5·sqrt(3).
    inp = AdvantageInput(
        token_rewards=torch.tensor([[0.0, 1.0], [0.0, 0.0], [0.0, 0.0], [1.0, 0.0]]),
        response_mask=torch.ones(4, 2),
        group_ids=torch.zeros(4, dtype=torch.long),
    )
    out = grpo(inp, GRPOConfig(epsilon=1e-9))
    h = 0.5 * math.sqrt(3)
    assert_close(out.advantages, [[h, h], [-h, -h], [-h, -h], [h, h]])
    dr = grpo(inp, GRPOConfig(norm_by_std=False))
    assert_close(dr.advantages, [[0.5, 0.5], [-0.5, -0.5], [-0.5, -0.5], [0.5, 0.5]])


def test_group_estimators_singleton_and_all_equal_groups_are_zero() -> None:
    inp = AdvantageInput(
        token_rewards=torch.tensor([[0.0, 2.0], [0.0, 2.0], [0.0, 2.0], [0.0, 5.0]]),
        response_mask=torch.ones(4, 2),
        group_ids=torch.tensor([0, 0, 0, 1]),  # an all-equal group and a singleton
    )
    for fn, cfg in [(grpo, GRPOConfig()), (grpo, GRPOConfig(norm_by_std=False)), (rloo, RLOOConfig())]:
        out = fn(inp, cfg)
        assert torch.equal(out.advantages, torch.zeros(4, 2)), fn.__name__
    # Everything in one singleton-only batch.
    single = AdvantageInput(torch.tensor([[1.0]]), torch.ones(1, 1), torch.tensor([0]))
    assert grpo(single, None).advantages.item() == 0.0
    assert rloo(single, None).advantages.item() == 0.0


def test_grpo_batch_normalize_whitens_over_loss_tokens() -> None:
    out = grpo(make_input(), GRPOConfig(batch_normalize=True))
    assert_close(out.advantages, ref_whiten(ref_group_adv("grpo"), 1e-8), tol=1e-4)


# -- RLOO -----------------------------------------------------------------------------------------


def test_rloo_matches_reference() -> None:
    out = rloo(make_input(), RLOOConfig())
    assert_close(out.advantages, ref_group_adv("rloo"))
    check_clean(out)
    # By hand: scores 1, 0, 0 -> 1 - 0, 0 - 0.5, 0 - 0.5.
    inp = AdvantageInput(torch.tensor([[1.0], [0.0], [0.0]]), torch.ones(3, 1), torch.tensor([4, 4, 4]))
    assert_close(rloo(inp, None).advantages, [[1.0], [-0.5], [-0.5]])


# -- REINFORCE++ ----------------------------------------------------------------------------------


@pytest.mark.parametrize("gamma", [1.0, 0.9])
def test_reinforce_pp_matches_reference(gamma: float) -> None:
    out = reinforce_pp(make_input(), ReinforcePPConfig(gamma=gamma))
    returns = ref_returns(REWARDS, gamma)
    assert_close(out.returns, returns)
    assert_close(out.advantages, ref_whiten(returns, 1e-8), tol=1e-4)
    check_clean(out)


def test_reinforce_pp_by_hand_discounting() -> None:
    # One response, rewards 1 at t=0 and 2 at t=2, gamma 0.5: returns 1 + 0.25·2, 0.5·2, 2.
    inp = AdvantageInput(torch.tensor([[1.0, 0.0, 2.0]]), torch.ones(1, 3), torch.tensor([0]))
    out = reinforce_pp(inp, ReinforcePPConfig(gamma=0.5))
    assert_close(out.returns, [[1.5, 1.0, 2.0]])


@pytest.mark.parametrize("gamma", [1.0, 0.8])
def test_reinforce_pp_baseline_matches_reference(gamma: float) -> None:
    scores = ref_scores()
    rewards = [list(r) for r in REWARDS]
    for i, mask in enumerate(MASK):
        valid = [t for t, m in enumerate(mask) if m]
        if valid:
            members = [scores[j] for j in range(len(scores)) if GROUPS[j] == GROUPS[i]]
            rewards[i][valid[-1]] -= sum(members) / len(members)
    returns = ref_returns(rewards, gamma)
    out = reinforce_pp_baseline(make_input(), ReinforcePPConfig(gamma=gamma))
    assert_close(out.returns, returns)
    assert_close(out.advantages, ref_whiten(returns, 1e-8), tol=1e-4)
    check_clean(out)


def test_reinforce_pp_all_equal_returns_give_zero() -> None:
    inp = AdvantageInput(torch.tensor([[0.0, 1.0], [0.0, 1.0]]), torch.tensor([[0.0, 1.0], [0.0, 1.0]]),
                         torch.tensor([0, 1]))
    out = reinforce_pp(inp, None)
    assert torch.equal(out.advantages, torch.zeros(2, 2))


# -- GAE ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("gamma", "lam"), [(1.0, 1.0), (0.9, 0.8), (0.5, 0.0)])
def test_gae_matches_reference(gamma: float, lam: float) -> None:
    out = gae(make_input(values=True), GAEConfig(gamma=gamma, lam=lam, whiten=False))
    advs, rets = ref_gae(gamma, lam)
    assert_close(out.advantages, advs)
    assert_close(out.returns, rets)
    check_clean(out)
    whitened = gae(make_input(values=True), GAEConfig(gamma=gamma, lam=lam))
    assert_close(whitened.advantages, ref_whiten(advs, 1e-8), tol=1e-4)
    assert_close(whitened.returns, rets)  # the critic's target is not whitened


def test_gae_by_hand() -> None:
    # gamma = lam = 1: A_t = (sum of rewards from t on) - V_t; returns = reward-to-go.
    inp = AdvantageInput(torch.tensor([[0.0, 0.0, 1.0]]), torch.ones(1, 3), torch.tensor([0]),
                         values=torch.tensor([[0.5, 0.25, 0.75]]))
    out = gae(inp, GAEConfig(whiten=False))
    assert_close(out.advantages, [[0.5, 0.75, 0.25]])
    assert_close(out.returns, [[1.0, 1.0, 1.0]])
    from skyrl_core.specs import Kind
    from skyrl_core.testing import fresh_registry

    assert fresh_registry().get(Kind.ADVANTAGE_ESTIMATOR, "gae").spec.requires_critic is True  # a critic is trained


def test_gae_without_values_names_the_fix() -> None:
    with pytest.raises(ValueError, match=r"needs critic values.*critic-free estimator"):
        gae(make_input(values=False), None)


# -- contract -------------------------------------------------------------------------------------


@pytest.mark.parametrize("fn", [grpo, rloo, reinforce_pp, reinforce_pp_baseline, gae])
def test_no_gradient_reaches_rewards_or_values(fn) -> None:
    rewards = torch.tensor(REWARDS, requires_grad=True)
    values = torch.tensor(VALUES, requires_grad=True)
    inp = AdvantageInput(rewards, torch.tensor(MASK, dtype=torch.float32), torch.tensor(GROUPS), values)
    out = fn(inp, None)
    assert not out.advantages.requires_grad and not out.returns.requires_grad


@pytest.mark.parametrize("fn", [grpo, rloo, reinforce_pp, reinforce_pp_baseline, gae])
def test_empty_and_degenerate_batches(fn) -> None:
    empty_rows = AdvantageInput(torch.zeros(3, 4), torch.zeros(3, 4), torch.tensor([0, 0, 1]), torch.zeros(3, 4))
    out = fn(empty_rows, None)
    assert torch.equal(out.advantages, torch.zeros(3, 4)) and torch.equal(out.returns, torch.zeros(3, 4))
    no_tokens = AdvantageInput(torch.zeros(2, 0), torch.zeros(2, 0), torch.tensor([0, 0]), torch.zeros(2, 0))
    assert fn(no_tokens, None).advantages.shape == (2, 0)


def test_shape_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="group_ids must be"):
        grpo(AdvantageInput(torch.zeros(2, 3), torch.ones(2, 3), torch.tensor([0, 0, 0])), None)
    with pytest.raises(ValueError, match="must both be"):
        rloo(AdvantageInput(torch.zeros(2, 3), torch.ones(2, 4), torch.tensor([0, 0])), None)
