"""``[backend] name = "sglang"``: SGLang as a skyrl inference backend (token ids in, token ids out).

Two modes, one request path:

* ``mode = "engine"``: an in-process ``sglang.Engine`` (``engine_client.EngineClient``);
* ``mode = "server"``: a running SGLang server through its native HTTP API
  (``http_client.HttpClient``).

How the contract (``skyrl_core.protocols.backend``) maps onto SGLang:

* The engine runs with ``skip_tokenizer_init``: prompts go in as ids, outputs come back as
  ids with ``return_logprob``. The ``n`` samples of a request are separate SGLang requests
  (each with its own seed); the radix cache shares their prompt.
* Sampling: greedy rows go to SGLang as ``temperature = 0`` (it reports the raw
  log-softmax, as the contract says). Sampled rows that use top-k/top-p/min-p are filtered
  by the plugin's logit processor (``processor.ContractSampler``), because SGLang's own
  filters differ from the contract's; plain temperature sampling uses SGLang's sampler.
* Seeds (``seeded_sampling``): 'engine' passes ``sampling_seed`` (SGLang's deterministic
  inference, CUDA); 'serial' (CPU) runs one sequence at a time and the processor seeds each
  draw; 'off' ignores seeds.
* Stops: the model's EOS ends a sample only when the request lists it. When a request's
  stop token ids cover the model's EOS ids, SGLang stops on them itself; otherwise
  (``ignore_eos``) and for stop strings, the row streams and the plugin watches the output
  (``skyrl_core.backends.stops.StopStringWatch``), aborts the request at the first match
  and trims token ids, log-probs and text to the shortest matching prefix.
* Weights: see ``weights.py`` (tensor / disk / distributed transports, checksums).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs

from skyrl_backend_sglang.config import SGLangBackendConfig
from skyrl_backend_sglang.server_args import engine_kwargs, resolve_device, resolve_seeded_sampling
from skyrl_backend_sglang.weights import WeightSync
from skyrl_core.api import (
    BackendCapabilities,
    Completion,
    GenerateRequest,
    GenerateResult,
    MissingDependencyError,
    ModelConfig,
    SamplingParams,
    SkyrlError,
    StopStringWatch,
    check_requests,
    decode_text,
    load_tokenizer,
    sample_seed,
)

#: top_k sent with seeded rows in 'engine' mode: keeps every token but puts each batch on SGLang's
#: sorted sampling path, so a seeded draw does not depend on whether greedy rows share the batch.
KEEP_ALL_TOP_K = 1 << 29
#: What to do when SGLang is missing (engine mode).
SGLANG_MISSING = (
    "[backend] name = 'sglang' (mode = 'engine') needs SGLang, which is not installed here: on GPU machines "
    "`pip install sglang`; on a CPU-only machine `bash plugins/skyrl_backend_sglang/scripts/setup_cpu_venv.sh` "
    "(its own venv). Or set [backend] mode = 'server' with url = 'http://HOST:PORT' of a running SGLang server."
)


@attrs.define(eq=False)
class _Row:
    """One sample of one request while it runs."""

    request: int
    params: SamplingParams
    seed: int
    limit: int
    stop_ids: frozenset[int]
    watch: StopStringWatch | None
    client_stops_ids: bool  # stop token ids are checked here (SGLang runs with ignore_eos)
    seen: int = 0
    cut: int | None = None  # tokens kept when a stop was found here
    reason: str | int | None = None

    def on_chunk(self, out: dict[str, Any]) -> bool:
        """Check the new tokens of a cumulative streamed output; True = stop found, abort."""
        ids = out.get("output_ids") or []
        while self.cut is None and self.seen < len(ids):
            token = ids[self.seen]
            self.seen += 1
            if self.client_stops_ids and token in self.stop_ids:
                self.cut, self.reason = self.seen, token
            elif self.watch is not None and (hit := self.watch.append(token)) is not None:
                self.cut, self.reason = self.seen, hit
        return self.cut is not None


class SGLangBackend:
    """The SGLang inference backend (see the module docstring).

    Args:
        config: ``[backend]`` options (None = defaults).
        model: the ``[model]`` section (path, tokenizer, dtype, device).
        seed: seeds requests that carry no seed of their own (in arrival order), and SGLang.

    Attributes:
        client: the ``EngineClient`` or ``HttpClient`` in use.
        tokenizer: the model's tokenizer (stop strings, ``Completion.text``).
        version: the SGLang version (engine) or the server's reported version.
        seeded_sampling: the effective seeding mode ('engine', 'serial' or 'off').
    """

    capabilities: BackendCapabilities

    @staticmethod
    def check_installed(config: SGLangBackendConfig | None = None) -> str:
        """The one install check (``ChecksInstallation``): engine mode needs SGLang here, so raise
        ``MissingDependencyError`` (before any training) when it is not installed; server mode talks
        to a running server and needs nothing. Returns the status line ``skyrl doctor`` shows."""
        import importlib.metadata
        import importlib.util

        mode = (config or SGLangBackendConfig()).mode
        if mode == "server":
            return "server mode: needs only a running SGLang server (checked when the run starts)"
        if importlib.util.find_spec("sglang") is None:
            raise MissingDependencyError(SGLANG_MISSING)
        return f"sglang {importlib.metadata.version('sglang')}: an in-process engine can start"

    def __init__(self, config: SGLangBackendConfig | None = None, *, model: ModelConfig, seed: int) -> None:
        self.config = config or SGLangBackendConfig()
        self.model_cfg = model
        self.tokenizer = load_tokenizer(model)  # also builds a [model.tiny] model that is missing
        self.model_dir = local_model_dir(model.path)
        hf = _read_json(self.model_dir / "config.json")
        self.vocab_size = int(hf.get("vocab_size", len(self.tokenizer)))
        self.max_model_len = self.config.context_length or int(hf.get("max_position_embeddings", 32768))
        self.eos_ids = _model_eos_ids(self.model_dir, hf)
        if self.config.mode == "server":
            from skyrl_backend_sglang.http_client import HttpClient

            if not self.config.url:
                raise SkyrlError("[backend] mode = 'server' needs url = 'http://HOST:PORT' of a running SGLang server")
            self.client: Any = HttpClient(self.config.url, self.config.request_timeout_s, self.config.startup_timeout_s)
            # The server's own arguments decide device, dtype, TP size and memory saver.
            self.args: dict[str, Any] = self.client.server_info()
            self.device = str(self.args.get("device") or resolve_device(self.config, model))
            self.seeded_sampling = resolve_seeded_sampling(self.config, self.device)
            self._check_server()
        else:
            from skyrl_backend_sglang.engine_client import EngineClient

            self.device = resolve_device(self.config, model)
            self.seeded_sampling = resolve_seeded_sampling(self.config, self.device)
            self.args = engine_kwargs(self.config, model, seed)
            self.client = EngineClient(self.args)
        try:
            self.version = self.client.version
            self.weights = WeightSync(self, self.config, self.model_dir, hf)
        except BaseException:
            self.client.shutdown()  # do not leave an engine running behind a failed constructor
            raise
        self.capabilities = BackendCapabilities(
            logprobs=True,
            sleep=self.device == "cuda",
            weight_transports=self.weights.transports(),
            exact_stop_strings=True,
        )
        self.stats = {"requests": 0, "sequences": 0, "generated_tokens": 0, "streamed": 0}
        self._seed_rng = random.Random(seed)
        self._processor: str | None = None
        self._closed = False
        self._asleep = False

    def _check_server(self) -> None:
        """The server must run with what the request path needs; say which flag is missing."""
        info = self.args
        needs = {"skip_tokenizer_init": True, "enable_custom_logit_processor": True}
        if self.seeded_sampling == "serial":
            needs["max_running_requests"] = 1
        if self.seeded_sampling == "engine":
            needs["enable_deterministic_inference"] = True
        wrong = [k for k, v in needs.items() if k in info and info[k] != v]
        if wrong:
            flags = " ".join(f"--{k.replace('_', '-')}" + ("" if needs[k] is True else f" {needs[k]}") for k in wrong)
            raise SkyrlError(
                f"SGLang server {self.config.url} runs without {wrong}; restart it with {flags} "
                f"(seeded_sampling = {self.seeded_sampling!r}; 'off' lifts the seeding flags)."
            )

    # -- generate ---------------------------------------------------------------------------

    async def generate(self, requests: Sequence[GenerateRequest]) -> list[GenerateResult]:
        """Generate for every request; results are in request order (see the protocol)."""
        if self._closed:
            raise RuntimeError("SGLangBackend.generate: the backend was shut down; create a new one.")
        requests = list(requests)
        check_requests(
            requests,
            backend="SGLangBackend",
            vocab_size=self.vocab_size,
            max_model_len=self.max_model_len,
            length_option="context_length",
        )
        if not requests:
            return []
        rows: list[_Row] = []
        for i, request in enumerate(requests):
            p = request.params
            seed = p.seed if p.seed is not None else self._seed_rng.getrandbits(63)
            limit = min(p.max_new_tokens, self.max_model_len - len(request.prompt_ids))
            stop_ids = frozenset(t for t in p.stop_token_ids if t >= 0)
            client_ids = bool(stop_ids) and not self.eos_ids <= stop_ids
            for j in range(p.n):
                watch = StopStringWatch(self.tokenizer, p.stop) if p.stop else None
                rows.append(_Row(i, p, sample_seed(seed, j), limit, stop_ids, watch, client_ids))
        outs = await asyncio.gather(*(self._run_row(requests[r.request], r) for r in rows))
        per_request: list[list[Completion]] = [[] for _ in requests]
        for row, completion in zip(rows, outs, strict=True):
            per_request[row.request].append(completion)
        self.stats["requests"] += len(requests)
        self.stats["sequences"] += len(rows)
        self.stats["generated_tokens"] += sum(len(c.token_ids) for c in outs)
        return [GenerateResult(c) for c in per_request]

    def _payload(self, prompt: Sequence[int], row: _Row) -> dict[str, Any]:
        """The SGLang ``/generate`` request of one row."""
        p = row.params
        sp: dict[str, Any] = {
            "max_new_tokens": row.limit,
            "ignore_eos": not row.stop_ids or row.client_stops_ids,
            "stop_token_ids": sorted(row.stop_ids) or None,
            "skip_special_tokens": False,
            "no_stop_trim": True,
        }
        payload: dict[str, Any] = {
            "input_ids": list(prompt),
            "sampling_params": sp,
            "return_logprob": True,
            "rid": uuid.uuid4().hex,
        }
        if p.temperature == 0:
            sp["temperature"] = 0.0
            return payload
        filters = p.top_k > 0 or p.top_p < 1 or p.min_p > 0
        if filters or self.seeded_sampling == "serial":
            sp["temperature"] = 1.0  # the processor applies the temperature itself
            sp["custom_params"] = {
                "temperature": p.temperature, "top_k": p.top_k, "top_p": p.top_p, "min_p": p.min_p,
                "seed": row.seed if self.seeded_sampling == "serial" else None,
            }
            payload["custom_logit_processor"] = self._processor_str()
        else:
            sp["temperature"] = p.temperature
        if self.seeded_sampling == "engine":
            sp["sampling_seed"] = row.seed
            sp["top_k"] = KEEP_ALL_TOP_K
        return payload

    def _processor_str(self) -> str:
        if self._processor is None:
            from skyrl_backend_sglang.processor import ContractSampler

            self._processor = ContractSampler.to_str()
        return self._processor

    async def _run_row(self, request: GenerateRequest, row: _Row) -> Completion:
        payload = self._payload(request.prompt_ids, row)
        stream = row.watch is not None or row.client_stops_ids
        if stream:
            self.stats["streamed"] += 1
        out = await self.client.generate(payload, row.on_chunk if stream else None)
        if stream:
            row.on_chunk(out)  # the final output may hold tokens no chunk showed
        ids = list(out.get("output_ids") or [])
        meta = out.get("meta_info") or {}
        logprobs = [float(x[0]) for x in meta.get("output_token_logprobs") or []]
        if len(logprobs) != len(ids):
            raise RuntimeError(
                f"SGLang returned {len(ids)} tokens but {len(logprobs)} log-probs (request {payload['rid']}); "
                "is return_logprob supported by this SGLang version?"
            )
        if row.cut is not None:
            ids, logprobs = ids[: row.cut], logprobs[: row.cut]
            finish, reason = "stop", row.reason
        else:
            finish, reason = _finish(meta.get("finish_reason"))
        return Completion(ids, logprobs, finish, reason, decode_text(self.tokenizer, ids))

    # -- weights and lifecycle --------------------------------------------------------------

    def update_weights(self, named_tensors: Iterable[tuple[str, Any]]) -> None:
        """Load ``(name, tensor)`` pairs (Hugging Face names) into SGLang (see ``weights.WeightSync``)."""
        self.weights.update(named_tensors, asleep=self._asleep)

    def weight_dtypes(self) -> dict[str, str]:
        """``{name: dtype}`` the engine holds (for ``[runtime] verify_weights``)."""
        return self.weights.dtypes()

    def weight_checksums(self, names: list[str]) -> list[tuple[str, dict[str, tuple[str, str]]]]:
        """Read the named weights back from SGLang and checksum them (``[runtime] verify_weights``)."""
        return [(f"sglang engine ({self.config.mode})", self.weights.checksums(names))]

    def reset_prefix_cache(self) -> None:
        """Flush SGLang's radix cache; retried, since SGLang refuses while requests are in flight."""
        message = ""
        for attempt in range(self.config.flush_cache_retries):
            ok, message = self.client.flush_cache()
            if ok:
                return
            time.sleep(min(0.05 * (attempt + 1), 1.0))
        raise RuntimeError(
            f"SGLang flush_cache failed {self.config.flush_cache_retries} times ({message.strip()}); requests were "
            "still running. Call reset_prefix_cache when no generate is in flight, or raise flush_cache_retries."
        )

    def sleep(self) -> None:
        """``release_memory_occupation`` (a no-op in SGLang without its memory saver, e.g. on CPU)."""
        if self._closed or self._asleep:
            return
        self.client.release_memory(None)
        self._asleep = True

    def wake(self) -> None:
        """``resume_memory_occupation``; then re-sync weights if the release dropped them."""
        if not self._asleep:
            return
        self.client.resume_memory(None)
        self._asleep = False
        self.weights.after_resume()

    def shutdown(self) -> None:
        """Stop the engine (engine mode: only its own processes) or release the server client."""
        if self._closed:
            return
        self._closed = True
        self.client.shutdown()


