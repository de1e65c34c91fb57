"""Worker processes that run queries under a hard wall-clock limit.

The progress handler of ``skyrl_env_sql.executor`` interrupts a query between virtual
machine instructions, which bounds loops, joins, sorts and recursive CTEs. It cannot stop
a single built-in function call that runs long: ``printf('%.*c', 2000000000, 'x')`` or an
``instr``/``replace``/``trim`` over megabyte strings with adversarial patterns take
seconds to minutes inside one call. ``run_query`` therefore executes each query in a
worker process (the same guarded ``execute`` runs there) and kills the worker when it
has not answered ``grace_s`` seconds after the query's own time limit; a fresh worker
replaces it. Each worker also caps SQLite's heap (``PRAGMA hard_heap_limit``), so a query
that builds a huge temporary structure fails with "out of memory" instead of exhausting
the machine.

Workers are fresh interpreters (``python -c``: safe next to threads and CUDA, and the
parent's ``__main__`` is never re-imported), started lazily, up to ``max_workers`` per
process; callers beyond that wait for a free worker. An idle worker costs one Python
interpreter (~20 MB). Workers are stopped at exit and end when their pipe closes.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import threading
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from skyrl_env_sql.executor import DatabaseNotFound, QueryLimits, QueryResult, execute

READY = "ready"
START_TIMEOUT_S = 60.0


def _serve(inbox: Connection, outbox: Connection, heap_limit_bytes: int) -> None:
    """The worker's loop: answer ``(path, sql, limits)`` requests until the pipe closes."""
    import sqlite3

    # The heap limit is process-wide in SQLite: fine here, this process only runs queries.
    mem = sqlite3.connect(":memory:")
    mem.execute(f"PRAGMA hard_heap_limit = {int(heap_limit_bytes)}")
    mem.close()
    outbox.send(READY)
    while True:
        try:
            path, sql, limits = inbox.recv()
        except (EOFError, OSError):
            return
        try:
            reply: Any = execute(path, sql, limits)
        except DatabaseNotFound as exc:
            reply = exc
        except Exception as exc:  # anything unexpected goes back to the caller as a failed query
            reply = QueryResult(error=f"{type(exc).__name__}: {exc}", error_kind="error")
        try:
            outbox.send(reply)
        except OSError:  # the parent went away (BrokenPipeError): nothing left to serve
            return


def _serve_fds(inbox_fd: str, outbox_fd: str, heap_limit_bytes: str) -> None:
    """Entry point of ``python -c`` in a worker: the pipe ends arrive as file descriptor numbers."""
    _serve(Connection(int(inbox_fd), writable=False), Connection(int(outbox_fd), readable=False), int(heap_limit_bytes))


_WORKER_CODE = "import sys; from skyrl_env_sql.sandbox import _serve_fds; _serve_fds(*sys.argv[1:])"


class _Worker:
    """One query process, started as a plain ``python -c`` (not multiprocessing's spawn, which
    would re-import the parent's ``__main__`` script in the child)."""

    def __init__(self, heap_limit_bytes: int) -> None:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _WORKER_CODE, str(to_child_r), str(from_child_w), str(heap_limit_bytes)],
                pass_fds=(to_child_r, from_child_w),
                stdin=subprocess.DEVNULL,
            )
        except BaseException:
            for fd in (to_child_r, to_child_w, from_child_r, from_child_w):
                os.close(fd)
            raise
        os.close(to_child_r)
        os.close(from_child_w)
        self.outbox = Connection(to_child_w, readable=False)
        self.inbox = Connection(from_child_r, writable=False)
        if not self.inbox.poll(START_TIMEOUT_S) or self.inbox.recv() != READY:
            self.kill()
            raise RuntimeError(f"text2sql: a SQL worker process did not start within {START_TIMEOUT_S:g} s")

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        if self.alive():
            self.process.kill()
        self.process.wait(timeout=10)
        self.inbox.close()
        self.outbox.close()


