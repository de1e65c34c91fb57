"""The ``gsm8k`` and ``gsm8k_multi_turn`` environments.

Both read the reference answer from the row's ``reward_spec.ground_truth`` (a number such
as ``"72"``, or a full GSM8K solution ending in ``#### 72``) and score replies with
``skyrl_env_gsm8k.reward`` (see there for strict/flexible extraction).

``gsm8k``: one turn. Reward ``correct_reward`` (1.0) for the right answer,
``format_reward`` (0.0) for a well-formed wrong one, 0.0 otherwise.

``gsm8k_multi_turn``: after a wrong or missing answer the environment replies with
feedback and the model answers again, up to ``max_turns`` answers (``[generator]
max_turns``). The episode ends at the first correct answer or the last allowed turn.
Only the final turn carries a reward: ``correct_reward * turn_discount**(turn - 1)`` when
solved on ``turn``, ``format_reward`` when it ends on a well-formed wrong answer, else 0.

``scoring = "skyrl"`` (both environments) reproduces skyrl-gym 0.4.0's rules instead, with
per-turn rewards for the multi-turn env (``skyrl_env_gsm8k.skyrl_scoring``).

Metrics (per trajectory, averaged per step): ``correct``, ``formatted``,
``parse_failure`` (no number could be extracted from the final reply), ``turns``, and
for the multi-turn env ``first_try_correct``.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from skyrl_core.api import StepOutput
from skyrl_env_gsm8k.config import Gsm8kEnvConfig, Gsm8kMultiTurnConfig
from skyrl_env_gsm8k.reward import Score, ground_truth_value, score_answer
from skyrl_env_gsm8k.skyrl_scoring import (
    MULTI_TURN_FORMAT_SCORE,
    skyrl_follow_up,
    skyrl_ground_truth,
    skyrl_score,
)

Message = dict[str, Any]

NO_ANSWER_FEEDBACK = (
    "I could not find a final answer. Finish your reply with a last line of the form `#### <answer>`, "
    "where <answer> is a number."
)
WRONG_FEEDBACK = "That answer is not correct. Check your reasoning and try again; end with `#### <answer>`."
HIGH_FEEDBACK = "That answer is too high. Check your reasoning and try again; end with `#### <answer>`."
LOW_FEEDBACK = "That answer is too low. Check your reasoning and try again; end with `#### <answer>`."


def reference_answer(extras: dict[str, Any], env_name: str) -> Fraction:
    """The row's reference value, or a ValueError that names the row and the fix."""
    spec = extras.get("reward_spec")
    truth = spec.get("ground_truth") if isinstance(spec, dict) else None
    value = ground_truth_value(truth)
    if value is None:
        info = extras.get("extra_info")
        where = f" (extra_info.index {info['index']})" if isinstance(info, dict) and "index" in info else ""
        raise ValueError(
            f"{env_name}: reward_spec.ground_truth must be a number or a GSM8K solution ending in '#### N'{where}, "
            f"got reward_spec={spec!r}; regenerate the data with `skyrl data prepare gsm8k`"
        )
    return value


def _mean(metrics: Sequence[dict[str, float]]) -> dict[str, float]:
    keys = sorted({k for m in metrics for k in m})
    return {k: sum(m.get(k, 0.0) for m in metrics) / max(len(metrics), 1) for k in keys}


class Gsm8kEnv:
    """Single-turn GSM8K: score one reply (see the module docstring).

    Args:
        config: ``[environments.gsm8k]`` options (defaults when None).
        extras: the dataset row without ``prompt``; needs ``reward_spec.ground_truth``.
    """

    def __init__(self, config: Gsm8kEnvConfig | None = None, extras: dict[str, Any] | None = None) -> None:
        self.config = config or Gsm8kEnvConfig()
        self.extras = dict(extras or {})
        if self.config.scoring == "skyrl":
            self.skyrl_truth = skyrl_ground_truth(self.extras, "gsm8k")
        else:
            self.truth = reference_answer(self.extras, "gsm8k")
        self.turns = 0
        self.last: Score | None = None

    def init(self, prompt: list[Message]) -> tuple[list[Message], dict[str, Any]]:
        """The prompt is used as is."""
        return prompt, {}

    def score(self, action: str) -> Score:
        """Score one reply and remember it for the metrics."""
        cfg = self.config
        if cfg.scoring == "skyrl":
            self.last = skyrl_score(action, self.skyrl_truth, format_score=0.0)
        else:
            self.last = score_answer(
                action, self.truth, mode=cfg.mode, correct_reward=cfg.correct_reward, format_reward=cfg.format_reward
            )
        return self.last

    def step(self, action: str) -> StepOutput:
        """Score the reply; the episode always ends."""
        self.turns += 1
        s = self.score(action)
        return StepOutput(observations=[], reward=s.reward, done=True, metadata=_meta(s))

    def close(self) -> None:
        """Nothing to release."""
        return None

    def get_metrics(self) -> dict[str, float]:
        """``correct``, ``formatted``, ``parse_failure`` of the final reply, and ``turns``."""
        return _metrics(self.last, self.turns)

    @staticmethod
    def aggregate_metrics(metrics: Sequence[dict[str, float]]) -> dict[str, float]:
        """Mean of each metric over trajectories."""
        return _mean(metrics)


