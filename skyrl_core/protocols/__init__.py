"""The contracts between the training loop and its components (DESIGN.md section 3).

Implementations are plain classes or functions; nothing here needs to be subclassed. Each
kind's required members are checked before a run starts (``skyrl_core.contracts``); optional
capabilities are small runtime-checkable protocols a component implements when it can
(``AbortsRequests``, ``EngineGroup``, ``ShardedWeightSource``, ...).
"""

from skyrl_core.protocols.algorithms import (
    AdvantageEstimator,
    AdvantageInput,
    AdvantageOutput,
    PolicyLoss,
    PolicyLossInput,
    PolicyLossOutput,
)
from skyrl_core.protocols.backend import (
    FINISH_REASONS,
    AbortsRequests,
    BackendCapabilities,
    Completion,
    GenerateRequest,
    GenerateResult,
    InferenceBackend,
    KnowsModelLength,
    LoadsLoraAdapters,
    SamplingParams,
)
from skyrl_core.protocols.env import (
    AggregatesMetrics,
    Closeable,
    Environment,
    HasStopStrings,
    ReportsMetrics,
    StepOutput,
    TextEnv,
)
from skyrl_core.protocols.install import ChecksInstallation
from skyrl_core.protocols.preparer import DatasetPreparer
from skyrl_core.protocols.strategy import (
    ForwardOutput,
    LossFn,
    LossScale,
    ModelRole,
    TrainBatch,
    TrainingStrategy,
    TrainsLoraAdapters,
)
from skyrl_core.protocols.tracker import Tracker
from skyrl_core.protocols.weights import (
    DIRECT_TRANSPORTS,
    BucketSent,
    EngineGroup,
    Pending,
    ReportsWeights,
    ShardedWeightSource,
    TensorMeta,
)

__all__ = [
    "DIRECT_TRANSPORTS",
    "FINISH_REASONS",
    "AbortsRequests",
    "AdvantageEstimator",
    "AdvantageInput",
    "AdvantageOutput",
    "AggregatesMetrics",
    "BackendCapabilities",
    "BucketSent",
    "ChecksInstallation",
    "Closeable",
    "Completion",
    "DatasetPreparer",
    "EngineGroup",
    "Environment",
    "ForwardOutput",
    "GenerateRequest",
    "GenerateResult",
    "HasStopStrings",
    "InferenceBackend",
    "KnowsModelLength",
    "LoadsLoraAdapters",
    "LossFn",
    "LossScale",
    "ModelRole",
    "Pending",
    "PolicyLoss",
    "PolicyLossInput",
    "PolicyLossOutput",
    "ReportsMetrics",
    "ReportsWeights",
    "SamplingParams",
    "ShardedWeightSource",
    "StepOutput",
    "TensorMeta",
    "TextEnv",
    "Tracker",
    "TrainBatch",
    "TrainingStrategy",
    "TrainsLoraAdapters",
]
