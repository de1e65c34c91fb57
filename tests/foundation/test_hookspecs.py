"""Every hook spec of skyrl_core/hookspecs.py, exercised through a registry and a test plugin.

``HOOK_TESTS`` maps each hook to the test that exercises it; ``test_every_hook_spec_has_a_test``
fails when a spec is added without one. The registration hooks load the
``skyrl-test-everything`` distribution through its entry point; the pipeline hooks are
called the way the training loop calls them, on a real ``RunContext``.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import tomllib
from foundation_support import BASE_TOML

from skyrl_core import hookimpl, hookspecs
from skyrl_core.config.loader import parse_config
from skyrl_core.config.plan import make_plan
from skyrl_core.errors import ConfigError
from skyrl_core.plugins import build_registry
from skyrl_core.rollout import RolloutBatch, Trajectory
from skyrl_core.run import RunContext
from skyrl_core.specs import Kind
from skyrl_core.testing import check_plugin, fresh_registry

SPECS = sorted(n for n in dir(hookspecs) if n.startswith("skyrl_") and callable(getattr(hookspecs, n)))


def make_run(registry, tmp_path: Path, extra: str = "") -> RunContext:
    """A RunContext from a validated config, as the trainer builds it (no model, no backend)."""
    cfg = parse_config(tomllib.loads(BASE_TOML + "\n" + extra), registry=registry)
    return RunContext(config=cfg, registry=registry, run_dir=tmp_path, plan=make_plan(cfg))


def traj(group: int, reward: float, finish: str = "stop") -> Trajectory:
    return Trajectory(
        prompt_ids=[1, 2],
        response_ids=[3, 4, 5],
        loss_mask=[1, 1, 1],
        rollout_logprobs=[-0.1, -0.2, -0.3],
        token_rewards=[0.0, 0.0, reward],
        group_id=group,
        finish_reason=finish,
    )


# -- registration hooks: one test, parametrized over the kinds ------------------------------

TEST_COMPONENTS = {
    Kind.BACKEND: "t_backend",
    Kind.STRATEGY: "t_strategy",
    Kind.ADVANTAGE_ESTIMATOR: "t_adv",
    Kind.POLICY_LOSS: "t_loss",
    Kind.ENVIRONMENT: "t_env",
    Kind.DATASET_PREPARER: "t_prep",
    Kind.TRACKER: "t_tracker",
    Kind.CONFIG_SECTION: "t_section",
}


@pytest.mark.parametrize("kind", list(Kind), ids=[k.value for k in Kind])
def test_registration_hook(use_dists, kind):
    use_dists("everything")
    registry = build_registry()
    (impl,) = [i for i in getattr(registry.hook, kind.hook).get_hookimpls() if i.plugin_name == "skyrl-test-everything"]
    comp = registry.get(kind, TEST_COMPONENTS[kind])
    assert comp.provider.distribution == "skyrl-test-everything"
    assert comp.spec.summary
    assert [s.name for s in impl.function()] == [comp.name]


# -- config hooks ----------------------------------------------------------------------------


def _config(registry, extra: str = ""):
    return parse_config(tomllib.loads(BASE_TOML + "\n" + extra), registry=registry)


def test_config_defaults_fill_only_unset_keys(everything):
    registry = fresh_registry(everything)
    assert _config(registry, "[t_section]\n").algorithm.entropy_coef == 0.01  # implied by [t_section]
    assert _config(registry, "[t_section]\n[algorithm]\nentropy_coef = 0.2\n").algorithm.entropy_coef == 0.2
    assert _config(registry).algorithm.entropy_coef == 0.0  # no [t_section]: nothing implied

    class SeesACopy:
        @hookimpl
        def skyrl_config_defaults(self, raw):
            raw.clear()  # changing the document it is shown has no effect
            return {"trainer": {"lr": 0.5}, "algorithm": {"kl": {"coef": 0.25}}}

    cfg = _config(fresh_registry(everything, SeesACopy()), "[t_section]\n[trainer]\nsteps = 3\n")
    assert (cfg.trainer.lr, cfg.trainer.steps, cfg.algorithm.kl.coef) == (0.5, 3, 0.25)
    assert cfg.algorithm.entropy_coef == 0.01 and "t_section" in cfg.sections


def test_config_defaults_conflicts_and_failures_name_the_plugins(everything):
    class Disagrees:
        @hookimpl
        def skyrl_config_defaults(self):
            return {"algorithm": {"entropy_coef": 0.05}}

    class Raises:
        @hookimpl
        def skyrl_config_defaults(self, raw):
            raise RuntimeError("boom")

    registry = build_registry(
        entry_points=False, extra_plugins=[("everything", everything), ("disagrees", Disagrees()), ("raises", Raises())]
    )
    with pytest.raises(ConfigError) as err:
        _config(registry, "[t_section]\n")
    text = str(err.value)
    assert "algorithm.entropy_coef: plugins" in text and "0.01" in text and "0.05" in text
    assert "plugins disagrees test and everything test imply different defaults" in text
    assert "plugin raises test: skyrl_config_defaults raised RuntimeError: boom" in text
    # setting the key in the file settles the disagreement; the raising plugin is still reported
    with pytest.raises(ConfigError) as err:
        _config(registry, "[t_section]\n[algorithm]\nentropy_coef = 0.0\n")
    assert len(err.value.issues) == 1 and "boom" in str(err.value)


def test_check_config_issues_are_reported_with_the_others(everything):
    registry = fresh_registry(everything)
    bad = "[t_section]\nfilter_groups = true\n[trainer]\nsamples_per_prompt = 1\nlr = -1.0\n"
    with pytest.raises(ConfigError) as err:
        _config(registry, bad)
    paths = {issue.path for issue in err.value.issues}
    assert paths == {"trainer.lr", "t_section.filter_groups"}
    assert "needs trainer.samples_per_prompt >= 2" in str(err.value)
    assert _config(registry, "[t_section]\nfilter_groups = true\n").sections["t_section"].filter_groups

    class Broken:
        @hookimpl
        def skyrl_check_config(self, config):
            return ["not an issue"]

    with pytest.raises(ConfigError, match="returned 'not an issue', not a ConfigIssue"):
        _config(fresh_registry(everything, Broken()))


# -- pipeline hooks --------------------------------------------------------------------------


def test_run_start_and_run_end(everything, tmp_path):
    registry = fresh_registry(everything)
    run = make_run(registry, tmp_path, "[t_section]\n")
    registry.hook.skyrl_run_start(run=run)
    registry.hook.skyrl_run_end(run=run)
    assert run.state["t_events"] == ["start", "end"]
    quiet = make_run(registry, tmp_path)  # no [t_section]: the plugin stays out of the way
    registry.hook.skyrl_run_start(run=quiet)
    assert quiet.state == {}


def test_shape_rewards_changes_the_batch_in_place(everything, tmp_path):
    registry = fresh_registry(everything)
    run = make_run(registry, tmp_path, "[t_section]\nlength_penalty = 0.25\n")
    batch = RolloutBatch([traj(0, 1.0), traj(0, 1.0, finish="length"), traj(1, 0.0, finish="length")])
    assert registry.hook.skyrl_shape_rewards(run=run, batch=batch) == []  # in place: pluggy drops the Nones
    assert [t.reward for t in batch] == [1.0, 0.75, -0.25]
    assert batch.metrics["t/length_penalized"] == 2.0


def test_collect_rollouts_is_firstresult(everything, tmp_path):
    """The first implementation that returns a batch wins; None passes to the next one."""
    calls: list[str] = []

    class Declines:
        @hookimpl
        def skyrl_collect_rollouts(self, num_prompts):  # a subset of the spec's arguments is fine
            calls.append(f"declines {num_prompts}")
            return None

    rounds = iter(
        [
            RolloutBatch([traj(0, 1.0), traj(0, 1.0), traj(1, 0.0), traj(1, 1.0)]),  # group 0 uninformative
            RolloutBatch([traj(0, 0.0), traj(0, 1.0), traj(1, 0.5), traj(1, 0.5)]),
        ]
    )

    def sample(k: int) -> RolloutBatch:
        calls.append(f"sample {k}")
        return next(rounds)

    # pluggy calls the most recently registered plugin first: Declines, then the test plugin
    registry = fresh_registry(everything, Declines())
    run = make_run(registry, tmp_path, "[t_section]\nfilter_groups = true\n")
    batch = registry.hook.skyrl_collect_rollouts(run=run, sample=sample, num_prompts=2)
    assert calls == ["declines 2", "sample 2", "sample 2"]
    assert isinstance(batch, RolloutBatch)
    assert len(batch.groups()) == 2 and len(batch) == 4
    assert all(len({t.reward for t in g}) > 1 for g in batch.groups().values())
    assert batch.metrics["t/rounds"] == 2.0

    # nobody collects: the loop falls back to sampling once (the hook returns None)
    quiet = make_run(registry, tmp_path)
    calls.clear()
    assert registry.hook.skyrl_collect_rollouts(run=quiet, sample=sample, num_prompts=2) is None
    assert calls == ["declines 2"]


def test_collect_rollouts_first_batch_stops_the_chain(tmp_path, everything):
    class Wins:
        @hookimpl
        def skyrl_collect_rollouts(self, sample, num_prompts):
            return sample(num_prompts)

    registry = fresh_registry(everything, Wins())
    run = make_run(registry, tmp_path, "[t_section]\nfilter_groups = true\n")
    drawn = []
    result = registry.hook.skyrl_collect_rollouts(
        run=run, sample=lambda k: drawn.append(k) or RolloutBatch([traj(0, 1.0)]), num_prompts=1
    )
    assert len(result) == 1 and drawn == [1]  # the test plugin (called later) never sampled


def test_step_end_may_add_metrics(everything, tmp_path):
    registry = fresh_registry(everything)
    run = make_run(registry, tmp_path, "[t_section]\n")
    metrics = {"reward/mean": 0.5}
    registry.hook.skyrl_step_end(run=run, step=7, metrics=metrics)
    assert metrics == {"reward/mean": 0.5, "t/step_seen": 7.0}


def test_add_commands_through_the_cli(skyrl):
    result = skyrl("t-hello", "--name", "tester")
    assert result.code == 0, result.err
    assert result.out == "hello tester from skyrl-test-everything\n"
    assert "t-hello" in skyrl("--help").out


HOOK_TESTS = {
    **{kind.hook: test_registration_hook for kind in Kind},
    "skyrl_config_defaults": test_config_defaults_fill_only_unset_keys,
    "skyrl_check_config": test_check_config_issues_are_reported_with_the_others,
    "skyrl_run_start": test_run_start_and_run_end,
    "skyrl_run_end": test_run_start_and_run_end,
    "skyrl_collect_rollouts": test_collect_rollouts_is_firstresult,
    "skyrl_shape_rewards": test_shape_rewards_changes_the_batch_in_place,
    "skyrl_step_end": test_step_end_may_add_metrics,
    "skyrl_add_commands": test_add_commands_through_the_cli,
}


# -- meta-tests ------------------------------------------------------------------------------


def test_every_hook_spec_has_a_test():
    missing = sorted(set(SPECS) - set(HOOK_TESTS))
    assert not missing, f"hook specs without a test in {__file__} (add one to HOOK_TESTS): {missing}"
    assert not set(HOOK_TESTS) - set(SPECS), "HOOK_TESTS names hooks that no longer exist"


def test_the_test_plugin_implements_every_hook_spec(everything):
    implemented = sorted(n for n in dir(everything) if n.startswith("skyrl_"))
    assert implemented == SPECS, "tests/fixtures/dists/everything must implement every hook spec"
    assert check_plugin(everything) == []


def test_every_kind_has_a_registration_hook_and_specs_are_documented():
    for kind in Kind:
        assert kind.hook in SPECS, f"no registration hook {kind.hook} for kind {kind.value}"
    for name in SPECS:
        fn = getattr(hookspecs, name)
        assert (fn.__doc__ or "").strip(), f"{name} has no docstring"
        if name.startswith("skyrl_register_"):
            assert not inspect.signature(fn).parameters, f"{name}: registration hooks take no arguments"


def test_only_collect_rollouts_is_firstresult():
    first = [n for n in SPECS if getattr(hookspecs, n).skyrl_spec.get("firstresult")]
    assert first == ["skyrl_collect_rollouts"]
