"""Contract of an environment, compatible with SkyRL-Gym text environments.

One instance is created per trajectory as ``EnvClass(config, extras)``: ``config`` is the
environment spec's config object (from ``[environments.<name>]``, or the config class's
defaults) and ``extras`` is the dataset row without ``prompt`` (``reward_spec``,
``extra_info``, ``data_source`` and every other column), plus ``max_turns``.

The turn loop::

    prompt, meta = env.init(row_prompt)          # may rewrite the prompt
    while True:
        out = env.step(model_reply_text)         # sync or ``async def``
        if out.done: break
        # out.observations (chat messages) are appended to the conversation
    env.close()

An exception or a timeout inside ``init``/``step`` ends that trajectory with reward 0 and
a recorded failure; it never stops the run. Each call is limited to ``[generator]
env_timeout_s`` seconds, or to the environment's own ``env_timeout_s`` (``HasEnvTimeout``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import attrs

Message = dict[str, str]


@attrs.frozen
class StepOutput:
    """What ``step`` returns (a plain dict with these keys is accepted too).

    Attributes:
        observations: chat messages to append (e.g. ``{"role": "user", "content": ...}``);
            empty when ``done``.
        reward: the reward for this turn.
        done: whether the episode ended.
        metadata: free-form information kept with the trajectory.
        postprocessed_action: text that replaces the model's reply of this turn in the
            trajectory (SkyRL-Gym's field of the same name), or None to keep the reply. The
            turn's tokens become this text's tokens, still trained on (loss mask 1); only
            their common prefix with the sampled tokens keeps the engine's log-probs, the
            rest get 0.0. It breaks token-in/token-out, so prefer leaving the reply alone.
    """

    observations: list[Message] = attrs.field(factory=list)
    reward: float = 0.0
    done: bool = True
    metadata: dict[str, Any] = attrs.field(factory=dict)
    postprocessed_action: str | None = None


class Environment(Protocol):
    """The methods the generator calls on an environment."""

    def init(self, prompt: list[Message]) -> tuple[list[Message], dict[str, Any]]:
        """Return the (possibly rewritten) prompt and metadata."""
        ...

    def step(self, action: str) -> StepOutput | dict[str, Any]:
        """Consume the model's reply text; may be ``async def``."""
        ...

    def close(self) -> None:
        """Release resources (connections, files)."""
        ...

    def get_metrics(self) -> dict[str, float]:
        """Per-trajectory metrics, aggregated by ``aggregate_metrics``."""
        ...

    @staticmethod
    def aggregate_metrics(metrics: Sequence[dict[str, float]]) -> dict[str, float]:
        """Combine ``get_metrics()`` of many trajectories (default: mean of each key)."""
        ...


@runtime_checkable
class ReportsMetrics(Protocol):
    """An environment with per-trajectory metrics (logged under ``reward/<env>/``)."""

    def get_metrics(self) -> dict[str, float]:
        """Metrics of the finished trajectory; may be ``async def``."""
        ...


@runtime_checkable
class AggregatesMetrics(Protocol):
    """An environment class that combines its trajectories' metrics itself (default: the mean
    of each key). Checked on the class."""

    @staticmethod
    def aggregate_metrics(metrics: Sequence[dict[str, float]]) -> dict[str, float]:
        """Combine ``get_metrics()`` of many trajectories."""
        ...


@runtime_checkable
class Closeable(Protocol):
    """An environment holding resources (connections, files) to release after its trajectory."""

    def close(self) -> None:
        """Release them; may be ``async def``."""
        ...


@runtime_checkable
class HasStopStrings(Protocol):
    """An environment whose turns end at strings of its own (e.g. ``</tool_call>``), added to
    ``[generator] stop`` for its trajectories."""

    stop_strings: Sequence[str]


@runtime_checkable
class HasEnvTimeout(Protocol):
    """An environment with a time limit of its own: each of its calls after construction
    (``init``, ``step``, ``get_metrics``, ``close``) may take ``env_timeout_s`` seconds instead
    of ``[generator] env_timeout_s``; None keeps the generator's. For environments that
    retry slow services, or whose limit is a per-environment option."""

    env_timeout_s: float | None


class TextEnv:
    """Optional convenience base: defaults for everything but ``step``.

    Subclasses set ``self.max_turns`` (from ``extras['max_turns']`` by default) and may use
    ``self.turns`` (incremented by the subclass's ``step``).
    """

    def __init__(self, config: Any = None, extras: dict[str, Any] | None = None) -> None:
        self.config = config
        self.extras = dict(extras or {})
        self.max_turns = int(self.extras.get("max_turns", 1) or 1)
        self.turns = 0

    def init(self, prompt: list[Message]) -> tuple[list[Message], dict[str, Any]]:
        return prompt, {}

    def step(self, action: str) -> StepOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        return None

    def get_metrics(self) -> dict[str, float]:
        return {}

    @staticmethod
    def aggregate_metrics(metrics: Sequence[dict[str, float]]) -> dict[str, float]:
        totals: dict[str, list[float]] = {}
        for m in metrics:
            for key, value in m.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    totals.setdefault(key, []).append(float(value))
                elif isinstance(value, bool):
                    totals.setdefault(key, []).append(float(value))
        return {key: sum(vals) / len(vals) for key, vals in totals.items() if vals}
