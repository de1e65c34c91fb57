"""The remote vLLM backend (``[backend] name = "vllm-remote"``): a running ``vllm serve``.

For users who run vLLM themselves (another machine, another container, a shared server).
Needs only the standard library and the model's tokenizer here, not vLLM. Start the
server so that its log-probs follow the backend contract::

    vllm serve MODEL --logprobs-mode processed_logprobs --enable-prefix-caching \
        --worker-extension-cls skyrl_backend_vllm.worker.SkyrlWorkerExtension   # for update_weights

(``VLLM_SERVER_DEV_MODE=1`` in the server's environment enables the routes that
``update_weights`` and ``reset_prefix_cache`` use.)

Every sample is one ``/v1/completions`` request with token ids as the prompt
(``return_token_ids`` and ``logprobs = 0`` give the sampled ids and their log-probs),
its own seed (as in the in-process backend, so both draw the same samples from the same
weights), EOS handling off, and the request's stop strings with
``include_stop_str_in_output``: vLLM stops at or after the first match, and the output is
then trimmed here to the shortest token prefix whose text contains it (``trim_at_stop``).

``update_weights`` writes a safetensors file into ``weight_dir`` (which the server must be
able to read) and asks the server's workers to load it (``/collective_rpc`` with
``skyrl_load_file``), then resets the server's prefix cache. ``sleep``/``wake`` are no-ops:
the server's memory is the server's business.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import random
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from skyrl_backend_vllm.config import VllmRemoteConfig
from skyrl_backend_vllm.sampling import sample_seeds, trim_at_stop, vllm_sampling_kwargs, warn_filter_order
from skyrl_backend_vllm.weights import write_safetensors
from skyrl_core.api import (
    BackendCapabilities,
    Completion,
    GenerateRequest,
    GenerateResult,
    ModelConfig,
    SkyrlError,
    check_requests,
    decode_text,
)

DEV_MODE_HINT = (
    "start the server with VLLM_SERVER_DEV_MODE=1 in its environment and "
    "--worker-extension-cls skyrl_backend_vllm.worker.SkyrlWorkerExtension (skyrl-backend-vllm installed there)"
)


class RemoteError(SkyrlError):
    """The server answered with an error or could not be reached."""


class VllmRemoteBackend:
    """``InferenceBackend`` over HTTP to ``vllm serve`` (see the module docstring).

    Args:
        config: ``[backend]`` options (``url`` at least).
        model: the ``[model]`` section; its tokenizer decodes outputs here.
        seed: seeds requests that carry no seed of their own, in arrival order.
    """

    capabilities: BackendCapabilities

    def __init__(self, config: VllmRemoteConfig, *, model: ModelConfig, seed: int) -> None:
        from skyrl_core.api import load_tokenizer

        self.config = config
        self.base = config.url.rstrip("/")
        self.tokenizer = load_tokenizer(model)
        self.vocab_size = _vocab_size(model, self.tokenizer)
        self._pool = concurrent.futures.ThreadPoolExecutor(config.max_concurrency, thread_name_prefix="skyrl-vllm-http")
        self._seed_rng = random.Random(seed)
        self._closed = False
        models = self._request("GET", "/v1/models")["data"]
        if not models:
            raise RemoteError(f"{self.base}/v1/models lists no model")
        names = [m["id"] for m in models]
        if config.served_model_name is None:
            card = models[0]
        elif config.served_model_name in names:
            card = models[names.index(config.served_model_name)]
        else:
            raise RemoteError(
                f"[backend] served_model_name = {config.served_model_name!r}: the server at {self.base} serves "
                f"{names}; use one of these"
            )
        self.model_name = card["id"]
        self.max_model_len = int(config.max_model_len or card.get("max_model_len") or 4096)
        self.capabilities = BackendCapabilities(
            logprobs=True, sleep=False, weight_transports=("disk",), exact_stop_strings=True
        )
        self.stats: dict[str, float] = {
            "requests": 0, "sequences": 0, "generated_tokens": 0, "weight_updates": 0, "weight_update_seconds": 0.0
        }

    # -- HTTP -------------------------------------------------------------------------------

    def _request(self, method: str, route: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + route, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if self.config.api_key:
            req.add_header("Authorization", f"Bearer {self.config.api_key}")
        try:
            with urllib.request.urlopen(req, timeout=self.config.timeout_s) as resp:
                text = resp.read().decode()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:2000]
            if exc.code == 404 and route in ("/collective_rpc", "/reset_prefix_cache"):
                raise RemoteError(f"{method} {self.base}{route}: not found (404); {DEV_MODE_HINT}") from exc
            raise RemoteError(f"{method} {self.base}{route}: HTTP {exc.code}: {detail}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise RemoteError(
                f"{method} {self.base}{route}: cannot reach the vLLM server ({exc}); is `vllm serve` running "
                "there? ([backend] url)"
            ) from exc
        return json.loads(text) if text.strip() else None

    # -- generate ---------------------------------------------------------------------------

    async def generate(self, requests: Sequence[GenerateRequest]) -> list[GenerateResult]:
        """One completion request per sample, all in flight together (up to ``max_concurrency``)."""
        if self._closed:
            raise RuntimeError("VllmRemoteBackend.generate: the backend was shut down; create a new one.")
        requests = list(requests)
        check_requests(
            requests, backend="VllmRemoteBackend", vocab_size=self.vocab_size, max_model_len=self.max_model_len
        )
        loop = asyncio.get_running_loop()
        jobs = []
        for request in requests:
            p = request.params
            seed = p.seed if p.seed is not None else self._seed_rng.getrandbits(63)
            warn_filter_order(p)
            max_tokens = min(p.max_new_tokens, self.max_model_len - len(request.prompt_ids))
            samples = [
                loop.run_in_executor(self._pool, self._sample, request, s, max_tokens) for s in sample_seeds(p, seed)
            ]
            jobs.append(asyncio.gather(*samples))
        results = [GenerateResult(completions) for completions in await asyncio.gather(*jobs)]
        self.stats["requests"] += len(results)
        return results

    def _sample(self, request: GenerateRequest, seed: int, max_tokens: int) -> Completion:
        p = request.params
        body = vllm_sampling_kwargs(p, seed, max_tokens, self.vocab_size)
        body.update(
            model=self.model_name,
            prompt=list(request.prompt_ids),
            stop=list(p.stop),
            include_stop_str_in_output=True,
            return_token_ids=True,
            return_tokens_as_token_ids=True,
            stream=False,
        )
        choice = self._request("POST", "/v1/completions", body)["choices"][0]
        ids = [int(t) for t in choice.get("token_ids") or [_token_id(t) for t in choice["logprobs"]["tokens"]]]
        logprobs = [float(x) for x in choice["logprobs"]["token_logprobs"]]
        ids, logprobs, hit = trim_at_stop(self.tokenizer, ids, logprobs, p.stop)
        if hit is not None:
            finish, reason = "stop", hit
        elif ids and ids[-1] in p.stop_token_ids:
            finish, reason = "stop", ids[-1]
        elif choice.get("finish_reason") == "stop":
            finish, reason = "stop", choice.get("stop_reason")  # a stop the server saw (its own detokenizer)
        else:
            finish, reason = ("length" if choice.get("finish_reason") == "length" else "abort"), None
        self.stats["sequences"] += 1
        self.stats["generated_tokens"] += len(ids)
        return Completion(ids, logprobs, finish, reason, decode_text(self.tokenizer, ids))

    # -- weights and lifecycle --------------------------------------------------------------

    def update_weights(self, named_tensors: Iterable[tuple[str, Any]]) -> None:
        """Send weights through a safetensors file in ``weight_dir``; then reset the prefix cache."""
        if not self.config.weight_dir:
            raise RemoteError(
                "vllm-remote update_weights: set [backend] weight_dir to a folder the server can read "
                f"(same machine or shared file system); also {DEV_MODE_HINT}"
            )
        start = time.perf_counter()
        path = write_safetensors([(n, t) for n, t in named_tensors], Path(self.config.weight_dir))
        try:
            self._request("POST", "/collective_rpc", {"method": "skyrl_load_file", "args": [str(path)]})
        finally:
            path.unlink(missing_ok=True)
        self.reset_prefix_cache()
        self.stats["weight_updates"] += 1
        self.stats["weight_update_seconds"] += time.perf_counter() - start

    def reset_prefix_cache(self) -> None:
        """Ask the server to drop its cached prefixes (needs its dev-mode routes)."""
        self._request("POST", "/reset_prefix_cache")

    def sleep(self) -> None:
        """No-op: the server manages its own memory."""

    def wake(self) -> None:
        """No-op (see ``sleep``)."""

    def shutdown(self) -> None:
        """Stop sending requests (the server keeps running)."""
        self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)


def _token_id(token: str) -> int:
    """``'token_id:123'`` (``return_tokens_as_token_ids``) -> 123."""
    return int(token.rpartition(":")[2])


def _vocab_size(model: ModelConfig, tokenizer: Any) -> int:
    try:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(model.path, trust_remote_code=model.trust_remote_code)
        return max(int(config.vocab_size), len(tokenizer))
    except Exception:  # no local config: the tokenizer bounds the ids we can produce
        return len(tokenizer)
