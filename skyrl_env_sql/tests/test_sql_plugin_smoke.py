"""Smoke test of skyrl-env-sql: with skyrl-core and this plugin installed, it loads through its entry point.

Runs the real `skyrl` command with `SKYRL_LOAD_PLUGINS=skyrl-env-sql`, so other installed plugins
cannot hide a problem (or cause one), and checks the README's TOML snippet.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import tomllib

from skyrl_core.api import build_registry, parse_config

DIST = "skyrl-env-sql"
PACKAGE_DIR = Path(__file__).resolve().parents[1]
README = PACKAGE_DIR / "README.md"


def plugins_json() -> dict[str, dict]:
    script = Path(sys.executable).parent / "skyrl"
    env = dict(os.environ, SKYRL_LOAD_PLUGINS=DIST)
    proc = subprocess.run([str(script), "plugins", "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"skyrl plugins failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return {entry["distribution"]: entry for entry in json.loads(proc.stdout)}


def test_skyrl_plugins_lists_it_as_ok():
    entries = plugins_json()
    assert DIST in entries, f"{DIST} is not installed in this environment: pip install {PACKAGE_DIR}"
    entry = entries[DIST]
    assert entry["status"] == "ok", entry["error"]
    version = tomllib.loads((PACKAGE_DIR / "pyproject.toml").read_text())["project"]["version"]
    assert entry["version"] == version


def test_readme_toml_snippet(monkeypatch):
    monkeypatch.setenv("SKYRL_LOAD_PLUGINS", DIST)
    registry = build_registry()
    found = [p for p in registry.plugins if p.distribution == DIST]
    assert found, f"{DIST} is not installed in this environment: pip install {PACKAGE_DIR}"
    info = found[0]
    readme = README.read_text()
    snippets = re.findall(r"^```toml\n(.*?)^```", readme, flags=re.S | re.M)
    assert snippets, f"{README} has no TOML snippet"
    if not info.components:
        # Nothing registered yet: the README must say so instead of promising the snippet works.
        assert "Status: in progress" in readme
        return
    runs = [s for s in snippets if "[model]" in s]
    assert runs, f"{README}: no TOML snippet is a whole run config (with [model])"
    for snippet in runs:
        parse_config(tomllib.loads(snippet), registry=registry, source=f"{README.name} snippet")
