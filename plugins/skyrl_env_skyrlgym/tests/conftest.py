"""Fixtures of skyrl-env-skyrlgym's tests (helpers and the ``needs_skyrl_gym`` mark: skyrlgym_support.py)."""

from __future__ import annotations

import pytest
from skyrlgym_support import DIST, TEST_ENVS_MODULE, TESTS_DIR, corpus_lines


@pytest.fixture
def gym_registry(monkeypatch):
    """skyrl's registry with the builtins and this plugin alone, through its real entry point, with
    the test environments of skyrlgym_test_envs.py registered in skyrl-gym too."""
    from skyrl_core.api import build_registry

    monkeypatch.syspath_prepend(str(TESTS_DIR))
    monkeypatch.setenv("SKYRL_SKYRLGYM_MODULES", TEST_ENVS_MODULE)
    return build_registry(only=[DIST])


@pytest.fixture(scope="session")
def gym_model_dir(tmp_path_factory):
    """A tiny Qwen2 model whose BPE tokenizer is trained on these tasks' texts (short replies),
    built once per session; read-only."""
    from skyrl_core.api import TinyModelConfig, build_tiny_model

    config = TinyModelConfig(hidden_size=64, layers=2, heads=4, kv_heads=2, intermediate_size=128, vocab_size=600)
    return build_tiny_model(tmp_path_factory.mktemp("skyrlgym-model") / "model", config, corpus=corpus_lines())
