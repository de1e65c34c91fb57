"""Shared fixtures of the algorithm tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from skyrl_core import ComponentSpec, hookimpl
from skyrl_core.plugins import Registry
from skyrl_core.specs import Kind
from skyrl_core.testing import fresh_registry


def _stand_in_plugin(missing: dict[Kind, list[str]]) -> Any:
    """Test double: the default backend/strategy/trackers that other issues provide, registered only
    when the builtins lack them, so these configs validate whatever else is installed. Never loaded."""

    class StandIns:
        @staticmethod
        @hookimpl
        def skyrl_register_backends() -> list[ComponentSpec]:
            return [ComponentSpec(n, "skyrl_test:Never", "test stand-in") for n in missing.get(Kind.BACKEND, [])]

        @staticmethod
        @hookimpl
        def skyrl_register_strategies() -> list[ComponentSpec]:
            return [ComponentSpec(n, "skyrl_test:Never", "test stand-in") for n in missing.get(Kind.STRATEGY, [])]

        @staticmethod
        @hookimpl
        def skyrl_register_trackers() -> list[ComponentSpec]:
            return [ComponentSpec(n, "skyrl_test:Never", "test stand-in") for n in missing.get(Kind.TRACKER, [])]

    return StandIns


def _registry_with(*plugins: Any) -> Registry:
    """``fresh_registry(*plugins)`` plus stand-ins for any default component not installed yet."""
    registry = fresh_registry(*plugins)
    wanted = {Kind.BACKEND: ["native"], Kind.STRATEGY: ["local"], Kind.TRACKER: ["console", "jsonl", "tensorboard"]}
    missing = {k: [n for n in names if n not in registry.components[k]] for k, names in wanted.items()}
    if any(missing.values()):
        registry = fresh_registry(*plugins, _stand_in_plugin(missing))
    return registry



@pytest.fixture(scope="session")
def registry_with() -> Callable[..., Registry]:
    """``registry_with(*plugins)``: a fresh registry with the builtins, the given plugins and, only
    where the builtins lack them, stand-ins for the default backend/strategy/trackers."""
    return _registry_with
