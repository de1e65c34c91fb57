"""Builtin environments and dataset preparers (the quickstart's arithmetic task)."""

from __future__ import annotations

from skyrl_core.envs.arithmetic import ArithmeticEnvConfig
from skyrl_core.envs.arithmetic_data import ArithmeticDataConfig
from skyrl_core.specs import ComponentSpec

ENVIRONMENTS: list[ComponentSpec] = [
    ComponentSpec(
        name="arithmetic",
        impl="skyrl_core.envs.arithmetic:ArithmeticEnv",
        summary="Integer arithmetic; reward 1 for the correct answer in the last \\boxed{...}.",
        config_cls=ArithmeticEnvConfig,
    ),
]
DATASET_PREPARERS: list[ComponentSpec] = [
    ComponentSpec(
        name="arithmetic",
        impl="skyrl_core.envs.arithmetic_data:prepare_arithmetic",
        summary="Generate 'What is 23 + 45?' problems: train, eval and sft (warm start) parquet files.",
        config_cls=ArithmeticDataConfig,
    ),
]
