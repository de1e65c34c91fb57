"""A test plugin for the loop tests: a policy loss that is NaN once, environments that raise on
some rows or on every second episode, and pipeline hooks that record when the loop calls them."""

from __future__ import annotations

import itertools
from typing import Any

import attrs
import torch

from skyrl_core import ComponentSpec, hookimpl
from skyrl_core.algorithms.policy_losses import ppo_clip
from skyrl_core.config.fields import option
from skyrl_core.envs.arithmetic import ArithmeticEnv
from skyrl_core.protocols.algorithms import PolicyLossOutput

CALLS: list[tuple[str, Any]] = []
NAN_CALLS = {"left": 0}


@attrs.define(kw_only=True)
class NanOnceConfig:
    eps_low: float = option(0.2, help="Lower clip.")
    eps_high: float = option(0.2, help="Upper clip.")


def nan_once(inp, config):
    """ppo_clip, but the first call(s) return a NaN loss."""
    out = ppo_clip(inp, config)
    if NAN_CALLS["left"] > 0:
        NAN_CALLS["left"] -= 1
        return PolicyLossOutput(out.token_loss * torch.nan, out.metrics)
    return out


class FlakyEnv(ArithmeticEnv):
    """The arithmetic env, but it raises for problems whose first operand is odd."""

    def step(self, action: str):
        expression = self.extras.get("extra_info", {}).get("expression", "0 + 0")
        if int(expression.split()[0]) % 2:
            raise RuntimeError("flaky env: odd operand")
        return super().step(action)


class HalfFailingEnv(ArithmeticEnv):
    """The arithmetic env, but every second episode raises in ``step``: exactly half of any batch
    of an even number of trajectories fails."""

    created = itertools.count()

    def __init__(self, config=None, extras=None) -> None:
        super().__init__(config, extras)
        self.fails = next(HalfFailingEnv.created) % 2 == 1

    def step(self, action: str):
        if self.fails:
            raise RuntimeError("this episode fails (test)")
        return super().step(action)


@hookimpl
def skyrl_register_policy_losses():
    return [ComponentSpec("nan_once", nan_once, "PPO clip that is NaN on its first calls (test).", NanOnceConfig)]


@hookimpl
def skyrl_register_environments():
    from skyrl_core.envs.arithmetic import ArithmeticEnvConfig

    return [
        ComponentSpec("flaky", FlakyEnv, "Arithmetic that raises on odd operands (test).", ArithmeticEnvConfig),
        ComponentSpec("half_failing", HalfFailingEnv, "Arithmetic failing every second episode (test).",
                      ArithmeticEnvConfig),
    ]


class UninstalledBackend:
    """Test double of a backend whose engine package is not installed: only its pre-flight check."""

    @staticmethod
    def check_installed(config):
        from skyrl_core.errors import MissingDependencyError

        raise MissingDependencyError("[backend] name = 'uninstalled' needs the package 'nothere': pip install nothere")

    capabilities: object  # the backend contract, on paper: it is never built

    def __init__(self, config, *, model, seed):
        raise AssertionError("the pre-flight check should have stopped the run before the backend is built")

    async def generate(self, requests):
        raise AssertionError("never built")

    def update_weights(self, named_tensors):
        raise AssertionError("never built")

    def reset_prefix_cache(self):
        raise AssertionError("never built")

    sleep = wake = shutdown = reset_prefix_cache


def _crashing_backend():
    """The native backend, with an engine that dies mid-run and a ``shutdown`` that then fails too."""
    from skyrl_core.backends.native import NativeBackend

    class CrashingBackend(NativeBackend):
        async def generate(self, requests):
            raise RuntimeError("the engine crashed")

        def shutdown(self):
            super().shutdown()
            raise RuntimeError("shutdown broke as well")

    return CrashingBackend


@hookimpl
def skyrl_register_backends():
    from skyrl_core.backends.native_config import NativeBackendConfig

    return [
        ComponentSpec("uninstalled", UninstalledBackend, "A backend whose engine is missing (test)."),
        ComponentSpec("crashing", _crashing_backend(), "Native; generate/shutdown raise.", NativeBackendConfig),
    ]


@hookimpl
def skyrl_run_start(run):
    CALLS.append(("run_start", run.step))


@hookimpl
def skyrl_shape_rewards(run, batch):
    CALLS.append(("shape_rewards", len(batch)))
    batch.metrics["test/shaped"] = 1.0


@hookimpl
def skyrl_collect_rollouts(run, sample, num_prompts):
    CALLS.append(("collect_rollouts", num_prompts))
    return None  # leave collection to the default


@hookimpl
def skyrl_step_end(run, step, metrics):
    CALLS.append(("step_end", step))
    metrics["test/step_end"] = float(step)


@hookimpl
def skyrl_run_end(run):
    CALLS.append(("run_end", run.step))
