"""Under scripts/test.sh (SKYRL_WHEEL_CHECK=1) the tests must run against the installed wheels.

A checkout on ``sys.path`` (editable install, a root conftest.py, ``python -m pytest`` from
the repo root) would hide a broken wheel: a module missing from the package list, a
missing entry point. These tests fail when that happens.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import json
import os
import sysconfig
from pathlib import Path

import pytest
import tomllib
from foundation_support import REPO

SITE_PACKAGES = Path(sysconfig.get_paths()["purelib"]).resolve()
PROJECTS = sorted(
    [REPO / "pyproject.toml", *REPO.glob("skyrl_*/pyproject.toml"), *REPO.glob("plugins/*/pyproject.toml")]
)

pytestmark = pytest.mark.skipif(
    os.environ.get("SKYRL_WHEEL_CHECK") != "1",
    reason="set SKYRL_WHEEL_CHECK=1 to check wheel installs (scripts/test.sh does)",
)


def _packages(pyproject: Path) -> tuple[str, list[str]]:
    data = tomllib.loads(pyproject.read_text())
    includes = data["tool"]["setuptools"]["packages"]["find"]["include"]
    return data["project"]["name"], [inc.rstrip("*") for inc in includes]


@pytest.mark.parametrize(
    "pyproject", PROJECTS, ids=[p.parent.name if p.parent != REPO else "skyrl-core" for p in PROJECTS]
)
def test_distribution_is_installed_from_a_wheel(pyproject):
    name, packages = _packages(pyproject)
    dist = md.distribution(name)
    direct = json.loads(dist.read_text("direct_url.json") or "{}")
    assert not direct.get("dir_info", {}).get("editable"), (
        f"{name} is an editable install; scripts/test.sh installs wheels"
    )
    for package in packages:
        module = importlib.import_module(package)
        location = Path(module.__file__).resolve()
        assert SITE_PACKAGES in location.parents, f"{package} imported from {location}, not from {SITE_PACKAGES}"
    declared = tomllib.loads(pyproject.read_text())["project"].get("entry-points", {}).get("skyrl", {})
    installed = {ep.name: ep.value for ep in dist.entry_points if ep.group == "skyrl"}
    assert installed == declared, f"{name}: entry points in the wheel differ from pyproject.toml"
