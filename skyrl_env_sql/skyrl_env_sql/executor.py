"""Run one untrusted SQL query against a SQLite file without being able to change it.

Every query gets a fresh connection (so many threads can query one database at once; a
read-only connection takes only shared locks) with four layers of protection:

1. the file is opened with the URI ``mode=ro``: SQLite itself refuses to write it;
2. an authorizer (``set_authorizer``) allows only reading: ``SELECT``, reads, functions
   other than ``load_extension``/``fts3_tokenizer``, recursive CTEs, and the schema
   pragmas in ``SCHEMA_PRAGMAS``. Writes, DDL (temp tables too), ``ATTACH`` (and so
   ``VACUUM INTO``, which attaches its target), transactions and every other pragma are
   denied before the statement runs;
3. a progress handler interrupts the query at its deadline (a runaway recursive CTE or a
   cartesian explosion ends in bounded time); fetching rows is covered by the same
   deadline;
4. limits: ``SQLITE_LIMIT_LENGTH`` caps any string or blob a query builds, no database
   may be attached, and at most ``max_rows`` rows are fetched.

A single built-in call that runs long (a huge ``printf`` width, ``instr`` over megabyte
strings) cannot be interrupted by the progress handler; ``skyrl_env_sql.sandbox`` runs
``execute`` in worker processes with a hard kill for that case. Table-valued pragma
functions (``pragma_table_info(...)``) are refused (SQLite authorizes them as schema
updates); ``PRAGMA table_info(t)`` works.

With ``QueryLimits.rollback_copy_max_bytes`` set (``scoring = "skyrl"``), a statement these
layers refuse runs again the way SkyRL runs every query, inside a transaction that is rolled
back, but on a private in-memory copy of the database (``execute_on_copy``): its result (no
rows for a ``DELETE``, the rows of ``... RETURNING``, or an error) is then SkyRL's, and the
file is still never written. Attaching a file stays refused there.

``execute`` never raises for a bad query: the outcome is a ``QueryResult`` whose ``error``
and ``error_kind`` say what happened. It raises ``DatabaseNotFound`` when the file is
missing, which is a data problem rather than a model mistake.
"""

from __future__ import annotations

import sqlite3
import time
import urllib.parse
from pathlib import Path
from typing import Any, Literal

import attrs

ErrorKind = Literal["denied", "interrupted", "too_big", "multiple", "error"]

#: Pragmas that only describe the schema; every other pragma is denied.
SCHEMA_PRAGMAS = frozenset(
    {"table_info", "table_xinfo", "table_list", "index_list", "index_info", "index_xinfo", "foreign_key_list"}
)
DENIED_FUNCTIONS = frozenset({"load_extension", "fts3_tokenizer"})
_ALLOWED_ACTIONS = frozenset({sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_RECURSIVE})
_PROGRESS_STEPS = 1000  # VM instructions between deadline checks (~microseconds each)

_ACTIONS_DESCRIBED = (
    "ALTER_TABLE",
    "ANALYZE",
    "ATTACH",
    "CREATE_INDEX",
    "CREATE_TABLE",
    "CREATE_TEMP_INDEX",
    "CREATE_TEMP_TABLE",
    "CREATE_TEMP_TRIGGER",
    "CREATE_TEMP_VIEW",
    "CREATE_TRIGGER",
    "CREATE_VIEW",
    "CREATE_VTABLE",
    "DELETE",
    "DETACH",
    "DROP_INDEX",
    "DROP_TABLE",
    "DROP_TEMP_INDEX",
    "DROP_TEMP_TABLE",
    "DROP_TEMP_TRIGGER",
    "DROP_TEMP_VIEW",
    "DROP_TRIGGER",
    "DROP_VIEW",
    "DROP_VTABLE",
    "INSERT",
    "REINDEX",
    "SAVEPOINT",
    "TRANSACTION",
    "UPDATE",
)
_ACTION_NAMES = {getattr(sqlite3, f"SQLITE_{name}"): name.replace("_", " ") for name in _ACTIONS_DESCRIBED}
_SCHEMA_TABLES = frozenset({"sqlite_master", "sqlite_temp_master", "sqlite_schema", "sqlite_temp_schema"})
_ROW_WRITES = frozenset({sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_DELETE})


def describe_action(action: int, arg1: str | None, arg2: str | None) -> str:
    """Words for a denied authorizer action, e.g. 'INSERT on table people'."""
    if action in _ROW_WRITES:
        if (arg1 or "").lower() in _SCHEMA_TABLES:
            return "changing the schema (CREATE, DROP, ALTER, ANALYZE)"
        return f"{_ACTION_NAMES[action]} on table {arg1}"
    if action in (sqlite3.SQLITE_TRANSACTION, sqlite3.SQLITE_SAVEPOINT):
        return "transaction control (BEGIN, COMMIT, ROLLBACK, SAVEPOINT)"
    if action == sqlite3.SQLITE_ATTACH:
        return "ATTACH (also used by VACUUM)"
    if action == sqlite3.SQLITE_ALTER_TABLE:
        return f"ALTER TABLE {arg2}"
    name = _ACTION_NAMES.get(action, f"authorizer action {action}")
    return f"{name} {arg1}" if arg1 else name


