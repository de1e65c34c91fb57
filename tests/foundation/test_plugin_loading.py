"""Guarded plugin loading through the `skyrl` entry-point group (skyrl_core.plugins)."""

from __future__ import annotations

import sys

import pytest

from skyrl_core import hookimpl
from skyrl_core.errors import PluginError
from skyrl_core.plugins import BUILTIN_NAME, UnknownComponentError, build_registry
from skyrl_core.specs import ComponentSpec, Kind


def plugin(registry, distribution):
    """The PluginInfo of ``distribution`` (fails when it was not discovered)."""
    found = [p for p in registry.plugins if p.distribution == distribution]
    assert found, f"{distribution} not discovered; plugins: {[p.distribution for p in registry.plugins]}"
    return found[0]


def test_entry_point_plugin_loads_with_distribution_version_and_components(use_dists):
    use_dists("everything")
    registry = build_registry()
    info = plugin(registry, "skyrl-test-everything")
    assert (info.status, info.version, info.module) == ("ok", "1.0.0", "skyrl_test_everything.plugin")
    assert info.components == {
        "backend": ["t_backend"],
        "strategy": ["t_strategy"],
        "advantage_estimator": ["t_adv"],
        "policy_loss": ["t_loss"],
        "environment": ["t_env"],
        "dataset_preparer": ["t_prep"],
        "tracker": ["t_tracker"],
        "config_section": ["t_section"],
    }
    comp = registry.get(Kind.ENVIRONMENT, "t_env")
    assert comp.provider is info
    # builtins come through the same hooks and are listed first
    assert registry.plugins[0].distribution == BUILTIN_NAME
    assert registry.get(Kind.TRACKER, "jsonl").provider.distribution == BUILTIN_NAME


def test_lazy_implementation_is_imported_only_when_loaded(use_dists):
    use_dists("everything")
    registry = build_registry()
    assert "skyrl_test_everything.components" not in sys.modules
    env_cls = registry.get(Kind.ENVIRONMENT, "t_env").load()
    assert "skyrl_test_everything.components" in sys.modules
    env = env_cls(registry.get(Kind.ENVIRONMENT, "t_env").spec.config_cls(target="7"), {})
    assert env.step("it is 7").reward == 1.0


def test_plugin_that_raises_on_import_is_recorded_and_others_still_load(use_dists):
    use_dists("broken", "everything")
    registry = build_registry()
    broken = plugin(registry, "skyrl-test-broken")
    assert broken.status == "failed"
    assert broken.version == "0.3.1"
    assert "ModuleNotFoundError" in broken.error and "skyrl_test_missing_dependency" in broken.error
    assert "Traceback" in broken.detail  # the full chain is kept for `skyrl doctor` / debugging
    assert broken.components == {}
    assert plugin(registry, "skyrl-test-everything").status == "ok"
    assert registry.failed() == [broken]
    # an unknown name mentions the failed plugin, since it may be the one that provides it
    with pytest.raises(UnknownComponentError) as exc:
        registry.get(Kind.ENVIRONMENT, "broken_env", where="[environments.broken_env]")
    msg = str(exc.value)
    assert msg.startswith("[environments.broken_env]: no environment named 'broken_env'.")
    assert "t_env (skyrl-test-everything)" in msg
    assert "skyrl-test-broken 0.3.1" in msg and "No module named 'skyrl_test_missing_dependency'" in msg


def test_two_plugins_claiming_one_name_is_an_error_naming_both(use_dists):
    use_dists("dup_a", "dup_b")
    registry = build_registry()
    assert len(registry.conflicts) == 1
    conflict = registry.conflicts[0]
    assert "advantage estimator 't_dup'" in conflict
    assert "skyrl-test-dup-a 0.1.0" in conflict and "skyrl-test-dup-b 0.2.0" in conflict
    # an error only where the name is selected; the rest of the registry works
    with pytest.raises(PluginError) as exc:
        registry.get(Kind.ADVANTAGE_ESTIMATOR, "t_dup")
    assert "skyrl-test-dup-a 0.1.0" in str(exc.value) and "skyrl-test-dup-b 0.2.0" in str(exc.value)
    assert "'skyrl-test-dup-a:t_dup'" in str(exc.value) or "'skyrl-test-dup-b:t_dup'" in str(exc.value)
    assert registry.get(Kind.ADVANTAGE_ESTIMATOR, "grpo").provider.distribution == "skyrl-core"


