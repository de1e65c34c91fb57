"""The ``text2sql`` environment: multi-turn text-to-SQL against a real SQLite database.

One instance per trajectory, created as ``Text2SQLEnv(config, extras)``. The row must
carry ``db_id``, its family in ``data`` (or ``[environments.text2sql] default_family``)
and the gold query in ``reward_spec.ground_truth`` (SkyRL-SQL's columns).

Each reply (``step``) is parsed by ``skyrl_env_sql.protocol.parse_reply``:

* ``<sql>Q</sql>``: Q runs read-only under ``query_timeout_s`` and the row/character limits;
  the observation is the result table or the error, plus the number of turns left;
* ``<solution>Q</solution>``: the episode ends and Q is scored;
* neither: the observation says so (a format error) and the turn is used up;
* the last allowed turn ends the episode whatever it contains (an ``<sql>`` call there
  is not executed).

Reward, given once at the end (0 on earlier turns):

* ``1.0``: the solution's result equals the gold query's (``skyrl_env_sql.compare``:
  multiset, ordered only when the gold query has a top-level ORDER BY, numeric tolerance);
* ``0.0``: the solution runs but differs, or fails to run (error, denied, time limit,
  more than ``max_compare_rows`` rows);
* ``format_penalty`` (default -1): no ``<solution>`` before the turns ran out, an empty
  solution, or with ``require_think`` a reply without ``<think>...</think>``.

``scoring = "skyrl"`` follows skyrl-gym's text2sql instead (``skyrl_env_sql.skyrl_scoring``):
its turn rules, observation wrapper, format check over the whole conversation and set
comparison; statements the read-only database refuses run on a rolled-back in-memory copy
(``skyrl_env_sql.executor.execute_on_copy``), as SkyRL runs them in a rolled-back transaction.

Queries run in worker processes by default (``isolation``; see ``skyrl_env_sql.sandbox``)
and can never change the database (``skyrl_env_sql.executor``).

A missing database or a gold query that fails raises (the trajectory is recorded as
failed with reward 0): both are data problems, not the model's.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs

from skyrl_env_sql.compare import has_top_level_order_by, results_match
from skyrl_env_sql.config import Text2SQLConfig
from skyrl_env_sql.executor import QueryLimits, QueryResult
from skyrl_env_sql.layout import resolve_db_path
from skyrl_env_sql.protocol import STOP_STRINGS, Action, describe_result, observation, parse_reply
from skyrl_env_sql.sandbox import run_query
from skyrl_env_sql.skyrl_scoring import (
    FORMAT_PENALTY,
    INVALID_ACTION,
    same_row_set,
    skyrl_done,
    skyrl_observation,
    skyrl_solution,
    skyrl_tool_query,
)

NO_ACTION_MESSAGE = (
    "Your reply has no <sql>...</sql> query and no <solution>...</solution> answer. Run a query with "
    "<sql>...</sql> or give the final query with <solution>...</solution>."
)


class GoldQueryError(RuntimeError):
    """The row's gold query does not run, or returns too many rows to compare."""


_GOLD_CACHE: OrderedDict[tuple[Any, ...], QueryResult] = OrderedDict()
_GOLD_CACHE_SIZE = 128
_GOLD_LOCK = threading.Lock()


def gold_result(
    path: Path, sql: str, limits: QueryLimits, run: Callable[[str, QueryLimits], QueryResult]
) -> QueryResult:
    """The gold query's result (``run(sql, limits)`` executes it on ``path``), cached per
    (database file version, query, limits).

    The samples of one prompt share a gold query, so it runs once per group, not once per
    sample. Only successful results are cached: a gold query interrupted on a busy machine
    is tried again by the next sample.
    """
    st = path.stat()
    key = (str(path), st.st_mtime_ns, st.st_size, sql, limits)
    with _GOLD_LOCK:
        if key in _GOLD_CACHE:
            _GOLD_CACHE.move_to_end(key)
            return _GOLD_CACHE[key]
    result = run(sql, limits)
    if result.ok:
        with _GOLD_LOCK:
            _GOLD_CACHE[key] = result
            while len(_GOLD_CACHE) > _GOLD_CACHE_SIZE:
                _GOLD_CACHE.popitem(last=False)
    return result


