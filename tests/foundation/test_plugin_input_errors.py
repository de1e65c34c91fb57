"""A ValueError or TypeError raised by a plugin's dataset preparer, config check or hook is the
plugin rejecting its input: one clean error naming the plugin (distribution and component, or
hook), exit code 2, no traceback on the console (the full one goes to a file).

The plugin is the test distribution ``skyrl-test-raises`` (tests/fixtures/dists/raises), loaded
through its entry point by the real ``skyrl`` command.
"""

from __future__ import annotations

from pathlib import Path

import pytest

CORPUS = Path(__file__).resolve().parent / "config_corpus"
PLUGIN = "skyrl-test-raises 0.1.0"


def traceback_file(err: str) -> str:
    return Path(err.rsplit("Full traceback: ", 1)[1].strip()).read_text()


@pytest.mark.parametrize(
    ("options", "expected", "exc_type"),
    [
        (["--words", "alpha"], "ValueError: words = 'alpha': need at least 2 distinct words, got 1", "ValueError"),
        (["--rows", "5000"], "TypeError: rows above 1000 are not supported by this toy preparer", "TypeError"),
    ],
)
def test_a_preparer_that_rejects_its_options(skyrl, options, expected, exc_type):
    err = skyrl("data", "prepare", "r_prep", "--out", "d", *options, dists=["raises"]).single_error()
    assert err.startswith(f"error: the dataset preparer 'r_prep' of {PLUGIN} rejected its input: {expected} (at ")
    assert "skyrl_test_raises/prepare.py:" in err and "in prepare_words)" in err
    assert f"{exc_type}: " in traceback_file(err) and "Traceback" in traceback_file(err)


def test_a_preparer_that_rejects_its_options_at_train_start_up(skyrl, tmp_path, tiny_model_dir):
    (tmp_path / "model").symlink_to(tiny_model_dir, target_is_directory=True)
    config = (CORPUS / "base.toml").read_text()
    config = config.replace('generate = "arithmetic"', 'generate = "r_prep"').replace(
        "digits = 1\ntrain_rows = 64\neval_rows = 8\n", 'words = "alpha"\n'
    ).replace('train = ["data/train.parquet"]\neval = ["data/eval.parquet"]', 'train = ["data/train.jsonl"]')
    (tmp_path / "run.toml").write_text(config)
    assert skyrl("config", "validate", "run.toml", dists=["raises"]).code == 0
    err = skyrl("train", "run.toml", dists=["raises"]).single_error()
    assert err.startswith(f"error: the dataset preparer 'r_prep' of {PLUGIN} rejected its input: ValueError: ")
    assert not (tmp_path / "data" / "train.jsonl").exists()


def test_config_checks_that_raise_are_config_errors_naming_the_plugin(skyrl, tmp_path):
    config = (CORPUS / "base.toml").read_text() + "\n[r_section]\nratio = 2.0\nbounds = [1]\n"
    (tmp_path / "run.toml").write_text(config)
    lines = config.splitlines()
    for command in (["config", "validate"], ["train"]):
        err = skyrl(*command, "run.toml", dists=["raises"]).single_error()
        assert "run.toml: 2 errors in the configuration" in err
        owner = f"rejected by the section [r_section] of {PLUGIN}"
        ratio_line = lines.index("ratio = 2.0") + 1
        assert f"  - r_section.ratio: {owner}: ValueError: ratio 2.0 is above 1 (line {ratio_line})" in err
        assert f"  - r_section: {owner}: TypeError: bounds takes exactly 2 numbers (1 given)" in err


def test_a_config_check_hook_that_raises(skyrl, tmp_path):
    config = (CORPUS / "base.toml").read_text() + '\n[r_section]\nraise_in = "check_config"\n'
    (tmp_path / "run.toml").write_text(config)
    err = skyrl("config", "validate", "run.toml", dists=["raises"]).single_error()
    assert f"  - plugin {PLUGIN}: skyrl_check_config raised ValueError: r_section needs trainer.samples_" in err


@pytest.mark.slow
def test_a_run_hook_that_raises_value_error(skyrl, tmp_path, tiny_model_dir):
    (tmp_path / "model").symlink_to(tiny_model_dir, target_is_directory=True)
    (tmp_path / "run.toml").write_text((CORPUS / "base.toml").read_text() + '\n[r_section]\nraise_in = "run_start"\n')
    err = skyrl("train", "run.toml", dists=["raises"]).failed_cleanly()  # after loading bars: one error line
    (line,) = [x for x in err.splitlines() if x.startswith("error:")]
    assert line.startswith(
        f"error: the hook skyrl_run_start of {PLUGIN} rejected its input: ValueError: r_section cannot use the "
        "model at 'model': it needs a chat model (at "
    ), err
    assert "skyrl_test_raises/plugin.py:" in line and "in skyrl_run_start)" in line
    assert "ValueError" in traceback_file(line)
