"""``skyrl data prepare NAME --out DIR [--key value ...]``: run a registered dataset preparer."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from skyrl_core.config.loader import parse_override, structure
from skyrl_core.errors import ConfigError, ConfigIssue
from skyrl_core.plugins import Registry, build_registry
from skyrl_core.specs import Kind


def parse_options(options: Sequence[str]) -> dict[str, Any]:
    """``['--rows', '10', '--ops=+,-']`` to ``{'rows': 10, 'ops': '+,-'}`` (values read as TOML)."""
    out: dict[str, Any] = {}
    items = list(options)
    i = 0
    while i < len(items):
        item = items[i]
        if not item.startswith("--"):
            raise ConfigError([ConfigIssue("", f"expected --key value, got {item!r}")], "command line")
        key = item[2:]
        if "=" in key:
            key, _, value = key.partition("=")
        elif i + 1 < len(items) and not items[i + 1].startswith("--"):
            value = items[i + 1]
            i += 1
        else:
            value = "true"
        _, parsed = parse_override(f"{key.replace('-', '_')}={value}")
        out[key.replace("-", "_")] = parsed
        i += 1
    return out


def run_preparer(
    name: str, out_dir: str | Path, options: dict[str, Any], registry: Registry | None = None
) -> dict[str, Path]:
    """Validate ``options`` against the preparer's config class and run it."""
    registry = registry or build_registry()
    comp = registry.get(Kind.DATASET_PREPARER, name, where="skyrl data prepare")
    cls = comp.spec.config_cls
    if cls is not None:
        config, issues = structure(options, cls, ())
        if issues:
            raise ConfigError(issues, f"skyrl data prepare {name}")
    else:
        if options:
            raise ConfigError([ConfigIssue("", f"preparer {name!r} takes no options")], "command line")
        config = None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return comp.load()(config, out)


def prepare_main(name: str, out_dir: str, options: Sequence[str], registry: Registry | None = None) -> int:
    """``skyrl data prepare``: print each written split and its file."""
    files = run_preparer(name, out_dir, parse_options(options), registry)
    for split, path in files.items():
        print(f"{split}: {path}", file=sys.stdout)
    return 0
