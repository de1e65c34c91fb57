"""Every examples/gsm8k/*.toml validates with only skyrl-core and this plugin."""

from __future__ import annotations

from pathlib import Path

import pytest

from skyrl_core.api import load_config
from skyrl_core.testing import fresh_registry
from skyrl_env_gsm8k import plugin

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples" / "gsm8k").glob("*.toml"))


def test_the_examples_are_there():
    names = {p.name for p in EXAMPLES}
    assert {"smoke_tiny.toml", "smollm2_cpu.toml", "qwen2.5_0.5b_grpo.toml", "qwen2.5_1.5b_grpo.toml"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_validates(path):
    cfg = load_config(path, registry=fresh_registry(plugin))
    assert cfg.environments.get("gsm8k") is not None, "each example configures [environments.gsm8k]"
    assert cfg.data.generate in ("gsm8k", "gsm8k_synthetic")
    assert all(p.endswith(".parquet") for p in [*cfg.data.train, *cfg.data.eval])
