"""``Gate``: background generation goes through it, so weights change only while no request runs.

The weight discipline of the off-policy modes. The trainer's weights are never read by
generation: the backend holds its own copy (a second model in process, or engines in Ray
actors), written only by ``update_weights``. That write is the one moment the two sides
meet, and it happens in buckets (several ``update_weights`` calls), so a batch decoded
between two buckets would mix old and new weights. Pausing at the gate closes that window
for every backend, runtime and transport alike:

1. ``pause``: no new call enters the backend; with ``abort``, the backend's
   ``abort_requests()`` ends the running ones early; then wait until none runs;
2. the trainer sends every bucket (``transfer_weights``) and bumps the policy version;
3. ``resume``: calls waiting at the gate enter and see only the new weights.

Aborted calls come back with the tokens generated so far (finish reason ``"abort"``). The
gate continues each of them after the sync, from the partial output, with the new weights,
and hands the generator one completion: the tokens and log-probs of both parts (each
log-prob from the weights that sampled its token), the finish reason of the last part.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import attrs

from skyrl_core.backends.stops import StopStringWatch, decode_text
from skyrl_core.generator import request_seed
from skyrl_core.protocols.backend import Completion, GenerateRequest, GenerateResult


class Gate:
    """An ``InferenceBackend`` front (``generate`` only) that can hold new calls back.

    Create and use it on the event loop's thread.

    Args:
        backend: the run's backend.
        tokenizer: to re-check stop strings across the seam of a continued completion.

    Attributes:
        stats: ``aborted`` (completions cut by ``abort_requests``), ``continued``
            (continuations sent after a sync) and ``kept_tokens`` (tokens of cut completions
            kept rather than generated again).
    """

    def __init__(self, backend: Any, tokenizer: Any) -> None:
        self.backend = backend
        self.tokenizer = tokenizer
        self._open = asyncio.Event()
        self._open.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._running = 0
        self._aborts = 0  # abort_requests() calls so far
        self.stats = {"aborted": 0, "continued": 0, "kept_tokens": 0}

    @property
    def is_open(self) -> bool:
        return self._open.is_set()

    async def generate(self, requests: Sequence[GenerateRequest]) -> list[GenerateResult]:
        """``backend.generate`` once the gate is open; aborted completions are continued."""
        requests = list(requests)
        while not self._open.is_set():  # re-checked: a pause may come between wake-up and entry
            await self._open.wait()
        aborts = self._aborts
        self._running += 1
        self._idle.clear()
        try:
            results = await self.backend.generate(requests)
        finally:
            self._running -= 1
            if self._running == 0:
                self._idle.set()
        if self._aborts == aborts:
            return results
        return list(await asyncio.gather(*[self._continue(q, r) for q, r in zip(requests, results, strict=True)]))

    async def pause(self, abort: bool) -> None:
        """Hold new calls; with ``abort``, cut the running ones short; return once none runs."""
        self._open.clear()
        if abort and self._running:
            self._aborts += 1
            await asyncio.get_running_loop().run_in_executor(None, self.backend.abort_requests)
        while self._running:
            await self._idle.wait()

    def resume(self) -> None:
        """Let calls in again."""
        self._open.set()

    # -- continuing aborted completions ------------------------------------------------------

    async def _continue(self, request: GenerateRequest, result: GenerateResult) -> GenerateResult:
        completions = list(result.completions)
        cut = [j for j, c in enumerate(completions) if c.finish_reason == "abort"]
        if not cut:
            return result
        self.stats["aborted"] += len(cut)
        done = await asyncio.gather(*[self._continue_one(request, j, completions[j]) for j in cut])
        for j, completion in zip(cut, done, strict=True):
            completions[j] = completion
        return GenerateResult(completions)

    async def _continue_one(self, request: GenerateRequest, sample: int, part: Completion) -> Completion:
        params = request.params
        left = params.max_new_tokens - len(part.token_ids)
        if left <= 0:
            return attrs.evolve(part, finish_reason="length")
        seed = None if params.seed is None else request_seed(params.seed, sample, len(part.token_ids))
        follow = GenerateRequest(
            prompt_ids=(*request.prompt_ids, *part.token_ids),
            params=attrs.evolve(params, max_new_tokens=left, n=1, seed=seed),
        )
        self.stats["continued"] += 1
        self.stats["kept_tokens"] += len(part.token_ids)
        rest = (await self.generate([follow]))[0].completions[0]  # may itself be cut by a later sync
        return self._join(params, part, rest)

    def _join(self, params: Any, part: Completion, rest: Completion) -> Completion:
        ids = [*part.token_ids, *rest.token_ids]
        logprobs = [*part.logprobs, *rest.logprobs]
        finish, reason = rest.finish_reason, rest.stop_reason
        if params.stop and self.tokenizer is not None:  # a stop string may straddle the seam
            watch = StopStringWatch(self.tokenizer, params.stop)
            for i, token in enumerate(ids):
                hit = watch.append(token)
                if hit is not None:
                    ids, logprobs, finish, reason = ids[: i + 1], logprobs[: i + 1], "stop", hit
                    break
        text = decode_text(self.tokenizer, ids) if self.tokenizer is not None else None
        return Completion(token_ids=ids, logprobs=logprobs, finish_reason=finish, stop_reason=reason, text=text)
