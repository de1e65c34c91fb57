"""The hooks of skyrl-env-skyrlgym: skyrl-gym's registry, mirrored as skyrl environments.

Every id in skyrl-gym's registry becomes the environment ``skyrl-env-skyrlgym:<id>``. The specs
are ``qualified_only``: the plain id (``gsm8k``) stays free for skyrl's own environments and is
never answered by skyrl-gym's, whatever else is installed.
"""

from __future__ import annotations

from typing import Any

from skyrl_core.api import ComponentSpec, ConfigIssue, hookimpl
from skyrl_env_skyrlgym import gym
from skyrl_env_skyrlgym.config import SkyRLGymEnvConfig
from skyrl_env_skyrlgym.env import environment_class

DISTRIBUTION = "skyrl-env-skyrlgym"


@hookimpl
def skyrl_register_environments() -> list[ComponentSpec]:
    specs = []
    for env_id, entry_point in sorted(gym.registered().items()):
        if not env_id or ":" in env_id or env_id != env_id.strip():
            continue  # not selectable as 'skyrl-env-skyrlgym:<id>' (docs/skyrl_gym.md)
        specs.append(
            ComponentSpec(
                env_id,
                environment_class(env_id, entry_point),
                f"skyrl-gym's {env_id} environment ({entry_point})",
                SkyRLGymEnvConfig,
                qualified_only=True,
            )
        )
    return specs


@hookimpl
def skyrl_check_config(config: Any) -> list[ConfigIssue]:
    """Each configured skyrl-gym environment: its ``env_config`` against the environment's own
    config dataclass, and its time limit against its own per-request ``timeout``. Without
    skyrl-gym, every place the config names one of its environments says what to install."""
    if not gym.installed():
        return _missing_skyrl_gym(config)
    issues = []
    for name, options in config.environments.items():
        if not isinstance(options, SkyRLGymEnvConfig):
            continue
        env_id = name.rpartition(":")[2]
        try:
            env_config = gym.env_config(env_id, options.env_config)
        except Exception as exc:
            issues.append(ConfigIssue(f"environments.{name}.env_config", f"skyrl-gym's {env_id}: {exc}"))
            continue
        limit = options.env_timeout_s or config.generator.env_timeout_s
        request = env_config.get("timeout")
        if isinstance(request, (int, float)) and not isinstance(request, bool) and request >= limit:
            where = "env_timeout_s" if options.env_timeout_s else "env_timeout_s (unset: [generator] env_timeout_s)"
            issues.append(
                ConfigIssue(
                    f"environments.{name}.env_timeout_s",
                    f"{where} = {limit:g} s is not longer than env_config.timeout = {request:g} s, the time "
                    f"skyrl-gym's {env_id} gives one request: a slow request would fail the trajectory before "
                    "the environment's own timeout and retries act. Set env_timeout_s above the worst case "
                    "(skyrl-gym's search: about 10 x timeout + 45 s).",
                )
            )
    return issues


def _missing_skyrl_gym(config: Any) -> list[ConfigIssue]:
    prefix = f"{DISTRIBUTION}:"
    named = [(f"environments.{name}", name) for name in config.environments]
    named += [(f"data.env_map.{key}", value) for key, value in config.data.env_map.items()]
    named.append(("data.default_env_class", config.data.default_env_class or ""))
    return [
        ConfigIssue(
            path,
            f"{name!r} is skyrl-gym's environment, and skyrl-gym is not installed: `pip install skyrl-gym` "
            "(or `pip install 'skyrl-env-skyrlgym[gym]'`)",
        )
        for path, name in named
        if name.startswith(prefix)
    ]
