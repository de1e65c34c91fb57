"""SkyRL-SQL's reward rules (skyrl-gym 0.4.0's ``text2sql``), used with ``scoring = "skyrl"``.

The episode (``skyrl_env_sql.env.Text2SQLEnv`` in this mode):

* a turn ends the episode when its reply contains both ``<solution>`` and ``</solution>``
  (anywhere, in any order), or when it is the last of ``max_turns``;
* otherwise the first ``<sql>...</sql>`` of the reply is run as a tool query and the result
  comes back as ``\\n\\n<observation>RESULT\\n<reminder>You have N turns left to complete the
  task.</reminder></observation>\\n\\n`` (a reply without ``<sql>`` gets SkyRL's "Your previous
  action is invalid" message in the same wrapper);
* intermediate turns earn 0; the last turn earns the reward of the whole conversation.

The reward (``skyrl_solution``, then the comparison in the environment) looks at every reply
*and* every observation of the episode, joined into one text:

* -1 unless the format holds: exactly one ``<solution>`` and after it exactly one
  ``</solution>``; no ``<think>``, ``<sql>`` or ``<observation>`` tag (opening or closing, any
  case) inside the solution; at least one ``<think>...</think>`` somewhere; and every
  ``</observation>`` before the solution followed (after whitespace) by ``<think>``;
* otherwise the solution (stripped) and the gold query both run, each inside a transaction
  that is rolled back, and the reward is 1 when both succeed with the same *set* of rows
  (duplicates and order ignored; values compared by Python equality, so ``1 == 1.0``), else 0.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

SOLUTION_OPEN, SOLUTION_CLOSE = "<solution>", "</solution>"
_SQL_RE = re.compile(r"<sql>(.*?)</sql>", re.DOTALL)
_TAG_IN_SOLUTION_RE = re.compile(r"</?(think|sql|observation)\b", re.IGNORECASE)
_THINK_RE = re.compile(r"<think>(.*?)</think>", re.DOTALL)
_OBSERVATION_END_RE = re.compile(r"</observation>", re.IGNORECASE)
#: The penalty for a conversation whose format does not hold.
FORMAT_PENALTY = -1.0
INVALID_ACTION = (
    "Your previous action is invalid. Follow the format of outputting thinking process and sql tool, and try again."
)


def skyrl_done(action: str, turns: int, max_turns: int) -> bool:
    """Whether this reply ends the episode (a ``<solution>`` pair, or the last turn)."""
    return turns >= max_turns or (SOLUTION_OPEN in action and SOLUTION_CLOSE in action)


def skyrl_tool_query(action: str) -> str | None:
    """The first ``<sql>...</sql>`` of a reply, as written (not stripped), or None."""
    m = _SQL_RE.search(action)
    return None if m is None else m.group(1)


def skyrl_observation(body: str, turns_left: int) -> str:
    """A tool result (or ``INVALID_ACTION``) in SkyRL's observation wrapper."""
    reminder = f"<reminder>You have {turns_left} turns left to complete the task.</reminder>"
    return f"\n\n<observation>{body}\n{reminder}</observation>\n\n"


def skyrl_solution(conversation: str) -> str | None:
    """The solution query of the whole conversation (stripped), or None when its format fails."""
    if conversation.count(SOLUTION_OPEN) != 1:
        return None
    before, tail = conversation.split(SOLUTION_OPEN, 1)
    if tail.count(SOLUTION_CLOSE) != 1:
        return None
    solution = tail.split(SOLUTION_CLOSE, 1)[0]
    if _TAG_IN_SOLUTION_RE.search(solution):
        return None
    if not _THINK_RE.search(conversation):
        return None
    for m in _OBSERVATION_END_RE.finditer(before):
        if not before[m.end() :].lstrip().lower().startswith("<think>"):
            return None
    return solution.strip()


def same_row_set(pred: Sequence[Sequence[Any]], gold: Sequence[Sequence[Any]]) -> bool:
    """SkyRL's comparison: the rows as sets (duplicates and order ignored, Python equality)."""
    return frozenset(tuple(r) for r in pred) == frozenset(tuple(r) for r in gold)
