"""The testing kit, for skyrl's own tests and for plugin authors (part of the public surface).

* ``fresh_registry(*plugins)``: a registry with the builtins plus the given plugin modules.
* ``check_plugin(module)``: validate a plugin's hooks, specs and contracts; returns the problems.
* ``write_tiny_config``, ``read_metrics``, ``run_skyrl``, ``train``: a tiny real run, the real
  CLI and loop (``skyrl_core.testing.runs``); ``generation_run`` and ``collect_rollouts``: a run
  that only collects rollouts, for testing rollout and reward hooks.
* ``skyrl_core.testing.conformance``: the test suite every inference backend runs.
* ``skyrl_core.testing.strategy_conformance``: the test suite every training strategy runs.
* ``skyrl_core.testing.smoke``: ``PluginSmoke``, the smoke test every plugin distribution runs.
* ``skyrl_core.testing.lora``: oracles for LoRA weight sync.
* ``skyrl_core.testing.ray``: the session's Ray cluster and backends in Ray actors.
* ``skyrl_core.testing.pytest_plugin``: fixtures (``tiny_model_dir``, ``ray_cluster``, ...),
  loaded automatically by pytest.
"""

from skyrl_core.testing.helpers import check_plugin, fresh_registry
from skyrl_core.testing.runs import (
    cli_parser,
    collect_rollouts,
    generation_run,
    read_metrics,
    run_skyrl,
    train,
    write_tiny_config,
)

__all__ = [
    "check_plugin",
    "cli_parser",
    "collect_rollouts",
    "fresh_registry",
    "generation_run",
    "read_metrics",
    "run_skyrl",
    "train",
    "write_tiny_config",
]
