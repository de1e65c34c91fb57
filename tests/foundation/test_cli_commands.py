"""The `skyrl` commands of issue 2, run as a user runs them (subprocess of the installed console script)."""

from __future__ import annotations

import json

from skyrl_core import hookimpl
from skyrl_core.cli import build_parser
from skyrl_core.specs import Kind
from skyrl_core.testing import fresh_registry


def by_distribution(entries: list[dict]) -> dict[str, dict]:
    return {e["distribution"]: e for e in entries}


def test_plugins_json_lists_status_version_and_components(skyrl):
    result = skyrl("plugins", "--json", dists=["everything", "broken"])
    assert result.code == 2  # a plugin failed; the listing is still complete
    entries = by_distribution(json.loads(result.out))
    core = entries["skyrl-core"]
    assert core["status"] == "ok" and "jsonl" in core["components"]["tracker"]
    ok = entries["skyrl-test-everything"]
    assert (ok["status"], ok["version"], ok["error"]) == ("ok", "1.0.0", None)
    assert ok["components"]["environment"] == ["t_env"]
    failed = entries["skyrl-test-broken"]
    assert (failed["status"], failed["version"], failed["components"]) == ("failed", "0.3.1", {})
    assert "No module named 'skyrl_test_missing_dependency'" in failed["error"]


def test_plugins_exit_zero_when_everything_loads(skyrl):
    result = skyrl("plugins", "--json", env={"SKYRL_LOAD_PLUGINS": "skyrl-test-everything"})
    assert result.code == 0, result.err
    entries = by_distribution(json.loads(result.out))
    assert entries["skyrl-test-everything"]["status"] == "ok"
    others = [e for d, e in entries.items() if d not in ("skyrl-core", "skyrl-test-everything")]
    assert all(e["status"] == "disabled" for e in others), others


def test_allow_list_through_the_cli(skyrl):
    result = skyrl("plugins", "--json", dists=["everything", "broken"], env={"SKYRL_LOAD_PLUGINS": "skyrl-test-broken"})
    entries = by_distribution(json.loads(result.out))
    assert entries["skyrl-test-everything"]["status"] == "disabled"
    assert entries["skyrl-test-broken"]["status"] == "failed"


def test_components_json_every_kind(skyrl):
    result = skyrl("components", "--json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert list(data) == [k.value for k in Kind]
    env = next(c for c in data["environment"] if c["name"] == "t_env")
    assert env == {
        "name": "t_env",
        "summary": "Reward 1 when the reply contains the target.",
        "distribution": "skyrl-test-everything",
        "version": "1.0.0",
        "options": [{"name": "target", "default": "42", "help": "The reply must contain this string."}],
    }


def test_components_of_one_kind(skyrl):
    for spelling in ("advantage_estimator", "advantage-estimators"):
        result = skyrl("components", spelling, "--json")
        assert result.code == 0, result.err
        data = json.loads(result.out)
        assert list(data) == ["advantage_estimator"]
        assert "t_adv" in [c["name"] for c in data["advantage_estimator"]]
    text = skyrl("components", "env")
    assert text.code == 0
    assert text.out.startswith("environments:\n")
    assert "t_env" in text.out and "[skyrl-test-everything]" in text.out


def test_config_validate_ok(skyrl, write_toml):
    write_toml()
    result = skyrl("config", "validate", "run.toml", "algorithm.kl.coef=0.001", "trainer.lr=1e-6")
    assert (result.code, result.out, result.err) == (0, "run.toml: OK\n", "")


def test_config_show_prints_resolved_config_plan_and_providers(skyrl, write_toml):
    write_toml("[trainer]\nsteps = 3\nprompts_per_step = 8\nsamples_per_prompt = 4\nprompts_per_minibatch = 2\n")
    result = skyrl("config", "show", "run.toml", "algorithm.kl.coef=0.002")
    assert result.code == 0, result.err
    out = result.out
    assert "# resolved configuration" in out and "# batch plan" in out and "# components" in out
    assert "coef = 0.002" in out
    assert '[backend]\nname = "t_backend"\nflavour = "plain"' in out  # component defaults are filled in
    for row in ("sequences per step", "mini-batches per step", "optimizer steps in the run"):
        assert row in out
    assert "t_backend    skyrl-test-everything 1.0.0" in out
    result = skyrl("config", "show", "run.toml", "--json")
    data = json.loads(result.out)
    assert data["plan"]["sequences per step"] == "32"
    assert data["plan"]["optimizer steps in the run"] == "12"
    assert data["providers"]["algorithm.advantage"] == {"name": "t_adv", "provider": "skyrl-test-everything 1.0.0"}
    assert data["providers"]["tracker jsonl"]["provider"].startswith("skyrl-core ")
    assert data["config"]["algorithm"]["advantage"] == {"name": "t_adv", "scale": 1.0}


def test_config_reference(skyrl, tmp_path):
    result = skyrl("config", "reference", "--out", "ref.md")
    assert result.code == 0, result.err
    text = (tmp_path / "ref.md").read_text()
    assert text.startswith("# Configuration reference")
    assert "### `[trainer]`" in text and "| `prompts_per_step` |" in text
    # the reference documents skyrl-core only, whatever is installed
    assert "t_backend" not in text


def test_doctor_runs(skyrl):
    result = skyrl("doctor", dists=["everything", "broken"])
    assert result.code == 0, result.err
    out = result.out
    for label in ("python", "torch", "cuda", "transformers", "backends:", "strategies:", "plugins:"):
        assert label in out
    assert "t_backend" in out
    assert "problems:" in out and "plugin skyrl-test-broken 0.3.1 failed to load" in out
    strict = skyrl("doctor", "--strict", dists=["everything", "broken"])
    assert strict.code == 1


def test_data_prepare_with_options(skyrl, tmp_path):
    result = skyrl("data", "prepare", "t_prep", "--out", "data", "--rows", "3")
    assert result.code == 0, result.err
    rows = (tmp_path / "data" / "train.jsonl").read_text().splitlines()
    assert len(rows) == 3 and json.loads(rows[2])["extra_info"] == {"target": "2"}
    assert result.out.strip() == f"train: {tmp_path / 'data' / 'train.jsonl'}".replace(str(tmp_path) + "/", "")


def test_unknown_arguments_are_still_rejected(skyrl, write_toml):
    write_toml()
    result = skyrl("config", "validate", "run.toml", "--bogus")
    assert result.code == 2 and "unrecognized arguments: --bogus" in result.err


def test_version_and_help(skyrl):
    result = skyrl("--version")
    assert result.code == 0 and result.out.startswith("skyrl ")
    result = skyrl()
    assert result.code == 2 and "plugins" in result.out and "t-hello" in result.out


def test_broken_plugin_command_does_not_break_the_cli(capsys):
    class BadCommands:
        @hookimpl
        def skyrl_add_commands(self, subparsers):
            subparsers.add_parser("plugins")  # clashes with a core command
            raise AssertionError("not reached on Python versions that reject the clash")

    parser = build_parser(fresh_registry(BadCommands()))
    assert parser.parse_args(["plugins", "--json"]).json is True
    assert "warning: plugin " in capsys.readouterr().err
