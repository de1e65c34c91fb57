"""skyrl plugin module of skyrl-env-gsm8k: its hook implementations.

Registered through the ``skyrl`` entry point in pyproject.toml. Provides the ``gsm8k``
and ``gsm8k_multi_turn`` environments, the ``gsm8k`` and ``gsm8k_synthetic`` dataset
preparers, and the ``skyrl gsm8k import-gguf`` command. Implementations are lazy
``"module:attr"`` strings, so building a registry imports nothing heavy.
"""

from __future__ import annotations

import argparse

from skyrl_core.api import ComponentSpec, hookimpl
from skyrl_env_gsm8k.config import (
    Gsm8kEnvConfig,
    Gsm8kMultiTurnConfig,
    Gsm8kPrepareConfig,
    SyntheticPrepareConfig,
)


@hookimpl
def skyrl_register_environments() -> list[ComponentSpec]:
    return [
        ComponentSpec(
            name="gsm8k",
            impl="skyrl_env_gsm8k.env:Gsm8kEnv",
            summary="GSM8K math word problems; reward 1 for the right number after `####` (strict or flexible).",
            config_cls=Gsm8kEnvConfig,
        ),
        ComponentSpec(
            name="gsm8k_multi_turn",
            impl="skyrl_env_gsm8k.env:Gsm8kMultiTurnEnv",
            summary="GSM8K with feedback on wrong answers and retries up to max_turns (discounted reward).",
            config_cls=Gsm8kMultiTurnConfig,
        ),
    ]


@hookimpl
def skyrl_register_dataset_preparers() -> list[ComponentSpec]:
    return [
        ComponentSpec(
            name="gsm8k",
            impl="skyrl_env_gsm8k.prepare:prepare_gsm8k",
            summary="GSM8K (hub openai/gsm8k, or local train/test JSONL) to train/test/sft parquet.",
            config_cls=Gsm8kPrepareConfig,
        ),
        ComponentSpec(
            name="gsm8k_synthetic",
            impl="skyrl_env_gsm8k.prepare:prepare_synthetic",
            summary="GSM8K-format template word problems generated offline (smoke runs; not GSM8K).",
            config_cls=SyntheticPrepareConfig,
        ),
    ]


@hookimpl
def skyrl_add_commands(subparsers: argparse._SubParsersAction) -> None:
    from skyrl_env_gsm8k.gguf import add_commands

    add_commands(subparsers)
