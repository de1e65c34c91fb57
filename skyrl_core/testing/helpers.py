"""Registry factory and plugin validator for tests."""

from __future__ import annotations

import inspect
from typing import Any

import attrs

from skyrl_core import hookspecs
from skyrl_core.plugins import Registry, build_registry
from skyrl_core.specs import ComponentSpec, Kind


def fresh_registry(*plugins: Any, entry_points: bool = False, builtins: bool = True) -> Registry:
    """A new registry: builtins + the given plugin modules/objects (installed entry points off by default)."""
    extra = [(getattr(p, "__name__", f"plugin{i}"), p) for i, p in enumerate(plugins)]
    return build_registry(entry_points=entry_points, extra_plugins=extra, builtins=builtins)


def check_plugin(module: Any) -> list[str]:
    """Validate a plugin module; return a list of problems (empty when it is fine).

    Checks: every ``skyrl_*`` function is a decorated hook implementation of a known hook,
    takes only arguments of its spec, registration hooks return ``ComponentSpec`` lists
    whose lazy implementations import, and config classes are attrs classes with help text.
    """
    problems: list[str] = []
    known = {n: getattr(hookspecs, n) for n in dir(hookspecs) if n.startswith("skyrl_")}
    for name, fn in inspect.getmembers(module, callable):
        if not name.startswith("skyrl_"):
            continue
        if not hasattr(fn, "skyrl_impl"):
            problems.append(f"{name}: not decorated with @skyrl_core.hookimpl, so pluggy ignores it")
        if name not in known:
            from skyrl_core.errors import did_you_mean

            problems.append(f"{name}: no such hook.{did_you_mean(name, known)}")
            continue
        spec_args = set(inspect.signature(known[name]).parameters)
        extra = set(inspect.signature(fn).parameters) - spec_args
        if extra:
            problems.append(f"{name}: arguments {sorted(extra)} are not in the spec {sorted(spec_args)}")
    for kind in Kind:
        fn = getattr(module, kind.hook, None)
        if fn is None or not callable(fn):
            continue
        try:
            specs = fn()
        except Exception as exc:
            problems.append(f"{kind.hook}() raised {type(exc).__name__}: {exc}")
            continue
        for spec in specs or []:
            if not isinstance(spec, ComponentSpec):
                problems.append(f"{kind.hook}() returned {spec!r}, not a ComponentSpec")
                continue
            if kind is not Kind.CONFIG_SECTION:
                try:
                    spec.load()
                except Exception as exc:
                    problems.append(f"{kind.label} {spec.name!r}: implementation {spec.impl!r} does not import: {exc}")
            if not spec.summary:
                problems.append(f"{kind.label} {spec.name!r}: empty summary")
            cls = spec.config_cls
            if cls is not None:
                if not attrs.has(cls):
                    problems.append(f"{kind.label} {spec.name!r}: config_cls is not an attrs class")
                    continue
                for field in attrs.fields(cls):
                    if not field.metadata.get("help"):
                        problems.append(f"{kind.label} {spec.name!r}: config field {field.name!r} has no help text")
                try:
                    cls()
                except TypeError:
                    problems.append(f"{kind.label} {spec.name!r}: config_cls() must work with defaults only")
    return problems
