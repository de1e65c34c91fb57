"""The options of every adapted skyrl-gym environment (imported at start-up: no torch, no skyrl-gym)."""

from __future__ import annotations

from typing import Any

import attrs

from skyrl_core.api import option, positive


@attrs.define(kw_only=True)
class SkyRLGymEnvConfig:
    """Options of one skyrl-gym environment: ``[environments."skyrl-env-skyrlgym:<id>"]``."""

    env_timeout_s: float | None = option(
        None,
        help="Seconds each call of this environment (init, step, get_metrics, close) may take before its "
        "trajectory fails; unset: [generator] env_timeout_s. Raise it for environments that retry slow "
        "services: skyrl-gym's search retries a request up to 10 times, each up to env_config.timeout seconds.",
        check=positive,
    )
    env_config: dict[str, Any] = option(
        factory=dict,
        help="The environment's own options: SkyRL's `environment.skyrl_gym.<id>` keys, e.g. db_path for "
        "text2sql. Handed to it as an OmegaConf DictConfig, typed and checked by its config dataclass when its "
        "__init__ declares one (text2sql's Text2SQLEnvConfig, search's SearchEnvConfig).",
    )
