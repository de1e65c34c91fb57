"""CPU torch work on the thread that is waiting for it (``wait_lending`` and ``run_on_waiting_thread``).

Why: torch's CPU builds run intra-op parallelism on OpenMP (GNU libgomp), which keeps one team
of worker threads per OS thread that enters a parallel region. A run that trains on the main
thread and decodes in a worker thread (the native backend's executor) owns two teams, so the
process holds more OpenMP threads than a 2-core machine has cores; libgomp then throttles the
spin of its idle workers (about 1,000 iterations instead of 300,000 before they sleep on a
futex), and each of the ~100 small operators of a decode step pays a futex wake-up. Measured on
the CPU anchor (bench/RESULTS.md, "Run 8"): 64 rows x 64 tokens decode in 0.45 s on two threads
of a thread that is the only OpenMP user, 0.74 s once a second thread has its own team, and
0.72 s on one thread.

So, in the synchronous case, where the trainer's thread has nothing to do but wait for the
batch, that thread runs the decoding itself:

* ``wait_lending(start)``: start some work, wait for its ``concurrent.futures.Future`` and, while
  waiting, run the jobs posted to this thread (``LoopThread.run_until_complete(lend=True)``);
* ``await run_on_waiting_thread(fn, *args, fallback=executor)``: run ``fn(*args)`` on the most
  recent thread waiting in ``wait_lending``, or in ``fallback`` when none is (off-policy modes,
  whose trainer is busy training while generation runs; tests that drive a loop themselves).

A job posted to a waiter that stops waiting before taking it goes to its fallback executor. A
job may wait and lend again (waits nest on one thread and share its inbox).
Who posts decides what is worth moving: the native backend does it on the CPU only (a CUDA
engine's thread does not compete for cores).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
#: Inboxes of the threads waiting in ``wait_lending``, one per thread, most recent first to wait last.
_waiters: list[queue.SimpleQueue[Any]] = []
_local = threading.local()


def lent() -> bool:
    """Whether the calling thread is running a job for ``run_on_waiting_thread`` while it waits (code
    that changes per-thread state, like torch's thread count, must then put it back)."""
    return getattr(_local, "lent", False)


class _Job:
    """``fn(*args)`` for an asyncio future of ``loop``; ``fallback`` runs it if its waiter leaves."""

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], loop: asyncio.AbstractEventLoop,
                 future: asyncio.Future[Any], fallback: concurrent.futures.Executor) -> None:
        self.fn, self.args, self.loop, self.future, self.fallback = fn, args, loop, future, fallback

    def run(self) -> None:
        """Run the job and hand its result (or exception) to its future on the loop's thread."""
        try:
            result = self.fn(*self.args)
        except BaseException as exc:  # handed to the awaiting coroutine
            error = exc
            self._deliver(lambda: self.future.set_exception(error))
            if not isinstance(exc, Exception):  # KeyboardInterrupt, SystemExit: the waiting thread's own too
                raise
        else:
            self._deliver(lambda: self.future.set_result(result))

    def _deliver(self, setter: Callable[[], None]) -> None:
        def set_once() -> None:
            if not self.future.done():  # the awaiting coroutine may have been cancelled
                setter()

        try:
            self.loop.call_soon_threadsafe(set_once)
        except RuntimeError:  # the loop was closed meanwhile: nobody is waiting any more
            pass


class _Lender:
    """One waiting thread's inbox: jobs, and the tokens of its waits whose futures are done. Waits
    nest (a job may wait again); they share the inbox, so whichever is innermost runs the jobs."""

    def __init__(self) -> None:
        self.inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.depth = 0
        self.finished: set[object] = set()


def wait_lending(start: Callable[[], concurrent.futures.Future[T]]) -> T:
    """Call ``start()`` (which schedules some work and returns its future) and wait for the future,
    running the jobs posted with ``run_on_waiting_thread`` meanwhile; return its result.

    The thread offers itself before ``start`` runs, so work posted at once finds it.
    """
    me: _Lender | None = getattr(_local, "lender", None)
    if me is None:
        me = _local.lender = _Lender()
    token = object()
    with _lock:
        if me.depth == 0:
            _waiters.append(me.inbox)
        me.depth += 1
    try:
        future = start()
        future.add_done_callback(lambda _: me.inbox.put(token))
        while token not in me.finished:
            item = me.inbox.get()
            if not isinstance(item, _Job):  # a wait's token: this one's, or an outer wait's
                me.finished.add(item)
                continue
            outer, _local.lent = lent(), True
            try:
                item.run()
            finally:
                _local.lent = outer
        me.finished.discard(token)
    finally:
        with _lock:
            me.depth -= 1
            last = me.depth == 0
            if last:
                _waiters.remove(me.inbox)
        if last:  # jobs posted as the wait ended: to their executors
            while True:
                try:
                    item = me.inbox.get_nowait()
                except queue.Empty:
                    break
                if isinstance(item, _Job):
                    try:
                        item.fallback.submit(item.run)
                    except RuntimeError:  # the executor was shut down meanwhile: run it here
                        item.run()
            me.finished.clear()
    return future.result()


def waiting() -> bool:
    """Whether some thread is waiting in ``wait_lending`` now."""
    with _lock:
        return bool(_waiters)


async def run_on_waiting_thread(fn: Callable[..., T], *args: Any, fallback: concurrent.futures.Executor) -> T:
    """Run ``fn(*args)`` on the thread waiting in ``wait_lending`` (the most recent one) if there is
    one, else in ``fallback``; await its result either way."""
    loop = asyncio.get_running_loop()
    with _lock:
        inbox = _waiters[-1] if _waiters else None
        if inbox is not None:
            future: asyncio.Future[T] = loop.create_future()
            inbox.put(_Job(fn, args, loop, future, fallback))
    if inbox is None:
        return await loop.run_in_executor(fallback, fn, *args)
    return await future
