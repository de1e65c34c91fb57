"""The contracts between the training loop and its components (DESIGN.md section 3).

Implementations are plain classes or functions; nothing here needs to be subclassed.
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
    BackendCapabilities,
    Completion,
    GenerateRequest,
    GenerateResult,
    InferenceBackend,
    SamplingParams,
)
from skyrl_core.protocols.env import Environment, StepOutput, TextEnv
from skyrl_core.protocols.tracker import Tracker

__all__ = [
    "AdvantageEstimator",
    "AdvantageInput",
    "AdvantageOutput",
    "BackendCapabilities",
    "Completion",
    "Environment",
    "GenerateRequest",
    "GenerateResult",
    "InferenceBackend",
    "PolicyLoss",
    "PolicyLossInput",
    "PolicyLossOutput",
    "SamplingParams",
    "StepOutput",
    "TextEnv",
    "Tracker",
]
