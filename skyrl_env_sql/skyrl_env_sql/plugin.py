"""skyrl plugin module of skyrl-env-sql: its hook implementations.

Registered through the ``skyrl`` entry point in pyproject.toml. Provides the ``text2sql``
environment and two dataset preparers (``text2sql`` for SkyRL-SQL / OmniSQL data,
``text2sql_synthetic`` for generated databases). Implementations are lazy strings, so
listing components imports nothing but the config classes.
"""

from __future__ import annotations

from skyrl_core.api import ComponentSpec, hookimpl
from skyrl_env_sql.config import SkyRLSQLDataConfig, SyntheticDataConfig, Text2SQLConfig


@hookimpl
def skyrl_register_environments() -> list[ComponentSpec]:
    return [
        ComponentSpec(
            name="text2sql",
            impl="skyrl_env_sql.env:Text2SQLEnv",
            summary="Multi-turn text-to-SQL: <sql> queries a read-only SQLite database, <solution> is scored "
            "by result-set comparison with the gold query.",
            config_cls=Text2SQLConfig,
        )
    ]


@hookimpl
def skyrl_register_dataset_preparers() -> list[ComponentSpec]:
    return [
        ComponentSpec(
            name="text2sql",
            impl="skyrl_env_sql.prepare:prepare_skyrl_sql",
            summary="Convert SkyRL-SQL parquet (or OmniSQL/Spider-style rows) to text2sql rows: --input FILE.",
            config_cls=SkyRLSQLDataConfig,
        ),
        ComponentSpec(
            name="text2sql_synthetic",
            impl="skyrl_env_sql.prepare:prepare_synthetic",
            summary="Generate small SQLite databases with questions and gold SQL: train, eval and sft splits.",
            config_cls=SyntheticDataConfig,
        ),
    ]
