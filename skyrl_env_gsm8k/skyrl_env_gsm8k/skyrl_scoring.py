"""SkyRL's GSM8K reward rules (skyrl-gym 0.4.0), used with ``scoring = "skyrl"``.

skyrl-gym's ``gsm8k`` and ``gsm8k_multi_turn`` score a reply by its *first* ``#### `` answer,
compared as text with the row's ground truth:

* the answer is the first match of ``#### `` (exactly one space) followed by an optional
  ``-`` and a run of digits, dots and commas; the commas are removed. So ``#### 1,234`` reads
  ``1234``, ``#### 72.`` reads ``72.`` (not 72), ``#### $72`` and ``#### **72**`` have no
  answer there (the search goes on to a later ``#### ``), ``####72`` and ``####  72`` none;
* reward 1 when that text equals the ground truth exactly (``"72.0"`` is not ``"72"``),
  the format score when it differs, 0 when there is no answer;
* single turn: format score 0;
* multi-turn: every turn is scored (format score ``0.2 / max_turns``), its reward is that
  turn's, and the episode ends at a correct answer or after ``max_turns`` turns; between
  turns the environment asks again with SkyRL's two fixed messages.

Pure functions; the environments in ``skyrl_env_gsm8k.env`` call them.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Any

from skyrl_env_gsm8k.reward import Extraction, Score

#: The first "#### " answer (skyrl-gym's gsm8k/utils.py, method "strict").
_ANSWER_RE = re.compile(r"#### (-?[0-9.,]+)")
#: What a ground truth must look like to ever equal an extracted answer (commas are removed).
_MATCHABLE_RE = re.compile(r"-?[0-9.]+")
#: Multi-turn: the format score of all turns together (divided by max_turns per turn).
MULTI_TURN_FORMAT_SCORE = 0.2
ASK_AGAIN = (
    "Please provide your step-by-step reasoning, "
    "and also include a tentative numeric answer at the end in the exact format: '#### ANSWER'."
)
ASK_FINAL = "Now provide only the final numeric answer in the exact format: '#### ANSWER'."


def skyrl_answer(text: str) -> str | None:
    """The answer SkyRL reads: after the first ``#### ``, commas removed; None when there is none."""
    m = _ANSWER_RE.search(text)
    return None if m is None else m.group(1).replace(",", "")


def skyrl_ground_truth(extras: dict[str, Any], env_name: str) -> str:
    """The row's ground truth as SkyRL compares it (text), or a ValueError when no reply could
    ever match it (SkyRL would score every reply 0 or the format score, silently)."""
    spec = extras.get("reward_spec")
    truth = spec.get("ground_truth") if isinstance(spec, dict) else None
    if isinstance(truth, str) and _MATCHABLE_RE.fullmatch(truth):
        return truth
    info = extras.get("extra_info")
    where = f" (extra_info.index {info['index']})" if isinstance(info, dict) and "index" in info else ""
    raise ValueError(
        f"{env_name}: with scoring = 'skyrl' reward_spec.ground_truth must be the answer as SkyRL compares it, "
        f"text such as '72' or '-3.5' (digits, '.', a leading '-'; no commas){where}, got reward_spec={spec!r}. "
        "SkyRL compares the text after '#### ' with it exactly, so no reply could ever be correct; "
        "fix the data (SkyRL's gsm8k_dataset.py writes the number after '####' without commas) or use "
        "scoring = 'ours', which reads numbers"
    )


def skyrl_score(text: str, truth: str, *, format_score: float) -> Score:
    """1.0 for the right first ``#### `` answer, ``format_score`` for a wrong one, 0.0 without one."""
    answer = skyrl_answer(text)
    if answer is None:
        return Score(0.0, False, Extraction(None, None, "none"))
    try:
        value: Fraction | None = Fraction(answer)
    except (ValueError, ZeroDivisionError):  # "1.2.3" or "." counts for the format, not as a number
        value = None
    extraction = Extraction(answer, value, "marker")
    if answer == truth:
        return Score(1.0, True, extraction)
    return Score(float(format_score), False, extraction)


def skyrl_follow_up(turns_left: int) -> list[dict[str, str]]:
    """The message after a turn that did not end the episode (none when no turn is left)."""
    if turns_left <= 0:
        return []
    return [{"role": "user", "content": ASK_AGAIN if turns_left > 1 else ASK_FINAL}]
