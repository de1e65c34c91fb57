"""What the generator produces: trajectories, grouped by prompt, with token-level bookkeeping.

Every per-token list of a ``Trajectory`` has one entry per token of ``response_ids``
(everything after the initial prompt: model tokens *and* observation/template tokens of
later turns), so they index the same positions.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs


@attrs.define
class Trajectory:
    """One sample: a prompt, the model's (multi-turn) response, and how it was scored.

    Attributes:
        prompt_ids: the tokenized initial prompt (chat template applied, generation prompt
            included).
        response_ids: every token after the prompt, model and environment tokens alike.
        loss_mask: 1 on tokens the model generated, 0 on observation/template tokens.
        rollout_logprobs: the engine's log-prob for each model token, 0.0 elsewhere.
        token_rewards: the reward credited at each response token: each turn's reward sits
            on the last model token of that turn; zero elsewhere.
        group_id: samples of the same prompt share it (the prompt's index in the step).
        uid: the dataset row's stable id (for logging and resume bookkeeping).
        finish_reason: of the last turn: ``stop``, ``length``, ``abort`` or ``error``.
        num_turns: model turns taken.
        env_class: the environment name.
        data_source: the row's ``data_source`` (groups eval metrics).
        env_metrics: ``env.get_metrics()`` at the end.
        error: set when the environment raised or timed out (reward is then 0).
        messages: the final conversation (prompt + replies + observations), for logs.
        policy_version: the weight version that generated it (for asynchronous training).
        extra: free-form data for plugins.
    """

    prompt_ids: list[int]
    response_ids: list[int]
    loss_mask: list[int]
    rollout_logprobs: list[float]
    token_rewards: list[float]
    group_id: int
    uid: str = ""
    finish_reason: str = "stop"
    num_turns: int = 1
    env_class: str = ""
    data_source: str = ""
    env_metrics: dict[str, float] = attrs.field(factory=dict)
    error: str | None = None
    messages: list[dict[str, str]] = attrs.field(factory=list)
    policy_version: int = 0
    extra: dict[str, Any] = attrs.field(factory=dict)

    @property
    def reward(self) -> float:
        """The trajectory's total reward (sum of ``token_rewards``)."""
        return float(sum(self.token_rewards))

    def check(self) -> None:
        """Raise ValueError if the per-token lists disagree in length."""
        n = len(self.response_ids)
        for name in ("loss_mask", "rollout_logprobs", "token_rewards"):
            if len(getattr(self, name)) != n:
                raise ValueError(
                    f"trajectory {self.uid!r}: {name} has {len(getattr(self, name))} entries "
                    f"but response_ids has {n}"
                )


@attrs.define
class RolloutBatch:
    """The trajectories of one generation round plus its metrics (``rollout/``, ``reward/``)."""

    trajectories: list[Trajectory] = attrs.field(factory=list)
    metrics: dict[str, float] = attrs.field(factory=dict)

    def __len__(self) -> int:
        return len(self.trajectories)

    def groups(self) -> dict[int, list[Trajectory]]:
        """Trajectories by ``group_id``, in first-seen order."""
        out: dict[int, list[Trajectory]] = {}
        for t in self.trajectories:
            out.setdefault(t.group_id, []).append(t)
        return out

    def __iter__(self) -> Iterator[Trajectory]:
        return iter(self.trajectories)

    def extend(self, other: RolloutBatch) -> None:
        """Append another round's trajectories, keeping group ids distinct."""
        offset = 1 + max((t.group_id for t in self.trajectories), default=-1)
        for t in other.trajectories:
            t.group_id += offset
        self.trajectories.extend(other.trajectories)
