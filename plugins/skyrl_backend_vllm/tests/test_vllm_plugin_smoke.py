"""Smoke test of skyrl-backend-vllm: with skyrl-core and this plugin installed, it loads through its entry point.

Through the testing kit's ``PluginSmoke``: runs the real `skyrl` command
with `SKYRL_LOAD_PLUGINS=skyrl-backend-vllm`, so other installed plugins
cannot hide a problem (or cause one), and validates the README's TOML snippets.
"""

from __future__ import annotations

from pathlib import Path

from skyrl_core.testing.smoke import PluginSmoke

SMOKE = PluginSmoke("skyrl-backend-vllm", Path(__file__).resolve().parents[1])


def test_skyrl_plugins_lists_it_as_ok():
    SMOKE.assert_loads({'backend': ['vllm', 'vllm-remote']})


def test_readme_toml_snippet():
    assert SMOKE.readme_snippets(), f"{SMOKE.readme} has no TOML snippet"
    configs = SMOKE.readme_runs()
    assert len(configs) == 2, f"{SMOKE.readme}: expected a run snippet for each backend (with [model])"
    assert {cfg.backend.name for cfg in configs} <= {"vllm", "vllm-remote"}
    assert "Status: in progress" not in SMOKE.readme.read_text()