class SandboxPool:
    """Up to ``max_workers`` query processes shared by every environment of this process."""

    def __init__(self, max_workers: int, heap_limit_bytes: int) -> None:
        self.max_workers = max_workers
        self.heap_limit_bytes = heap_limit_bytes
        self.pid = os.getpid()
        self._idle: list[_Worker] = []
        self._count = 0
        self._cond = threading.Condition()
        self.killed = 0  # workers killed at the hard limit (for tests and diagnostics)

    def _acquire(self) -> _Worker:
        with self._cond:
            while True:
                while self._idle:
                    worker = self._idle.pop()
                    if worker.alive():
                        return worker
                    worker.kill()  # died while idle (killed from outside): replace it
                    self._count -= 1
                if self._count < self.max_workers:
                    break
                self._cond.wait()
            self._count += 1
        try:
            return _Worker(self.heap_limit_bytes)
        except BaseException:
            with self._cond:
                self._count -= 1
                self._cond.notify()
            raise

    def _release(self, worker: _Worker | None) -> None:
        with self._cond:
            if worker is None:
                self._count -= 1
            else:
                self._idle.append(worker)
            self._cond.notify()

    def run(self, path: str | Path, sql: str, limits: QueryLimits, grace_s: float) -> QueryResult:
        """Execute in a worker; kill it if no answer arrives within ``limits.timeout_s + grace_s``."""
        worker: _Worker | None = self._acquire()
        assert worker is not None
        try:
            worker.outbox.send((str(path), sql, limits))
            if worker.inbox.poll(limits.timeout_s + grace_s):
                reply = worker.inbox.recv()
            else:
                worker.kill()
                worker = None
                with self._cond:
                    self.killed += 1
                return QueryResult(
                    error=f"the query was stopped after {limits.timeout_s + grace_s:g} s (hard time limit: one "
                    "function call ran too long); simplify it",
                    error_kind="interrupted",
                    elapsed_s=limits.timeout_s + grace_s,
                )
        except (EOFError, OSError, BrokenPipeError) as exc:
            if worker is not None:
                worker.kill()
                worker = None
            return QueryResult(error=f"the query crashed its worker process ({type(exc).__name__})", error_kind="error")
        finally:
            self._release(worker)
        if isinstance(reply, BaseException):
            raise reply
        return reply

    def shutdown(self) -> None:
        """Stop every idle worker (busy ones end when their parent exits)."""
        with self._cond:
            workers, self._idle = self._idle, []
            self._count -= len(workers)
        for w in workers:
            w.kill()


_POOL: SandboxPool | None = None
_POOL_LOCK = threading.Lock()


def get_pool(max_workers: int, heap_limit_bytes: int) -> SandboxPool:
    """The process-wide pool (created on first use, re-created after a fork; grows to the largest ``max_workers``)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL.pid != os.getpid():
            _POOL = SandboxPool(max_workers, heap_limit_bytes)
        else:
            _POOL.max_workers = max(_POOL.max_workers, max_workers)
        return _POOL


def run_query(
    path: str | Path,
    sql: str,
    limits: QueryLimits,
    *,
    isolation: str = "process",
    max_workers: int = 8,
    grace_s: float = 2.0,
    heap_limit_bytes: int = 1 << 30,
) -> QueryResult:
    """Run ``sql`` under ``limits``: in a worker process (``isolation="process"``) or in this thread."""
    if isolation == "thread":
        return execute(path, sql, limits)
    if not Path(path).is_file():  # answer without a round trip, and with the caller's exception type
        raise DatabaseNotFound(f"SQLite database not found: {path}")
    return get_pool(max_workers, heap_limit_bytes).run(path, sql, limits, grace_s)


@atexit.register
def _shutdown_pool() -> None:
    if _POOL is not None and _POOL.pid == os.getpid():
        _POOL.shutdown()
