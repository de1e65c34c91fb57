"""The builtin ``arithmetic`` environment: integer answers in ``\\boxed{...}``.

Scoring (``ArithmeticEnv.step``): 1.0 when the integer in the *last* ``\\boxed{...}`` of
the reply equals ``reward_spec.ground_truth``; ``format_reward`` (default 0) when the
reply has a boxed integer that is wrong; 0 otherwise. With ``scoring = "flexible"`` a reply
without a box is read by its *last number* instead (``"3 + 4 = 7."`` -> 7; a number glued to
letters, like ``7th``, is not a number; a decimal like ``7.5`` is read and is wrong): what a
pretrained instruct model that never boxes its answers needs. Any string is accepted;
scoring never raises. With ``max_turns > 1`` a wrong reply gets the observation "Incorrect,
try again." and another turn.

``step`` returns the plain-dict form of ``StepOutput`` so that this module (and the config
class the builtin registration imports) stays free of torch.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal

import attrs

from skyrl_core.config.fields import non_negative, option

_BOX = "\\boxed"
_INT_RE = re.compile(r"[+-]?[0-9]+(?:\.0*)?")
# a number standing on its own: not glued to letters, digits or a decimal point on either side
_NUMBER_RE = re.compile(r"(?<![\w.,])[+-]?[0-9][0-9,]*(?:\.[0-9]+)?(?![\w]|\.[0-9])")
MAX_DIGITS = 200  # longer "numbers" are not answers (and int() refuses > 4300 digits)
RETRY_MESSAGE = "Incorrect, try again."


@attrs.define(kw_only=True)
class ArithmeticEnvConfig:
    """``[environments.arithmetic]``: scoring of the builtin arithmetic task."""

    format_reward: float = option(
        0.0,
        help="Reward for a boxed integer that is wrong (a small shaping bonus for the answer format; "
        "pass@k counts any reward > 0 as a pass, so keep 0 for exact pass rates).",
        check=non_negative,
    )
    correct_reward: float = option(1.0, help="Reward for the correct answer.", check=non_negative)
    scoring: Literal["boxed", "flexible"] = option(
        "boxed",
        help="'boxed': the answer is the integer in the last \\boxed{}. 'flexible': the last \\boxed{} if the "
        "reply has one, else its last number (for pretrained instruct models that do not box answers).",
    )


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (balanced braces), or None."""
    if not isinstance(text, str):
        return None
    start = text.rfind(_BOX + "{")
    while start >= 0:
        depth = 0
        for i in range(start + len(_BOX), len(text)):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    return text[start + len(_BOX) + 1 : i]
        # unclosed: try an earlier, complete one
        start = text.rfind(_BOX + "{", 0, start)
    return None


def last_number(text: str) -> str | None:
    """The last number standing on its own in ``text`` (Unicode minus read as ``-``), or None."""
    if not isinstance(text, str):
        return None
    found = _NUMBER_RE.findall(text.replace("\u2212", "-"))
    return found[-1] if found else None


def parse_integer(text: str | None) -> int | None:
    """``" 1,234 "`` -> 1234, ``"-7"`` -> -7, ``"42.0"`` -> 42; anything else -> None."""
    if text is None:
        return None
    s = text.strip().replace(",", "").replace(" ", "").strip("$")
    if not s or len(s) > MAX_DIGITS or not _INT_RE.fullmatch(s):
        return None
    return int(s.split(".")[0])


class ArithmeticEnv:
    """Scores one reply to "What is 23 + 45?" (see the module docstring).

    ``extras`` must contain ``reward_spec.ground_truth`` (an integer or a string of one).
    """

    def __init__(self, config: ArithmeticEnvConfig | None = None, extras: dict[str, Any] | None = None) -> None:
        self.config = config or ArithmeticEnvConfig()
        self.extras = dict(extras or {})
        self.max_turns = int(self.extras.get("max_turns") or 1)
        self.turns = 0
        spec = self.extras.get("reward_spec") or {}
        truth = parse_integer(str(spec.get("ground_truth"))) if isinstance(spec, dict) else None
        if truth is None:
            raise ValueError(
                f"arithmetic: reward_spec.ground_truth must be an integer, got {spec!r}; "
                "regenerate the data with `skyrl data prepare arithmetic`"
            )
        self.ground_truth = truth
        self.correct = False
        self.formatted = False

    def init(self, prompt: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """The prompt is used as is."""
        return prompt, {}

    def score(self, action: str) -> float:
        """Reward of one reply; updates ``correct``/``formatted``."""
        answer = parse_integer(last_boxed(action))
        self.formatted = answer is not None
        if answer is None and self.config.scoring == "flexible":
            answer = parse_integer(last_number(action))
        self.correct = answer is not None and answer == self.ground_truth
        if self.correct:
            return self.config.correct_reward
        return self.config.format_reward if self.formatted else 0.0

    def step(self, action: str) -> dict[str, Any]:
        """Score the reply; offer another turn when wrong and turns remain."""
        self.turns += 1
        reward = self.score(action)
        done = self.correct or self.turns >= self.max_turns
        return {
            "observations": [] if done else [{"role": "user", "content": RETRY_MESSAGE}],
            "reward": reward,
            "done": done,
            "metadata": {"answer": last_boxed(action)},
        }

    def close(self) -> None:
        """Nothing to release."""
        return None

    def get_metrics(self) -> dict[str, float]:
        """``correct`` and ``formatted`` of the final reply, ``turns`` taken."""
        return {"correct": float(self.correct), "formatted": float(self.formatted), "turns": float(self.turns)}

    @staticmethod
    def aggregate_metrics(metrics: Sequence[dict[str, float]]) -> dict[str, float]:
        """Mean of each metric over trajectories."""
        keys = sorted({k for m in metrics for k in m})
        return {k: sum(m.get(k, 0.0) for m in metrics) / max(len(metrics), 1) for k in keys}
