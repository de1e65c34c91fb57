"""The strategy conformance suite (``skyrl_core.testing.strategy_conformance``) on the builtin ``local``
strategy and on ``tp_trainer``, the strategy of the third-party platform package in
tests/fixtures/packages/platform (imported from its source folder here; tests/foundation/
test_platform_package.py runs both suites on the package built and installed as a wheel).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from skyrl_core.config.schema import ModelConfig, TrainerConfig
from skyrl_core.strategies.local import LocalStrategy
from skyrl_core.strategies.local_config import LocalStrategyConfig
from skyrl_core.testing.strategy_conformance import StrategyConformance

PLATFORM = Path(__file__).resolve().parents[1] / "fixtures" / "packages" / "platform"


class TestLocalConformance(StrategyConformance):
    """The whole suite, ``local`` strategy, CPU, float32."""

    def make_strategy(self, model: ModelConfig, trainer: TrainerConfig, **flags) -> LocalStrategy:
        return LocalStrategy(LocalStrategyConfig(), model=model, trainer=trainer, **flags)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
class TestLocalCudaConformance(StrategyConformance):
    """The whole suite on one GPU, float32: fused AdamW, the fused log-prob kernel, the shared
    train step on CUDA (reductions run in another order than on the CPU, hence the tolerances)."""

    device = "cuda"
    logprob_atol = 2e-4
    exact_atol = 1e-5

    def make_strategy(self, model: ModelConfig, trainer: TrainerConfig, **flags) -> LocalStrategy:
        return LocalStrategy(LocalStrategyConfig(), model=model, trainer=trainer, **flags)


class TestLocalPackedConformance(StrategyConformance):
    """The whole suite with packed micro-batches (several sequences per row)."""

    def make_strategy(self, model: ModelConfig, trainer: TrainerConfig, **flags) -> LocalStrategy:
        return LocalStrategy(LocalStrategyConfig(packing=True), model=model, trainer=trainer, **flags)


@pytest.fixture(scope="class")
def platform_on_path():
    """The platform package's source folder on ``sys.path`` for one test class."""
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(PLATFORM))
        yield
    for name in [m for m in sys.modules if m.startswith("skyrl_test_platform")]:
        del sys.modules[name]


@pytest.mark.usefixtures("platform_on_path")
class TestPlatformTrainerConformance(StrategyConformance):
    """The whole suite on ``tp_trainer``, which trains the policy only (no reference model, no critic)."""

    has_ref = False
    has_critic = False

    def make_strategy(self, model: ModelConfig, trainer: TrainerConfig, **flags):
        from skyrl_test_platform.config import TrainerOptions
        from skyrl_test_platform.trainer import Trainer

        return Trainer(TrainerOptions(), model=model, trainer=trainer, **flags)