class DatabaseNotFound(FileNotFoundError):
    """The SQLite file of a row does not exist (a data/config problem, not a model mistake)."""


@attrs.frozen
class QueryLimits:
    """Bounds of one query.

    Attributes:
        timeout_s: wall-clock budget for running the query and fetching its rows.
        max_rows: rows fetched at most (``QueryResult.truncated`` tells whether more exist).
        max_value_bytes: the largest string/blob the query may build (SQLITE_LIMIT_LENGTH).
        rollback_copy_max_bytes: 0: a statement the read-only connection refuses fails
            (``denied``). N > 0: it runs on a rolled-back in-memory copy of the database when the
            file has at most N bytes (``execute_on_copy``; SkyRL's semantics for writes).
    """

    timeout_s: float = 5.0
    max_rows: int = 50
    max_value_bytes: int = 1_000_000
    rollback_copy_max_bytes: int = 0


@attrs.frozen
class QueryResult:
    """What a query returned, or why it failed.

    Attributes:
        columns: column names (empty on error or for statements without a result set).
        rows: at most ``limits.max_rows`` rows, as tuples of Python values.
        truncated: the query had more rows than were fetched.
        error: a message for the model, or None on success.
        error_kind: ``denied`` (the authorizer or the read-only file refused it), ``interrupted``
            (time limit), ``too_big`` (SQLITE_LIMIT_LENGTH, or the worker's heap limit), ``multiple`` (more than one
            statement) or ``error`` (anything else: syntax, unknown table or column, ...).
        elapsed_s: seconds spent.
    """

    columns: tuple[str, ...] = ()
    rows: tuple[tuple[Any, ...], ...] = ()
    truncated: bool = False
    error: str | None = None
    error_kind: ErrorKind | None = None
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        """True when the query ran to completion (possibly truncated)."""
        return self.error is None


