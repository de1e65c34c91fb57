"""Smoke test of skyrl-env-sql: with skyrl-core and this plugin installed, it loads through its entry point.

Through the testing kit's ``PluginSmoke``: runs the real `skyrl` command
with `SKYRL_LOAD_PLUGINS=skyrl-env-sql`, so other installed plugins
cannot hide a problem (or cause one), and checks the README's TOML snippet.
"""

from __future__ import annotations

from pathlib import Path

from skyrl_core.testing.smoke import PluginSmoke

SMOKE = PluginSmoke("skyrl-env-sql", Path(__file__).resolve().parents[1])


def test_skyrl_plugins_lists_it_as_ok():
    SMOKE.assert_loads({'dataset_preparer': ['text2sql', 'text2sql_synthetic'], 'environment': ['text2sql']})


def test_readme_toml_snippet():
    assert SMOKE.readme_snippets(), f"{SMOKE.readme} has no TOML snippet"
    assert SMOKE.readme_runs(), f"{SMOKE.readme}: no TOML snippet is a whole run config (with [model])"
