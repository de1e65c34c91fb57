"""skyrl-gym environments written the way SkyRL users write theirs, for the adapter's tests.

Importing this module registers them in skyrl-gym's registry; the tests do so through
``SKYRL_SKYRLGYM_MODULES=skyrlgym_test_envs`` (conftest.py's ``gym_registry``), the way a user
exposes their own environments.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Union

from omegaconf import DictConfig
from skyrl_gym import register
from skyrl_gym.envs.base_text_env import BaseTextEnv, BaseTextEnvStepOutput


class RewriteEnv(BaseTextEnv):
    """Rewrites each reply to its first line in brackets (``postprocessed_action``); turn ``k``
    earns 0.25 * k; ``max_turns`` turns, each answered with "Turn k seen."."""

    def __init__(self, env_config: Any = None, extras: dict[str, Any] | None = None):
        super().__init__()
        self.max_turns = int((extras or {}).get("max_turns", 2))

    def step(self, action: str) -> BaseTextEnvStepOutput:
        self.turns += 1
        first = "[" + action.split("\n")[0] + "]"
        done = self.turns >= self.max_turns
        obs = [] if done else [{"role": "user", "content": f"Turn {self.turns} seen."}]
        return BaseTextEnvStepOutput(
            observations=obs, reward=0.25 * self.turns, done=done, metadata={"turn": self.turns, "kept": first},
            postprocessed_action=first,
        )


@dataclass
class GreetingConfig:
    greeting: str = "hello"
    bonus: float = 0.5
    timeout: int = 5


class GreetingEnv(BaseTextEnv):
    """Reads its options every way SkyRL environments do: attributes, ``.get`` and ``[...]``."""

    def __init__(self, env_config: Union[GreetingConfig, DictConfig], extras: dict[str, Any] | None = None):  # noqa: UP007
        super().__init__()
        self.greeting = env_config.greeting
        assert env_config.get("greeting") == env_config["greeting"] == self.greeting
        self.bonus = env_config.get("bonus", 0.0)
        self.greeted = False

    def step(self, action: str) -> BaseTextEnvStepOutput:
        self.turns += 1
        self.greeted = self.greeting in action
        reward = 1.0 + self.bonus if self.greeted else 0.0
        return BaseTextEnvStepOutput(observations=[], reward=reward, done=True, metadata={})

    def get_metrics(self) -> dict[str, Any]:
        return {"greeted": self.greeted, "greeting": self.greeting}  # the text is not a metric: left out


class UntypedEnv(BaseTextEnv):
    """No config dataclass: its options arrive as a plain DictConfig."""

    def __init__(self, env_config: Any = None, extras: dict[str, Any] | None = None):
        super().__init__()
        self.word = env_config.get("word", "yes")

    def step(self, action: str) -> BaseTextEnvStepOutput:
        return BaseTextEnvStepOutput(observations=[], reward=float(self.word in action), done=True, metadata={})


#: Set by a test to let ``SlowEnv`` steps that are still sleeping return at once.
RELEASE = threading.Event()


class SlowEnv(BaseTextEnv):
    """A step that takes ``extras['sleep']`` seconds (a slow service), unless ``RELEASE`` is set."""

    def __init__(self, env_config: Any = None, extras: dict[str, Any] | None = None):
        super().__init__()
        self.sleep = float((extras or {}).get("sleep", 0.0))

    def step(self, action: str) -> BaseTextEnvStepOutput:
        RELEASE.wait(self.sleep)
        return BaseTextEnvStepOutput(observations=[], reward=1.0, done=True, metadata={})


register(id="test_rewrite", entry_point=RewriteEnv)  # a class, not a "module:Class" string: also allowed
register(id="test_greeting", entry_point="skyrlgym_test_envs:GreetingEnv")
register(id="test_untyped", entry_point="skyrlgym_test_envs:UntypedEnv")
register(id="test_slow", entry_point="skyrlgym_test_envs:SlowEnv")
register(id="test:colon", entry_point=UntypedEnv)  # cannot be selected as 'skyrl-env-skyrlgym:<id>': left out