class _Guard:
    """The authorizer and progress handler of one connection; remembers why it refused."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.denied: str | None = None
        self.interrupted = False

    def authorize(self, action: int, arg1: str | None, arg2: str | None, _db: str | None, _trigger: str | None) -> int:
        if action in _ALLOWED_ACTIONS:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_FUNCTION:
            if (arg2 or "").lower() in DENIED_FUNCTIONS:
                return self._deny(f"the function {arg2}() is not allowed")
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_PRAGMA:
            name = (arg1 or "").lower()
            if name in SCHEMA_PRAGMAS:
                return sqlite3.SQLITE_OK
            allowed = ", ".join(sorted(SCHEMA_PRAGMAS))
            return self._deny(f"PRAGMA {name} is not allowed (only the schema pragmas {allowed})")
        return self._deny(f"{describe_action(action, arg1, arg2)} is not allowed")

    def _deny(self, reason: str) -> int:
        if self.denied is None:
            self.denied = reason
        return sqlite3.SQLITE_DENY

    def progress(self) -> int:
        if time.monotonic() > self.deadline:
            self.interrupted = True
            return 1
        return 0


def connect_readonly(path: str | Path, *, busy_timeout_s: float = 5.0) -> sqlite3.Connection:
    """Open ``path`` read-only (URI ``mode=ro``), in autocommit mode, usable from any thread."""
    path = Path(path)
    if not path.is_file():
        raise DatabaseNotFound(f"SQLite database not found: {path}")
    uri = f"file:{urllib.parse.quote(str(path.resolve()))}?mode=ro"
    return sqlite3.connect(uri, uri=True, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)


def execute(path: str | Path, sql: str, limits: QueryLimits | None = None) -> QueryResult:
    """Run ``sql`` on the database file ``path`` under ``limits`` (see the module docstring)."""
    limits = limits or QueryLimits()
    start = time.monotonic()
    conn = connect_readonly(path, busy_timeout_s=limits.timeout_s)
    guard = _Guard(start + limits.timeout_s)
    try:
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, limits.max_value_bytes)
        conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
        conn.set_authorizer(guard.authorize)
        conn.set_progress_handler(guard.progress, _PROGRESS_STEPS)
        try:
            cursor = conn.execute(sql)
            columns = tuple(str(d[0]) for d in cursor.description or ())
            rows = cursor.fetchmany(limits.max_rows + 1) if columns else []
        except Exception as exc:  # every failure becomes an observation
            failed = _failure(exc, guard, limits, time.monotonic() - start)
            if failed.error_kind == "denied" and limits.rollback_copy_max_bytes > 0:
                conn.close()
                return execute_on_copy(path, sql, limits, start=start)
            return failed
        return _result(columns, rows, limits, start)
    finally:
        conn.close()


def _result(columns: tuple[str, ...], rows: list[Any], limits: QueryLimits, start: float) -> QueryResult:
    return QueryResult(
        columns=columns,
        rows=tuple(tuple(r) for r in rows[: limits.max_rows]),
        truncated=len(rows) > limits.max_rows,
        elapsed_s=time.monotonic() - start,
    )


class _CopyGuard(_Guard):
    """The authorizer of ``execute_on_copy``: everything runs (on the copy) except attaching a
    file, loading an extension and ``fts3_tokenizer``."""

    def authorize(self, action: int, arg1: str | None, arg2: str | None, _db: str | None, _trigger: str | None) -> int:
        if action == sqlite3.SQLITE_ATTACH and (arg1 or "") not in ("", ":memory:"):
            return self._deny(f"ATTACH of the file {arg1!r}")
        if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in DENIED_FUNCTIONS:
            return self._deny(f"the function {arg2}() is not allowed")
        return sqlite3.SQLITE_OK


def execute_on_copy(path: str | Path, sql: str, limits: QueryLimits, *, start: float | None = None) -> QueryResult:
    """Run ``sql`` as SkyRL runs a query (``BEGIN``, the statement, rollback) on an in-memory copy
    of ``path``, within the deadline that began at ``start``; the file itself is only read.

    A database larger than ``limits.rollback_copy_max_bytes`` is not copied: the result is the
    read-only refusal.
    """
    start = time.monotonic() if start is None else start
    size = Path(path).stat().st_size
    if size > limits.rollback_copy_max_bytes:
        return QueryResult(
            error=f"the statement changes the database, and the database ({size} bytes) is larger than the "
            f"{limits.rollback_copy_max_bytes} bytes copied to run it without writing the file",
            error_kind="denied",
            elapsed_s=time.monotonic() - start,
        )
    src = connect_readonly(path, busy_timeout_s=limits.timeout_s)
    mem = sqlite3.connect(":memory:", check_same_thread=False)  # Python's default transaction handling, as SkyRL
    try:
        src.backup(mem)
    except Exception as exc:  # e.g. the worker's heap limit
        mem.close()
        return _failure(exc, _Guard(start + limits.timeout_s), limits, time.monotonic() - start)
    finally:
        src.close()
    guard = _CopyGuard(start + limits.timeout_s)
    try:
        mem.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, limits.max_value_bytes)
        mem.set_authorizer(guard.authorize)
        mem.set_progress_handler(guard.progress, _PROGRESS_STEPS)
        try:
            mem.execute("BEGIN TRANSACTION;")
            cursor = mem.execute(sql)
            columns = tuple(str(d[0]) for d in cursor.description or ())
            rows = cursor.fetchmany(limits.max_rows + 1) if columns else []
        except Exception as exc:
            return _failure(exc, guard, limits, time.monotonic() - start)
        return _result(columns, rows, limits, start)
    finally:
        mem.close()  # never committed: the copy is discarded


def _failure(exc: BaseException, guard: _Guard, limits: QueryLimits, elapsed: float) -> QueryResult:
    message = str(exc) or type(exc).__name__
    kind: ErrorKind
    if guard.interrupted:
        kind = "interrupted"
        message = f"the query was interrupted after {limits.timeout_s:g} s (time limit); simplify it or add a LIMIT"
    elif guard.denied is not None:
        kind = "denied"
        message = f"{guard.denied}: the database is read-only and only SELECT queries may run"
    elif isinstance(exc, sqlite3.ProgrammingError) and "one statement" in message:
        kind = "multiple"
        message = "only one SQL statement can run per <sql> block; send one query at a time"
    elif isinstance(exc, MemoryError):  # SQLITE_NOMEM: the worker's heap limit (sandbox)
        kind = "too_big"
        message = "out of memory: the query needs more memory than the SQL worker allows (max_memory_mb)"
    elif getattr(exc, "sqlite_errorname", "") == "SQLITE_TOOBIG" or "too big" in message:
        kind = "too_big"
        message = f"{message} (values are limited to {limits.max_value_bytes} bytes)"
    elif getattr(exc, "sqlite_errorname", "").startswith("SQLITE_READONLY") or "readonly" in message:
        kind = "denied"
        message = f"{message}: the database is read-only and only SELECT queries may run"
    else:
        kind = "error"
    return QueryResult(error=message, error_kind=kind, elapsed_s=elapsed)
