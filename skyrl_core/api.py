"""The public surface of skyrl: everything a plugin may use, importable from here (or ``skyrl_core``).

::

    from skyrl_core.api import ComponentSpec, StepOutput, TextEnv, hookimpl, option, positive

Plugins (the ones in this repository too) import from this module only; the rest of
``skyrl_core`` may change between releases. Tests of plugins may also use the testing kit,
``skyrl_core.testing``. A test keeps this list and docs/api.md in step.

Names are loaded lazily: importing this module imports nothing heavy, and a plugin's hook
module that uses only the markers, specs, config helpers and errors never imports torch.

Groups (see docs/api.md for every name with its one-line description):

* markers and specs: ``hookimpl``, ``ComponentSpec``, ``Kind``;
* the contracts of every kind (``InferenceBackend``, ``TrainingStrategy``, ``Environment``,
  ``AdvantageEstimator``, ``PolicyLoss``, ``LossFn``, ``Tracker``, ``DatasetPreparer``) and the
  optional capabilities (``AbortsRequests``, ``ShardedWeightSource``, ``EngineGroup``, ...);
* the data types components receive and return (``SamplingParams``, ``GenerateRequest``,
  ``RolloutBatch``, ``TrainBatch``, ``LoraAdapter``, ``TensorMeta``, ...) and the run's config
  (``RunConfig`` and its sections);
* errors (``SkyrlError``, ``ConfigIssue``, ``MissingDependencyError``, ...);
* config helpers (``option``, ``positive``, ``load_config``, ...);
* helpers for environments (tools, answer parsing), backends (``decode_text``,
  ``StopStringWatch``, ``sample_seed``, ``check_requests``), strategies (the train step the
  builtin strategies share: ``accumulate``, ``step_optimizer``, ...) and weight transfer
  (``SyncGroup``, ``pack``, ``checksum``, ...).
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name -> the module that defines it.
EXPORTS: dict[str, str] = {}
#: Group title -> its names, in the order of this file (the API reference follows it).
GROUPS: dict[str, list[str]] = {}
_group = ""


def _section(title: str) -> None:
    global _group
    _group = title
    GROUPS.setdefault(title, [])


def _export(module: str, *names: str) -> None:
    for name in names:
        EXPORTS[name] = module
        GROUPS[_group].append(name)


# -- markers and specs ----------------------------------------------------------------------
_section("Markers, specs and the registry")
_export("skyrl_core.plugins", "hookimpl", "build_registry", "Registry", "Component", "PluginInfo")
_export("skyrl_core.specs", "ComponentSpec", "Kind")

# -- contracts: one protocol per kind, and the optional capabilities ------------------------
_section("Contracts and optional capabilities")
_export(
    "skyrl_core.protocols.backend",
    "InferenceBackend",
    "BackendCapabilities",
    "SamplingParams",
    "GenerateRequest",
    "GenerateResult",
    "Completion",
    "FINISH_REASONS",
    "AbortsRequests",
    "KnowsModelLength",
    "LoadsLoraAdapters",
)
_export(
    "skyrl_core.protocols.strategy",
    "TrainingStrategy",
    "TrainBatch",
    "ForwardOutput",
    "LossScale",
    "LossFn",
    "ModelRole",
    "TrainsLoraAdapters",
    "ResetsReference",
)
_export(
    "skyrl_core.protocols.env",
    "Environment",
    "StepOutput",
    "TextEnv",
    "Message",
    "HasStopStrings",
    "HasEnvTimeout",
    "ReportsMetrics",
    "AggregatesMetrics",
    "Closeable",
)
_export(
    "skyrl_core.protocols.algorithms",
    "AdvantageEstimator",
    "AdvantageInput",
    "AdvantageOutput",
    "PolicyLoss",
    "PolicyLossInput",
    "PolicyLossOutput",
)
_export("skyrl_core.protocols.tracker", "Tracker")
_export("skyrl_core.tracking", "RemoteRunTracker")
_export("skyrl_core.protocols.preparer", "DatasetPreparer")
_export("skyrl_core.protocols.install", "ChecksInstallation")
_export(
    "skyrl_core.protocols.weights",
    "ShardedWeightSource",
    "EngineGroup",
    "ReportsWeights",
    "Pending",
    "TensorMeta",
    "BucketSent",
    "DIRECT_TRANSPORTS",
)
_export("skyrl_core.contracts", "check_impl", "CONTRACTS")

# -- data types of a run --------------------------------------------------------------------
_section("Data of a run")
_export("skyrl_core.rollout", "RolloutBatch", "Trajectory")
_export("skyrl_core.run", "RunContext")
_export("skyrl_core.strategies.lora", "LoraAdapter")
_export("skyrl_core.data.rows", "PromptRow", "read_source", "validate_rows", "load_prompt_rows", "load_prompts")
_export("skyrl_core.data.loader", "PromptLoader")

# -- helpers for environments ---------------------------------------------------------------
_section("Helpers for environments")
_export("skyrl_core.envs.tools", "ToolGroup", "ToolError", "tool", "parse_tool_call", "find_tool")
_export("skyrl_core.envs.arithmetic", "last_boxed", "parse_integer")

# -- the run's config (what a config check reads) -------------------------------------------
_section("The run's config")
_export(
    "skyrl_core.config.schema",
    "RunConfig",
    "RunSection",
    "ModelConfig",
    "TinyModelConfig",
    "LoraConfig",
    "DataConfig",
    "GeneratorConfig",
    "AlgorithmConfig",
    "KLConfig",
    "TISConfig",
    "TrainerConfig",
    "SFTConfig",
    "EvalConfig",
    "CheckpointConfig",
    "TrackingConfig",
    "RuntimeConfig",
    "ComponentRef",
)

# -- errors ---------------------------------------------------------------------------------
_section("Errors")
_export(
    "skyrl_core.errors",
    "SkyrlError",
    "ConfigError",
    "ConfigIssue",
    "PluginError",
    "DataError",
    "MissingDependencyError",
    "did_you_mean",
)
_export("skyrl_core.contracts", "ContractError")

# -- config helpers -------------------------------------------------------------------------
_section("Config helpers")
_export(
    "skyrl_core.config.fields",
    "option",
    "Range",
    "positive",
    "non_negative",
    "unit_interval",
    "fraction",
    "seed_range",
    "at_least",
    "all_positive",
)
_export("skyrl_core.config.loader", "load_config", "parse_config")
_export("skyrl_core.config.plan", "BatchPlan", "make_plan")
_export("skyrl_core.prepare", "run_preparer")

# -- helpers for backends -------------------------------------------------------------------
_section("Helpers for backends")
_export("skyrl_core.backends.stops", "decode_text", "StopStringWatch")
_export("skyrl_core.backends.sampling", "sample_seed", "counter_uniform", "RowSampling", "filtered_logprobs")
_export("skyrl_core.backends.validation", "check_requests", "request_problems")
_export("skyrl_core.threads", "run_on_waiting_thread", "lent")
_export("skyrl_core.models.loading", "load_tokenizer")
_export("skyrl_core.models.tiny", "build_tiny_model")

# -- helpers for strategies: the train step the builtin strategies share -----------------------
_section("Helpers for strategies")
_export("skyrl_core.strategies.update", "MicroBatch", "accumulate", "step_optimizer", "step_metrics",
        "non_finite_error")
_export("skyrl_core.strategies.optim", "Trainable", "build_trainable", "build_adamw", "build_scheduler",
        "lr_multiplier")
_export("skyrl_core.strategies.micro_batching", "pack_by_token_budget", "loss_scale")
_export("skyrl_core.strategies.token_outputs", "effective_temperature")

# -- helpers for weight transfer (both sides of a direct transport) --------------------------
_section("Helpers for weight transfer")
_export(
    "skyrl_core.runtime.weight_sync",
    "WeightSyncError",
    "SyncGroup",
    "plan_buckets",
    "flat_layout",
    "pack",
    "unpack",
    "write_bucket",
    "read_bucket",
    "checksum",
    "dtype_name",
    "dtype_of",
    "expected_checksums",
    "held_checksums",
    "held_dtypes",
    "compare_checksums",
    "transfer_weights",
)
_export("skyrl_core.runtime.calls", "free_port")
_export("skyrl_core.checkpoint", "atomic_write_text")

__all__ = sorted(EXPORTS)


def __getattr__(name: str) -> Any:
    module = EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'skyrl_core.api' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *EXPORTS])
