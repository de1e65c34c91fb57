"""Fixtures for the Ray runtime tests (the Ray cluster itself is the session's ``ray_cluster``,
from ``skyrl_core.testing.pytest_plugin``)."""

from __future__ import annotations

import pytest

from skyrl_core.config.schema import ModelConfig


@pytest.fixture
def model_cfg(tiny_model_dir) -> ModelConfig:
    """``[model]`` of the session's tiny Qwen2 (with tokenizer), on CPU, float32."""
    return ModelConfig(path=str(tiny_model_dir), device="cpu")