def test_a_name_qualified_by_its_distribution_picks_one_provider(use_dists):
    use_dists("dup_a", "dup_b")
    registry = build_registry()
    for dist in ("skyrl-test-dup-a", "skyrl-test-dup-b", "Skyrl_Test_Dup_B"):
        found = registry.get(Kind.ADVANTAGE_ESTIMATOR, f"{dist}:t_dup")
        assert found.name == "t_dup" and found.provider.distribution.lower() == dist.lower().replace("_", "-")
    with pytest.raises(UnknownComponentError, match="no advantage estimator 't_dup' from the distribution 'nope'"):
        registry.get(Kind.ADVANTAGE_ESTIMATOR, "nope:t_dup")


def test_exclude_list_leaves_a_plugin_out(use_dists, monkeypatch):
    use_dists("dup_a", "dup_b")
    monkeypatch.setenv("SKYRL_EXCLUDE_PLUGINS", "skyrl-test-dup-a")
    registry = build_registry()
    assert registry.conflicts == []
    assert registry.get(Kind.ADVANTAGE_ESTIMATOR, "t_dup").provider.distribution == "skyrl-test-dup-b"
    assert (plugin(registry, "skyrl-test-dup-a").status, plugin(registry, "skyrl-test-dup-a").error) == (
        "disabled",
        "listed in SKYRL_EXCLUDE_PLUGINS",
    )


def test_allow_list_resolves_the_conflict(use_dists, monkeypatch):
    use_dists("dup_a", "dup_b")
    monkeypatch.setenv("SKYRL_LOAD_PLUGINS", "skyrl-test-dup-b")
    registry = build_registry()
    assert registry.conflicts == []
    assert registry.get(Kind.ADVANTAGE_ESTIMATOR, "t_dup").provider.distribution == "skyrl-test-dup-b"
    assert plugin(registry, "skyrl-test-dup-a").status == "disabled"


def test_two_distributions_with_one_entry_point_name_are_both_visible(use_dists):
    use_dists("dup_a", "impostor")
    registry = build_registry()
    infos = [p for p in registry.plugins if p.distribution in ("skyrl-test-dup-a", "skyrl-test-impostor")]
    assert sorted(p.status for p in infos) == ["failed", "ok"]
    failed = next(p for p in infos if p.status == "failed")
    loaded = next(p for p in infos if p.status == "ok")
    assert "entry point name 'skyrl-test-dup-a' is also used by" in failed.error
    assert f"{loaded.describe()}, which was loaded instead" in failed.error  # says plainly which one loaded


def test_misspelled_hook_name_fails_the_plugin_with_did_you_mean(use_dists):
    use_dists("misspelled", "everything")
    registry = build_registry()
    info = plugin(registry, "skyrl-test-misspelled")
    assert info.status == "failed"
    assert "'skyrl_register_enviroments'" in info.error
    assert "Did you mean 'skyrl_register_environments'?" in info.error
    assert "typo_env" not in registry.names(Kind.ENVIRONMENT)
    assert plugin(registry, "skyrl-test-everything").status == "ok"


def test_hook_argument_missing_from_the_spec_fails_the_plugin(use_dists):
    use_dists("badarg", "everything")
    registry = build_registry()
    info = plugin(registry, "skyrl-test-badarg")
    assert info.status == "failed"
    assert "skyrl_step_end" in info.error and "'logger'" in info.error
    # it was unregistered, so the loop never calls it
    assert all(impl.plugin_name != info.name for impl in registry.hook.skyrl_step_end.get_hookimpls())


