"""Selecting estimators and losses by name: builtins and a test plugin, through the real registry + loader."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import attrs
import pytest
import torch

import skyrl_core.builtins
from skyrl_core import ComponentSpec, hookimpl
from skyrl_core.algorithms.reductions import reduce_loss
from skyrl_core.cli import main as skyrl_main
from skyrl_core.config.fields import option, positive
from skyrl_core.config.loader import parse_config
from skyrl_core.errors import ConfigError
from skyrl_core.plugins import Registry
from skyrl_core.protocols.algorithms import AdvantageInput, AdvantageOutput, PolicyLossInput, PolicyLossOutput
from skyrl_core.specs import Kind
from skyrl_core.testing import check_plugin

BUILTIN_ESTIMATORS = ["grpo", "rloo", "reinforce++", "reinforce++_baseline", "gae"]
BUILTIN_LOSSES = ["ppo_clip", "dual_clip", "gspo", "cispo", "clip_cov", "kl_cov", "sapo", "importance_sampling",
                  "cross_entropy"]  # rollout_is needs the engine's log-probs: tests/algorithms/test_skyrl_losses.py


# -- a test plugin: one custom estimator and one custom loss --------------------------------------


@attrs.define(kw_only=True)
class MyEstConfig:
    scale: float = option(1.0, help="Multiply the centred scores by this.", check=positive)
    center: bool = option(True, help="Subtract the batch mean score first.")


def my_est(inp: AdvantageInput, config: MyEstConfig) -> AdvantageOutput:
    scores = inp.token_rewards.sum(-1)
    if config.center:
        scores = scores - scores.mean()
    adv = (scores * config.scale)[:, None] * inp.response_mask
    return AdvantageOutput(adv, adv)


@attrs.define(kw_only=True)
class MyLossConfig:
    coef: float = option(1.0, help="Weight of the REINFORCE term.", check=positive)


def my_loss(inp: PolicyLossInput, config: MyLossConfig) -> PolicyLossOutput:
    return PolicyLossOutput(-config.coef * inp.advantages.detach() * inp.logprobs * inp.mask, {"coef": config.coef})


class AlgoTestPlugin:
    """Registered like any installed plugin (``fresh_registry`` takes modules or objects)."""

    @staticmethod
    @hookimpl
    def skyrl_register_advantage_estimators() -> list[ComponentSpec]:
        return [ComponentSpec("my_est", my_est, "Test estimator: centred, scaled scores.", MyEstConfig)]

    @staticmethod
    @hookimpl
    def skyrl_register_policy_losses() -> list[ComponentSpec]:
        return [ComponentSpec("my_loss", my_loss, "Test loss: plain REINFORCE.", MyLossConfig)]


@pytest.fixture(scope="module")
def registry(registry_with: Callable[..., Registry]) -> Registry:
    return registry_with(AlgoTestPlugin)


def base(algorithm: dict[str, Any]) -> dict[str, Any]:
    return {"model": {"path": "m"}, "algorithm": algorithm}


# -- tests -------------------------------------------------------------------------------------------


def test_builtin_specs_pass_check_plugin() -> None:
    problems = check_plugin(skyrl_core.builtins)
    ours = [p for p in problems if "advantage estimator" in p or "policy loss" in p]
    assert ours == []
    assert check_plugin(AlgoTestPlugin) == []


def test_every_builtin_is_registered(registry: Registry) -> None:
    assert set(BUILTIN_ESTIMATORS) <= set(registry.names(Kind.ADVANTAGE_ESTIMATOR))
    assert set(BUILTIN_LOSSES) <= set(registry.names(Kind.POLICY_LOSS))
    for name in BUILTIN_ESTIMATORS:
        assert registry.get(Kind.ADVANTAGE_ESTIMATOR, name).provider.distribution == "skyrl-core"


def test_defaults_are_grpo_and_ppo_clip(registry: Registry) -> None:
    cfg = parse_config({"model": {"path": "m"}}, registry)
    assert (cfg.algorithm.advantage.name, cfg.algorithm.policy_loss.name) == ("grpo", "ppo_clip")
    adv_cfg = cfg.algorithm.advantage.config  # the loader fills in the component's defaults
    assert adv_cfg.norm_by_std is True


def test_custom_plugin_is_selected_and_validated(registry: Registry) -> None:
    cfg = parse_config(base({"advantage": {"name": "my_est", "scale": 2.0, "center": False},
                             "policy_loss": {"name": "my_loss", "coef": 0.5}}), registry)
    assert cfg.algorithm.advantage.name == "my_est"
    assert cfg.algorithm.advantage.config == MyEstConfig(scale=2.0, center=False)
    assert cfg.algorithm.policy_loss.config == MyLossConfig(coef=0.5)

    # Dispatch goes through the registry only.
    estimator = registry.get(Kind.ADVANTAGE_ESTIMATOR, cfg.algorithm.advantage.name).spec.load()
    loss = registry.get(Kind.POLICY_LOSS, cfg.algorithm.policy_loss.name).spec.load()
    out = estimator(AdvantageInput(torch.tensor([[0.0, 1.0], [0.0, 3.0]]), torch.ones(2, 2), torch.tensor([0, 0])),
                    cfg.algorithm.advantage.config)
    assert torch.equal(out.advantages, torch.tensor([[2.0, 2.0], [6.0, 6.0]]))
    logp = torch.zeros(2, 2, requires_grad=True)
    inp = PolicyLossInput(logp, torch.zeros(2, 2), out.advantages, torch.ones(2, 2))
    res = loss(inp, cfg.algorithm.policy_loss.config)
    reduce_loss(res.token_loss, torch.ones(2, 2), "token_mean").backward()
    assert torch.allclose(logp.grad, torch.tensor([[-0.25, -0.25], [-0.75, -0.75]]))


def test_unknown_option_names_the_key_path(registry: Registry) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(base({"advantage": {"name": "my_est", "scael": 2.0}}), registry)
    issues = {i.path: i.message for i in info.value.issues}
    assert "algorithm.advantage.scael" in issues
    assert "Did you mean 'scale'?" in issues["algorithm.advantage.scael"]


def test_bad_option_values_are_all_reported(registry: Registry) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(base({"advantage": {"name": "my_est", "scale": -1.0},
                           "policy_loss": {"name": "dual_clip", "clip_ratio_c": 0.5, "eps_lo": 0.1}}), registry)
    paths = {i.path for i in info.value.issues}
    assert {"algorithm.advantage.scale", "algorithm.policy_loss.clip_ratio_c", "algorithm.policy_loss.eps_lo"} <= paths
    assert "must be > 1" in str(info.value)


def test_unknown_name_suggests_and_lists(registry: Registry) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(base({"advantage": {"name": "grpoo"}}), registry)
    (issue,) = [i for i in info.value.issues if i.path == "algorithm.advantage.name"]
    assert "Did you mean 'grpo'?" in issue.message
    for name in [*BUILTIN_ESTIMATORS, "my_est"]:
        assert name in issue.message


def test_wrong_option_type_for_a_builtin(registry: Registry) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(base({"advantage": {"name": "grpo", "norm_by_std": "no"}}), registry)
    assert [i.path for i in info.value.issues] == ["algorithm.advantage.norm_by_std"]


@pytest.mark.parametrize("name", BUILTIN_ESTIMATORS)
def test_each_builtin_estimator_runs_through_the_registry(registry: Registry, name: str) -> None:
    cfg = parse_config(base({"advantage": {"name": name}}), registry)
    fn = registry.get(Kind.ADVANTAGE_ESTIMATOR, name).spec.load()
    config = cfg.algorithm.advantage.config
    rewards = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.5, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    out = fn(AdvantageInput(rewards, mask, torch.tensor([0, 0, 1]), torch.full((3, 3), 0.25)), config)
    assert out.advantages.shape == (3, 3) and torch.isfinite(out.advantages).all()
    assert (out.advantages[mask == 0] == 0).all()


@pytest.mark.parametrize("name", BUILTIN_LOSSES)
def test_each_builtin_loss_runs_through_the_registry(registry: Registry, name: str) -> None:
    cfg = parse_config(base({"policy_loss": {"name": name}}), registry)
    fn = registry.get(Kind.POLICY_LOSS, name).spec.load()
    config = cfg.algorithm.policy_loss.config
    logp = torch.tensor([[-1.0, -0.5, -2.0]], requires_grad=True)
    out = fn(PolicyLossInput(logp, torch.tensor([[-1.1, -0.4, -2.0]]), torch.tensor([[1.0, 1.0, 1.0]]),
                             torch.tensor([[1.0, 1.0, 0.0]])), config)
    assert out.token_loss.shape == (1, 3) and out.token_loss[0, 2].item() == 0.0
    assert {"clip_frac", "approx_kl", "ratio_mean", "ratio_max", "ratio_min"} <= set(out.metrics)


def test_skyrl_components_lists_them(capsys: pytest.CaptureFixture[str]) -> None:
    assert skyrl_main(["components", "advantage_estimator", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["advantage_estimator"]
    by_name = {c["name"]: c for c in listed}
    assert set(BUILTIN_ESTIMATORS) <= set(by_name)
    assert [o["name"] for o in by_name["grpo"]["options"]] == [
        "norm_by_std", "epsilon", "batch_normalize", "whiten_variance", "singleton_advantage"
    ]
    assert skyrl_main(["components", "policy_loss"]) == 0
    text = capsys.readouterr().out
    for name in BUILTIN_LOSSES:
        assert f"  {name} " in text


def test_configs_import_without_torch() -> None:
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import skyrl_core.builtins.algorithms as b\n"
        "assert [s.name for s in b.ADVANTAGE_ESTIMATORS][0] == 'grpo'\n"
        "assert all(isinstance(s.impl, str) for s in b.ADVANTAGE_ESTIMATORS + b.POLICY_LOSSES)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
