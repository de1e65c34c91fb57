"""The text protocol between the model and the text2sql environment.

The model writes::

    <think> ... </think>          (optional; required with require_think)
    <sql> SELECT ... </sql>       a tool call: the query runs, the result comes back
    <solution> SELECT ... </solution>   the final answer: ends the episode

and receives, after a tool call, one user message::

    <observation>
    name | total
    Alice | 3
    (1 row)
    </observation>
    <reminder>You have 4 turns left.</reminder>

``parse_reply`` finds the action of one reply: the first *completed* ``<sql>`` or
``<solution>`` block (the first closing tag wins, which is where generation stops with the
stop strings ``</sql>`` and ``</solution>``); anything after it is ignored and reported as
``trailing``. The block's content is the text between the first opening tag of that kind
and the closing tag, so SQL comments or strings that mention a tag stay part of the query.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal

import attrs

from skyrl_env_sql.executor import QueryResult

SQL_OPEN, SQL_CLOSE = "<sql>", "</sql>"
SOLUTION_OPEN, SOLUTION_CLOSE = "<solution>", "</solution>"
STOP_STRINGS: tuple[str, ...] = (SQL_CLOSE, SOLUTION_CLOSE)
_THINK_RE = re.compile(r"<think>.*?</think>", re.DOTALL)


@attrs.frozen
class Action:
    """One reply, parsed.

    Attributes:
        kind: ``sql`` (a tool call), ``solution`` (the final answer) or ``none``.
        content: the stripped text inside the block ('' for ``none``).
        trailing: text after the block's closing tag (empty when generation stopped there).
        has_think: the reply contains a complete ``<think>...</think>`` block before the action.
    """

    kind: Literal["sql", "solution", "none"]
    content: str = ""
    trailing: str = ""
    has_think: bool = False


def _block(text: str, open_tag: str, close_tag: str) -> tuple[int, int, int] | None:
    """(start of opening tag, end of content, end of closing tag) of the first complete block."""
    start = text.find(open_tag)
    if start < 0:
        return None
    end = text.find(close_tag, start + len(open_tag))
    if end < 0:
        return None
    return start, end, end + len(close_tag)


def parse_reply(text: str) -> Action:
    """The action of one model reply (see the module docstring)."""
    blocks = []
    for kind, open_tag, close_tag in (("sql", SQL_OPEN, SQL_CLOSE), ("solution", SOLUTION_OPEN, SOLUTION_CLOSE)):
        found = _block(text, open_tag, close_tag)
        if found is not None:
            blocks.append((found[2], kind, found, len(open_tag)))
    if not blocks:
        return Action("none", has_think=bool(_THINK_RE.search(text)))
    _, kind, (start, end, after), open_len = min(blocks)
    return Action(
        kind,  # type: ignore[arg-type]
        content=text[start + open_len : end].strip(),
        trailing=text[after:],
        has_think=bool(_THINK_RE.search(text[:start])),
    )


# -- observations ----------------------------------------------------------------------------


def _cell(value: Any, max_cell_chars: int) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<blob of {len(bytes(value))} bytes>"
    if isinstance(value, float):
        text = repr(value)
    else:
        text = str(value)
    text = text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("|", "\\|")
    if len(text) > max_cell_chars:
        text = text[:max_cell_chars] + f"... ({len(text)} characters)"
    return text


def format_table(
    columns: Sequence[str], rows: Sequence[Sequence[Any]], *, truncated: bool, max_chars: int, max_cell_chars: int
) -> str:
    """A result as ``col | col`` lines plus a row count line, at most ``max_chars`` characters."""
    lines = [" | ".join(_cell(c, max_cell_chars) for c in columns)]
    lines += [" | ".join(_cell(v, max_cell_chars) for v in row) for row in rows]
    n = len(rows)
    if truncated:
        footer = f"(showing the first {n} rows; the query returned more, add a LIMIT or aggregate)"
    else:
        footer = f"({n} row{'s' if n != 1 else ''})"
    body = "\n".join(lines)
    if len(body) + len(footer) + 1 > max_chars:
        kept: list[str] = []
        size = 0
        for line in lines:
            if size + len(line) + 1 > max_chars - 120:
                break
            kept.append(line)
            size += len(line) + 1
        shown = max(len(kept) - 1, 0)
        body = "\n".join(kept)
        footer = f"(output cut to {max_chars} characters: showing {shown} of {n}{'+' if truncated else ''} rows)"
    return f"{body}\n{footer}"


def describe_result(result: QueryResult, *, max_chars: int, max_cell_chars: int) -> str:
    """The text shown to the model for one tool query."""
    if result.error is not None:
        return f"Error: {result.error}"
    if not result.columns:
        return "The statement ran but returned no result set; use a SELECT query."
    return format_table(
        result.columns, result.rows, truncated=result.truncated, max_chars=max_chars, max_cell_chars=max_cell_chars
    )


def reminder(turns_left: int) -> str:
    """The reminder appended to every observation."""
    if turns_left <= 1:
        return "<reminder>This is your last turn: give your final answer inside <solution>...</solution>.</reminder>"
    return f"<reminder>You have {turns_left} turns left.</reminder>"


def observation(text: str, turns_left: int) -> str:
    """A full observation message body: the text in ``<observation>`` tags plus the reminder."""
    return f"<observation>\n{text}\n</observation>\n{reminder(turns_left)}"