def test_allow_list_loads_only_the_named_plugins_and_always_the_builtins(use_dists, monkeypatch):
    use_dists("everything", "broken")
    monkeypatch.setenv("SKYRL_LOAD_PLUGINS", " skyrl-test-everything , ")
    registry = build_registry()
    assert plugin(registry, BUILTIN_NAME).status == "ok"
    assert plugin(registry, "skyrl-test-everything").status == "ok"
    broken = plugin(registry, "skyrl-test-broken")
    assert (broken.status, broken.error) == ("disabled", "not listed in SKYRL_LOAD_PLUGINS")
    assert registry.failed() == []
    monkeypatch.setenv("SKYRL_LOAD_PLUGINS", "")
    registry = build_registry()
    assert {p.status for p in registry.plugins if p.distribution != BUILTIN_NAME} <= {"disabled"}
    assert "t_env" not in registry.names(Kind.ENVIRONMENT)


def test_each_call_builds_an_independent_registry(use_dists):
    use_dists("everything")
    first, second = build_registry(), build_registry()
    assert first is not second and first.pm is not second.pm
    del first.components[Kind.ENVIRONMENT]["t_env"]
    assert "t_env" in second.names(Kind.ENVIRONMENT)
    without = build_registry(entry_points=False)
    assert "t_env" not in without.names(Kind.ENVIRONMENT)


class RaisingPlugin:
    """Registers a tracker, then fails in another registration hook."""

    @hookimpl
    def skyrl_register_trackers(self):
        return [ComponentSpec("half_done", "json:dumps", "Dropped when the plugin fails.")]

    @hookimpl
    def skyrl_register_environments(self):
        raise RuntimeError("cannot list environments")


class MalformedPlugin:
    """Returns something that is not a list of ComponentSpec."""

    @hookimpl
    def skyrl_register_backends(self):
        return {"name": "oops"}


class NonAttrsConfigPlugin:
    """Declares a config class that is not an attrs class."""

    @hookimpl
    def skyrl_register_trackers(self):
        return [ComponentSpec("plain_cfg", "json:dumps", "Bad config class.", dict)]


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (RaisingPlugin(), "skyrl_register_environments() failed: RuntimeError: cannot list environments"),
        (MalformedPlugin(), "must return a list of ComponentSpec, got dict"),
        (NonAttrsConfigPlugin(), "must be an attrs class or None"),
    ],
)
def test_registration_hook_errors_fail_only_that_plugin(obj, expected):
    registry = build_registry(entry_points=False, extra_plugins=[("bad", obj)])
    info = plugin(registry, "bad")
    assert info.status == "failed"
    assert expected in info.error
    assert info.components == {}
    for kind in Kind:
        assert all(c.provider is not info for c in registry.components[kind].values())
    assert plugin(registry, BUILTIN_NAME).status == "ok"


def test_component_that_fails_to_import_names_its_provider():
    class LazyBroken:
        @hookimpl
        def skyrl_register_trackers(self):
            return [ComponentSpec("ghost", "skyrl_no_such_module:Tracker", "Import fails on use.")]

    registry = build_registry(entry_points=False, extra_plugins=[("ghosts", LazyBroken())])
    with pytest.raises(PluginError) as exc:
        registry.get(Kind.TRACKER, "ghost").load()
    assert "tracker 'ghost' from ghosts test could not be imported" in str(exc.value)
    assert "No module named 'skyrl_no_such_module'" in str(exc.value)


def test_unknown_name_suggests_close_matches_and_the_distribution_to_install(everything):
    registry = build_registry(entry_points=False, extra_plugins=[("skyrl-test-everything", everything)])
    msg = registry.unknown_message(Kind.ADVANTAGE_ESTIMATOR, "t_adw")
    assert "Did you mean 't_adv'?" in msg
    assert "Available: " in msg and "t_adv (skyrl-test-everything)" in msg
    msg = registry.unknown_message(Kind.BACKEND, "vllm")
    assert "'vllm' is provided by the distribution skyrl-backend-vllm: `pip install skyrl-backend-vllm`." in msg