class Gsm8kMultiTurnEnv:
    """GSM8K with feedback and retries (see the module docstring).

    Args:
        config: ``[environments.gsm8k_multi_turn]`` options (defaults when None).
        extras: the dataset row without ``prompt`` plus ``max_turns``; needs
            ``reward_spec.ground_truth``.
    """

    def __init__(self, config: Gsm8kMultiTurnConfig | None = None, extras: dict[str, Any] | None = None) -> None:
        self.config = config or Gsm8kMultiTurnConfig()
        self.extras = dict(extras or {})
        if self.config.scoring == "skyrl":
            self.skyrl_truth = skyrl_ground_truth(self.extras, "gsm8k_multi_turn")
        else:
            self.truth = reference_answer(self.extras, "gsm8k_multi_turn")
        self.max_turns = max(1, int(self.extras.get("max_turns") or 1))
        self.turns = 0
        self.last: Score | None = None
        self.first_try_correct = False

    def init(self, prompt: list[Message]) -> tuple[list[Message], dict[str, Any]]:
        """The prompt is used as is."""
        return prompt, {"max_turns": self.max_turns}

    def step(self, action: str) -> StepOutput:
        """Score the reply; give feedback and another turn when wrong and turns remain."""
        cfg = self.config
        self.turns += 1
        if cfg.scoring == "skyrl":
            return self._step_skyrl(action)
        s = score_answer(action, self.truth, mode=cfg.mode, correct_reward=1.0, format_reward=0.0)
        self.last = s
        if self.turns == 1:
            self.first_try_correct = s.correct
        meta = _meta(s)
        if s.correct:
            reward = cfg.correct_reward * cfg.turn_discount ** (self.turns - 1)
            return StepOutput(observations=[], reward=reward, done=True, metadata=meta)
        if self.turns >= self.max_turns:
            reward = cfg.format_reward if s.extraction.formatted else 0.0
            return StepOutput(observations=[], reward=reward, done=True, metadata=meta)
        return StepOutput(
            observations=[{"role": "user", "content": self.feedback(s)}], reward=0.0, done=False, metadata=meta
        )

    def _step_skyrl(self, action: str) -> StepOutput:
        """SkyRL's turn: this turn's own reward; done when correct or out of turns."""
        s = skyrl_score(action, self.skyrl_truth, format_score=MULTI_TURN_FORMAT_SCORE / self.max_turns)
        self.last = s
        if self.turns == 1:
            self.first_try_correct = s.correct
        done = s.correct or self.turns >= self.max_turns
        observations = [] if done else skyrl_follow_up(self.max_turns - self.turns)
        return StepOutput(observations=observations, reward=s.reward, done=done, metadata=_meta(s))

    def feedback(self, s: Score) -> str:
        """The message after a wrong or missing answer."""
        value = s.extraction.value
        if value is None:
            return NO_ANSWER_FEEDBACK
        if self.config.feedback == "direction":
            return HIGH_FEEDBACK if value > self.truth else LOW_FEEDBACK
        return WRONG_FEEDBACK

    def close(self) -> None:
        """Nothing to release."""
        return None

    def get_metrics(self) -> dict[str, float]:
        """The single-turn metrics of the final reply plus ``first_try_correct``."""
        out = _metrics(self.last, self.turns)
        out["first_try_correct"] = float(self.first_try_correct)
        return out

    @staticmethod
    def aggregate_metrics(metrics: Sequence[dict[str, float]]) -> dict[str, float]:
        """Mean of each metric over trajectories."""
        return _mean(metrics)


def _meta(s: Score) -> dict[str, Any]:
    text = s.extraction.text
    if text is not None and len(text) > 80:  # a pathological "number" is not worth keeping in full
        text = text[:80] + "..."
    return {"answer": text, "answer_source": s.extraction.source, "correct": s.correct}


def _metrics(last: Score | None, turns: int) -> dict[str, float]:
    if last is None:  # never stepped (e.g. the prompt was too long)
        return {"correct": 0.0, "formatted": 0.0, "parse_failure": 1.0, "turns": float(turns)}
    return {
        "correct": float(last.correct),
        "formatted": float(last.extraction.formatted),
        "parse_failure": float(last.extraction.parse_failure),
        "turns": float(turns),
    }
