"""``[data] env_map``: rows keep the environment names they were written with (SkyRL's
``gsm8k``), the run says which environment answers each name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from skyrl_core.config.loader import parse_config
from skyrl_core.data import load_prompt_rows, load_prompts
from skyrl_core.errors import ConfigError, DataError
from skyrl_core.testing import fresh_registry


def write_rows(path: Path, env_classes: list[str | None]) -> Path:
    rows = [
        {"prompt": [{"role": "user", "content": f"What is {i} + 1?"}], "env_class": env,
         "reward_spec": {"ground_truth": str(i + 1)}}
        for i, env in enumerate(env_classes)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def registry():
    return fresh_registry()


def test_mapped_names_are_replaced_after_the_default(tmp_path, registry):
    path = write_rows(tmp_path / "rows.jsonl", ["gsm8k", None, "arithmetic"])
    rows = load_prompt_rows(
        [str(path)], registry=registry, default_env_class="gsm8k", env_map={"gsm8k": "arithmetic"}
    ).rows
    assert [r.env_class for r in rows] == ["arithmetic"] * 3
    assert "env_class" not in rows[0].extras  # the row's own name is not kept as an extra column


def test_an_unknown_replacement_is_reported_with_the_row_and_the_mapping(tmp_path, registry):
    path = write_rows(tmp_path / "rows.jsonl", ["arithmetic", "gsm8k", "gsm8k"])
    with pytest.raises(DataError) as exc:
        load_prompt_rows([str(path)], registry=registry, env_map={"gsm8k": "skyrl-env-nope:gsm8k"}, what="data.train")
    message = str(exc.value)
    assert "data.train: 1 invalid row:" in message
    mapping = "('gsm8k' -> 'skyrl-env-nope:gsm8k' by [data] env_map)"
    assert f"{path} row 1 (and 1 more rows), field 'env_class' {mapping}" in message
    assert "no environment named 'skyrl-env-nope:gsm8k'. Available: arithmetic (skyrl-core)." in message


def test_the_config_key_is_a_table_of_names(tmp_path, registry, tiny_model_dir):
    path = write_rows(tmp_path / "rows.jsonl", ["gsm8k"] * 2)
    raw = {"model": {"path": str(tiny_model_dir)}, "data": {"train": [str(path)], "env_map": {"gsm8k": "arithmetic"}}}
    cfg = parse_config(raw, registry)
    assert cfg.data.env_map == {"gsm8k": "arithmetic"}
    assert [r.env_class for r in load_prompts(cfg, registry, None, cfg.data.train).rows] == ["arithmetic"] * 2
    with pytest.raises(ConfigError, match=r"data\.env_map\.gsm8k"):
        parse_config({**raw, "data": {"train": [str(path)], "env_map": {"gsm8k": 3}}}, registry)
