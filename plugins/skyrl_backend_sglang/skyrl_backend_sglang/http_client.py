"""A running SGLang server, driven through its native HTTP API (standard library only).

Endpoints used: ``/generate`` (token ids in, ``return_logprob``, optional SSE stream),
``/abort_request``, ``/flush_cache``, ``/update_weights_from_disk``,
``/update_weights_from_tensor``, ``/init_weights_update_group``,
``/update_weights_from_distributed``, ``/release_memory_occupation``,
``/resume_memory_occupation``, ``/get_weights_by_name``, ``/health``,
``/get_model_info`` and ``/get_server_info``. Calls are blocking ``urllib`` requests; the
backend's async ``generate`` runs them in a thread pool, so many requests are in flight at
once and the server batches them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

OnChunk = Callable[[dict[str, Any]], bool]


class ServerError(RuntimeError):
    """An SGLang server answered with an error, or did not answer."""


class HttpClient:
    """Drives the SGLang server at ``url``.

    Args:
        url: base URL, e.g. ``http://127.0.0.1:30000``.
        timeout_s: seconds per HTTP call.
        startup_timeout_s: seconds to wait for ``/health`` before giving up.
        concurrency: most requests in flight at once (threads of the pool).
    """

    remote = True

    def __init__(self, url: str, timeout_s: float, startup_timeout_s: float, concurrency: int = 256) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self._pool = concurrent.futures.ThreadPoolExecutor(concurrency, thread_name_prefix="skyrl-sglang-http")
        self._wait_healthy(startup_timeout_s)
        info = self.server_info()
        self.version = str(info.get("version", "unknown"))
        self.child_pids: list[int] = []

    # -- plumbing ---------------------------------------------------------------------------

    def _request(self, path: str, body: Any = None, method: str | None = None, timeout: float | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.url + path, data=data, method=method or ("GET" if body is None else "POST"),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout_s) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:2000]
            raise ServerError(f"SGLang server {self.url}{path}: HTTP {exc.code}: {detail}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise ServerError(
                f"SGLang server {self.url}{path}: no answer ({exc}). Is the server running "
                "(python -m sglang.launch_server ...) and is [backend] url right?"
            ) from exc
        text = raw.decode(errors="replace")
        try:
            return json.loads(text) if text else None
        except json.JSONDecodeError:
            return text

    def _wait_healthy(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                self._request("/health", timeout=5)
                return
            except ServerError as exc:
                last = exc
                time.sleep(0.5)
        raise ServerError(f"SGLang server at {self.url} was not healthy within {timeout_s:.0f} s: {last}")

    # -- generation -------------------------------------------------------------------------

    async def generate(self, payload: dict[str, Any], on_chunk: OnChunk | None = None) -> dict[str, Any]:
        """``POST /generate``; with ``on_chunk`` as an SSE stream (see ``EngineClient.generate``)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._generate, payload, on_chunk)

    def _generate(self, payload: dict[str, Any], on_chunk: OnChunk | None) -> dict[str, Any]:
        if on_chunk is None:
            out = self._request("/generate", {**payload, "stream": False})
            return _checked(out, self.url)
        req = urllib.request.Request(
            self.url + "/generate", data=json.dumps({**payload, "stream": True}).encode(), method="POST",
            headers={"Content-Type": "application/json"},
        )
        last: dict[str, Any] = {}
        aborted = False
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                for line in resp:
                    line = line.strip()
                    if not line.startswith(b"data:"):
                        continue
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        break
                    last = _checked(json.loads(data), self.url)
                    if not aborted and on_chunk(last):
                        aborted = True
                        self._request("/abort_request", {"rid": payload["rid"]})
        except urllib.error.HTTPError as exc:
            raise ServerError(f"SGLang server {self.url}/generate: HTTP {exc.code}: {exc.read()[:2000]!r}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise ServerError(f"SGLang server {self.url}/generate: stream broke off ({exc})") from exc
        return last

    # -- control ----------------------------------------------------------------------------

    def has(self, method: str) -> bool:
        """Server mode: the native endpoints below are part of every supported SGLang release."""
        return method in {"update_weights_from_tensor", "update_weights_from_disk", "init_weights_update_group",
                          "update_weights_from_distributed", "release_memory_occupation",
                          "resume_memory_occupation", "get_weights_by_name"}

    def update_weights_from_tensor(self, named: list[tuple[str, Any]]) -> tuple[bool, str]:
        """Same-host only: tensors travel as SGLang's multiprocessing handles (shared memory / CUDA IPC)."""
        import base64

        import torch.multiprocessing as tmp
        from sglang.srt.utils.common import MultiprocessingSerializer

        # CPU tensors: the default 'file_descriptor' sharing hands fds over a socket that checks the
        # multiprocessing authkey, which an unrelated server process does not share; 'file_system'
        # sharing names a shared-memory file instead. CUDA tensors travel as IPC handles either way.
        strategy = tmp.get_sharing_strategy()
        tmp.set_sharing_strategy("file_system")
        try:
            payload = base64.b64encode(MultiprocessingSerializer.serialize(named)).decode()
        finally:
            tmp.set_sharing_strategy(strategy)
        ranks = int(self.server_info().get("tp_size", 1))  # one copy per tensor-parallel rank, as Engine does
        out = self._request("/update_weights_from_tensor",
                            {"serialized_named_tensors": [payload] * ranks, "flush_cache": False})
        return bool(out.get("success")), str(out.get("message", ""))

    def update_weights_from_disk(self, path: str) -> tuple[bool, str]:
        try:
            out = self._request("/update_weights_from_disk", {"model_path": path})
        except ServerError as exc:
            return False, str(exc)
        return bool(out.get("success")), str(out.get("message", ""))

    def init_weights_update_group(self, **kwargs: Any) -> tuple[bool, str]:
        out = self._request("/init_weights_update_group", kwargs)
        return bool(out.get("success")), str(out.get("message", ""))

    def update_weights_from_distributed(self, **kwargs: Any) -> tuple[bool, str]:
        out = self._request("/update_weights_from_distributed", kwargs)
        return bool(out.get("success")), str(out.get("message", ""))

    def flush_cache(self) -> tuple[bool, str]:
        try:
            self._request("/flush_cache", {})
        except ServerError as exc:
            return False, str(exc)
        return True, ""

    def release_memory(self, tags: list[str] | None) -> None:
        self._request("/release_memory_occupation", {"tags": tags})

    def resume_memory(self, tags: list[str] | None) -> None:
        self._request("/resume_memory_occupation", {"tags": tags})

    def get_weights_by_name(self, name: str, truncate_size: int) -> Any:
        try:
            return self._request("/get_weights_by_name", {"name": name, "truncate_size": truncate_size})
        except ServerError:
            return None

    def model_info(self) -> dict[str, Any]:
        return dict(self._request("/get_model_info"))

    def server_info(self) -> dict[str, Any]:
        return dict(self._request("/get_server_info"))

    def health(self) -> bool:
        try:
            self._request("/health", timeout=5)
            return True
        except ServerError:
            return False

    def shutdown(self) -> None:
        """Release the client; the server belongs to whoever started it and keeps running."""
        self._pool.shutdown(wait=False, cancel_futures=True)


def _checked(out: Any, url: str) -> dict[str, Any]:
    if isinstance(out, dict) and "error" in out and "output_ids" not in out:
        raise ServerError(f"SGLang server {url}/generate: {out['error']}")
    if not isinstance(out, dict):
        raise ServerError(f"SGLang server {url}/generate: unexpected answer {str(out)[:300]!r}")
    return out
