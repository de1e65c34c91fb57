"""skyrl_core.testing: the helpers plugin authors use (fresh_registry, check_plugin, the pytest fixture)."""

from __future__ import annotations

import types

import attrs

from skyrl_core import ComponentSpec, hookimpl
from skyrl_core.config.fields import option
from skyrl_core.plugins import BUILTIN_NAME
from skyrl_core.specs import Kind
from skyrl_core.testing import check_plugin, fresh_registry


def module(name: str, **attrs_: object) -> types.ModuleType:
    mod = types.ModuleType(name)
    for key, value in attrs_.items():
        setattr(mod, key, value)
    return mod


@attrs.define(kw_only=True)
class GoodConfig:
    """Options with help text."""

    size: int = option(3, help="How big.")


@attrs.define(kw_only=True)
class NoHelpConfig:
    """A field without help text."""

    size: int = attrs.field(default=3)


@attrs.define(kw_only=True)
class RequiredConfig:
    """A field without default."""

    path: str = option(help="Where.")


def test_fresh_registry_has_builtins_and_the_given_plugins_only(everything, use_dists):
    use_dists("broken")  # installed-looking, but fresh_registry ignores entry points by default
    registry = fresh_registry(everything)
    assert [p.distribution for p in registry.plugins] == [BUILTIN_NAME, "skyrl_test_everything.plugin"]
    assert "t_env" in registry.names(Kind.ENVIRONMENT)
    assert registry.failed() == []
    bare = fresh_registry(everything, builtins=False)
    assert [p.distribution for p in bare.plugins] == ["skyrl_test_everything.plugin"]
    assert bare.names(Kind.TRACKER) == ["t_tracker"]


def test_check_plugin_accepts_a_correct_plugin(everything):
    assert check_plugin(everything) == []


def test_check_plugin_reports_every_problem():
    def skyrl_register_trackers():  # not decorated: pluggy would silently ignore it
        return []

    @hookimpl
    def skyrl_register_enviroments():
        return []

    @hookimpl
    def skyrl_step_end(run, step, metrics, logger):
        return None

    @hookimpl
    def skyrl_register_backends():
        return [
            ComponentSpec("ghost", "skyrl_no_such_module:Backend", "Lazy import fails.", GoodConfig),
            ComponentSpec("silent", "json:dumps", "", NoHelpConfig),
            ComponentSpec("needy", "json:dumps", "Needs a path.", RequiredConfig),
            "not a spec",
        ]

    @hookimpl
    def skyrl_register_strategies():
        raise RuntimeError("boom")

    problems = check_plugin(
        module(
            "bad_plugin",
            skyrl_register_trackers=skyrl_register_trackers,
            skyrl_register_enviroments=skyrl_register_enviroments,
            skyrl_step_end=skyrl_step_end,
            skyrl_register_backends=skyrl_register_backends,
            skyrl_register_strategies=skyrl_register_strategies,
        )
    )
    text = "\n".join(problems)
    assert "skyrl_register_trackers: not decorated with @skyrl_core.hookimpl" in text
    assert "skyrl_register_enviroments: no such hook. Did you mean 'skyrl_register_environments'?" in text
    assert "skyrl_step_end: arguments ['logger'] are not in the spec" in text
    assert "backend 'ghost': implementation 'skyrl_no_such_module:Backend' does not import" in text
    assert "backend 'silent': empty summary" in text
    assert "backend 'silent': config field 'size' has no help text" in text
    assert "backend 'needy': config_cls() must work with defaults only" in text
    assert "skyrl_register_backends() returned 'not a spec', not a ComponentSpec" in text
    assert "skyrl_register_strategies() raised RuntimeError: boom" in text
    assert len(problems) == 9, text


def test_pytest_fixture_gives_a_registry_with_installed_plugins(skyrl_registry):
    """``skyrl_registry`` comes from skyrl-core's pytest plugin (the ``pytest11`` entry point)."""
    assert skyrl_registry.plugins[0].distribution == BUILTIN_NAME
    assert "jsonl" in skyrl_registry.names(Kind.TRACKER)
