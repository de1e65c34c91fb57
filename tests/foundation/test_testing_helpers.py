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
    # json.dumps is no backend class: its contract is checked too
    assert "backend 'silent': must be a class (the loop constructs it as `Class(config, model=..., seed=...)`)" in text
    assert "backend 'needy': must be a class" in text
    assert len(problems) == 11, text


@attrs.define(kw_only=True)
class BadDefaultConfig:
    """Defaults that the loader would reject."""

    steps: int = option(1.5, help="An int field with a float default.")


class GoodEnv:
    """Keeps the environment contract."""

    def __init__(self, config, extras):
        self.config = config

    def init(self, prompt):
        return prompt, {}

    def step(self, action):
        return {"reward": 0.0, "done": True}


def test_check_plugin_reports_instead_of_crashing_and_checks_contracts_and_defaults():
    @hookimpl
    def skyrl_register_environments():
        return ComponentSpec("single", GoodEnv, "One spec instead of a list.")  # a common slip

    def one_argument(inp):
        return None

    @hookimpl
    def skyrl_register_policy_losses():
        return [
            ComponentSpec("arity", one_argument, "Takes one argument."),
            ComponentSpec("defaults", "operator:add", "Bad defaults.", BadDefaultConfig),
            ComponentSpec("critic", "operator:add", "Not an estimator.", requires_critic=True),
        ]

    problems = check_plugin(
        module(
            "slips",
            skyrl_register_environments=skyrl_register_environments,
            skyrl_register_policy_losses=skyrl_register_policy_losses,
        )
    )
    text = "\n".join(problems)
    assert "skyrl_register_environments() must return a list of ComponentSpec, got ComponentSpec" in text
    assert "policy loss 'arity': the function `one_argument(inp)` cannot be called as `fn(inp, config)`" in text
    assert "policy loss 'defaults': config default steps: expected an integer, got 1.5 (float)" in text
    assert "policy loss 'critic': requires_critic is for advantage estimators only" in text
    assert len(problems) == 4, text


def test_check_plugin_flags_a_config_module_that_imports_torch(tmp_path, monkeypatch):
    pkg = tmp_path / "torchy_plugin"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "config.py").write_text(
        "import attrs\nimport torch\nfrom skyrl_core.api import option\n\n\n"
        "@attrs.define(kw_only=True)\nclass Cfg:\n    \"\"\"Options.\"\"\"\n\n    n: int = option(1, help=\"N.\")\n"
    )
    (pkg / "plugin.py").write_text(
        "from skyrl_core.api import ComponentSpec, hookimpl\nfrom torchy_plugin.config import Cfg\n\n\n"
        "@hookimpl\ndef skyrl_register_advantage_estimators():\n"
        "    return [ComponentSpec(\"t\", \"torchy_plugin.plugin:est\", \"Est.\", Cfg)]\n\n\n"
        "def est(inp, config):\n    return None\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    problems = check_plugin(importlib.import_module("torchy_plugin.plugin"))
    assert problems == [
        "torchy_plugin.plugin imports torch: the hook module and config classes are imported at start-up, so import "
        "torch only inside the implementations (lazy 'module:attr' specs)"
    ]


def test_pytest_fixture_gives_a_registry_with_installed_plugins(skyrl_registry):
    """``skyrl_registry`` comes from skyrl-core's pytest plugin (the ``pytest11`` entry point)."""
    assert skyrl_registry.plugins[0].distribution == BUILTIN_NAME
    assert "jsonl" in skyrl_registry.names(Kind.TRACKER)