class Text2SQLEnv:
    """Multi-turn text-to-SQL on one SQLite database (see the module docstring)."""

    #: The generator adds these to the sampling stop strings, so a turn ends at a tool call.
    stop_strings: tuple[str, ...] = STOP_STRINGS

    def __init__(self, config: Text2SQLConfig | None = None, extras: dict[str, Any] | None = None) -> None:
        self.config = config or Text2SQLConfig()
        self.extras = dict(extras or {})
        self.max_turns = int(self.extras.get("max_turns") or 1)
        self.turns = 0
        db_id = self.extras.get("db_id")
        family = self.extras.get("data") or self.config.default_family
        spec = self.extras.get("reward_spec")
        gold = spec.get("ground_truth") if isinstance(spec, dict) else None
        required = (("db_id", db_id), ("data (the database family)", family), ("reward_spec.ground_truth", gold))
        missing = [name for name, value in required if not isinstance(value, str) or not value.strip()]
        if missing:
            raise ValueError(
                f"text2sql: the row lacks {', '.join(missing)}; rows need db_id, data (spider, bird, synsql, ... "
                "or set [environments.text2sql] default_family) and reward_spec.ground_truth (the gold SQL). "
                "Prepare data with `skyrl data prepare text2sql` or `skyrl data prepare text2sql_synthetic`."
            )
        self.db_id: str = db_id  # type: ignore[assignment]
        self.family: str = family  # type: ignore[assignment]
        self.gold_sql: str = gold.strip()  # type: ignore[union-attr]
        self.db_path = resolve_db_path(self.config.db_root, self.family, self.db_id, self.config.family_dirs)
        cfg = self.config
        self.tool_limits = QueryLimits(cfg.query_timeout_s, cfg.max_rows, cfg.max_value_bytes)
        self.score_limits = QueryLimits(cfg.solution_timeout_s, cfg.max_compare_rows, cfg.max_value_bytes)
        if cfg.scoring == "skyrl":  # SkyRL runs any statement, rolled back: a copy answers what the file refuses
            copy = cfg.max_memory_mb << 20
            self.tool_limits = attrs.evolve(self.tool_limits, rollback_copy_max_bytes=copy)
            self.score_limits = attrs.evolve(self.score_limits, rollback_copy_max_bytes=copy)
        #: skyrl scoring: every reply and observation of the episode, in order (SkyRL's chat history)
        self.conversation: list[str] = []
        self.reward: float | None = None
        self.correct = False
        self.format_error = False
        self.missing_think = 0
        self.sql_calls = 0
        self.sql_errors = 0
        self.sql_interrupted = 0
        self.sql_denied = 0
        self.solution_error: str | None = None

    # -- protocol --------------------------------------------------------------------------

    def init(self, prompt: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """The prompt is used as is (the dataset already holds instructions, schema and question)."""
        return prompt, {"db_id": self.db_id, "family": self.family}

    def step(self, action: str) -> dict[str, Any]:
        """Consume one reply: run a tool query, or end the episode and score the solution."""
        self.turns += 1
        if self.config.scoring == "skyrl":
            return self._step_skyrl(action if isinstance(action, str) else "")
        parsed = parse_reply(action if isinstance(action, str) else "")
        if not parsed.has_think:
            self.missing_think += 1
        meta: dict[str, Any] = {"action": parsed.kind, "turn": self.turns}
        if parsed.trailing.strip():
            meta["ignored_trailing_text"] = parsed.trailing[:200]
        if parsed.kind == "solution":
            return self._finish(self._score(parsed, meta), meta)
        if self.turns >= self.max_turns:
            self.format_error = True
            meta["format_error"] = "no <solution> before the last turn"
            return self._finish(self.config.format_penalty, meta)
        turns_left = self.max_turns - self.turns
        if parsed.kind == "sql":
            text = self._run_tool_query(parsed.content, meta)
        else:
            meta["format_error"] = "no <sql> or <solution> block"
            text = NO_ACTION_MESSAGE
        return {
            "observations": [{"role": "user", "content": observation(text, turns_left)}],
            "reward": 0.0,
            "done": False,
            "metadata": meta,
        }

    def close(self) -> None:
        """Nothing to release: every query opens and closes its own connection."""
        return None

    def get_metrics(self) -> dict[str, float]:
        """Per-trajectory metrics (means over trajectories are reported)."""
        return {
            "correct": float(self.correct),
            "format_error": float(self.format_error),
            "turns": float(self.turns),
            "sql_calls": float(self.sql_calls),
            "sql_errors": float(self.sql_errors),
            "sql_interrupted": float(self.sql_interrupted),
            "sql_denied": float(self.sql_denied),
            "solution_failed": float(self.solution_error is not None),
        }

    @staticmethod
    def aggregate_metrics(metrics: Sequence[dict[str, float]]) -> dict[str, float]:
        """Mean of each metric over trajectories."""
        keys = sorted({k for m in metrics for k in m})
        return {k: sum(m.get(k, 0.0) for m in metrics) / max(len(metrics), 1) for k in keys}

    # -- internals ---------------------------------------------------------------------------

    def _query(self, sql: str, limits: QueryLimits) -> QueryResult:
        cfg = self.config
        return run_query(
            self.db_path,
            sql,
            limits,
            isolation=cfg.isolation,
            max_workers=cfg.workers,
            grace_s=cfg.hard_limit_grace_s,
            heap_limit_bytes=cfg.max_memory_mb << 20,
        )

    def _finish(self, reward: float, meta: dict[str, Any]) -> dict[str, Any]:
        self.reward = reward
        meta["reward"] = reward
        return {"observations": [], "reward": reward, "done": True, "metadata": meta}

    def _run_tool_query(self, sql: str, meta: dict[str, Any]) -> str:
        self.sql_calls += 1
        if not sql:
            self.sql_errors += 1
            meta["sql_error"] = "empty query"
            return "Error: the <sql> block is empty; write one SQL query inside it."
        result = self._query(sql, self.tool_limits)
        if result.error is not None:
            self.sql_errors += 1
            self.sql_interrupted += result.error_kind == "interrupted"
            self.sql_denied += result.error_kind == "denied"
            meta["sql_error"] = result.error_kind
        else:
            meta["rows"] = len(result.rows)
            meta["truncated"] = result.truncated
        return describe_result(result, max_chars=self.config.max_chars, max_cell_chars=self.config.max_cell_chars)

    def _step_skyrl(self, action: str) -> dict[str, Any]:
        """One turn under SkyRL's rules (``skyrl_env_sql.skyrl_scoring``)."""
        self.conversation.append(action)
        meta: dict[str, Any] = {"turn": self.turns}
        if skyrl_done(action, self.turns, self.max_turns):
            meta["action"] = "solution"
            return self._finish(self._score_skyrl("".join(self.conversation), meta), meta)
        sql = skyrl_tool_query(action)
        if sql is None:
            meta["action"] = "none"
            body = INVALID_ACTION
        else:
            meta["action"] = "sql"
            body = self._run_tool_query(sql.strip(), meta)
        text = skyrl_observation(body, self.max_turns - self.turns)
        self.conversation.append(text)
        return {"observations": [{"role": "user", "content": text}], "reward": 0.0, "done": False, "metadata": meta}

    def _score_skyrl(self, conversation: str, meta: dict[str, Any]) -> float:
        """SkyRL's final reward of the whole conversation: -1, 0 or 1."""
        solution = skyrl_solution(conversation)
        if solution is None:
            self.format_error = True
            meta["format_error"] = "SkyRL's format check failed (see skyrl_env_sql.skyrl_scoring)"
            return FORMAT_PENALTY
        pred = self._query(solution, self.score_limits)
        if pred.error is not None or pred.truncated:
            self.solution_error = pred.error or f"more than {self.config.max_compare_rows} rows (max_compare_rows)"
            meta["solution_error"] = self.solution_error
            return 0.0
        gold = self._gold(self.score_limits)
        self.correct = same_row_set(pred.rows, gold.rows)
        return 1.0 if self.correct else 0.0

    def _gold(self, limits: QueryLimits) -> QueryResult:
        """The gold query's result, or GoldQueryError (a data problem, never the model's)."""
        gold = gold_result(self.db_path, self.gold_sql, limits, self._query)
        if gold.error is not None:
            raise GoldQueryError(
                f"text2sql: the gold query of db_id {self.db_id!r} failed on {self.db_path}: {gold.error}. "
                f"Query: {self.gold_sql[:300]!r}. Fix the row's reward_spec.ground_truth or the database."
            )
        if gold.truncated:
            raise GoldQueryError(
                f"text2sql: the gold query of db_id {self.db_id!r} returns more than {self.config.max_compare_rows} "
                "rows; raise [environments.text2sql] max_compare_rows to score it"
            )
        return gold

    def _score(self, parsed: Action, meta: dict[str, Any]) -> float:
        """The final reward of a ``<solution>`` reply."""
        cfg = self.config
        if not parsed.content:
            self.format_error = True
            meta["format_error"] = "empty <solution>"
            return cfg.format_penalty
        if cfg.require_think and self.missing_think:
            self.format_error = True
            meta["format_error"] = f"{self.missing_think} of {self.turns} replies without <think>...</think>"
            return cfg.format_penalty
        pred = self._query(parsed.content, self.score_limits)
        if pred.error is not None or pred.truncated:
            self.solution_error = pred.error or f"more than {cfg.max_compare_rows} rows (max_compare_rows)"
            meta["solution_error"] = self.solution_error
            return 0.0
        gold = self._gold(self.score_limits)
        ordered = cfg.respect_order and has_top_level_order_by(self.gold_sql)
        self.correct = results_match(pred.rows, gold.rows, ordered=ordered, rel_tol=cfg.rel_tol, abs_tol=cfg.abs_tol)
        meta["ordered_comparison"] = ordered
        return 1.0 if self.correct else 0.0
