"""Smoke test of skyrl-algo-dapo: with skyrl-core and this plugin installed, it loads through its entry point.

Through the testing kit's ``PluginSmoke``: runs the real `skyrl` command
with `SKYRL_LOAD_PLUGINS=skyrl-algo-dapo`, so other installed plugins
cannot hide a problem (or cause one), and checks the README's TOML snippets, options and metrics.
"""

from __future__ import annotations

from pathlib import Path

import attrs

from skyrl_core.testing.smoke import PluginSmoke

SMOKE = PluginSmoke("skyrl-algo-dapo", Path(__file__).resolve().parents[1])


def test_skyrl_plugins_lists_it_as_ok():
    SMOKE.assert_loads({'config_section': ['dapo']})


def test_readme_toml_snippets_validate():
    configs = SMOKE.readme_runs()
    snippets = SMOKE.readme_snippets()
    assert len(snippets) >= 2, f"{SMOKE.readme}: expected the one-table and the tuned TOML snippets"
    assert len(configs) == len(snippets), f"{SMOKE.readme}: every snippet is a whole run config (with [model])"
    assert all("dapo" in cfg.sections for cfg in configs)


def test_readme_documents_every_option_and_metric():
    from skyrl_algo_dapo.config import DapoConfig

    readme = SMOKE.readme.read_text()
    missing = [f.name for f in attrs.fields(DapoConfig) if f"`{f.name}`" not in readme]
    assert not missing, f"{SMOKE.readme} does not mention these [dapo] options: {missing}"
    for metric in ("dapo/filter_rate", "dapo/sampling_rounds", "dapo/overlong_filtered_frac"):
        assert f"`{metric}`" in readme
