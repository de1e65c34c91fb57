"""The hook specifications: every way a plugin can extend skyrl.

A plugin is a module with functions decorated by ``skyrl_core.hookimpl`` whose names match
the specs below. It is found through the ``skyrl`` entry-point group (see
``skyrl_core.plugins``). A hook implementation may accept any subset of a spec's
arguments, in any order; arguments are passed by name.

Registration hooks (``skyrl_register_*``) take no arguments and return a list of
``ComponentSpec``; they are called once when a registry is built. The other hooks are
called by the training loop at fixed points, documented on each.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable

    from skyrl_core.config.schema import RunConfig
    from skyrl_core.errors import ConfigIssue
    from skyrl_core.rollout import RolloutBatch
    from skyrl_core.run import RunContext
    from skyrl_core.specs import ComponentSpec

hookspec = pluggy.HookspecMarker("skyrl")


# -- registration: components chosen by name from TOML ------------------------------------


@hookspec
def skyrl_register_backends() -> list[ComponentSpec]:
    """Inference backends, selected by ``[backend] name``.

    Called once when a registry is built. Return specs whose ``impl`` is a class
    implementing ``skyrl_core.protocols.InferenceBackend``; it is constructed as
    ``impl(config, model=ModelConfig, seed=int)`` (see ``skyrl_core.protocols.backend``).
    """


@hookspec
def skyrl_register_strategies() -> list[ComponentSpec]:
    """Training strategies, selected by ``[strategy] name``.

    Called once when a registry is built. Return specs whose ``impl`` is a class
    implementing ``skyrl_core.protocols.TrainingStrategy``.
    """


@hookspec
def skyrl_register_advantage_estimators() -> list[ComponentSpec]:
    """Advantage estimators, selected by ``[algorithm.advantage] name``.

    Called once when a registry is built. Return specs whose ``impl`` is a function
    ``(inp: AdvantageInput, config) -> AdvantageOutput`` (``skyrl_core.protocols.algorithms``).
    """


@hookspec
def skyrl_register_policy_losses() -> list[ComponentSpec]:
    """Policy losses, selected by ``[algorithm.policy_loss] name``.

    Called once when a registry is built. Return specs whose ``impl`` is a function
    ``(inp: PolicyLossInput, config) -> PolicyLossOutput`` (``skyrl_core.protocols.algorithms``).
    """


@hookspec
def skyrl_register_environments() -> list[ComponentSpec]:
    """Environments, selected per dataset row by its ``env_class`` column.

    Called once when a registry is built. Return specs whose ``impl`` is a class
    implementing ``skyrl_core.protocols.Environment``, constructed once per trajectory as
    ``impl(config, extras)``; its options come from ``[environments.<name>]``.
    """


@hookspec
def skyrl_register_dataset_preparers() -> list[ComponentSpec]:
    """Dataset preparers, run by ``skyrl data prepare NAME --out DIR``.

    Called once when a registry is built. Return specs whose ``impl`` is a function
    ``(config, out_dir: pathlib.Path) -> dict[str, pathlib.Path]`` (split name to file);
    ``config`` is built from ``--key value`` command-line options.
    """


@hookspec
def skyrl_register_trackers() -> list[ComponentSpec]:
    """Metric trackers, selected by ``[tracking] trackers = [...]``.

    Called once when a registry is built. Return specs whose ``impl`` is a class
    implementing ``skyrl_core.protocols.Tracker``, constructed as
    ``impl(config, run_dir=..., run_config={"name": ..., "first_step": ...})`` (``first_step``:
    where a resumed run starts logging again; see ``skyrl_core.protocols.tracker``).
    """


@hookspec
def skyrl_register_config_sections() -> list[ComponentSpec]:
    """Extra top-level TOML sections owned by a plugin (e.g. ``[dapo]``).

    Called once when a registry is built. The spec's ``name`` is the section name and
    ``config_cls`` validates it; ``impl`` is unused (pass None). The validated object is
    available to the plugin's other hooks as ``run.config.sections[name]``; a section that
    is absent from the TOML is absent from that mapping.
    """


# -- config hooks, called each time a run's TOML is loaded ----------------------------------


@hookspec
def skyrl_config_defaults(raw: dict[str, Any]) -> dict[str, Any] | None:
    """Defaults that a run's TOML implies for other tables: presets, e.g. ``[dapo]`` implying
    ``[algorithm.policy_loss] eps_high = 0.28``.

    Called each time a config is loaded, after command-line overrides and before validation,
    with a copy of the parsed TOML document (changing it has no effect). Return a nested dict
    of TOML values, or None. Each value applies only where the document leaves that key unset:
    what the user writes always wins. Two plugins giving different values for one key is a
    config error naming both. Resolved values show in ``skyrl config show`` and the run's
    ``config.toml``.
    """


@hookspec
def skyrl_check_config(config: RunConfig) -> list[ConfigIssue] | None:
    """Cross-table checks of a validated config, e.g. ``[dapo]`` against ``[algorithm]``.

    Called each time a config is loaded, after every table was validated on its own. Return
    ``skyrl_core.errors.ConfigIssue(key_path, message)`` items, reported together with every
    other error of the file, or None. A component table that failed its own validation has
    ``config = None``; a plugin section that failed is absent from ``config.sections``.
    """


# -- pipeline and event hooks, called by the training loop ---------------------------------


@hookspec
def skyrl_run_start(run: RunContext) -> None:
    """Called once after every component is built, before the first step (also on resume)."""


@hookspec(firstresult=True)
def skyrl_collect_rollouts(
    run: RunContext, sample: Callable[[int], RolloutBatch], num_prompts: int
) -> RolloutBatch | None:
    """Collect one step's rollouts; the first implementation that returns a batch wins.

    ``sample(k)`` draws the next ``k`` prompts from the data loader and returns their
    rollouts (``samples_per_prompt`` each, rewards already shaped). Return a batch of
    exactly ``num_prompts`` groups (e.g. after dropping uninformative groups and sampling
    more), or None to leave collection to the next implementation (the default samples
    ``num_prompts`` once). Called once per training step.
    """


@hookspec
def skyrl_shape_rewards(run: RunContext, batch: RolloutBatch) -> None:
    """Modify a freshly generated batch in place: rewards, loss masks, metrics.

    Called after every generation round (inside ``sample``), before group filtering and
    before advantages. Use ``batch.metrics`` to report what was changed.
    """


@hookspec
def skyrl_step_end(run: RunContext, step: int, metrics: dict[str, Any]) -> None:
    """Called after each training step, before metrics are logged; may add to ``metrics``."""


@hookspec
def skyrl_run_end(run: RunContext) -> None:
    """Called once when training finishes normally, after the final checkpoint and export."""


@hookspec
def skyrl_add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add sub-commands to the ``skyrl`` CLI.

    Called while the argument parser is built. Use ``subparsers.add_parser(...)`` and
    ``set_defaults(func=callable)``; the callable receives the parsed ``argparse.Namespace``
    and returns an exit code.
    """
