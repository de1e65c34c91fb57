"""skyrl-core's own components, registered through the same hooks as any plugin.

Each sub-module lists the specs of one area; this module only forwards them. The
implementations are lazy ``"module:attr"`` strings, so building a registry imports no
torch or transformers.
"""

from __future__ import annotations

from typing import Any

from skyrl_core.builtins import algorithms, backends, environments, trackers
from skyrl_core.plugins import hookimpl
from skyrl_core.specs import ComponentSpec


@hookimpl
def skyrl_register_backends() -> list[ComponentSpec]:
    return list(backends.BACKENDS)


@hookimpl
def skyrl_register_strategies() -> list[ComponentSpec]:
    return list(backends.STRATEGIES)


@hookimpl
def skyrl_register_advantage_estimators() -> list[ComponentSpec]:
    return list(algorithms.ADVANTAGE_ESTIMATORS)


@hookimpl
def skyrl_register_policy_losses() -> list[ComponentSpec]:
    return list(algorithms.POLICY_LOSSES)


@hookimpl
def skyrl_register_environments() -> list[ComponentSpec]:
    return list(environments.ENVIRONMENTS)


@hookimpl
def skyrl_register_dataset_preparers() -> list[ComponentSpec]:
    return list(environments.DATASET_PREPARERS)


@hookimpl
def skyrl_register_trackers() -> list[ComponentSpec]:
    return list(trackers.TRACKERS)


# -- config hooks: what [trainer] mode implies (skyrl_core.config.modes) ---------------------


@hookimpl
def skyrl_config_defaults(raw: dict[str, Any]) -> dict[str, Any] | None:
    from skyrl_core.config.modes import implied_defaults

    return implied_defaults(raw)


@hookimpl
def skyrl_check_config(config: Any) -> list[Any]:
    from skyrl_core.config.modes import mode_issues

    return mode_issues(config)
