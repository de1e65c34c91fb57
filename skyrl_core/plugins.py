"""Plugin discovery and the component registry.

``build_registry()`` returns a fresh ``Registry`` built from installed metadata: the
builtin components (``skyrl_core.builtins``, always loaded) plus every entry point in the
``skyrl`` group. There are no import-time globals, so every process (tests, Ray workers)
builds its own; only component *names* cross process boundaries.

Loading is guarded: a plugin that fails to import (the error names the file and line),
implements a hook that does not exist, registers no hook at all, or returns malformed
specs is recorded as failed (distribution, version, error) and the others still load.

Two distributions providing one component name are both kept: the name is *ambiguous*.
That is an error naming both only for a run that selects it (``Registry.get``); every other
run goes on (``conflicts`` lists such names, and the commands warn). A name qualified by its
distribution, ``"skyrl-env-foo:gsm8k"``, selects one provider; a spec marked ``qualified_only``
is registered under that qualified name alone (adapters of other registries), so it never
claims the plain name. ``SKYRL_LOAD_PLUGINS``
(comma-separated entry-point names) restricts which third-party plugins load and
``SKYRL_EXCLUDE_PLUGINS`` leaves some out; builtins always load.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import os
import sys
import traceback
from collections.abc import Iterable, Mapping
from typing import Any

import attrs
import pluggy

from skyrl_core import hookspecs
from skyrl_core.errors import PluginError, did_you_mean
from skyrl_core.specs import ComponentSpec, Kind

ENTRY_POINT_GROUP = "skyrl"
BUILTIN_NAME = "skyrl-core"
hookimpl = pluggy.HookimplMarker("skyrl")

# Distributions we know provide a name, so an unknown-name error can say what to install.
KNOWN_PROVIDERS: dict[Kind, dict[str, str]] = {
    Kind.BACKEND: {"vllm": "skyrl-backend-vllm", "sglang": "skyrl-backend-sglang"},
    Kind.STRATEGY: {"megatron": "skyrl-strategy-megatron"},
    Kind.ENVIRONMENT: {
        "gsm8k": "skyrl-env-gsm8k",
        "gsm8k_multi_turn": "skyrl-env-gsm8k",
        "text2sql": "skyrl-env-sql",
    },
    Kind.DATASET_PREPARER: {"gsm8k": "skyrl-env-gsm8k", "text2sql": "skyrl-env-sql"},
    Kind.CONFIG_SECTION: {"dapo": "skyrl-algo-dapo"},
    Kind.TRACKER: {"wandb": "skyrl-tracker-wandb", "mlflow": "skyrl-tracker-mlflow"},
}


@attrs.define
class PluginInfo:
    """What ``skyrl plugins`` shows for one plugin."""

    name: str
    distribution: str
    version: str
    module: str
    status: str = "ok"  # ok | failed | disabled
    error: str | None = None
    detail: str | None = None  # full traceback for failures
    components: dict[str, list[str]] = attrs.field(factory=dict)

    def describe(self) -> str:
        """One line naming the plugin, e.g. 'skyrl-env-sql 0.1.0'."""
        return f"{self.distribution} {self.version}"


@attrs.frozen
class Component:
    """A registered component: its spec and the plugin that provided it."""

    kind: Kind
    spec: ComponentSpec
    provider: PluginInfo

    @property
    def name(self) -> str:
        """The name that selects it: ``spec.name``, or ``"distribution:name"`` for a
        ``qualified_only`` spec (the registry's key either way)."""
        if self.spec.qualified_only:
            return f"{normalize_dist(self.provider.distribution)}{QUALIFIER}{self.spec.name}"
        return self.spec.name

    def load(self) -> Any:
        """Import and return the implementation, naming the provider if that fails."""
        try:
            return self.spec.load()
        except Exception as exc:
            raise PluginError(
                f"{self.kind.label} {self.name!r} from {self.provider.describe()} could not be "
                f"imported ({self.spec.impl!r}): {type(exc).__name__}: {exc}. Reinstall that "
                f"distribution or check its dependencies (`skyrl doctor`)."
            ) from exc


class UnknownComponentError(PluginError):
    """A name in the config does not match any registered component."""


class AmbiguousComponentError(PluginError):
    """A selected name is provided by several distributions."""


def normalize_dist(name: str) -> str:
    """A distribution name as PEP 503 compares them (``Skyrl_Env.Foo`` -> ``skyrl-env-foo``)."""
    import re

    return re.sub(r"[-_.]+", "-", name).lower()


QUALIFIER = ":"  # "distribution:name" selects one provider of an ambiguous name


class Registry:
    """The plugin manager plus every registered component, by kind and name."""

    def __init__(self, pm: pluggy.PluginManager, plugins: list[PluginInfo]) -> None:
        self.pm = pm
        self.plugins = plugins
        self.components: dict[Kind, dict[str, Component]] = {kind: {} for kind in Kind}
        # Every provider of a name claimed by several distributions (the first also sits in
        # ``components``, so listings show it); selecting such a name needs a qualifier.
        self.ambiguous: dict[Kind, dict[str, list[Component]]] = {kind: {} for kind in Kind}

    @property
    def hook(self) -> Any:
        """The pluggy hook relay, e.g. ``registry.hook.skyrl_step_end(...)``."""
        return self.pm.hook

    @property
    def conflicts(self) -> list[str]:
        """One line per name that several distributions provide (see ``ambiguous_message``)."""
        return [
            self.ambiguous_message(kind, name) for kind in Kind for name in sorted(self.ambiguous[kind])
        ]

    def names(self, kind: Kind) -> list[str]:
        """Sorted names of every registered component of ``kind``."""
        return sorted(self.components[kind])

    def providers(self, kind: Kind, name: str) -> list[Component]:
        """Every component registered under ``name`` (several when the name is ambiguous)."""
        if name in self.ambiguous[kind]:
            return list(self.ambiguous[kind][name])
        found = self.components[kind].get(name)
        return [found] if found is not None else []

    def failed(self) -> list[PluginInfo]:
        """Plugins that failed to load."""
        return [p for p in self.plugins if p.status == "failed"]

    def get(self, kind: Kind, name: str, where: str = "") -> Component:
        """Return the component ``name`` of ``kind`` or raise a helpful error.

        ``name`` may be qualified by its distribution (``"skyrl-env-foo:gsm8k"``); an
        unqualified name that several distributions provide raises
        ``AmbiguousComponentError`` naming them. ``where`` is prefixed to the message
        (e.g. ``'[backend] name = "vlm"'``).
        """
        prefix = f"{where}: " if where else ""
        dist, sep, short = name.rpartition(QUALIFIER)
        if sep and dist:
            only = self.components[kind].get(f"{normalize_dist(dist)}{QUALIFIER}{short}")
            if only is not None:  # a qualified_only component: its qualified name is its key
                return only
            matches = [c for c in self.providers(kind, short) if normalize_dist(c.provider.distribution) ==
                       normalize_dist(dist)]
            if matches:
                return matches[0]
            found = ", ".join(f"{c.provider.distribution}{QUALIFIER}{short}" for c in self.providers(kind, short))
            raise UnknownComponentError(
                f"{prefix}no {kind.label} {short!r} from the distribution {dist!r}."
                + (f" Available: {found}." if found else "")
                + ("" if found else " " + self.unknown_message(kind, short))
            )
        if name in self.ambiguous[kind]:
            raise AmbiguousComponentError(prefix + self.ambiguous_message(kind, name))
        found = self.components[kind].get(name)
        if found is not None:
            return found
        raise UnknownComponentError(self.unknown_message(kind, name, where))

    def create(self, kind: Kind, name: str, *args: Any, **kwargs: Any) -> Any:
        """Import the component ``name`` of ``kind`` and call it with the given arguments: how every
        class-like component (backend, strategy, environment, tracker) is constructed."""
        return self.get(kind, name).load()(*args, **kwargs)

    def ambiguous_message(self, kind: Kind, name: str) -> str:
        """What to do about a name several distributions provide."""
        providers = self.ambiguous[kind].get(name, [])
        both = " and ".join(c.provider.describe() for c in providers)
        example = f"{providers[0].provider.distribution}{QUALIFIER}{name}" if providers else name
        return (
            f"{kind.label} {name!r} is provided by both {both}; select one by its distribution, e.g. "
            f"{example!r}, or uninstall one (or leave one out with SKYRL_EXCLUDE_PLUGINS)"
        )

    def unknown_message(self, kind: Kind, name: str, where: str = "") -> str:
        """The message for an unknown name: suggestions, what is available, what to install."""
        available = self.components[kind]
        prefix = f"{where}: " if where else ""
        msg = f"{prefix}no {kind.label} named {name!r}.{did_you_mean(name, available)}"
        if available:
            listing = ", ".join(f"{n} ({c.provider.distribution})" for n, c in sorted(available.items()))
            msg += f" Available: {listing}."
        else:
            msg += f" No {kind.label} is installed."
        qualified = [n for n, c in sorted(available.items()) if c.spec.qualified_only and c.spec.name == name]
        if qualified:
            msg += f" Selectable only by its qualified name: {', '.join(repr(n) for n in qualified)}."
        dist = KNOWN_PROVIDERS.get(kind, {}).get(name)
        if dist:
            msg += f" {name!r} is provided by the distribution {dist}: `pip install {dist}`."
        failed = self.failed()
        if failed:
            names = "; ".join(f"{p.describe()} ({p.error})" for p in failed)
            msg += f" Plugins that failed to load (see `skyrl plugins`): {names}."
        return msg

    def warn_conflicts(self, file: Any = None) -> None:
        """Print a warning per ambiguous name (runs that do not select one go on)."""
        for line in self.conflicts:
            print(f"warning: {line}", file=file or sys.stderr)


def _name_list(raw: str | None) -> set[str] | None:
    """A comma-separated list of names (an environment variable), or None when unset."""
    if raw is None:
        return None
    return {item.strip() for item in raw.split(",") if item.strip()}


def _dist_of(ep: md.EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return ep.name, "unknown"
    return dist.metadata["Name"], dist.version


def _fail(info: PluginInfo, exc: BaseException, what: str) -> None:
    info.status = "failed"
    info.error = f"{what}: {type(exc).__name__}: {exc}"
    info.detail = "".join(traceback.format_exception(exc))


def error_location(exc: BaseException) -> str | None:
    """``file:line`` where ``exc`` was raised, skipping Python's import machinery (a syntax
    error: where the bad line is)."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{exc.filename}:{exc.lineno}"
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not _is_machinery(f.filename)]
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else None


def _is_machinery(filename: str) -> bool:
    return filename.startswith("<frozen") or "/importlib/" in filename.replace("\\", "/")


def _register_checked(pm: pluggy.PluginManager, module: Any, info: PluginInfo) -> bool:
    """Register ``module``; on an invalid hook implementation, unregister it and record why."""
    try:
        pm.register(module, name=info.name)
    except pluggy.PluginValidationError as exc:
        _fail(info, exc, "invalid hook implementation")
        return False
    except ValueError as exc:  # same plugin name registered twice
        _fail(info, exc, "could not register")
        return False
    callers = pm.get_hookcallers(module) or []
    if not callers:
        undecorated = sorted(n for n in dir(module) if n.startswith("skyrl_") and callable(getattr(module, n, None)))
        hint = (
            f" ({', '.join(undecorated)} lack the @hookimpl decorator)" if undecorated
            else "; decorate hook functions with @skyrl_core.hookimpl"
        )
        info.status = "failed"
        info.error = f"{info.module} implements no hook{hint}, so it provides nothing"
        pm.unregister(module)
        return False
    for caller in callers:
        if not caller.has_spec():
            known = [n for n in dir(hookspecs) if n.startswith("skyrl_")]
            hint = did_you_mean(caller.name, known)
            info.status = "failed"
            info.error = f"implements unknown hook {caller.name!r}.{hint} Known hooks: see docs/plugins.md"
            pm.unregister(module)
            return False
    return True


def _collect(registry: Registry, infos: Mapping[str, PluginInfo]) -> None:
    """Call every registration hook plugin by plugin, checking the specs it returns."""
    for kind in Kind:
        caller = getattr(registry.pm.hook, kind.hook)
        for impl in caller.get_hookimpls():
            info = infos[impl.plugin_name]
            if info.status != "ok":
                continue
            try:
                specs = impl.function()
                specs = _check_specs(specs, kind)
            except Exception as exc:
                _fail(info, exc, f"{kind.hook}() failed")
                registry.pm.unregister(impl.plugin)
                _drop_provider(registry, info)
                continue
            for spec in specs:
                component = Component(kind, spec, info)
                key = component.name  # "dist:name" for a qualified_only spec, never the plain name
                existing = registry.components[kind].get(key)
                if existing is not None:  # ambiguous: kept, selectable only by a qualified name
                    registry.ambiguous[kind].setdefault(key, [existing]).append(component)
                else:
                    registry.components[kind][key] = component
                info.components.setdefault(kind.value, []).append(key)


def _drop_provider(registry: Registry, info: PluginInfo) -> None:
    for kind in Kind:
        for name in [n for n, c in registry.components[kind].items() if c.provider is info]:
            del registry.components[kind][name]
        for name, providers in list(registry.ambiguous[kind].items()):
            rest = [c for c in providers if c.provider is not info]
            if len(rest) > 1:
                registry.ambiguous[kind][name] = rest
            else:
                del registry.ambiguous[kind][name]
                if rest:
                    registry.components[kind][name] = rest[0]
    info.components.clear()


def _check_specs(specs: Any, kind: Kind) -> list[ComponentSpec]:
    if specs is None:
        return []
    if not isinstance(specs, (list, tuple)):
        raise TypeError(f"{kind.hook}() must return a list of ComponentSpec, got {type(specs).__name__}")
    out = []
    for spec in specs:
        if not isinstance(spec, ComponentSpec):
            raise TypeError(f"{kind.hook}() returned {spec!r}, which is not a ComponentSpec")
        if not spec.name or not isinstance(spec.name, str) or spec.name != spec.name.strip():
            raise ValueError(f"{kind.hook}() returned a spec with an invalid name {spec.name!r}")
        if QUALIFIER in spec.name:
            raise ValueError(
                f"{kind.hook}() returned a spec named {spec.name!r}: names cannot contain {QUALIFIER!r}, which "
                "separates a distribution from a name (use qualified_only=True for a name selectable only as "
                "'distribution:name')"
            )
        if spec.config_cls is not None and not attrs.has(spec.config_cls):
            raise TypeError(
                f"{kind.label} {spec.name!r}: config_cls {spec.config_cls!r} must be an attrs class or None"
            )
        out.append(spec)
    return out


def build_registry(
    *,
    entry_points: bool = True,
    extra_plugins: Iterable[tuple[str, Any]] = (),
    builtins: bool = True,
    only: Iterable[str] | None = None,
) -> Registry:
    """Build a fresh registry.

    Args:
        entry_points: load third-party plugins from the ``skyrl`` entry-point group.
        extra_plugins: ``(name, module_or_object)`` pairs registered as plugins too
            (used by tests and by ``skyrl_core.testing``).
        builtins: load skyrl-core's own components.
        only: load only these entry points (names), like ``SKYRL_LOAD_PLUGINS``, which it
            replaces for this call.
    """
    pm = pluggy.PluginManager("skyrl")
    pm.add_hookspecs(hookspecs)
    infos: dict[str, PluginInfo] = {}
    plugins: list[PluginInfo] = []

    def add(info: PluginInfo) -> None:
        plugins.append(info)
        infos[info.name] = info

    if builtins:
        version = _own_version()
        info = PluginInfo(BUILTIN_NAME, BUILTIN_NAME, version, "skyrl_core.builtins")
        add(info)
        _register_checked(pm, importlib.import_module("skyrl_core.builtins"), info)

    if entry_points:
        allow = set(only) if only is not None else _name_list(os.environ.get("SKYRL_LOAD_PLUGINS"))
        exclude = _name_list(os.environ.get("SKYRL_EXCLUDE_PLUGINS")) or set()
        seen: dict[str, PluginInfo] = {}
        for ep in md.entry_points(group=ENTRY_POINT_GROUP):
            dist, version = _dist_of(ep)
            info = PluginInfo(ep.name, dist, version, ep.value)
            if ep.name in seen:
                # Keep both visible: silently skipping a second distribution hides a conflict.
                first = seen[ep.name]
                info.status = "failed"
                info.error = (
                    f"not loaded: its entry point name {ep.name!r} is also used by {first.describe()}, which was "
                    f"loaded instead (entry-point names must be unique). Uninstall one of the two, or ask the "
                    f"authors of {info.distribution} to rename the entry point"
                )
                info.name = f"{ep.name}#{len(plugins)}"
                add(info)
                continue
            seen[ep.name] = info
            add(info)
            if allow is not None and ep.name not in allow:
                info.status = "disabled"
                info.error = "not listed in SKYRL_LOAD_PLUGINS"
                continue
            if ep.name in exclude or info.distribution in exclude:
                info.status = "disabled"
                info.error = "listed in SKYRL_EXCLUDE_PLUGINS"
                continue
            try:
                module = ep.load()
            except Exception as exc:
                _fail(info, exc, "import failed")
                location = error_location(exc)
                if location:  # where to look: the plugin's file and line, not Python's import machinery
                    info.error = f"{info.error} (at {location})"
                continue
            _register_checked(pm, module, info)

    for name, obj in extra_plugins:
        info = PluginInfo(name, name, "test", getattr(obj, "__name__", repr(obj)))
        add(info)
        _register_checked(pm, obj, info)

    registry = Registry(pm, plugins)
    _collect(registry, infos)
    pm.check_pending()  # anything left unchecked is a bug in our own guard
    return registry


def _own_version() -> str:
    try:
        return md.version("skyrl-core")
    except md.PackageNotFoundError:
        return "0+unknown"
