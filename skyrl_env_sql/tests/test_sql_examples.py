"""Every examples/sql/*.toml validates with only skyrl-core and this plugin."""

from __future__ import annotations

from pathlib import Path

import pytest
from skyrl_env_sql.config import Text2SQLConfig

from skyrl_core.api import load_config
from skyrl_core.testing import fresh_registry
from skyrl_env_sql import plugin

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples" / "sql").glob("*.toml"))


def test_the_examples_are_there():
    assert {"cpu_tiny.toml", "qwen2.5_coder_1.5b_grpo.toml"} <= {p.name for p in EXAMPLES}


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_validates(path):
    cfg = load_config(path, registry=fresh_registry(plugin))
    env = cfg.environments.get("text2sql")
    assert isinstance(env, Text2SQLConfig), "each example configures [environments.text2sql]"
    assert env.db_root, "each example says where the databases are"
    assert cfg.generator.max_turns > 1, "text2sql examples are multi-turn"
    assert all(p.endswith(".parquet") for p in [*cfg.data.train, *cfg.data.eval])
