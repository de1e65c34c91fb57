"""``LoopThread``: the run's asyncio event loop, running in a thread of its own.

In the off-policy modes generation must go on while the trainer thread computes, so the
loop cannot be driven by ``run_until_complete`` from the trainer thread alone. A
``LoopThread`` stands in for ``run.loop``: code on any other thread still calls
``run.loop.run_until_complete(coro)`` (it blocks until the coroutine is done, as with a
plain loop), while background tasks (``submit``) keep running between such calls. With
``lend=True`` the blocked thread runs the CPU torch work posted to it with
``skyrl_core.threads.run_on_waiting_thread`` (the native backend's decoding on the CPU), so a
synchronous run computes on one thread only (that module says why).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from skyrl_core.threads import wait_lending

T = TypeVar("T")


class LoopThread:
    """An event loop served by a daemon thread (see the module docstring).

    Args:
        name: the thread's name (shows in stack dumps).
    """

    def __init__(self, name: str = "skyrl-generation") -> None:
        self.loop = asyncio.new_event_loop()
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def in_loop_thread(self) -> bool:
        """Whether the caller runs on the loop's own thread."""
        return threading.current_thread() is self._thread

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the loop; return a future the calling thread can wait on."""
        if self._closed:
            coro.close()
            raise RuntimeError("LoopThread.submit: the loop was closed (the run is shutting down)")
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run_until_complete(self, coro: Coroutine[Any, Any, T], *, lend: bool = False) -> T:
        """Run ``coro`` on the loop and wait for its result (from any thread but the loop's).

        ``lend``: while it waits, the calling thread runs the CPU torch work posted for a waiting
        thread (``skyrl_core.threads``). For a thread that has nothing else to do meanwhile, the
        trainer's in ``sync`` mode; not for the off-policy modes, whose point is that generation
        goes on while that thread trains.
        """
        if self.in_loop_thread():
            coro.close()
            raise RuntimeError("LoopThread.run_until_complete called on the loop thread; await the coroutine instead")
        if lend:
            return wait_lending(lambda: self.submit(coro))
        return self.submit(coro).result()

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run the plain function ``fn(*args)`` on the loop thread and return its result."""

        async def invoke() -> T:
            return fn(*args)

        return self.run_until_complete(invoke())

    def is_closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Cancel every task, stop the loop and join its thread (idempotent)."""
        if self._closed:
            return

        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            self.submit(cancel_all()).result(timeout=30)
        except (concurrent.futures.TimeoutError, RuntimeError):  # a task that ignores cancellation
            pass
        self._closed = True
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=30)
        if not self._thread.is_alive():
            self.loop.close()
