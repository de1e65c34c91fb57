"""The contracts between the training loop and its components (DESIGN.md section 3).

Implementations are plain classes or functions; nothing here needs to be subclassed. Each
kind's required members are checked before a run starts (``skyrl_core.contracts``); optional
capabilities are small runtime-checkable protocols a component implements when it can
(``AbortsRequests``, ``EngineGroup``, ``ShardedWeightSource``, ...).
"""

from __future__ import annotations

import importlib
from typing import Any

_MODULES: dict[str, str] = {
    "AdvantageEstimator": "skyrl_core.protocols.algorithms",
    "AdvantageInput": "skyrl_core.protocols.algorithms",
    "AdvantageOutput": "skyrl_core.protocols.algorithms",
    "PolicyLoss": "skyrl_core.protocols.algorithms",
    "PolicyLossInput": "skyrl_core.protocols.algorithms",
    "PolicyLossOutput": "skyrl_core.protocols.algorithms",
    "FINISH_REASONS": "skyrl_core.protocols.backend",
    "AbortsRequests": "skyrl_core.protocols.backend",
    "BackendCapabilities": "skyrl_core.protocols.backend",
    "Completion": "skyrl_core.protocols.backend",
    "GenerateRequest": "skyrl_core.protocols.backend",
    "GenerateResult": "skyrl_core.protocols.backend",
    "InferenceBackend": "skyrl_core.protocols.backend",
    "KnowsModelLength": "skyrl_core.protocols.backend",
    "LoadsLoraAdapters": "skyrl_core.protocols.backend",
    "SamplingParams": "skyrl_core.protocols.backend",
    "AggregatesMetrics": "skyrl_core.protocols.env",
    "Closeable": "skyrl_core.protocols.env",
    "Environment": "skyrl_core.protocols.env",
    "HasEnvTimeout": "skyrl_core.protocols.env",
    "HasStopStrings": "skyrl_core.protocols.env",
    "ReportsMetrics": "skyrl_core.protocols.env",
    "StepOutput": "skyrl_core.protocols.env",
    "TextEnv": "skyrl_core.protocols.env",
    "ChecksInstallation": "skyrl_core.protocols.install",
    "DatasetPreparer": "skyrl_core.protocols.preparer",
    "ForwardOutput": "skyrl_core.protocols.strategy",
    "LossFn": "skyrl_core.protocols.strategy",
    "LossScale": "skyrl_core.protocols.strategy",
    "ModelRole": "skyrl_core.protocols.strategy",
    "ResetsReference": "skyrl_core.protocols.strategy",
    "TrainBatch": "skyrl_core.protocols.strategy",
    "TrainingStrategy": "skyrl_core.protocols.strategy",
    "TrainsLoraAdapters": "skyrl_core.protocols.strategy",
    "Tracker": "skyrl_core.protocols.tracker",
    "DIRECT_TRANSPORTS": "skyrl_core.protocols.weights",
    "BucketSent": "skyrl_core.protocols.weights",
    "EngineGroup": "skyrl_core.protocols.weights",
    "Pending": "skyrl_core.protocols.weights",
    "ReportsWeights": "skyrl_core.protocols.weights",
    "ShardedWeightSource": "skyrl_core.protocols.weights",
    "TensorMeta": "skyrl_core.protocols.weights",
}
__all__ = sorted(_MODULES)


def __getattr__(name: str) -> Any:
    # Lazy: importing one contract (e.g. the torch-free environment protocol) imports no other.
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module 'skyrl_core.protocols' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
