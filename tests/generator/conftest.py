"""Fixtures for generator tests: the tiny model's real tokenizer, a registry with test envs, configs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from generator_doubles import RELEASE, EnvsPlugin

from skyrl_core.config.schema import GeneratorConfig, ModelConfig, RunConfig
from skyrl_core.testing import fresh_registry


@pytest.fixture(scope="session")
def tokenizer(tiny_model_dir):
    """The tiny model's real Hugging Face tokenizer (ChatML template)."""
    from skyrl_core.models.loading import load_tokenizer

    return load_tokenizer(ModelConfig(path=str(tiny_model_dir)))


@pytest.fixture(scope="session")
def registry():
    """Builtins plus the test environments."""
    return fresh_registry(EnvsPlugin())


@pytest.fixture
def make_cfg(tiny_model_dir) -> Callable[..., RunConfig]:
    """``make_cfg(max_turns=3, ...)``: a RunConfig with the given ``[generator]`` options."""

    def make(**generator: Any) -> RunConfig:
        return RunConfig(model=ModelConfig(path=str(tiny_model_dir)), generator=GeneratorConfig(**generator))

    return make


@pytest.fixture
def release_slow_envs():
    """Lets the blocked ``SlowEnv`` threads finish when the test ends."""
    RELEASE.clear()
    yield
    RELEASE.set()


@pytest.fixture(scope="session")
def native(tiny_model_dir):
    """The real native backend on the tiny model (CPU)."""
    from skyrl_core.backends.native import NativeBackend

    backend = NativeBackend(None, model=ModelConfig(path=str(tiny_model_dir), device="cpu"), seed=0)
    yield backend
    backend.shutdown()
