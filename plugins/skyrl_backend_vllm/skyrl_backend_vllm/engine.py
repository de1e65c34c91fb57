"""The engine thread: one vLLM ``LLMEngine`` driven step by step from a dedicated thread.

Why a thread around the synchronous engine (and not ``AsyncLLM``): the same loop serves
both engine-core placements (in this process, or vLLM's engine-core process), works from
any event loop (``asyncio.run`` per call, a Ray actor's loop, the trainer's loop) because
callers only exchange thread-safe futures with it, and it lets every engine call
(requests, aborts, weight loads, cache resets, sleep) happen on one thread, between steps.

The loop:

* ``submit`` puts a job (one ``GenerateRequest``, fanned out to one vLLM request per
  sample) in the inbox; the thread adds it to the engine before its next step, so
  requests that arrive while others run join the running batch (continuous batching):
  the turns of many multi-turn trajectories interleave.
* Outputs stream back as deltas (``RequestOutputKind.DELTA``). Each new token goes through
  the sample's stop checks: the request's stop token ids, then its stop strings matched
  on the decoded text with the native backend's ``StopStringWatch``; a match ends the
  sample on that token and aborts its vLLM request.
* ``call`` runs a function on the engine (weight update, prefix-cache reset, sleep) once
  no sample is running; requests submitted after it wait for it, so a sample never mixes
  two versions of the weights.
"""

from __future__ import annotations

import collections
import concurrent.futures
import itertools
import queue
import threading
from collections.abc import Callable
from typing import Any

import attrs

from skyrl_core.api import Completion, GenerateRequest, GenerateResult, StopStringWatch, decode_text


@attrs.define(eq=False)
class Sample:
    """One sample of a job: one vLLM request."""

    rid: str
    stop_ids: frozenset[int]
    watch: StopStringWatch | None
    ids: list[int] = attrs.field(factory=list)
    logprobs: list[float] = attrs.field(factory=list)
    finish_reason: str | None = None
    stop_reason: str | int | None = None

    def extend(self, tokens: list[int], logprobs: list[float]) -> bool:
        """Append new tokens; True when a stop token or stop string ended the sample here."""
        for token, logprob in zip(tokens, logprobs, strict=True):
            self.ids.append(token)
            self.logprobs.append(logprob)
            if token in self.stop_ids:
                self.finish_reason, self.stop_reason = "stop", token
                return True
            if self.watch is not None and (hit := self.watch.append(token)) is not None:
                self.finish_reason, self.stop_reason = "stop", hit
                return True
        return False


@attrs.define(eq=False)
class Job:
    """One request: its samples' vLLM parameters and the future its caller waits on."""

    request: GenerateRequest
    sampling_kwargs: list[dict[str, Any]]  # one per sample
    future: concurrent.futures.Future
    samples: list[Sample] = attrs.field(factory=list)
    left: int = 0


@attrs.define(eq=False)
class _Call:
    fn: Callable[[Any], Any]
    future: concurrent.futures.Future


_CLOSE = object()


