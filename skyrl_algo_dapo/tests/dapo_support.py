"""Helpers shared by the skyrl-algo-dapo tests (a unique module name, not ``conftest``)."""

from __future__ import annotations

from pathlib import Path

import tomllib

from skyrl_algo_dapo import plugin
from skyrl_core.api import RunConfig, RunContext, Trajectory, make_plan, parse_config
from skyrl_core.testing import fresh_registry

REPO = Path(__file__).resolve().parents[2]
PACKAGE_DIR = Path(__file__).resolve().parents[1]


def config(toml: str = "[dapo]\n", registry=None) -> RunConfig:
    """A validated run config: ``[model]`` plus ``toml``, with builtins and this plugin."""
    registry = registry or fresh_registry(plugin)
    return parse_config(tomllib.loads('[model]\npath = "some/model"\n' + toml), registry=registry)


def run_context(toml: str, tmp_path: Path) -> RunContext:
    """A RunContext as the trainer builds it, without model or backend (enough for the hooks)."""
    registry = fresh_registry(plugin)
    cfg = config(toml, registry)
    return RunContext(config=cfg, registry=registry, run_dir=tmp_path, plan=make_plan(cfg))


def traj(
    group: int,
    reward: float,
    *,
    model_tokens: int = 3,
    env_tokens: int = 0,
    finish: str = "stop",
) -> Trajectory:
    """A hand-built single-turn trajectory (plus optional trailing environment tokens) whose
    outcome reward sits on its last model token."""
    n = model_tokens + env_tokens
    mask = [1] * model_tokens + [0] * env_tokens
    rewards = [0.0] * n
    if model_tokens:
        rewards[model_tokens - 1] = reward
    return Trajectory(
        prompt_ids=[1, 2],
        response_ids=list(range(10, 10 + n)),
        loss_mask=mask,
        rollout_logprobs=[-0.5 if m else 0.0 for m in mask],
        token_rewards=rewards,
        group_id=group,
        finish_reason=finish,
    )
