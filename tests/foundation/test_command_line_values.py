"""Command-line values are read by the declared type of the option they set (skyrl_core.config.overrides):
dotted overrides of a run's TOML and the ``--key value`` options of ``skyrl data prepare``. A string
option takes ``12`` as ``"12"``; a mistake is reported like the same mistake in the file, with the
key path, what is expected, and the command-line text it came from."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from foundation_support import BASE_TOML

from skyrl_core.config.loader import load_config
from skyrl_core.config.overrides import declared_type, parse_options, parse_value
from skyrl_core.envs.arithmetic_data import ArithmeticDataConfig
from skyrl_core.errors import ConfigError
from skyrl_core.testing import fresh_registry


@pytest.fixture
def registry(everything):
    return fresh_registry(everything)


@pytest.fixture
def run_toml(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text(BASE_TOML + '\n[data]\ngenerate = "arithmetic"\n')
    return path


@pytest.mark.parametrize(
    ("text", "tp", "value"),
    [
        ("12", str, "12"),
        ("true", str, "true"),
        ("[1, 2]", str, "[1, 2]"),
        ('"quoted name"', str, "quoted name"),
        ("'single'", str | None, "single"),
        ("007", str, "007"),
        ("bfloat16", "literal", "bfloat16"),
        ("12", int, 12),
        ("1e-6", float, 1e-6),
        ("false", bool, False),
        ("[1, 4]", list[int], [1, 4]),
        ("fast", float, "fast"),  # no TOML value: kept, so that validation names the key and the type
        ("12", None, 12),  # unknown key: read as TOML
    ],
)
def test_a_value_is_read_by_the_type_of_its_option(text, tp, value):
    from typing import Literal

    if tp == "literal":
        tp = Literal["float32", "bfloat16"]
    assert parse_value(text, tp) == value
    assert type(parse_value(text, tp)) is type(value)


def test_overrides_of_strings_stay_strings_everywhere_in_the_file(registry, run_toml):
    cfg = load_config(
        run_toml,
        [
            "run.name=12",
            "model.path=007",
            "model.tokenizer=true",
            "backend.flavour=12",  # a component's option: typed by that component's config class
            "environments.t_env.target=42",
            "data.generate_options.system_prompt=12",  # typed by the arithmetic preparer's class
            "trainer.steps=3",
            "trainer.lr=1e-6",
        ],
        registry=registry,
    )
    assert (cfg.run.name, cfg.model.path, cfg.model.tokenizer) == ("12", "007", "true")
    assert cfg.backend.config.flavour == "12"
    assert cfg.environments["t_env"].target == "42"
    assert cfg.data.generate_options["system_prompt"] == "12"
    assert (cfg.trainer.steps, cfg.trainer.lr) == (3, 1e-6)


def test_the_declared_type_follows_the_component_the_file_selects(registry):
    raw = {"backend": {"name": "t_backend"}, "data": {"generate": "arithmetic"}}
    assert declared_type(raw, ["backend", "flavour"], registry) is str
    assert declared_type(raw, ["backend", "tokens_per_s"], registry) is float
    assert declared_type(raw, ["data", "generate_options", "digits"], registry) is int
    assert declared_type(raw, ["trainer", "lr"], registry) is float
    assert declared_type(raw, ["trainer", "no_such_key"], registry) is None
    assert declared_type({"backend": {"name": "nope"}}, ["backend", "flavour"], registry) is None


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("run.seed=-1", "run.seed: must be between 0 and 4294967295, got -1"),
        ("trainer.steps=many", "trainer.steps: expected an integer, got 'many' (str)"),
        ("trainer.lr=inf", "trainer.lr: must be finite, got inf"),
        ("model.path=", "model.path: must not be empty, got an empty string"),
        ("data.train=a.jsonl", "data.train: expected a list, got 'a.jsonl' (str)"),
        ("backend.tokens_per_s=fast", "backend.tokens_per_s: expected a number, got 'fast' (str)"),
    ],
)
def test_a_bad_override_is_reported_like_a_bad_value_in_the_file(registry, run_toml, override, expected):
    with pytest.raises(ConfigError) as exc:
        load_config(run_toml, [override], registry=registry)
    assert f"  - {expected} (from the command-line override {override!r})" in str(exc.value), str(exc.value)
    assert all(i.line is None for i in exc.value.issues), "an override's problem has no line in the file"
    assert exc.value.source.endswith("(with command-line overrides)")


def test_preparer_options_are_read_by_the_preparers_config_class():
    options = parse_options(["--system-prompt", "12", "--digits", "3", "--allow-negative", "--operations=+-"],
                            ArithmeticDataConfig)
    assert options == {"system_prompt": "12", "digits": 3, "allow_negative": True, "operations": "+-"}


@pytest.mark.slow
def test_data_prepare_takes_a_number_for_a_string_option(skyrl, tmp_path):
    result = skyrl("data", "prepare", "arithmetic", "--out", "d", "--train-rows", "4", "--eval-rows", "2",
                   "--sft-rows", "0", "--system-prompt", "12", dists=[])
    assert result.code == 0, result.err
    rows = pq.read_table(tmp_path / "d" / "train.parquet").to_pylist()
    assert rows[0]["prompt"][0] == {"role": "system", "content": "12"}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--train-rows", "many"], "train_rows: expected an integer, got 'many' (str) (from the command-line option "
                                   "--train-rows)"),
        (["--seed", "-1"], "seed: must be between 0 and 4294967295, got -1 (from the command-line option --seed)"),
        (["--digts", "2"], "digts: unknown key. Did you mean 'digits'?"),
    ],
)
def test_data_prepare_reports_a_bad_option_with_its_key(skyrl, args, expected):
    err = skyrl("data", "prepare", "arithmetic", "--out", "d", *args, dists=[]).single_error()
    assert err.startswith("error: skyrl data prepare arithmetic: 1 error in the configuration\n")
    assert expected in err