class EngineThread:
    """Owns a vLLM ``LLMEngine`` on a daemon thread (see the module docstring).

    Args:
        build: creates the engine; runs on the thread (its exception is raised here).
        tokenizer: decodes outputs for stop strings and ``Completion.text``.
        name: the thread's name.
        on_exit: runs on the thread after the engine was shut down (process-wide clean-up).
    """

    def __init__(
        self,
        build: Callable[[], Any],
        tokenizer: Any,
        name: str = "skyrl-vllm",
        on_exit: Callable[[], None] | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.on_exit = on_exit
        self.stats = {"steps": 0, "requests": 0, "sequences": 0, "generated_tokens": 0}
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._ids = itertools.count()
        self._live: dict[str, tuple[Job, Sample]] = {}
        self._jobs: set[Job] = set()
        self._held: collections.deque[Any] = collections.deque()  # items waiting for the engine to idle
        self._broken: BaseException | None = None
        self._closed = False
        #: The LoRA adapter (vLLM ``LoRARequest``) every request added from now on uses; set
        #: through ``call`` (on this thread, while nothing runs), so a sample never mixes two.
        self.lora_request: Any = None
        ready: concurrent.futures.Future = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._main, args=(build, ready), name=name, daemon=True)
        self._thread.start()
        self.engine = ready.result()

    # -- called from any thread -----------------------------------------------------------

    def submit(self, job: Job) -> None:
        """Queue a job; its future gets a ``GenerateResult`` (or the engine's exception)."""
        self._check()
        self._inbox.put(job)

    def call(self, fn: Callable[[Any], Any]) -> Any:
        """Run ``fn(engine)`` on the thread once nothing is generating; return its result."""
        self._check()
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._inbox.put(_Call(fn, future))
        return future.result()

    def close(self) -> None:
        """End running and queued jobs (finish reason 'abort'), shut the engine down, join the thread."""
        if self._closed:
            return
        self._closed = True
        self._inbox.put(_CLOSE)
        self._thread.join()

    def _check(self) -> None:
        if self._closed:
            raise RuntimeError("the vLLM backend was shut down; create a new one")
        if self._broken is not None:
            raise RuntimeError(f"the vLLM engine failed earlier and cannot serve: {self._broken}") from self._broken

    # -- the thread -----------------------------------------------------------------------

    def _main(self, build: Callable[[], Any], ready: concurrent.futures.Future) -> None:
        try:
            engine = build()
        except BaseException as exc:  # handed to the constructor
            ready.set_exception(exc)
            return
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        self._sampling = lambda kw: SamplingParams(**kw, detokenize=False, output_kind=RequestOutputKind.DELTA)
        ready.set_result(engine)
        try:
            self._loop(engine)
        finally:
            self._abort_all()
            try:
                engine.engine_core.shutdown()
            finally:
                if self.on_exit is not None:
                    self.on_exit()

    def _loop(self, engine: Any) -> None:
        while True:
            # Take what arrived. A call waits until no sample runs, and whatever came after it
            # waits behind it (in order); a close is seen at once.
            while True:
                try:
                    item = self._inbox.get(block=not self._live and not self._held)
                except queue.Empty:
                    break
                if item is _CLOSE:
                    return
                if self._held or (isinstance(item, _Call) and self._live):
                    self._held.append(item)
                elif isinstance(item, Job):
                    self._add(engine, item)
                else:
                    self._run_call(engine, item)
            while self._held and not self._live:
                item = self._held.popleft()
                if isinstance(item, Job):
                    self._add(engine, item)
                else:
                    self._run_call(engine, item)
            self._abort_cancelled(engine)
            if self._live:
                self._step(engine)

    def _run_call(self, engine: Any, call: _Call) -> None:
        try:
            call.future.set_result(call.fn(engine))
        except BaseException as exc:  # handed to the caller
            call.future.set_exception(exc)

    def _add(self, engine: Any, job: Job) -> None:
        if job.future.cancelled():
            return
        params = job.request.params
        stop_ids = frozenset(params.stop_token_ids)
        try:
            for kw in job.sampling_kwargs:
                rid = f"skyrl-{next(self._ids)}"
                watch = StopStringWatch(self.tokenizer, params.stop) if params.stop else None
                sample = Sample(rid, stop_ids, watch)
                engine.add_request(
                    rid,
                    {"prompt_token_ids": list(job.request.prompt_ids)},
                    self._sampling(kw),
                    lora_request=self.lora_request,
                )
                job.samples.append(sample)
                self._live[rid] = (job, sample)
        except Exception as exc:  # a request vLLM rejects fails alone
            engine.abort_request([s.rid for s in job.samples if s.rid in self._live])
            for s in job.samples:
                self._live.pop(s.rid, None)
            job.future.set_exception(exc)
            return
        job.left = len(job.samples)
        self._jobs.add(job)
        self.stats["requests"] += 1

    def _step(self, engine: Any) -> None:
        try:
            outputs = engine.step()
        except BaseException as exc:  # the engine is gone: tell every waiter
            self._broken = exc
            self._fail_all(exc)
            raise
        self.stats["steps"] += 1
        ended: list[str] = []
        for out in outputs:
            entry = self._live.get(out.request_id)
            if entry is None:
                continue  # aborted by us
            job, sample = entry
            comp = out.outputs[0]
            tokens = list(comp.token_ids)
            logprobs = [step[token].logprob for step, token in zip(comp.logprobs or [], tokens, strict=True)]
            if sample.extend(tokens, logprobs):
                if not out.finished:
                    ended.append(sample.rid)
            elif out.finished:
                sample.finish_reason = comp.finish_reason or "abort"
                sample.stop_reason = comp.stop_reason
            else:
                continue
            self._done(job, sample)
        if ended:
            engine.abort_request(ended)

    def _done(self, job: Job, sample: Sample) -> None:
        self._live.pop(sample.rid, None)
        self.stats["sequences"] += 1
        self.stats["generated_tokens"] += len(sample.ids)
        job.left -= 1
        if job.left == 0:
            self._jobs.discard(job)
            if not job.future.done():
                job.future.set_result(GenerateResult([self._completion(s) for s in job.samples]))

    def _completion(self, s: Sample) -> Completion:
        return Completion(
            token_ids=s.ids,
            logprobs=s.logprobs,
            finish_reason=s.finish_reason or "abort",
            stop_reason=s.stop_reason,
            text=decode_text(self.tokenizer, s.ids),
        )

    def _abort_cancelled(self, engine: Any) -> None:
        gone = [job for job in self._jobs if job.future.cancelled()]
        for job in gone:
            rids = [s.rid for s in job.samples if s.rid in self._live]
            engine.abort_request(rids)
            for rid in rids:
                self._live.pop(rid)
            self._jobs.discard(job)

    def _abort_all(self) -> None:
        """At shutdown: running samples end with what they have, queued jobs get empty aborted samples."""
        for job, sample in list(self._live.values()):
            sample.finish_reason = sample.finish_reason or "abort"
            self._done(job, sample)
        for item in self._waiting():
            if isinstance(item, Job) and not item.future.done():
                n = item.request.params.n
                item.future.set_result(GenerateResult([Completion((), (), "abort", text="") for _ in range(n)]))
            elif isinstance(item, _Call) and not item.future.done():
                item.future.set_exception(RuntimeError("the vLLM backend was shut down"))

    def _fail_all(self, exc: BaseException) -> None:
        """The engine failed: every running, queued or held job and call gets its exception."""
        for job in list(self._jobs):
            if not job.future.done():
                job.future.set_exception(exc)
        self._jobs.clear()
        self._live.clear()
        for item in self._waiting():
            if not item.future.done():
                item.future.set_exception(exc)

    def _waiting(self) -> list[Any]:
        items = list(self._held)
        self._held.clear()
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return items
            if item is not _CLOSE:
                items.append(item)
