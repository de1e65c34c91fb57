"""Every examples/**/*.toml validates (with the in-repo plugins, installed or not)."""

from __future__ import annotations

import importlib
import os
import sys

import pytest
import tomllib
from foundation_support import REPO

from skyrl_core.config.loader import load_config
from skyrl_core.plugins import build_registry

EXAMPLES_DIR = REPO / "examples"
EXAMPLES = sorted(EXAMPLES_DIR.rglob("*.toml"))
PLUGIN_PROJECTS = sorted([*REPO.glob("skyrl_*/pyproject.toml"), *REPO.glob("plugins/*/pyproject.toml")])


@pytest.fixture
def registry(monkeypatch):
    """Installed plugins, plus the repo's plugin packages that are not installed (imported from source).

    Under scripts/test.sh (SKYRL_WHEEL_CHECK=1) every repo plugin must be installed.
    """
    monkeypatch.delenv("SKYRL_LOAD_PLUGINS", raising=False)
    discovered = {p.distribution for p in build_registry().plugins}
    extra = []
    for pyproject in PLUGIN_PROJECTS:
        project = tomllib.loads(pyproject.read_text())["project"]
        if project["name"] in discovered:
            continue
        assert os.environ.get("SKYRL_WHEEL_CHECK") != "1", f"{project['name']} is not installed"
        monkeypatch.syspath_prepend(str(pyproject.parent))
        for value in project["entry-points"]["skyrl"].values():
            extra.append((project["name"], importlib.import_module(value)))
    registry = build_registry(extra_plugins=extra)
    assert registry.conflicts == []
    yield registry
    for _, module in extra:
        sys.modules.pop(module.__name__, None)


def test_plugin_packages_were_found():
    names = {p.parent.name for p in PLUGIN_PROJECTS}
    assert {
        "skyrl_env_gsm8k",
        "skyrl_env_sql",
        "skyrl_algo_dapo",
        "skyrl_backend_vllm",
        "skyrl_backend_sglang",
    } <= names


@pytest.mark.parametrize(
    "path", EXAMPLES or [None], ids=[str(p.relative_to(EXAMPLES_DIR)) for p in EXAMPLES] or ["no-examples-yet"]
)
def test_example_validates(path, registry):
    if path is None:
        # The glob ran on the right folder and found nothing: nothing to validate yet.
        assert (REPO / "pyproject.toml").exists()
        assert not EXAMPLES_DIR.exists() or not list(EXAMPLES_DIR.rglob("*.toml"))
        return
    cfg = load_config(path, registry=registry)
    assert cfg.model.path, f"{path.name}: no model path"
