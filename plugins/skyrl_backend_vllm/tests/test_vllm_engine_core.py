"""The engine core in its own process (``engine_core = "subprocess"``), weights through /dev/shm files,
and shutdown with work in flight.

Same seeds, same samples: the subprocess engine must reproduce what the in-process engine
drew, token for token, and both must follow a weight update sent through a file.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from vllm_support import needs_vllm

from skyrl_core.api import GenerateRequest, ModelConfig, SamplingParams
from skyrl_core.testing.conformance import Reference, generate

pytestmark = [needs_vllm, pytest.mark.slow]


def requests_for(ref: Reference) -> list[GenerateRequest]:
    prompts = [ref.prompt(q) for q in ("What is 2 + 3?", "Solve: 700 - 98 = ?", "hi")]
    return [
        GenerateRequest(prompts[0], SamplingParams(max_new_tokens=12, temperature=0)),
        GenerateRequest(prompts[1], SamplingParams(max_new_tokens=12, temperature=1.0, top_k=40, seed=5, n=3)),
        GenerateRequest(prompts[2], SamplingParams(max_new_tokens=12, temperature=0.8, stop=["1"], seed=9)),
    ]


def test_subprocess_engine_matches_in_process_and_loads_weights_from_shm(vllm_model_dir, vllm_inproc):
    import torch
    from skyrl_backend_vllm.backend import VllmBackend
    from skyrl_backend_vllm.config import VllmBackendConfig

    ref = Reference(vllm_model_dir)
    requests = requests_for(ref)
    model = ModelConfig(path=str(vllm_model_dir), device="cpu")
    state = {n: t.detach().clone() for n, t in ref.model.state_dict().items()}
    gen = torch.Generator().manual_seed(3)
    changed = {n: t + torch.randn(t.shape, generator=gen) * t.std() for n, t in state.items() if t.dim() == 2}

    inproc = vllm_inproc  # the session's in-process engine (conftest.py)
    try:
        expected = generate(inproc, requests)
        inproc.update_weights(changed.items())
        expected_changed = generate(inproc, requests)
    finally:
        inproc.update_weights(state.items())  # as the other tests of the session expect it
        inproc.reset_prefix_cache()

    sub = VllmBackend(VllmBackendConfig(max_model_len=2048, engine_core="subprocess"), model=model, seed=0)
    try:
        assert sub.weight_transfer == "shm"
        got = generate(sub, requests)
        for e, g in zip(expected, got, strict=True):
            assert [c.token_ids for c in g.completions] == [c.token_ids for c in e.completions]
            assert [c.finish_reason for c in g.completions] == [c.finish_reason for c in e.completions]
            for ce, cg in zip(e.completions, g.completions, strict=True):
                assert max((abs(a - b) for a, b in zip(ce.logprobs, cg.logprobs, strict=True)), default=0) < 1e-5
        before = set(Path("/dev/shm").glob("skyrl-weights-*"))
        sub.update_weights(changed.items())
        assert set(Path("/dev/shm").glob("skyrl-weights-*")) == before, "the weight file is removed after loading"
        got_changed = generate(sub, requests)
        assert [c.token_ids for r in got_changed for c in r.completions] == [
            c.token_ids for r in expected_changed for c in r.completions
        ]
        with pytest.raises(Exception, match="no_such_layer"):
            sub.update_weights([("model.no_such_layer.weight", torch.zeros(2, 2))])

        # Shutdown with a long request in flight: it ends as 'abort' with what it had, nothing hangs.
        async def cut_short():
            steps = sub.stats["steps"]
            long = SamplingParams(max_new_tokens=2000, temperature=1.0, seed=1)
            task = asyncio.ensure_future(sub.generate([GenerateRequest(requests[0].prompt_ids, long)]))
            while sub.stats["steps"] < steps + 2:  # the request is being decoded
                await asyncio.sleep(0.01)
            await asyncio.get_running_loop().run_in_executor(None, sub.shutdown)
            return await task

        (result,) = asyncio.run(cut_short())
        (c,) = result.completions
        assert c.finish_reason == "abort" and 0 < len(c.token_ids) < 2000
        with pytest.raises(RuntimeError, match="shut down"):
            generate(sub, requests[:1])
    finally:
        sub.shutdown()
