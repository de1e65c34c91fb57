"""``skyrl data prepare NAME --out DIR [--key value ...]``: run a registered dataset preparer.

The ``--key value`` options are read by the type the preparer's config class declares for
them (``skyrl_core.config.overrides.parse_options``: a string option takes ``12`` as ``"12"``)
and validated like a TOML table. A ``ValueError`` or ``TypeError`` the preparer raises is the
preparer rejecting its input: one error naming it and its distribution, exit code 2.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from skyrl_core.blame import INPUT_ERRORS, input_error
from skyrl_core.config.loader import structure
from skyrl_core.config.overrides import parse_options
from skyrl_core.errors import ConfigError, ConfigIssue
from skyrl_core.plugins import Registry, build_registry
from skyrl_core.specs import Kind

__all__ = ["parse_options", "prepare_main", "run_preparer"]


def run_preparer(
    name: str, out_dir: str | Path, options: dict[str, Any], registry: Registry | None = None
) -> dict[str, Path]:
    """Validate ``options`` against the preparer's config class and run it."""
    registry = registry or build_registry()
    comp = registry.get(Kind.DATASET_PREPARER, name, where="skyrl data prepare")
    who = f"the dataset preparer {name!r} of {comp.provider.describe()}"
    cls = comp.spec.config_cls
    if cls is not None:
        config, issues = structure(options, cls, (), owner=who)
        if issues:
            raise ConfigError(issues, f"skyrl data prepare {name}")
    else:
        if options:
            raise ConfigError([ConfigIssue("", f"preparer {name!r} takes no options")], "command line")
        config = None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prepare = comp.load()
    try:
        return prepare(config, out)
    except INPUT_ERRORS as exc:
        raise input_error(exc, registry, who) from exc


def prepare_main(name: str, out_dir: str, options: Sequence[str], registry: Registry | None = None) -> int:
    """``skyrl data prepare``: print each written split and its file."""
    registry = registry or build_registry()
    comp = registry.get(Kind.DATASET_PREPARER, name, where="skyrl data prepare")
    parsed = parse_options(options, comp.spec.config_cls)
    try:
        files = run_preparer(name, out_dir, parsed, registry)
    except ConfigError as exc:
        # say which command-line option a problem came from, as overrides of a run's TOML do
        issues = [_from_option(issue, parsed) for issue in exc.issues]
        raise ConfigError(issues, exc.source) from exc
    for split, path in files.items():
        print(f"{split}: {path}", file=sys.stdout)
    return 0


def _from_option(issue: ConfigIssue, parsed: dict[str, Any]) -> ConfigIssue:
    key = issue.path.split(".", 1)[0].split("[", 1)[0]
    if key not in parsed:
        return issue
    option = "--" + key.replace("_", "-")
    return attrs.evolve(issue, message=f"{issue.message} (from the command-line option {option})")
