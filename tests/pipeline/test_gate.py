"""The gate around background generation, with the real native backend on a tiny model.

Greedy decoding makes every expectation exact: what a request returns must equal what the
old weights, or the new weights from the seam on, produce on their own.
"""

from __future__ import annotations

import asyncio
import time

import pytest
import torch

from skyrl_core.backends.native import NativeBackend
from skyrl_core.backends.native_config import NativeBackendConfig
from skyrl_core.pipeline import LoopThread
from skyrl_core.pipeline.gate import Gate
from skyrl_core.protocols.backend import Completion, GenerateRequest, SamplingParams

LONG = 240  # tokens: long enough that a pause lands mid-generation


@pytest.fixture
def backend(tiny_model_cfg):
    b = NativeBackend(NativeBackendConfig(), model=tiny_model_cfg, seed=0)
    yield b
    b.shutdown()


@pytest.fixture
def loop():
    lt = LoopThread()
    yield lt
    lt.close()


def _request(prompt: tuple[int, ...], n: int = LONG) -> GenerateRequest:
    return GenerateRequest(prompt, SamplingParams(max_new_tokens=n, temperature=0.0))


def _prompt(backend: NativeBackend) -> tuple[int, ...]:
    return tuple(backend.tokenizer.encode("What is 3 + 4?"))


def _perturbed(backend: NativeBackend) -> list[tuple[str, torch.Tensor]]:
    """Very different weights: greedy outputs diverge at once."""
    gen = torch.Generator().manual_seed(7)
    return [(n, t.detach() + 0.5 * torch.randn(t.shape, generator=gen)) for n, t in backend.model.state_dict().items()]


def _greedy(loop: LoopThread, backend: NativeBackend, prompt: tuple[int, ...], n: int) -> Completion:
    return loop.run_until_complete(backend.generate([_request(prompt, n)]))[0].completions[0]


def _wait_running(backend: NativeBackend) -> None:
    deadline = time.monotonic() + 30
    while backend._lock.acquire(blocking=False):  # the decode loop holds the lock while it runs
        backend._lock.release()
        assert time.monotonic() < deadline
        time.sleep(0.002)


def test_native_abort_ends_running_and_queued_requests_with_their_partial_tokens(loop, backend):
    prompt = _prompt(backend)
    full = _greedy(loop, backend, prompt, LONG)
    assert full.finish_reason == "length" and len(full.token_ids) == LONG

    backend.config = NativeBackendConfig(max_batch_size=1)  # the second request waits in the queue
    futures = [loop.submit(backend.generate([_request(prompt)])) for _ in range(2)]
    _wait_running(backend)
    deadline = time.monotonic() + 30
    while not backend._pending:  # the second request has reached the queue (submit is asynchronous)
        assert time.monotonic() < deadline
        time.sleep(0.002)
    backend.abort_requests()
    running, queued = (f.result(timeout=60)[0].completions[0] for f in futures)
    assert running.finish_reason == "abort" and len(running.token_ids) < LONG
    assert running.token_ids == full.token_ids[: len(running.token_ids)]  # a prefix of what it would have said
    assert running.logprobs == pytest.approx(full.logprobs[: len(running.logprobs)], abs=1e-5)
    assert queued.finish_reason == "abort" and queued.token_ids == ()
    assert _greedy(loop, backend, prompt, 8).token_ids == full.token_ids[:8]  # later requests run normally


def test_abort_pause_continues_the_request_on_the_new_weights(loop, backend):
    prompt = _prompt(backend)
    old = _greedy(loop, backend, prompt, LONG)
    gate = loop.call(Gate, backend, backend.tokenizer)
    future = loop.submit(gate.generate([_request(prompt)]))
    _wait_running(backend)
    loop.run_until_complete(gate.pause(abort=True))  # returns once nothing runs
    assert not future.done()  # cut, waiting at the gate to continue
    backend.update_weights(_perturbed(backend))
    loop.call(gate.resume)
    got = future.result(timeout=60)[0].completions[0]

    assert gate.stats["aborted"] == gate.stats["continued"] == 1
    seam = gate.stats["kept_tokens"]
    assert 0 <= seam < LONG and got.finish_reason == "length" and len(got.token_ids) == LONG
    assert got.token_ids[:seam] == old.token_ids[:seam]  # old weights up to the seam
    new = _greedy(loop, backend, (*prompt, *got.token_ids[:seam]), LONG - seam)
    assert got.token_ids[seam:] == new.token_ids  # new weights after it
    assert got.logprobs[:seam] == pytest.approx(old.logprobs[:seam], abs=1e-5)
    assert got.logprobs[seam:] == pytest.approx(new.logprobs, abs=1e-5)


def test_finish_pause_lets_the_running_request_end_on_the_old_weights_and_holds_new_ones(loop, backend):
    prompt = _prompt(backend)
    old = _greedy(loop, backend, prompt, LONG)
    gate = loop.call(Gate, backend, backend.tokenizer)
    running = loop.submit(gate.generate([_request(prompt)]))
    _wait_running(backend)
    loop.run_until_complete(gate.pause(abort=False))
    assert running.done()  # the pause waited for it
    assert running.result()[0].completions[0].token_ids == old.token_ids

    held = loop.submit(gate.generate([_request(prompt, 16)]))
    time.sleep(0.2)
    assert not held.done()  # a call made during the pause waits
    backend.update_weights(_perturbed(backend))
    new = _greedy(loop, backend, prompt, 16)
    loop.call(gate.resume)
    assert held.result(timeout=60)[0].completions[0].token_ids == new.token_ids  # and sees only the new weights
    assert gate.stats["aborted"] == 0


def test_a_stop_string_across_the_seam_ends_the_joined_completion(backend):
    tok = backend.tokenizer
    ids = tok.encode("12 + 34 = 46 and more")
    text = [tok.decode(ids[: i + 1]) for i in range(len(ids))]
    stop_at = next(i for i, t in enumerate(text) if "= 4" in t)  # the token completing "= 4"
    seam = next(i for i in range(stop_at, 0, -1) if "= 4" not in tok.decode(ids[:i]) and "=" in tok.decode(ids[:i]))
    assert 0 < seam <= stop_at  # "=" before the seam, "4" after it
    gate = Gate(backend, tok)
    part = Completion(ids[:seam], [0.0] * seam, finish_reason="abort")
    rest = Completion(ids[seam:], [-1.0] * (len(ids) - seam), finish_reason="length")
    params = SamplingParams(max_new_tokens=64, stop=("= 4",))
    joined = gate._join(params, part, rest)
    assert joined.finish_reason == "stop" and joined.stop_reason == "= 4"
    assert list(joined.token_ids) == ids[: stop_at + 1]
    assert len(joined.logprobs) == stop_at + 1


def test_pause_without_running_calls_returns_at_once(loop, backend):
    gate = loop.call(Gate, backend, backend.tokenizer)
    loop.run_until_complete(asyncio.wait_for(gate.pause(abort=True), 5))
    assert not gate.is_open and gate.stats["aborted"] == 0
    loop.call(gate.resume)
    assert gate.is_open
