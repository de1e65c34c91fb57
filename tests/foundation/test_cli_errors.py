"""Every bad input of issue 2, through the real `skyrl` command: one clear message, exit code 2, no traceback."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        pytest.param(
            "[trainer]\nprompts_per_stpe = 4\n",
            ["trainer.prompts_per_stpe: unknown key. Did you mean 'prompts_per_step'?"],
            id="typo-key",
        ),
        pytest.param('[trainer]\nlr = "big"\n', ["trainer.lr: expected a number, got 'big' (str)"], id="wrong-type"),
        pytest.param(
            "[environments.t_evn]\n",
            [
                "environments.t_evn: no environment named 't_evn'. Did you mean 't_env'? Available: ",
                "t_env (skyrl-test-everything)",
            ],
            id="unknown-component",
        ),
        pytest.param(
            "[trainer]\nprompts_per_step = 8\nprompts_per_minibatch = 3\n",
            ["trainer.prompts_per_minibatch: 3 does not divide trainer.prompts_per_step = 8; use one of [1, 2, 4, 8]"],
            id="batch-does-not-divide",
        ),
    ],
)
def test_config_validate_bad_input(skyrl, write_toml, extra, expected):
    write_toml(extra)
    err = skyrl("config", "validate", "run.toml").single_error()
    assert err.startswith("error: run.toml: 1 error in the configuration\n")
    for fragment in expected:
        assert fragment in err


def test_missing_required_section(skyrl, write_toml):
    write_toml("[trainer]\nsteps = 2\n", base=False)
    err = skyrl("config", "validate", "run.toml").single_error()
    assert "  - model: missing required section [model]." in err


def test_all_errors_of_the_file_in_one_message(skyrl, write_toml):
    write_toml('[trainer]\nlr = "big"\nprompts_per_stpe = 4\n\n[generator]\ntop_p = 1.5\n\n[trainr]\nsteps = 1\n')
    err = skyrl("config", "validate", "run.toml").single_error()
    assert "run.toml: 4 errors in the configuration" in err
    for path in ("trainer.lr:", "trainer.prompts_per_stpe:", "generator.top_p:", "trainr:"):
        assert f"  - {path}" in err


def test_unknown_component_mentions_plugins_that_failed_to_load(skyrl, write_toml):
    write_toml("[environments.broken_env]\n")
    err = skyrl("config", "validate", "run.toml", dists=["everything", "broken"]).single_error()
    assert "no environment named 'broken_env'" in err
    assert "Plugins that failed to load (see `skyrl plugins`): skyrl-test-broken 0.3.1" in err


def test_unknown_component_names_the_distribution_to_install(skyrl, write_toml):
    write_toml("[environments.text2sql]\n")
    err = skyrl("config", "validate", "run.toml", env={"SKYRL_LOAD_PLUGINS": "skyrl-test-everything"}).single_error()
    assert "'text2sql' is provided by the distribution skyrl-env-sql: `pip install skyrl-env-sql`." in err


def test_plugin_that_raises_on_import(skyrl):
    result = skyrl("plugins", dists=["broken", "everything"])
    err = result.single_error()
    assert (
        "error: plugin skyrl-test-broken 0.3.1 failed to load (skyrl_test_broken): import failed: ModuleNotFoundError"
        in err
    )
    # the others still load
    assert "skyrl-test-everything  1.0.0    ok" in result.out
    assert "skyrl-test-broken      0.3.1    failed" in result.out


def test_a_failed_plugin_does_not_stop_a_valid_config(skyrl, write_toml):
    write_toml()
    result = skyrl("config", "validate", "run.toml", dists=["broken", "everything"])
    assert result.code == 0, result.err
    assert result.out == "run.toml: OK\n"
    assert "warning: plugin skyrl-test-broken 0.3.1 failed to load" in result.err


def test_two_plugins_claiming_one_name(skyrl, write_toml):
    # a run that does not select the name goes on, with a warning
    write_toml()
    ok = skyrl("config", "validate", "run.toml", dists=["everything", "dup_a", "dup_b"])
    assert ok.code == 0, ok.err
    assert "warning: advantage estimator 't_dup' is provided by both" in ok.err
    # a run that selects it gets one error naming both, and how to pick one
    dists = ["everything", "dup_a", "dup_b"]
    err = skyrl("config", "validate", "run.toml", "algorithm.advantage.name=t_dup", dists=dists).single_error()
    assert "algorithm.advantage.name: advantage estimator 't_dup' is provided by both" in err
    assert "skyrl-test-dup-a 0.1.0" in err and "skyrl-test-dup-b 0.2.0" in err
    assert "'skyrl-test-dup-a:t_dup'" in err or "'skyrl-test-dup-b:t_dup'" in err  # how to pick one
    # a qualified name selects one provider
    qualified = "algorithm.advantage.name=skyrl-test-dup-b:t_dup"
    assert skyrl("config", "validate", "run.toml", qualified, dists=dists).code == 0
    listing = skyrl("plugins", dists=["dup_a", "dup_b"])
    assert listing.code == 0 and "warning: conflict: advantage estimator 't_dup'" in listing.err
    assert "Traceback" not in listing.err


def test_hook_with_a_misspelled_name(skyrl):
    err = skyrl("plugins", dists=["misspelled"]).single_error()
    assert "skyrl-test-misspelled 0.1.0 failed to load" in err
    assert "implements unknown hook 'skyrl_register_enviroments'. Did you mean 'skyrl_register_environments'?" in err


def test_hook_with_an_argument_the_spec_lacks(skyrl):
    err = skyrl("plugins", dists=["badarg"]).single_error()
    assert "skyrl-test-badarg 0.1.0 failed to load" in err
    assert "skyrl_step_end" in err and "{'logger'}" in err


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("trainer.lr", "override 'trainer.lr' must look like section.key=value"),
        ("trainer..lr=1", "override 'trainer..lr=1' must look like section.key=value"),
        ("model.path.x=1", "model.path: override 'model.path.x=1': this key is not a table"),
        ("algorithm.kl.cof=0.1", "algorithm.kl.cof: unknown key. Did you mean 'coef'?"),
    ],
)
def test_bad_overrides(skyrl, write_toml, override, fragment):
    write_toml()
    err = skyrl("config", "validate", "run.toml", override).single_error()
    assert fragment in err


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["config", "validate", "absent.toml"], "config file not found: absent.toml"),
        (["components", "enviroment"], "unknown component kind 'enviroment'. Did you mean 'environment'?"),
        (["data", "prepare", "t_perp", "--out", "d"], "no dataset preparer named 't_perp'. Did you mean 't_prep'?"),
        (["data", "prepare", "t_prep", "--out", "d", "--rows", "many"], "rows: expected an integer, got 'many' (str)"),
    ],
)
def test_other_bad_input(skyrl, args, fragment):
    err = skyrl(*args).single_error()
    assert fragment in err


def test_toml_syntax_error(skyrl, tmp_path):
    (tmp_path / "run.toml").write_text("[model\npath = 'x'\n")
    err = skyrl("config", "validate", "run.toml").single_error()
    assert "run.toml: 1 error in the configuration\n  - TOML syntax error: " in err
