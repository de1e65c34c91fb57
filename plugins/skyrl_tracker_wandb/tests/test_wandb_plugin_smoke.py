"""Smoke test of skyrl-tracker-wandb: with skyrl-core and this plugin installed, it loads through its entry point.

Through the testing kit's ``PluginSmoke``: runs the real `skyrl` command with
`SKYRL_LOAD_PLUGINS=skyrl-tracker-wandb`, so other installed plugins cannot hide a problem (or
cause one), checks the plugin module with ``check_plugin`` and validates the README's TOML snippet.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import skyrl_tracker_wandb.plugin

from skyrl_core.api import ConfigError, build_registry, parse_config
from skyrl_core.testing import check_plugin
from skyrl_core.testing.smoke import PluginSmoke

SMOKE = PluginSmoke("skyrl-tracker-wandb", Path(__file__).resolve().parents[1])


def test_skyrl_plugins_lists_it_as_ok():
    SMOKE.assert_loads({"tracker": ["wandb"]})


def test_the_plugin_module_passes_check_plugin():
    assert check_plugin(skyrl_tracker_wandb.plugin) == []


def test_readme_toml_snippet():
    (cfg,) = SMOKE.readme_runs()
    options = cfg.tracking.options["wandb"]
    assert cfg.tracking.trackers == ["console", "jsonl", "wandb"]
    assert (options.project, options.mode, options.tags) == ("skyrl-gsm8k", "offline", ["grpo", "0.5b"])


def test_a_wrong_option_is_a_config_error_with_a_suggestion():
    raw = {"model": {"path": "m"}, "tracking": {"trackers": ["wandb"], "wandb": {"mode": "ofline", "projct": "x"}}}
    with pytest.raises(ConfigError) as info:
        parse_config(raw, registry=build_registry(only=["skyrl-tracker-wandb"]))
    text = str(info.value)
    assert "tracking.wandb.mode" in text and "'offline'" in text
    assert "tracking.wandb.projct" in text and "'project'" in text
