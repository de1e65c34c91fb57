"""Registry factory and plugin validator for tests."""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import os
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

from skyrl_core import hookspecs
from skyrl_core.plugins import Registry, build_registry
from skyrl_core.specs import ComponentSpec, Kind


def fresh_registry(*plugins: Any, entry_points: bool = False, builtins: bool = True) -> Registry:
    """A new registry: builtins + the given plugin modules/objects (installed entry points off by default)."""
    extra = [(getattr(p, "__name__", f"plugin{i}"), p) for i, p in enumerate(plugins)]
    return build_registry(entry_points=entry_points, extra_plugins=extra, builtins=builtins)


def check_plugin(module: Any, *, imports: bool = True) -> list[str]:
    """Validate a plugin module against every rule of docs/plugins.md; return the problems
    (empty when it is fine). It never raises for a broken plugin: each problem is one line.

    Checks:

    * every ``skyrl_*`` function is a decorated hook implementation of a known hook and takes
      only arguments of its spec;
    * registration hooks return a list of ``ComponentSpec`` with valid names and summaries;
    * each spec's implementation imports and keeps its kind's contract (``skyrl_core.contracts``);
      ``requires_critic`` only on advantage estimators;
    * config classes are attrs classes, every field has help text, ``config_cls()`` works with
      defaults only, and every default has its field's type and passes its field's check;
    * with ``imports`` (the default) and a plugin module (not a test's plugin object): the module
      and its package's config modules import without torch, in a fresh interpreter (they are
      imported at start-up).
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
    config_modules: set[str] = set()
    for kind in Kind:
        fn = getattr(module, kind.hook, None)
        if fn is None or not callable(fn):
            continue
        try:
            specs = fn()
        except Exception as exc:
            problems.append(f"{kind.hook}() raised {type(exc).__name__}: {exc}")
            continue
        if specs is None:
            continue
        if not isinstance(specs, (list, tuple)):
            problems.append(f"{kind.hook}() must return a list of ComponentSpec, got {type(specs).__name__}")
            continue
        for spec in specs:
            if not isinstance(spec, ComponentSpec):
                problems.append(f"{kind.hook}() returned {spec!r}, not a ComponentSpec")
                continue
            problems += _check_spec(kind, spec)
            if spec.config_cls is not None and attrs.has(spec.config_cls):
                config_modules.add(spec.config_cls.__module__)
    if imports and isinstance(module, types.ModuleType):
        # the plugin's own modules: its hook module and the config classes of its package
        top = module.__name__.split(".")[0]
        own = sorted(m for m in config_modules if m.split(".")[0] == top)
        problems += _torch_free(module.__name__, own)
    return problems


def _check_spec(kind: Kind, spec: ComponentSpec) -> list[str]:
    from skyrl_core.contracts import check_impl

    problems: list[str] = []
    label = f"{kind.label} {spec.name!r}"
    if not isinstance(spec.name, str) or not spec.name or spec.name != spec.name.strip():
        problems.append(f"{kind.hook}() returned a spec with an invalid name {spec.name!r}")
    if not spec.summary:
        problems.append(f"{label}: empty summary")
    if spec.requires_critic and kind is not Kind.ADVANTAGE_ESTIMATOR:
        problems.append(f"{label}: requires_critic is for advantage estimators only")
    if kind is not Kind.CONFIG_SECTION:
        try:
            impl = spec.load()
        except Exception as exc:
            problems.append(f"{label}: implementation {spec.impl!r} does not import: {exc}")
        else:
            problems += [f"{label}: {p}" for p in check_impl(kind, impl)]
    cls = spec.config_cls
    if cls is None:
        return problems
    if not attrs.has(cls):
        return [*problems, f"{label}: config_cls is not an attrs class"]
    for field in attrs.fields(cls):
        if not field.metadata.get("help"):
            problems.append(f"{label}: config field {field.name!r} has no help text")
    try:
        defaults = cls()
    except TypeError:
        return [*problems, f"{label}: config_cls() must work with defaults only"]
    return problems + [f"{label}: {p}" for p in _default_problems(cls, defaults)]


def _default_problems(cls: type, defaults: Any) -> list[str]:
    """Defaults whose type the loader would reject, or that fail their own field's check."""
    from skyrl_core.config.loader import check_fields, structure
    from skyrl_core.config.render import to_dict

    out = []
    try:
        data = to_dict(defaults)
    except Exception as exc:  # e.g. a default that is no TOML value at all
        return [f"config defaults cannot be written as TOML: {type(exc).__name__}: {exc}"]
    _, issues = structure({k: v for k, v in data.items() if v is not None}, cls)
    out += [f"config default {issue}" for issue in issues]
    if not issues:
        out += [f"config default {issue}" for issue in check_fields(defaults)]
    return out


def _torch_free(plugin_module: str, config_modules: list[str]) -> list[str]:
    """Modules imported at start-up (the hook module, config classes) must not import torch."""
    names = [m for m in [plugin_module, *config_modules] if m and m != "__main__" and _importable(m)]
    if not names:
        return []
    code = (
        "import importlib, sys\n"
        "out = []\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        "    if 'torch' in sys.modules:\n"
        "        out.append(name)\n"
        "        break\n"
        "print(','.join(out))\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return [f"importing {', '.join(names)} in a fresh interpreter failed: {last}"]
    culprit = proc.stdout.strip()
    if culprit:
        return [
            f"{culprit} imports torch: the hook module and config classes are imported at start-up, so import "
            "torch only inside the implementations (lazy 'module:attr' specs)"
        ]
    return []


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


@contextlib.contextmanager
def module_from_file(path: Path, name: str) -> Iterator[types.ModuleType]:
    """Import the Python file at ``path`` (a bench script, another folder's test module) as module
    ``name``, registered in ``sys.modules`` while the block runs (dataclasses and pickling need it)."""
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path} as a module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(name, None)
