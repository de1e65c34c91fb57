"""Smoke test of skyrl-tracker-mlflow: with skyrl-core and this plugin installed, it loads through its entry point.

Through the testing kit's ``PluginSmoke``: runs the real `skyrl` command with
`SKYRL_LOAD_PLUGINS=skyrl-tracker-mlflow`, so other installed plugins cannot hide a problem (or
cause one), checks the plugin module with ``check_plugin`` and validates the README's TOML snippet.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import skyrl_tracker_mlflow.plugin

from skyrl_core.api import ConfigError, build_registry, parse_config
from skyrl_core.testing import check_plugin
from skyrl_core.testing.smoke import PluginSmoke

SMOKE = PluginSmoke("skyrl-tracker-mlflow", Path(__file__).resolve().parents[1])


def test_skyrl_plugins_lists_it_as_ok():
    SMOKE.assert_loads({"tracker": ["mlflow"]})


def test_the_plugin_module_passes_check_plugin():
    assert check_plugin(skyrl_tracker_mlflow.plugin) == []


def test_readme_toml_snippet():
    (cfg,) = SMOKE.readme_runs()
    options = cfg.tracking.options["mlflow"]
    assert cfg.tracking.trackers == ["console", "jsonl", "mlflow"]
    assert (options.tracking_uri, options.experiment, options.tags) == ("mlruns", "skyrl-gsm8k", {"team": "rl"})


def test_a_wrong_option_is_a_config_error_with_a_suggestion():
    raw = {"model": {"path": "m"}, "tracking": {"trackers": ["mlflow"], "mlflow": {"experment": "x", "tags": ["a"]}}}
    with pytest.raises(ConfigError) as info:
        parse_config(raw, registry=build_registry(only=["skyrl-tracker-mlflow"]))
    text = str(info.value)
    assert "tracking.mlflow.experment" in text and "'experiment'" in text and "tracking.mlflow.tags" in text
