"""Smoke test of skyrl-algo-dapo: with skyrl-core and this plugin installed, it loads through its entry point.

Runs the real `skyrl` command with `SKYRL_LOAD_PLUGINS=skyrl-algo-dapo`, so other installed plugins
cannot hide a problem (or cause one), and checks the README's TOML snippets, options and metrics.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import attrs
import tomllib

from skyrl_core.api import build_registry, parse_config

DIST = "skyrl-algo-dapo"
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


def test_readme_toml_snippets_validate(monkeypatch):
    monkeypatch.setenv("SKYRL_LOAD_PLUGINS", DIST)
    registry = build_registry()
    found = [p for p in registry.plugins if p.distribution == DIST]
    assert found, f"{DIST} is not installed in this environment: pip install {PACKAGE_DIR}"
    assert found[0].components == {"config_section": ["dapo"]}
    readme = README.read_text()
    snippets = re.findall(r"^```toml\n(.*?)^```", readme, flags=re.S | re.M)
    assert len(snippets) >= 2, f"{README}: expected the one-table and the tuned TOML snippets"
    for i, snippet in enumerate(snippets):
        assert "[model]" in snippet, f"{README} snippet {i}: every snippet is a whole run config (with [model])"
        cfg = parse_config(tomllib.loads(snippet), registry=registry, source=f"{README.name} snippet {i}")
        assert "dapo" in cfg.sections


def test_readme_documents_every_option_and_metric():
    from skyrl_algo_dapo.config import DapoConfig

    readme = README.read_text()
    missing = [f.name for f in attrs.fields(DapoConfig) if f"`{f.name}`" not in readme]
    assert not missing, f"{README} does not mention these [dapo] options: {missing}"
    for metric in ("dapo/filter_rate", "dapo/sampling_rounds", "dapo/overlong_filtered_frac"):
        assert f"`{metric}`" in readme
