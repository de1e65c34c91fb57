"""What the adapter reads from skyrl-gym: its registry of environment ids, each environment's
creator and config dataclass, and ``make``.

skyrl-gym is imported only inside these functions: ``registered()`` when skyrl builds its
registry (every ``skyrl`` process with this plugin and skyrl-gym installed; about 0.4 s, as
``import skyrl_gym`` imports pandas and requests), the rest when an environment is configured
or created.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.metadata as md
import importlib.util
import inspect
import os
import typing
from collections.abc import Mapping
from typing import Any

from skyrl_core.api import PluginError

#: Comma-separated modules imported before the registry is read: the ones whose import calls
#: ``skyrl_gym.register(...)`` for your own environments (SkyRL registers them in its entry script).
MODULES_VAR = "SKYRL_SKYRLGYM_MODULES"


def installed() -> bool:
    """Whether skyrl-gym is installed (without importing it)."""
    return importlib.util.find_spec("skyrl_gym") is not None


def version() -> str:
    try:
        return md.version("skyrl-gym")
    except md.PackageNotFoundError:
        return "(unknown version)"


def registered() -> dict[str, str]:
    """``{id: entry point}`` of every environment in skyrl-gym's registry, after importing the
    modules named by ``SKYRL_SKYRLGYM_MODULES``; empty when skyrl-gym is not installed.

    Raises ``PluginError`` (the plugin is then listed as failed, with this message) when
    skyrl-gym or one of those modules does not import.
    """
    if not installed():
        return {}
    try:
        from skyrl_gym.envs.registration import registry
    except Exception as exc:
        raise PluginError(
            f"skyrl-gym {version()} is installed but does not import ({type(exc).__name__}: {exc}); "
            "reinstall it (`pip install --force-reinstall skyrl-gym`) or uninstall skyrl-env-skyrlgym"
        ) from exc
    for module in [m.strip() for m in os.environ.get("SKYRL_SKYRLGYM_MODULES", "").split(",") if m.strip()]:
        try:
            importlib.import_module(module)
        except Exception as exc:
            raise PluginError(
                f"{MODULES_VAR}: the module {module!r} (imported to register skyrl-gym environments) does not "
                f"import: {type(exc).__name__}: {exc}"
            ) from exc
    return {env_id: _describe(spec.entry_point) for env_id, spec in registry.items()}


def _describe(entry_point: Any) -> str:
    if isinstance(entry_point, str):
        return entry_point
    return f"{getattr(entry_point, '__module__', '?')}:{getattr(entry_point, '__qualname__', repr(entry_point))}"


def creator(env_id: str) -> Any:
    """The class (or function) skyrl-gym's ``make`` calls for ``env_id``."""
    from skyrl_gym.envs.registration import load_env_creator, spec

    entry = spec(env_id).entry_point
    return load_env_creator(entry) if isinstance(entry, str) else entry


@functools.cache  # once per environment class, not per trajectory
def config_dataclass(env_creator: Any) -> type | None:
    """The dataclass its ``env_config`` parameter is annotated with (``Union[Text2SQLEnvConfig,
    DictConfig]`` gives ``Text2SQLEnvConfig``), or None."""
    target = env_creator.__init__ if inspect.isclass(env_creator) else env_creator
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # annotations that do not resolve: treat as untyped
        return None
    annotation = hints.get("env_config")
    for candidate in (*typing.get_args(annotation), annotation):
        if inspect.isclass(candidate) and dataclasses.is_dataclass(candidate):
            return candidate
    return None


def env_config(env_id: str, options: Mapping[str, Any]) -> Any:
    """``options`` as the OmegaConf ``DictConfig`` the environment receives: attribute access,
    ``.get`` and ``[...]`` all work, as with SkyRL's Hydra config. When the environment declares a
    config dataclass, the ``DictConfig`` is typed by it: defaults filled in, unknown keys and
    wrong types rejected (``ValueError`` naming the options it has)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    schema = config_dataclass(creator(env_id))
    if schema is None:
        return OmegaConf.create(dict(options))
    try:
        return OmegaConf.merge(OmegaConf.structured(schema), dict(options))
    except OmegaConfBaseException as exc:
        fields = ", ".join(f.name for f in dataclasses.fields(schema))
        first = str(exc).strip().splitlines()[0]
        key = getattr(exc, "full_key", None)
        where = f"key {key!r}; " if key else ""
        raise ValueError(f"{first} ({where}{schema.__name__} has: {fields})") from exc


def make(env_id: str, options: Any, extras: dict[str, Any]) -> Any:
    """One environment, created by skyrl-gym's ``make`` as SkyRL creates it."""
    import skyrl_gym

    return skyrl_gym.make(env_id, env_config=options, extras=extras)