def _finish(reason: Any) -> tuple[str, str | int | None]:
    """SGLang's ``finish_reason`` dict to the contract's (finish_reason, stop_reason)."""
    if not isinstance(reason, dict):
        return ("abort", None) if reason is None else (str(reason), None)
    kind = reason.get("type")
    if kind == "stop":
        return "stop", reason.get("matched")
    if kind == "length":
        return "length", None
    return "abort", None


def local_model_dir(path: str) -> Path:
    """The local folder of ``[model] path``: the path itself, or a hub id's snapshot in the HF cache.

    Only the config and safetensors files are fetched for a hub id (names, shapes and EOS ids come
    from them); SGLang finds the same snapshot when it loads the weights.
    """
    local = Path(path).expanduser()
    if local.exists():
        return local
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(path, allow_patterns=["*.json", "*.safetensors"]))
    except Exception as exc:
        raise SkyrlError(
            f"[model] path = {path!r}: not a local folder, and the model hub did not provide it ({exc}). "
            "Download the model folder and point `path` at it."
        ) from exc


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _model_eos_ids(path: Path, hf: dict[str, Any]) -> frozenset[int]:
    """EOS ids SGLang stops on by itself: config.json's and generation_config.json's."""
    ids: set[int] = set()
    for value in (hf.get("eos_token_id"), _read_json(path / "generation_config.json").get("eos_token_id")):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list):
            ids.update(v for v in value if isinstance(v, int))
    return frozenset(ids)
