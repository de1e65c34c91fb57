"""In-process ``sglang.Engine`` behind one private event loop.

``sglang.Engine`` binds its request handling to the first event loop that uses it, and its
blocking methods (weight updates, cache flush, ...) call ``self.loop.run_until_complete``.
A backend, though, is awaited from whatever loop its caller runs (``asyncio.run`` per call
in tests, a Ray actor's loop, the trainer's loop). So the engine's asyncio side lives on
one loop in a daemon thread: ``generate`` coroutines are scheduled there with
``run_coroutine_threadsafe`` and awaited from the caller's loop, and the engine's own
``loop`` attribute is replaced by ``_LoopBridge``, whose ``run_until_complete`` runs the
coroutine on that thread, so the engine's blocking methods keep building their requests
exactly as the installed SGLang version does.

Scripts that create an engine need an ``if __name__ == "__main__":`` guard: SGLang starts
its scheduler and detokenizer as child processes.
"""

from __future__ import annotations

import asyncio
import atexit
import threading
from collections.abc import Callable
from typing import Any

OnChunk = Callable[[dict[str, Any]], bool]


class _LoopBridge:
    """Stands in for ``Engine.loop``: runs the engine's coroutines on the private loop thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def run_until_complete(self, coro: Any) -> Any:
        if threading.current_thread() is getattr(self.loop, "_skyrl_thread", None):
            raise RuntimeError("SGLang engine: a blocking engine call was made from its own event loop thread")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loop, name)


class EngineClient:
    """Drives an in-process ``sglang.Engine`` (see the module docstring).

    Args:
        server_args: keyword arguments of ``sglang.Engine`` (``ServerArgs`` fields).
    """

    remote = False

    def __init__(self, server_args: dict[str, Any]) -> None:
        try:
            import sglang
        except ImportError as exc:
            from skyrl_backend_sglang.backend import SGLANG_MISSING
            from skyrl_core.api import MissingDependencyError

            raise MissingDependencyError(f"{SGLANG_MISSING} ({exc})") from exc

        self.version = getattr(sglang, "__version__", "unknown")
        before = _child_pids()
        self.engine = sglang.Engine(**server_args)
        # Engine.shutdown kills every child of this process (a test's server, another engine):
        # remember this engine's own processes and stop only those (not multiprocessing's
        # resource tracker, which the engine may have started but every user shares).
        self.child_pids = sorted(_child_pids() - before - {_tracker_pid()})
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name="skyrl-sglang-loop", daemon=True)
        self.loop._skyrl_thread = self._thread  # type: ignore[attr-defined]
        self._thread.start()
        self.engine.loop = _LoopBridge(self.loop)
        self._closed = False

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    # -- generation -------------------------------------------------------------------------

    async def generate(self, payload: dict[str, Any], on_chunk: OnChunk | None = None) -> dict[str, Any]:
        """Run one ``/generate``-style request; return SGLang's final output dict.

        With ``on_chunk``, the request streams and ``on_chunk(out)`` sees every cumulative
        output; when it returns True the request is aborted, and the remaining output is
        drained (the final dict then has finish reason 'abort').
        """
        future = asyncio.run_coroutine_threadsafe(self._generate(payload, on_chunk), self.loop)
        return await asyncio.wrap_future(future)

    async def _generate(self, payload: dict[str, Any], on_chunk: OnChunk | None) -> dict[str, Any]:
        if on_chunk is None:
            return await self.engine.async_generate(**payload, stream=False)
        stream = await self.engine.async_generate(**payload, stream=True)
        last: dict[str, Any] = {}
        aborted = False
        async for out in stream:
            last = {**out, "output_ids": list(out.get("output_ids", ())), "meta_info": dict(out.get("meta_info", {}))}
            if not aborted and on_chunk(last):
                aborted = True
                self.engine.tokenizer_manager.abort_request(payload["rid"])
        return last

    # -- control ----------------------------------------------------------------------------

    def has(self, method: str) -> bool:
        """Whether the installed SGLang's Engine has ``method`` (feature detection)."""
        return callable(getattr(self.engine, method, None))

    def update_weights_from_tensor(self, named: list[tuple[str, Any]]) -> tuple[bool, str]:
        """``Engine.update_weights_from_tensor`` inside ``begin/end_weight_update`` where they exist."""
        begin = getattr(self.engine, "begin_weight_update", None)
        end = getattr(self.engine, "end_weight_update", None)
        if callable(begin):
            begin()
        try:
            result = self.engine.update_weights_from_tensor(named_tensors=named, flush_cache=False)
        finally:
            if callable(end):
                end()
        return _ok_message(result)

    def update_weights_from_disk(self, path: str) -> tuple[bool, str]:
        return _ok_message(self.engine.update_weights_from_disk(path))

    def init_weights_update_group(self, **kwargs: Any) -> tuple[bool, str]:
        return _ok_message(self.engine.init_weights_update_group(**kwargs))

    def update_weights_from_distributed(self, **kwargs: Any) -> tuple[bool, str]:
        return _ok_message(self.engine.update_weights_from_distributed(**kwargs))

    def flush_cache(self) -> tuple[bool, str]:
        out = self.engine.flush_cache()
        return bool(getattr(out, "success", out)), str(getattr(out, "message", "") or "")

    def release_memory(self, tags: list[str] | None) -> None:
        self.engine.release_memory_occupation(tags=tags)

    def resume_memory(self, tags: list[str] | None) -> None:
        self.engine.resume_memory_occupation(tags=tags)

    def get_weights_by_name(self, name: str, truncate_size: int) -> Any:
        return self.engine.get_weights_by_name(name, truncate_size=truncate_size)

    def model_info(self) -> dict[str, Any]:
        return dict(self.engine.get_model_info())

    def server_info(self) -> dict[str, Any]:
        return dict(self.engine.get_server_info())

    def health(self) -> bool:
        return not self._closed and self._thread.is_alive()

    def shutdown(self) -> None:
        """Stop this engine's child processes (no others) and the loop thread."""
        if self._closed:
            return
        self._closed = True
        try:
            watchdog = getattr(self.engine.tokenizer_manager, "_subprocess_watchdog", None)
            if watchdog is not None:
                watchdog.stop()  # it would take the exit of its children for a crash
            _kill_trees(self.child_pids)
            atexit.unregister(self.engine.shutdown)
        finally:
            try:  # end the tokenizer manager's tasks cleanly (else: "Task was destroyed but it is pending")
                asyncio.run_coroutine_threadsafe(_cancel_tasks(), self.loop).result(timeout=10)
            except Exception:
                pass
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
            if not self._thread.is_alive():
                self.loop.close()


def _ok_message(result: Any) -> tuple[bool, str]:
    """SGLang returns ``(success, message)`` or ``(success, message, extra)``; some versions an object."""
    if isinstance(result, tuple | list) and result:
        return bool(result[0]), str(result[1]) if len(result) > 1 else ""
    if hasattr(result, "success"):
        return bool(result.success), str(getattr(result, "message", ""))
    return bool(result), ""


async def _cancel_tasks() -> None:
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _child_pids() -> set[int]:
    import psutil

    return {p.pid for p in psutil.Process().children(recursive=False)}


def _tracker_pid() -> int | None:
    from multiprocessing import resource_tracker

    return getattr(resource_tracker._resource_tracker, "_pid", None)


def _kill_trees(pids: list[int], timeout_s: float = 30.0) -> None:
    """SIGKILL each process in ``pids`` and its descendants; wait until they are gone."""
    import psutil

    procs = []
    for pid in pids:
        try:
            root = psutil.Process(pid)
            procs += [*root.children(recursive=True), root]
        except psutil.NoSuchProcess:
            continue
    for proc in procs:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=timeout_s)
