"""Fixtures for the Ray runtime tests: one local Ray cluster per test module (start-up ~3 s)."""

from __future__ import annotations

import os

import pytest

from skyrl_core import runtime
from skyrl_core.config.schema import ModelConfig


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray cluster with 4 logical CPUs (2 training workers + engines), auth off."""
    ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # else Ray writes an auth token under $HOME
    if not ray.is_initialized():
        ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    yield ray
    runtime.shutdown()
    ray.shutdown()


@pytest.fixture
def model_cfg(tiny_model_dir) -> ModelConfig:
    """``[model]`` of the session's tiny Qwen2 (with tokenizer), on CPU, float32."""
    return ModelConfig(path=str(tiny_model_dir), device="cpu")
