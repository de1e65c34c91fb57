"""skyrl plugin module of skyrl-algo-dapo: DAPO through skyrl's public hooks only.

Registered through the ``skyrl`` entry point in pyproject.toml. Every hook does nothing
unless the run's TOML has a ``[dapo]`` table, so installing the plugin never changes a run
that did not ask for it.

Which hook carries which piece:

* ``skyrl_register_config_sections``: the ``[dapo]`` table (``config.DapoConfig``);
* ``skyrl_config_defaults`` / ``skyrl_check_config``: clip-higher and the token-level loss,
  which are core's ``ppo_clip`` and ``token_mean`` reduction with DAPO's defaults
  (``presets``);
* ``skyrl_shape_rewards``: soft overlong punishment and overlong filtering (``overlong``);
* ``skyrl_collect_rollouts``: dynamic sampling (``dynamic_sampling``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from skyrl_algo_dapo.config import DapoConfig
from skyrl_algo_dapo.dynamic_sampling import SamplingPlan, collect_informative
from skyrl_algo_dapo.overlong import shape_overlong
from skyrl_algo_dapo.presets import dapo_defaults, dapo_issues
from skyrl_core.api import ComponentSpec, ConfigIssue, RolloutBatch, hookimpl

SECTION = "dapo"


@hookimpl
def skyrl_register_config_sections() -> list[ComponentSpec]:
    return [ComponentSpec(SECTION, None, "DAPO: clip-higher, dynamic sampling, token-level loss, overlong shaping.",
                          DapoConfig)]


@hookimpl
def skyrl_config_defaults(raw: dict[str, Any]) -> dict[str, Any] | None:
    return dapo_defaults(raw)


@hookimpl
def skyrl_check_config(config: Any) -> list[ConfigIssue]:
    return dapo_issues(config)


@hookimpl
def skyrl_shape_rewards(run: Any, batch: RolloutBatch) -> None:
    section: DapoConfig | None = run.section(SECTION)
    if section is not None:
        batch.metrics.update(shape_overlong(batch, section, run.config.generator))


@hookimpl
def skyrl_collect_rollouts(run: Any, sample: Callable[[int], RolloutBatch], num_prompts: int) -> RolloutBatch | None:
    section: DapoConfig | None = run.section(SECTION)
    if section is None or not section.dynamic_sampling:
        return None
    plan = SamplingPlan(
        quota=num_prompts,
        per_round=section.prompts_per_round or num_prompts,
        max_rounds=section.max_sampling_rounds,
        filter_on=section.filter_on,
    )
    return collect_informative(sample, plan)
