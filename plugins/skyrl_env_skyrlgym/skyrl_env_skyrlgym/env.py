"""The adapter: one skyrl-gym environment, driven by skyrl's generator (one instance per trajectory).

How SkyRL-Gym's interface maps onto skyrl's environment contract:

* ``make(id, env_config=..., extras=row)`` happens in ``init``, so that creating the
  environment counts against this environment's own time limit (``env_timeout_s``); the
  ``env_config`` is the run's ``env_config`` table as an OmegaConf ``DictConfig``
  (``gym.env_config``), ``extras`` the dataset row with ``max_turns``, as in SkyRL;
* ``init(prompt) -> (prompt, metadata)``: unchanged;
* ``step(action)`` returns SkyRL-Gym's dict ``{observations, reward, done, metadata,
  postprocessed_action}``; it becomes a ``StepOutput``: the observations are the chat messages
  the model answers next, the reward is this turn's (the generator puts it on the turn's last
  token, as SkyRL does), the metadata is kept per turn in ``Trajectory.extra["step_metadata"]``,
  and a ``postprocessed_action`` replaces the model's reply in the trajectory;
* ``get_metrics()``: its numeric values, logged as ``reward/<env name>/<key>`` after the
  environment class's own ``aggregate_metrics``;
* ``close()``: unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from skyrl_core.api import AggregatesMetrics, Message, ReportsMetrics, StepOutput, TextEnv
from skyrl_env_skyrlgym import gym
from skyrl_env_skyrlgym.config import SkyRLGymEnvConfig


class SkyRLGymEnv:
    """A skyrl-gym environment under skyrl; ``environment_class(id)`` makes one class per id."""

    env_id: ClassVar[str] = ""

    def __init__(self, config: SkyRLGymEnvConfig | None, extras: dict[str, Any]) -> None:
        self.config = config if config is not None else SkyRLGymEnvConfig()
        self.extras = extras
        self.env_timeout_s = self.config.env_timeout_s  # skyrl_core.api.HasEnvTimeout
        self.env: Any = None

    def init(self, prompt: list[Message]) -> tuple[list[Message], dict[str, Any]]:
        options = gym.env_config(self.env_id, self.config.env_config)
        self.env = gym.make(self.env_id, options, self.extras)
        prompt, metadata = self.env.init(prompt)
        return prompt, dict(metadata or {})

    def step(self, action: str) -> StepOutput:
        out = self.env.step(action)
        if not isinstance(out, Mapping) or "done" not in out:
            raise TypeError(
                f"skyrl-gym's {self.env_id!r} step() returned {out!r:.200}; expected a dict with observations, "
                "reward and done (skyrl_gym's BaseTextEnvStepOutput)"
            )
        reward = out.get("reward")
        return StepOutput(
            observations=list(out.get("observations") or []),
            reward=0.0 if reward is None else reward,  # checked (a finite number) by the generator
            done=bool(out["done"]),
            metadata=dict(out.get("metadata") or {}),
            postprocessed_action=out.get("postprocessed_action"),
        )

    def get_metrics(self) -> dict[str, float]:
        if not isinstance(self.env, ReportsMetrics):
            return {}
        metrics = self.env.get_metrics() or {}
        return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}

    @classmethod
    def aggregate_metrics(cls, metrics: Sequence[dict[str, float]]) -> dict[str, float]:
        """The environment class's own ``aggregate_metrics`` (gsm8k_multi_turn reports
        ``avg_steps``), else the mean of each key."""
        their = gym.creator(cls.env_id)
        if isinstance(their, AggregatesMetrics):
            return dict(their.aggregate_metrics(list(metrics)))
        return TextEnv.aggregate_metrics(metrics)

    def close(self) -> None:
        if self.env is not None:
            self.env.close()


def environment_class(env_id: str, entry_point: str) -> type[SkyRLGymEnv]:
    """The environment class registered for skyrl-gym's ``env_id`` (named in errors, e.g.
    ``env_timeout_s of SkyRLGymEnv[text2sql]``)."""
    name = f"SkyRLGymEnv[{env_id}]"
    doc = f"skyrl-gym's {env_id!r} environment ({entry_point}), adapted to skyrl."
    return type(name, (SkyRLGymEnv,), {"env_id": env_id, "__module__": __name__, "__qualname__": name, "__doc__": doc})
