"""The vLLM backend inside a Ray engine actor (``[runtime] mode = "ray"``), on a local Ray cluster.

The runtime's generic ``EngineActor`` builds the backend by name from its own plugin
registry; requests and weights (through the object store) reach the in-process engine there.
"""

from __future__ import annotations

import asyncio
import importlib.util

import pytest
from vllm_support import build_vllm_tiny, needs_vllm

from skyrl_core.api import GenerateRequest, ModelConfig, SamplingParams
from skyrl_core.testing.conformance import Reference, make_unit_scale_copy, reference_logprobs

pytestmark = [
    needs_vllm,
    pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs ray (skyrl-core[ray])"),
    pytest.mark.slow,
]


def test_vllm_engine_in_a_ray_actor(tmp_path, ray_cluster):
    import torch
    from skyrl_backend_vllm.config import VllmBackendConfig

    from skyrl_core.testing.ray import ray_backend

    model_dir = make_unit_scale_copy(build_vllm_tiny(tmp_path / "tiny"), tmp_path / "model")
    ref = Reference(model_dir)
    prompts = [ref.prompt(q) for q in ("What is 2 + 3?", "hi")]
    config = VllmBackendConfig(max_model_len=256)
    with ray_backend("vllm", config, model=ModelConfig(path=str(model_dir)), seed=0) as backend:
        greedy = SamplingParams(max_new_tokens=10, temperature=0, stop_token_ids=(ref.eos,))
        results = asyncio.run(backend.generate([GenerateRequest(p, greedy) for p in prompts]))
        for prompt, result in zip(prompts, results, strict=True):
            assert list(result.completions[0].token_ids) == ref.greedy(prompt, 10)

        state = {n: t.detach().clone() for n, t in ref.model.state_dict().items()}
        gen = torch.Generator().manual_seed(2)
        changed = {n: t + torch.randn(t.shape, generator=gen) * t.std() for n, t in state.items() if t.dim() == 2}
        changed["lm_head.weight"] = changed["model.embed_tokens.weight"]
        backend.update_weights(changed.items())  # through the object store into the actor
        ref.model.load_state_dict({**state, **changed})
        sampled = SamplingParams(max_new_tokens=10, temperature=1.0, seed=3)
        (result,) = asyncio.run(backend.generate([GenerateRequest(prompts[0], sampled)]))
        c = result.completions[0]
        ids = torch.tensor([[*prompts[0], *c.token_ids]])
        with torch.no_grad():
            logits = ref.model(ids).logits[0, len(prompts[0]) - 1 : -1]
        expected = [reference_logprobs(row, sampled)[t].item() for row, t in zip(logits, c.token_ids, strict=True)]
        assert c.logprobs == pytest.approx(expected, abs=1e-4)
