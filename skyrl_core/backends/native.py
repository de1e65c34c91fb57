"""The native inference backend: torch + transformers, CPU or one GPU, no extra dependencies.

It is the embedded default (``[backend] name = "native"``) and the reference other
backends are compared to (``skyrl_core.testing.conformance``).

How it works:

* ``generate`` puts requests in a queue and awaits them. One worker task per event loop
  drains everything pending (up to ``max_batch_size`` sequences and
  ``max_tokens_in_flight`` tokens) into a batch and runs it in a single-thread executor,
  so the event loop keeps serving environments while the model computes. Concurrent
  callers (multi-turn trajectories awaiting one request each) thus share batches.
* A batch is turned into rows, one per sample (``skyrl_core.backends.rows.RowSpec``: its
  prompt, parameters, length limit and seed ``sampling.sample_seed(request_seed, j)``),
  and decoded by the engine ``[backend] engine`` selects:
  - ``hf`` (``skyrl_core.backends.hf_engine``): the Hugging Face model with a KV cache,
    one host check per token; any causal LM;
  - ``static`` (``skyrl_core.backends.static``): preallocated KV cache, decode steps
    captured in CUDA graphs (eager on the CPU), host checks once per window; Llama-family
    models. ``auto`` uses it on CUDA and on the CPU when the model is supported.
  Both engines sample with ``skyrl_core.backends.sampling.sample`` (per-row filters,
  counter-based random numbers) and end rows with ``skyrl_core.backends.stops.StopChecker``
  (stop token ids, exact stop strings, length), so one seed gives the same samples on
  either engine.

Stop token ids are only those of the request: the EOS token ends a sample only if the
caller lists it in ``stop_token_ids``.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import gc
import random
import threading
from collections.abc import Iterable, Sequence
from typing import Any

import attrs
import torch

from skyrl_core.backends.hf_engine import HFEngine
from skyrl_core.backends.native_config import NativeBackendConfig
from skyrl_core.backends.rows import DecodeEngine, RowOutput, RowSpec
from skyrl_core.backends.sampling import sample_seed
from skyrl_core.backends.static import make_engine
from skyrl_core.backends.stops import decode_text
from skyrl_core.backends.validation import check_requests
from skyrl_core.config.schema import ModelConfig
from skyrl_core.errors import did_you_mean
from skyrl_core.models.loading import load_causal_lm, load_tokenizer, resolve_device, resolve_dtype
from skyrl_core.protocols.backend import (
    BackendCapabilities,
    Completion,
    GenerateRequest,
    GenerateResult,
)
from skyrl_core.threads import lent, run_on_waiting_thread

#: ``[backend] cpu_threads`` default: batches with parameters x rows below this decode on one CPU thread.
SMALL_DECODE = 1_000_000_000


@attrs.define(eq=False)
class _Pending:
    """A request waiting in the queue (or running) and the future its caller awaits."""

    request: GenerateRequest
    seed: int
    future: asyncio.Future
    epoch: int = 0  # abort_requests() calls before it was queued

    @property
    def rows(self) -> int:
        return self.request.params.n

    @property
    def tokens(self) -> int:
        return self.request.params.n * (len(self.request.prompt_ids) + self.request.params.max_new_tokens)


class NativeBackend:
    """Batched sampling with a KV cache over a transformers model (see the module docstring).

    Args:
        config: ``[backend]`` options (None = defaults).
        model: the ``[model]`` section (path, tokenizer, dtype, device, chat template).
        seed: seeds requests that carry no seed of their own (in arrival order).

    Attributes:
        tokenizer: the loaded tokenizer (used for stop strings and ``Completion.text``).
        model: the transformers model (the weights ``update_weights`` writes).
        engine: the decode engine, ``HFEngine`` or ``StaticEngine`` (``[backend] engine``).
        stats: counters: ``batches``, ``requests``, ``sequences``, ``generated_tokens``, and
            ``lent_batches``: batches decoded on a waiting caller's thread (``skyrl_core.threads``; the
            CPU only) rather than the backend's own.
    """

    capabilities: BackendCapabilities

    def __init__(self, config: NativeBackendConfig | None = None, *, model: ModelConfig, seed: int) -> None:
        self.config = config or NativeBackendConfig()
        self.device = resolve_device(self.config.device or model.device)
        self.dtype = resolve_dtype(self.config.dtype, default=model.dtype)
        self.tokenizer = load_tokenizer(model)
        self.model = load_causal_lm(model, dtype=self.dtype, device=self.device)
        self.vocab_size = self.model.get_input_embeddings().num_embeddings
        self._params = sum(p.numel() for p in self.model.parameters())
        # [backend] cpu_threads: the creating thread's count (OMP_NUM_THREADS or torch.set_num_threads)
        # is the default; the generation thread's own count once set.
        self._default_threads = torch.get_num_threads()
        self._threads: int | None = None
        self.max_model_len = self.config.max_model_len or getattr(self.model.config, "max_position_embeddings", 4096)
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None and pad < self.vocab_size else 0
        static = make_engine(self.config, self.model, self.tokenizer, self.device)  # None: not asked for / can't
        self.engine: DecodeEngine | None = static or HFEngine(
            self.model, self.tokenizer, device=self.device, pad_id=self.pad_id
        )
        self.capabilities = BackendCapabilities(
            logprobs=True, sleep=self.device.type == "cuda", weight_transports=("in_process",), exact_stop_strings=True,
            abort=True,
        )
        self.stats = {"batches": 0, "requests": 0, "sequences": 0, "generated_tokens": 0, "lent_batches": 0}
        self._seed_rng = random.Random(seed)
        self._lock = threading.Lock()  # one user of the model at a time (decode, weight update, sleep)
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="skyrl-native")
        self._closed = False
        self._asleep = False
        self._abort_epoch = 0  # bumped by abort_requests(); a batch of older requests stops
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: collections.deque[_Pending] = collections.deque()
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None

    # -- generate ---------------------------------------------------------------------------

    async def generate(self, requests: Sequence[GenerateRequest]) -> list[GenerateResult]:
        """Generate for every request; results are in request order (see the protocol)."""
        if self._closed:
            raise RuntimeError("NativeBackend.generate: the backend was shut down; create a new one.")
        requests = list(requests)
        check_requests(
            requests, backend="NativeBackend", vocab_size=self.vocab_size, max_model_len=self.max_model_len
        )
        if not requests:
            return []
        loop = asyncio.get_running_loop()
        self._attach(loop)
        futures = []
        for request in requests:
            seed = request.params.seed if request.params.seed is not None else self._seed_rng.getrandbits(63)
            future = loop.create_future()
            self._pending.append(_Pending(request, seed, future, self._abort_epoch))
            futures.append(future)
        assert self._wakeup is not None
        self._wakeup.set()
        return list(await asyncio.gather(*futures))

    def _attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the batching worker on this event loop (a new loop gets a new worker)."""
        if self._loop is loop and self._worker is not None and not self._worker.done():
            return
        self._loop = loop
        self._pending = collections.deque(p for p in self._pending if p.future.get_loop() is loop)
        self._wakeup = asyncio.Event()
        self._worker = loop.create_task(self._work(), name="skyrl-native-batcher")

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._wakeup is not None
        while not self._closed:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending and not self._closed:
                # Give callers that are about to submit a chance to join this batch.
                full = sum(p.rows for p in self._pending) >= self.config.max_batch_size
                await asyncio.sleep(0 if full else self.config.batch_wait_ms / 1000)
                batch = self._take_batch()
                if not batch:
                    continue
                try:
                    if self.device.type == "cpu":  # on the thread waiting for it, if any (skyrl_core.threads)
                        results = await run_on_waiting_thread(self._run_batch, batch, fallback=self._executor)
                    else:
                        results = await loop.run_in_executor(self._executor, self._run_batch, batch)
                except Exception as exc:  # handed to every caller of the batch
                    for p in batch:
                        if not p.future.done():
                            p.future.set_exception(exc)
                    continue
                for p, result in zip(batch, results, strict=True):
                    if not p.future.done():
                        p.future.set_result(result)

    def _take_batch(self) -> list[_Pending]:
        batch: list[_Pending] = []
        rows = tokens = 0
        while self._pending:
            nxt = self._pending[0]
            if nxt.future.done():  # cancelled by its caller
                self._pending.popleft()
                continue
            if batch and (
                rows + nxt.rows > self.config.max_batch_size or tokens + nxt.tokens > self.config.max_tokens_in_flight
            ):
                break
            batch.append(self._pending.popleft())
            rows, tokens = rows + nxt.rows, tokens + nxt.tokens
        return batch

    # -- the decode loop (runs in the executor thread) --------------------------------------

    def _run_batch(self, batch: list[_Pending]) -> list[GenerateResult]:
        epoch = min(p.epoch for p in batch)
        with self._lock, torch.inference_mode():
            if self._asleep:
                raise RuntimeError("NativeBackend.generate: the backend is asleep; call wake() first.")
            if self._closed or self._abort_epoch > epoch:
                return [_aborted(p.request) for p in batch]
            assert self.engine is not None
            prompts, rows, owners = self._rows(batch)
            restore = self._cpu_threads(len(rows))
            try:
                outputs = self.engine.generate(prompts, rows, lambda: self._closed or self._abort_epoch > epoch)
            finally:
                if restore is not None:
                    torch.set_num_threads(restore)
        per_request: list[list[Completion]] = [[] for _ in batch]
        for owner, out in zip(owners, outputs, strict=True):
            per_request[owner].append(self._completion(out))
        results = [GenerateResult(c) for c in per_request]
        self.stats["batches"] += 1
        self.stats["lent_batches"] += lent()
        self.stats["requests"] += len(batch)
        self.stats["sequences"] += len(rows)
        self.stats["generated_tokens"] += sum(len(out.ids) for out in outputs)
        return results

    def _cpu_threads(self, rows: int) -> int | None:
        """``[backend] cpu_threads`` for a batch of ``rows`` on the CPU; returns the count to set back
        after the batch, or None.

        On a thread lent by a waiting trainer (``skyrl_core.threads``: the synchronous case), the
        batch runs with that thread's own count, the training's, unless ``cpu_threads`` is set; then
        that count holds for the batch only. With the generation on that one thread, the process has
        one OpenMP team and two threads win at every size (bench/RESULTS.md, "Run 8").

        In the executor thread (generation beside training: off-policy modes), OpenMP's and MKL's
        thread counts are per OS thread: the generation thread keeps the count it is given (set back
        per batch only when it changes: a count that went back and forth with every batch lost the
        gain), and the training thread keeps its own. Small decode steps get one thread there: with
        two OpenMP teams on the cores, fork and join on ~100 small operators per token costs more than
        a second core gives. torch also records the last count set as the one threads starting later
        begin with; a short-lived thread sets the default again, so only this thread's count differs.
        """
        if self.device.type != "cpu":
            return None
        if lent():
            want, have = self.config.cpu_threads, torch.get_num_threads()
            if want is None or want == have:
                return None
            torch.set_num_threads(want)
            return have
        want = self.config.cpu_threads or (1 if self._params * rows < SMALL_DECODE else self._default_threads)
        if want == self._threads:
            return None
        torch.get_num_threads()  # torch sets a thread's count up at its first use: before ours, not after
        torch.set_num_threads(want)
        self._threads = want
        if want != self._default_threads:
            reset = threading.Thread(target=torch.set_num_threads, args=(self._default_threads,))
            reset.start()
            reset.join()
        return None

    def _rows(self, batch: list[_Pending]) -> tuple[list[list[int]], list[RowSpec], list[int]]:
        """The distinct prompts of ``batch``, one row per sample, and each row's request.

        Sample ``j`` of a request seeded ``s`` gets the seed ``sample_seed(s, j)``. Requests with
        identical prompt ids share one prompt (the engines prefill each distinct prompt once): a
        GRPO group arrives as ``n`` single-sample requests, one per trajectory.
        """
        distinct: dict[tuple[int, ...], int] = {}
        prompts: list[list[int]] = []
        rows: list[RowSpec] = []
        owners: list[int] = []
        for i, p in enumerate(batch):
            ids = list(p.request.prompt_ids)
            k = distinct.setdefault(tuple(ids), len(prompts))
            if k == len(prompts):
                prompts.append(ids)
            params = p.request.params
            limit = min(params.max_new_tokens, self.max_model_len - len(ids))
            rows.extend(RowSpec(k, params, limit, sample_seed(p.seed, j)) for j in range(params.n))
            owners.extend([i] * params.n)
        return prompts, rows, owners

    def _completion(self, out: RowOutput) -> Completion:
        return Completion(
            token_ids=out.ids,
            logprobs=out.logprobs,
            finish_reason=out.finish_reason or "abort",
            stop_reason=out.stop_reason,
            text=decode_text(self.tokenizer, out.ids),
        )

    # -- weights and lifecycle --------------------------------------------------------------

    def update_weights(self, named_tensors: Iterable[tuple[str, Any]]) -> None:
        """Copy ``(name, tensor)`` pairs (Hugging Face names) into the model, in place.

        Dtype and device are converted. With tied embeddings, ``lm_head.weight`` and
        ``model.embed_tokens.weight`` name the same tensor, so either may be sent. Known
        names are copied as they stream in; unknown names and shape mismatches are
        collected and raised together at the end (the known ones are then already updated).
        """
        with self._lock, torch.no_grad():
            targets = self.model.state_dict(keep_vars=True)
            unknown: list[str] = []
            mismatched: list[str] = []
            count = 0
            for name, tensor in named_tensors:
                target = targets.get(name)
                if target is None:
                    unknown.append(name)
                elif tuple(target.shape) != tuple(tensor.shape):
                    mismatched.append(f"{name}: got {tuple(tensor.shape)}, model has {tuple(target.shape)}")
                else:
                    target.data.copy_(tensor, non_blocking=True)
                    count += 1
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
        if unknown or mismatched:
            lines = [f"NativeBackend.update_weights: {count} tensors copied, but:"]
            for name in unknown[:20]:
                lines.append(f"  - unknown name {name!r}.{did_you_mean(name, targets)}")
            if len(unknown) > 20:
                lines.append(f"  - ... and {len(unknown) - 20} more unknown names")
            lines += [f"  - shape mismatch {m}" for m in mismatched]
            lines.append("Send Hugging Face parameter names of this model (see model.state_dict()).")
            raise ValueError("\n".join(lines))

    def weight_dtypes(self) -> dict[str, str]:
        """``{name: dtype}`` of the model's tensors (``ReportsWeights``: what sent weights are cast to)."""
        from skyrl_core.runtime.weight_sync import held_dtypes, module_tensors

        return held_dtypes(self.model, module_tensors(self.model))

    def weight_checksums(self, names: Sequence[str]) -> list[tuple[str, dict[str, tuple[str, str]]]]:
        """This engine's ``(label, {name: (dtype, checksum)})`` for ``names`` (``ReportsWeights``)."""
        from skyrl_core.runtime.weight_sync import held_checksums

        with self._lock:
            return [(type(self).__name__, held_checksums(self.model, names))]

    def abort_requests(self) -> None:
        """End every request queued or running now: each returns with finish reason ``"abort"``
        and the tokens (and log-probs) generated so far; queued ones return empty. Requests
        submitted afterwards run normally. Thread-safe; returns without waiting (callers
        await their ``generate`` calls). Used by asynchronous training to sync weights
        without waiting for long generations (``[trainer] in_flight = "abort"``).
        """
        if self._closed:
            return
        self._abort_epoch += 1
        loop, epoch = self._loop, self._abort_epoch

        def finish_queued() -> None:
            keep: collections.deque[_Pending] = collections.deque()
            for p in self._pending:
                if p.epoch >= epoch:
                    keep.append(p)
                elif not p.future.done():
                    p.future.set_result(_aborted(p.request))
            self._pending = keep

        if loop is not None and not loop.is_closed():
            if _running_loop() is loop:
                finish_queued()
            else:
                loop.call_soon_threadsafe(finish_queued)

    def reset_prefix_cache(self) -> None:
        """No-op: the native backend keeps no cache between batches."""

    def sleep(self) -> None:
        """On CUDA, move the weights to CPU and release cached GPU memory; no-op on CPU."""
        if self.device.type != "cuda" or self._asleep or self._closed:
            return
        with self._lock:
            if self.engine is not None:
                self.engine.release()  # the static engine's cache and graphs point at GPU memory about to move
            self.model.to("cpu")
            torch.cuda.empty_cache()
            self._asleep = True

    def wake(self) -> None:
        """Move the weights back to the GPU after ``sleep``."""
        if not self._asleep:
            return
        with self._lock:
            self.model.to(self.device)
            self._asleep = False

    def shutdown(self) -> None:
        """Abort what is running or queued (finish reason 'abort') and free the model."""
        if self._closed:
            return
        self._closed = True
        self._executor.shutdown(wait=True)
        pending, self._pending = list(self._pending), collections.deque()
        loop, wakeup = self._loop, self._wakeup

        def finish() -> None:
            for p in pending:
                if not p.future.done():
                    p.future.set_result(_aborted(p.request))
            if wakeup is not None:
                wakeup.set()  # the worker hands out its last results, then sees _closed and ends

        if loop is not None and not loop.is_closed():
            if _running_loop() is loop:
                finish()
            else:
                loop.call_soon_threadsafe(finish)
        if self.engine is not None:
            self.engine.release()
        self.model = self.engine = None
        if self.device.type == "cuda":
            gc.collect()  # drop reference cycles that still hold GPU tensors
            torch.cuda.empty_cache()


def _aborted(request: GenerateRequest) -> GenerateResult:
    return GenerateResult([Completion((), (), finish_reason="abort", text="") for _ in range(request.params.n)])


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
