"""Component specs: what a registration hook returns.

A spec names one component of one kind (a backend, an environment, ...). The TOML
config selects components by that name. ``impl`` is either the object itself or a lazy
``"package.module:attr"`` string, imported only when the component is used, so that
listing components (``skyrl components``) never imports heavy dependencies.
"""

from __future__ import annotations

import enum
import importlib
from typing import Any

import attrs


class Kind(str, enum.Enum):
    """The component kinds chosen by name from TOML; one registration hook each."""

    BACKEND = "backend"
    STRATEGY = "strategy"
    ADVANTAGE_ESTIMATOR = "advantage_estimator"
    POLICY_LOSS = "policy_loss"
    ENVIRONMENT = "environment"
    DATASET_PREPARER = "dataset_preparer"
    TRACKER = "tracker"
    CONFIG_SECTION = "config_section"

    @property
    def label(self) -> str:
        """Human wording, e.g. 'advantage estimator'."""
        return self.value.replace("_", " ")

    @property
    def plural(self) -> str:
        """Plural identifier, e.g. 'policy_losses'."""
        if self.value.endswith("y"):
            return self.value[:-1] + "ies"
        if self.value.endswith("s"):
            return self.value + "es"
        return self.value + "s"

    @property
    def hook(self) -> str:
        """The registration hook that returns specs of this kind."""
        return f"skyrl_register_{self.plural}"


def _no_config() -> None:
    return None


@attrs.frozen
class ComponentSpec:
    """One named component, as returned by a ``skyrl_register_*`` hook.

    Attributes:
        name: the name users write in TOML (``backend = "native"``); unique per kind.
        impl: the implementation (class or function) or a lazy ``"module:attr"`` string.
        config_cls: an attrs class validating the component's TOML section, or None when
            the component takes no options.
        summary: one line shown by ``skyrl components``.
        requires_critic: advantage estimators only: the estimator needs critic values
            (``AdvantageInput.values``), so the run trains a value model (``gae``).
        qualified_only: the component is selected only by its distribution-qualified name
            (``"skyrl-env-skyrlgym:gsm8k"``); the plain name stays free for every other
            distribution. For adapters that mirror another framework's registry, whose names
            must never shadow (or collide with) a component of the same name.
    """

    name: str
    impl: Any
    summary: str
    config_cls: type | None = None
    requires_critic: bool = attrs.field(default=False, kw_only=True)
    qualified_only: bool = attrs.field(default=False, kw_only=True)

    def load(self) -> Any:
        """Return the implementation, importing it if it was given lazily."""
        return resolve(self.impl)


def resolve(impl: Any) -> Any:
    """Import a ``"module:attr"`` string; return anything else unchanged."""
    if not isinstance(impl, str):
        return impl
    module_name, sep, attr = impl.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"lazy implementation {impl!r} must look like 'package.module:attr'")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj
