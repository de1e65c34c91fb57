"""The static engine: one batch of samples decoded on a preallocated KV cache.

How a batch runs (``StaticEngine.generate``):

1. **Cache.** One ``StaticKVCache`` of ``rows x max_len`` is kept between batches and only
   grows (reallocating drops the captured graphs). Sample ``i`` starts in cache row ``i``
   (with ``attention_chunks`` > 1, samples are admitted longest prompt first instead).
2. **Prefill.** Distinct prompts are sorted by length and run in chunks of similar lengths
   (padding only within a chunk, bounded by ``prefill_tokens``); each prompt's keys and
   values are written straight into the rows of all its ``n`` samples, and the first token
   is sampled from its last position.
3. **Decode windows.** The live rows sit in cache rows ``0..n-1``, padded up to a bucket
   size (1, 2, 4, ..., 64, 96, 128, 192, 256, ...). A window runs ``k <= sync_every`` steps
   back to back; each step (forward + sampling + bookkeeping, all on the device) writes
   its tokens into a small history buffer. On CUDA the step is captured once per
   ``(bucket, span, sampling flags)`` in a CUDA graph and replayed, where ``span`` (the
   cache positions attended to) is the longest row rounded up to ``span_step``; with
   ``attention_chunks``, each chunk of rows attends to its own longest row (rows advance
   together, so admitted longest first they stay sorted and short rows read less).
4. **Host check, once per window.** The window's tokens come to the host in one copy
   (asynchronous on CUDA, where the next window is launched before this one is read, so the
   host's checks overlap the device's decoding: ``pipeline``);
   each row's ``StopChecker`` (``skyrl_core.backends.stops``) applies its stop token ids,
   stop strings and length limit in order, so outputs are cut exactly where they would be
   if checked after every token. ``k`` never exceeds a live row's remaining length
   budget, so no row outruns its limit or the cache.
5. **Retirement.** Finished rows leave by moving the survivors' cache rows and state to
   the front (and to a smaller bucket) once no window is in flight; nothing is recompiled,
   and graphs already captured for that bucket are reused.

Sampling is ``skyrl_core.backends.sampling.sample``, the sampler of the Hugging Face
engine too: row ``r`` draws its ``i``-th token with ``counter_uniform(seed_r, i)``, so a
seeded sample is the same whatever else is in the batch and whichever engine runs it.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from skyrl_core.backends.rows import RowOutput, RowSpec
from skyrl_core.backends.sampling import RowSampling, SamplingFlags, sample
from skyrl_core.backends.static.model import Spans, StaticDecoder, StaticKVCache
from skyrl_core.backends.stops import StopChecker

#: Row counts decode steps are compiled for; more rows than the last use multiples of 128.
BUCKETS = (1, 2, 4, 8, 16, 32, 48, 64, 96, 128, 192, 256, 384, 512)


def bucket_size(rows: int) -> int:
    """The smallest bucket holding ``rows`` rows."""
    i = bisect.bisect_left(BUCKETS, rows)
    if i < len(BUCKETS):
        return BUCKETS[i]
    return -(-rows // 128) * 128


def round_up(x: int, step: int) -> int:
    """``x`` rounded up to a multiple of ``step``."""
    return -(-x // step) * step


class _Bucket:
    """Static device buffers of one row count (what a captured graph reads and writes).

    Rows ``0..n-1`` are live; the others are padding (greedy, position 0, never advanced).
    """

    def __init__(self, rows: int, window: int, device: torch.device) -> None:
        self.rows = rows
        long = dict(dtype=torch.long, device=device)
        self.tokens = torch.zeros(rows, **long)
        self.positions = torch.zeros(rows, **long)
        self.counters = torch.zeros(rows, **long)
        self.live = torch.zeros(rows, **long)
        self.win = torch.zeros(1, **long)
        self.state = RowSampling.empty(rows, device)
        # Two slots of `window` steps: a window can be read back while the next one runs.
        self.hist_tokens = torch.zeros(rows, 2 * window, **long)
        self.hist_logprobs = torch.zeros(rows, 2 * window, dtype=torch.float32, device=device)
        pin = device.type == "cuda"
        # Per slot, where its tokens and log-probs land on the host (pinned: the copies are asynchronous).
        self.host_tokens = [torch.zeros(rows * window, dtype=torch.long, pin_memory=pin) for _ in range(2)]
        self.host_logprobs = [torch.zeros(rows * window, dtype=torch.float32, pin_memory=pin) for _ in range(2)]

    def mutable(self) -> list[Tensor]:
        return [self.tokens, self.positions, self.counters, self.win]

    def load(self, tokens: Tensor, positions: Tensor, counters: Tensor, state: RowSampling) -> None:
        """Make rows ``0..n-1`` hold the given live rows (``n = tokens.shape[0]``) and reset the rest."""
        n = tokens.shape[0]
        for dst, src in ((self.tokens, tokens), (self.positions, positions), (self.counters, counters)):
            dst[:n] = src
            dst[n:] = 0
        self.live.zero_()
        self.live[:n] = 1
        self.state.load(state)


class _Window:
    """A launched window of ``k`` decode steps of rows ``0..n-1``, its tokens on their way to the host."""

    def __init__(self, b: _Bucket, slot: int, n: int, k: int, window: int) -> None:
        self.slot, self.n, self.k = slot, n, k
        cols = slice(slot * window, slot * window + k)
        self.tokens = b.host_tokens[slot][: n * k].view(n, k)
        self.logprobs = b.host_logprobs[slot][: n * k].view(n, k)
        self.tokens.copy_(b.hist_tokens[:n, cols], non_blocking=True)
        self.logprobs.copy_(b.hist_logprobs[:n, cols], non_blocking=True)
        self.event: Any = None
        if b.tokens.device.type == "cuda":
            self.event = torch.cuda.Event()
            self.event.record()

    def read(self) -> tuple[list[list[int]], list[list[float]]]:
        """Wait for the window and return its ``(n, k)`` tokens and log-probs as lists."""
        if self.event is not None:
            self.event.synchronize()
        return self.tokens.tolist(), self.logprobs.tolist()


class StaticEngine:
    """Generates for batches of samples on a static KV cache (see the module docstring).

    Args:
        model: a supported Hugging Face causal LM (``model.unsupported_reason`` is None).
        tokenizer: for stop strings.
        cuda_graphs: capture decode steps in CUDA graphs (CUDA only).
        sync_every: decode steps between host checks of the sampled tokens.
        prefill_tokens: padded tokens per prefill chunk.
        span_step: granularity of the attended cache length (graphs per bucket ~ max_len / span_step);
            default 128 with CUDA graphs, 16 without.
        compile: run decode steps with ``torch.compile``d layer math
            (``skyrl_core.backends.static.model.CompiledDecode``).
        pipeline: launch the next window before reading one back, so the host's stop checks overlap
            the device's decoding (default: on CUDA). Rows that end are retired once the window
            after theirs is read too (at most ``sync_every`` more steps decoded for them).
        attention_chunks: admit rows longest prompt first and run decode attention per chunk of
            rows, each to its own longest row (``_spans``); 1: every row to the batch's longest.
            Ignored (1) with the Triton decode attention, whose programs stop at each row's own length.
        decode_attention: 'auto' (the Triton split-KV kernel on CUDA when it passes a start-up probe,
            else SDPA), 'triton' or 'sdpa' (``skyrl_core.backends.static.triton_attention``).

    Attributes:
        stats: ``decode_steps``, ``windows``, ``chunked_windows`` (attention per row chunk),
            ``graphs_captured``, ``compactions``, ``prefill_chunks``, ``cache_bytes``.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        cuda_graphs: bool = True,
        sync_every: int = 16,
        prefill_tokens: int = 16384,
        span_step: int | None = None,
        compile: bool = False,
        pipeline: bool | None = None,
        attention_chunks: int = 1,
        decode_attention: str = "auto",
    ) -> None:
        self.decoder = StaticDecoder(model, compile=compile, attention=decode_attention)
        self.tokenizer = tokenizer
        self.device = self.decoder.device
        self.use_graphs = bool(cuda_graphs) and self.device.type == "cuda"
        self.sync_every = max(1, int(sync_every))
        # With a device that runs ahead of the host, launch the next window before reading one.
        self.pipeline = self.device.type == "cuda" if pipeline is None else bool(pipeline)
        self.prefill_tokens = max(1, int(prefill_tokens))
        # Rows are admitted longest prompt first; decode attention runs per chunk of rows, each to
        # its own longest row (1: every row to the batch's longest).
        # The Triton decode attention reads each row's own length already: chunks would only add graphs.
        self.attention_chunks = 1 if self.decoder.triton_attention else max(1, int(attention_chunks))
        # With graphs a coarse step bounds the graphs captured per bucket; eager steps attend to
        # no more of the cache than the window needs.
        self.span_step = max(1, int(span_step or (128 if self.use_graphs else 16)))
        self.stats = dict.fromkeys(
            ("decode_steps", "windows", "chunked_windows", "graphs_captured", "compactions", "prefill_chunks",
             "cache_bytes"), 0
        )
        self._cache: StaticKVCache | None = None
        self._buckets: dict[int, _Bucket] = {}
        self._graphs: dict[tuple[int, Spans, SamplingFlags], Any] = {}
        self._pool: Any = None

    # -- lifecycle ------------------------------------------------------------------------

    def release(self) -> None:
        """Drop the cache, the buffers and the captured graphs (e.g. before the weights move)."""
        self._graphs.clear()
        self._buckets.clear()
        self._cache = None
        self._pool = None
        self.stats["cache_bytes"] = 0

    def _ensure_cache(self, rows: int, length: int) -> StaticKVCache:
        cache = self._cache
        if cache is not None and cache.rows >= rows and cache.max_len >= length:
            return cache
        old_rows, old_len = (cache.rows, cache.max_len) if cache is not None else (0, 0)
        self.release()
        rows, length = max(rows, old_rows), max(round_up(length, 256), old_len)
        self._cache = self.decoder.new_cache(rows, length)
        self.stats["cache_bytes"] = self._cache.nbytes
        if self.use_graphs:
            self._pool = torch.cuda.graph_pool_handle()
        return self._cache

    def _bucket(self, rows: int) -> _Bucket:
        b = self._buckets.get(rows)
        if b is None:
            b = self._buckets[rows] = _Bucket(rows, self.sync_every, self.device)
        return b

    # -- one decode step ------------------------------------------------------------------

    def _step_eager(self, b: _Bucket, span: Spans) -> None:
        assert self._cache is not None
        logits = self.decoder.decode(self._cache, b.tokens, b.positions, span)
        nxt, lp = self.decoder.sample(logits, b.state, b.counters)
        b.hist_tokens.index_copy_(1, b.win, nxt[:, None])
        b.hist_logprobs.index_copy_(1, b.win, lp[:, None])
        b.tokens.copy_(nxt)
        b.positions.add_(b.live)
        b.counters.add_(1)
        b.win.add_(1)

    def _step(self, b: _Bucket, span: Spans) -> None:
        if not self.use_graphs:
            self._step_eager(b, span)
            return
        # The flags pick the sampler's branches, which a captured graph has baked in.
        key = (b.rows, span, b.state.flags)
        graph = self._graphs.get(key)
        if graph is None:
            graph = self._graphs[key] = self._capture(b, span)
        graph.replay()

    def _capture(self, b: _Bucket, span: Spans) -> Any:
        """Capture one step. A warm-up step runs first on a side stream (lazy library set-up
        must not happen during capture); the small state it advanced is restored, and what
        it wrote to the cache and history is rewritten identically by the real step."""
        saved = [t.clone() for t in b.mutable()]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            self._step_eager(b, span)
        torch.cuda.current_stream().wait_stream(side)
        for t, v in zip(b.mutable(), saved, strict=True):
            t.copy_(v)
        graph = torch.cuda.CUDAGraph()
        # thread_local: CUDA calls of other threads (the event loop's) must not void the capture.
        with torch.cuda.graph(graph, pool=self._pool, capture_error_mode="thread_local"):
            self._step_eager(b, span)
        self.stats["graphs_captured"] += 1
        return graph

    def _launch(self, b: _Bucket, cache: StaticKVCache, n: int, queue: list[_Window], lengths: list[int],
                remaining: int) -> _Window | None:
        """Launch one window of decode steps for live rows ``0..n-1`` after the windows in ``queue``.

        ``lengths`` are the live rows' lengths (prompt + tokens read so far), ``remaining`` the
        most tokens any of them may still produce; both exclude the windows in flight. Returns
        None when no row needs another token or the cache is full.
        """
        ahead = sum(w.k for w in queue)
        # A row's next write position is its length - 1; the window writes k of them. Rows whose
        # token limit falls inside the window decode on to its end, like rows that sampled a stop
        # token (StopChecker drops what they produce past their end), so rows with different limits
        # (max_total_tokens, per-request max_new_tokens) do not shrink windows to a step or two;
        # the window stays inside the cache and stops once every row is done.
        longest = max(lengths) + ahead
        k = min(self.sync_every, remaining - ahead, cache.max_len - longest + 1)
        if k < 1:
            return None
        span = self._spans(b.rows, lengths, ahead + k - 1, cache.max_len)
        slot = 1 if any(w.slot == 0 for w in queue) else 0
        b.win.fill_(slot * self.sync_every)
        for _ in range(k):
            self._step(b, span)
        self.stats["decode_steps"] += k
        self.stats["windows"] += 1
        self.stats["chunked_windows"] += not isinstance(span, int)
        return _Window(b, slot, n, k, self.sync_every)

    def _spans(self, rows: int, lengths: list[int], extra: int, max_len: int) -> Spans:
        """The cache positions a window's steps attend to: the longest live row's length plus
        ``extra``, rounded up to ``span_step``; with ``attention_chunks``, per chunk of the bucket's
        ``rows`` (a chunk of padding rows only gets one ``span_step``). One span when all agree."""
        def bound(n: int) -> int:
            return min(round_up(n + extra, self.span_step), max_len)

        full = bound(max(lengths))
        if self.attention_chunks == 1 or rows < 2 * self.attention_chunks:
            return full
        size = -(-rows // self.attention_chunks)
        spans = tuple((s, min(rows, s + size), bound(max(lengths[s : s + size])) if s < len(lengths)
                       else min(self.span_step, max_len)) for s in range(0, rows, size))
        return full if all(sp == full for _, _, sp in spans) else spans

    # -- a batch ----------------------------------------------------------------------------

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        rows: Sequence[RowSpec],
        should_abort: Callable[[], bool] = lambda: False,
    ) -> list[RowOutput]:
        """Generate every row (see the module docstring); outputs are in ``rows`` order.

        When ``should_abort()`` turns true (checked once per window) the live rows end with
        finish reason ``"abort"``.
        """
        if self.device.type != "cuda":
            return self._generate(prompts, rows, should_abort)
        # The current CUDA device is per thread and defaults to cuda:0; graph capture and the
        # capture stream must be on the engine's own device (e.g. cuda:1 beside a trainer).
        with torch.cuda.device(self.device):
            return self._generate(prompts, rows, should_abort)

    def _generate(
        self,
        prompts: Sequence[Sequence[int]],
        rows: Sequence[RowSpec],
        should_abort: Callable[[], bool],
    ) -> list[RowOutput]:
        if self.attention_chunks == 1:
            return self._generate_rows(prompts, rows, should_abort)
        # Longest prompt first: rows advance together, so the cache rows stay sorted by length
        # and each attention chunk's span is close to its rows' own lengths.
        order = sorted(range(len(rows)), key=lambda i: -len(prompts[rows[i].prompt]))
        done = self._generate_rows(prompts, [rows[i] for i in order], should_abort)
        outputs = list(done)  # back to the callers' order
        for j, i in enumerate(order):
            outputs[i] = done[j]
        return outputs

    def _generate_rows(
        self,
        prompts: Sequence[Sequence[int]],
        rows: Sequence[RowSpec],
        should_abort: Callable[[], bool],
    ) -> list[RowOutput]:
        checks = [StopChecker(self.tokenizer, r.params, r.limit) for r in rows]
        outputs = [c.output for c in checks]
        if not rows:
            return outputs
        dev = self.device
        if self.decoder.fuse():  # the weights were moved (sleep/wake): graphs point at old memory
            self.release()
        lengths = [len(p) for p in prompts]
        need = max(lengths[r.prompt] + r.limit for r in rows)
        cache = self._ensure_cache(bucket_size(len(rows)), need)

        # Prefill, then the first token of every row.
        prompt_logits = self._prefill(cache, prompts, rows)
        owner = torch.tensor([r.prompt for r in rows], device=dev)
        state = RowSampling.build([r.params for r in rows], dev, [r.seed for r in rows])
        first, first_lp = sample(prompt_logits.index_select(0, owner), state, torch.zeros_like(owner))
        del prompt_logits
        live = [i for i, (t, lp) in enumerate(zip(first.tolist(), first_lp.tolist(), strict=True))
                if not checks[i].feed([t], [lp])]
        # Device state of the live rows, in cache-row order: the token to feed, its position,
        # the index of the token to draw next.
        positions = torch.tensor([lengths[r.prompt] for r in rows], device=dev)
        counters = torch.ones(len(rows), dtype=torch.long, device=dev)
        tokens = first
        if live and len(live) < len(rows):
            keep = torch.tensor(live, dtype=torch.long, device=dev)
            cache.compact(keep, max(lengths))
            tokens, positions, counters, state = tokens[keep], positions[keep], counters[keep], state.select(keep)

        b: _Bucket | None = None
        # Windows launched and not yet read, oldest first (at most 2 when pipelined). Rows are
        # only retired when none is in flight, so every queued window has the current layout.
        queue: list[_Window] = []
        depth = 2 if self.pipeline else 1
        aborted = False
        while live or queue:
            while live and not aborted and len(queue) < depth:
                if should_abort():
                    aborted = True
                    break
                n = len(live)
                if b is None or b.rows != bucket_size(n):
                    b = self._bucket(bucket_size(n))
                    b.load(tokens, positions, counters, state)
                window = self._launch(b, cache, n, queue, [lengths[rows[i].prompt] + len(outputs[i].ids) for i in live],
                                      max(rows[i].limit - len(outputs[i].ids) for i in live))
                if window is None:
                    break
                queue.append(window)
            if not queue:
                if aborted:
                    for i in live:
                        outputs[i].finish_reason = "abort"
                break
            # Read the oldest window (the one host sync per window; the next one may be running).
            hist, hist_lp = queue.pop(0).read()
            done = [checks[i].feed(hist[j], hist_lp[j]) for j, i in enumerate(live)]
            if not any(done) and not (aborted and not queue):
                continue
            for window in queue:  # rows ended: read what is still in flight before moving rows
                hist, hist_lp = window.read()
                done = [checks[i].feed(hist[j], hist_lp[j]) for j, i in enumerate(live)]  # ended rows stay ended
            queue.clear()
            if aborted:
                for i, d in zip(live, done, strict=True):
                    if not d:
                        outputs[i].finish_reason = "abort"
                break
            keep_rows = [j for j, d in enumerate(done) if not d]
            # Retire: move survivors to the front of the cache and of the (maybe smaller) bucket.
            live = [live[j] for j in keep_rows]
            if not live:
                break
            assert b is not None
            self.stats["compactions"] += 1
            keep = torch.tensor(keep_rows, dtype=torch.long, device=dev)
            if keep_rows != list(range(len(keep_rows))):
                cache.compact(keep, min(round_up(max(lengths[rows[i].prompt] + len(outputs[i].ids) for i in live),
                                                 self.span_step), cache.max_len))
            tokens, positions = b.tokens.index_select(0, keep), b.positions.index_select(0, keep)
            counters, state = b.counters.index_select(0, keep), b.state.select(keep)
            if bucket_size(len(live)) == b.rows:
                b.load(tokens, positions, counters, state)
            else:
                b = None
        return outputs

    def _prefill(self, cache: StaticKVCache, prompts: Sequence[Sequence[int]], rows: Sequence[RowSpec]) -> Tensor:
        """Fill every row's cache with its prompt; return ``(P, V)`` float32 last-token logits."""
        dev = self.device
        used = sorted({r.prompt for r in rows}, key=lambda p: len(prompts[p]), reverse=True)
        rows_of: dict[int, list[int]] = {}
        for i, r in enumerate(rows):
            rows_of.setdefault(r.prompt, []).append(i)
        logits: Tensor | None = None
        start = 0
        while start < len(used):
            width = len(prompts[used[start]])  # longest first: the chunk's padded width
            stop = start + 1
            while stop < len(used) and (stop - start + 1) * width <= self.prefill_tokens:
                stop += 1
            chunk = used[start:stop]
            ids = torch.zeros((len(chunk), width), dtype=torch.long)
            for j, p in enumerate(chunk):
                ids[j, : len(prompts[p])] = torch.tensor(list(prompts[p]), dtype=torch.long)
            dest = [i for p in chunk for i in rows_of[p]]
            owner = [j for j, p in enumerate(chunk) for _ in rows_of[p]]
            out = self.decoder.prefill(
                cache,
                ids.to(dev),
                torch.tensor([len(prompts[p]) for p in chunk], device=dev),
                torch.tensor(dest, device=dev),
                torch.tensor(owner, device=dev),
            ).float()
            if logits is None:
                logits = torch.empty((len(prompts), out.shape[-1]), dtype=torch.float32, device=dev)
            logits[torch.tensor(chunk, device=dev)] = out
            self.stats["prefill_chunks"] += 1
            start = stop
        assert logits is not None
        return logits
