"""Whether another distribution took the ``skyrl`` command or the ``skyrl_core`` module.

skyrl-core installs the package ``skyrl_core`` and the console script ``skyrl``. NovaSky-AI's
SkyRL is published on PyPI as the distribution ``skyrl`` (module ``skyrl``, no console script
in 0.3.0), so the two coexist today (docs/coexisting_with_skyrl.md). Should any distribution
declare a ``skyrl`` command too, pip lets the one installed last overwrite the other's script
without a word; ``skyrl doctor`` reports it with ``clashes()``.
"""

from __future__ import annotations

import importlib.metadata as md
import sys
from pathlib import Path

OURS = "skyrl-core"
COMMAND = "skyrl"
MODULE = "skyrl_core"
OUR_TARGET = "skyrl_core.cli"
REINSTALL = "pip install --force-reinstall --no-deps skyrl-core"


def _norm(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _describe(dist: md.Distribution) -> str:
    return f"{dist.metadata['Name']} {dist.version}"


def command_providers() -> list[tuple[str, str]]:
    """(distribution and version, target) of every installed ``skyrl`` console script declaration."""
    out = []
    for dist in md.distributions():
        for ep in dist.entry_points:
            if ep.group == "console_scripts" and ep.name == COMMAND:
                out.append((_describe(dist), ep.value))
    return sorted(set(out))


def clashes(script_dir: Path | None = None) -> tuple[list[str], list[str]]:
    """``(lines, problems)`` about the ``skyrl`` command and the ``skyrl_core`` module.

    ``script_dir`` is where the environment's scripts live (default: beside ``sys.executable``).
    """
    lines: list[str] = []
    problems: list[str] = []
    rivals = [(who, target) for who, target in command_providers() if _norm(who.split()[0]) != OURS]
    for who, target in rivals:
        problems.append(
            f"the distribution {who} also installs a `{COMMAND}` command (running {target}); pip lets the one "
            f"installed last overwrite the other's script. Run skyrl's commands as `python -m {OUR_TARGET}`, "
            f"or reinstall skyrl-core last (`{REINSTALL}`) to get its `{COMMAND}` back"
        )
    script = (script_dir or Path(sys.executable).parent) / COMMAND
    try:
        text = script.read_text(errors="replace") if script.is_file() and script.stat().st_size < 65536 else ""
    except OSError:
        text = ""
    if text and OUR_TARGET not in text:
        imports = [ln.strip() for ln in text.splitlines() if ln.strip().startswith(("from ", "import "))]
        runs = next((ln for ln in imports if ln not in ("import sys", "import re")), "?")
        problems.append(
            f"{script} is not skyrl-core's `{COMMAND}` command (it runs `{runs}`): another distribution replaced "
            f"it. Reinstall skyrl-core (`{REINSTALL}`) or run `python -m {OUR_TARGET}`"
        )
    owners = sorted({d for d in md.packages_distributions().get(MODULE, []) if _norm(d) != OURS})
    for owner in owners:
        problems.append(
            f"the module {MODULE} is also installed by the distribution {owner}: their files overwrite skyrl-core's. "
            f"Uninstall {owner}, then reinstall skyrl-core (`{REINSTALL}`)"
        )
    try:
        theirs = md.distribution("skyrl")
    except md.PackageNotFoundError:
        theirs = None
    if theirs is not None:
        lines.append(
            f"also here     {_describe(theirs)} (PyPI's `skyrl` is NovaSky-AI's SkyRL: module `skyrl`, no "
            "clash with skyrl-core's command or modules; see docs/coexisting_with_skyrl.md)"
        )
    return lines, problems
