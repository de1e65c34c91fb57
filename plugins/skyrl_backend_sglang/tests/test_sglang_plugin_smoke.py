"""Smoke test of skyrl-backend-sglang: with skyrl-core and this plugin installed, it loads through its entry point.

Through the testing kit's ``PluginSmoke``: runs the real `skyrl` command
with `SKYRL_LOAD_PLUGINS=skyrl-backend-sglang`, so other installed plugins
cannot hide a problem (or cause one), and checks the README's TOML snippets and the examples.
"""

from __future__ import annotations

from pathlib import Path

import tomllib

from skyrl_core.api import build_registry, parse_config
from skyrl_core.testing.smoke import PluginSmoke

SMOKE = PluginSmoke("skyrl-backend-sglang", Path(__file__).resolve().parents[1])


def test_skyrl_plugins_lists_it_as_ok():
    SMOKE.assert_loads({'backend': ['sglang']})


def test_readme_toml_snippet():
    assert SMOKE.readme_snippets(), f"{SMOKE.readme} has no TOML snippet"
    assert "in progress" not in SMOKE.readme.read_text(), f"{SMOKE.readme} still says the plugin is in progress"
    assert SMOKE.readme_runs(), f"{SMOKE.readme}: no TOML snippet is a whole run config (with [model])"


def test_examples_validate(monkeypatch):
    """Every TOML under examples/ parses against the registry (the GSM8K recipe also needs skyrl-env-gsm8k)."""
    registry = build_registry()
    examples = sorted((SMOKE.project_dir / "examples").glob("*.toml"))
    assert examples
    have_gsm8k = any(p.distribution == "skyrl-env-gsm8k" and p.status == "ok" for p in registry.plugins)
    checked = 0
    for path in examples:
        raw = tomllib.loads(path.read_text())
        if "gsm8k" in raw.get("environments", {}) and not have_gsm8k:
            continue  # validated where the GSM8K plugin is installed (scripts/test.sh's main venv)
        parse_config(raw, registry=registry, source=str(path))
        checked += 1
    assert checked
