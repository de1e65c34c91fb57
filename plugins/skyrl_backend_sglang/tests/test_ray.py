"""The SGLang engine inside a Ray actor under ``[runtime] mode = "ray"`` (local CPU cluster).

``RayBackend("sglang", ...)`` builds the backend in an ``EngineActor`` from the plugin
registry of the worker, exactly as a run does: greedy output equals transformers, seeded
samples reproduce, and weights sent from the driver (object store) change the output and
restore it.
"""

from __future__ import annotations

import pytest
from conftest import needs_sglang

pytestmark = [needs_sglang, pytest.mark.slow]


def test_engine_in_a_ray_actor(tiny_model_dir, tmp_path, ray_cluster):
    import torch
    from skyrl_backend_sglang.config import SGLangBackendConfig

    from skyrl_core.api import GenerateRequest, ModelConfig, SamplingParams
    from skyrl_core.testing.conformance import Reference, generate, make_unit_scale_copy
    from skyrl_core.testing.ray import ray_backend

    model_dir = make_unit_scale_copy(tiny_model_dir, tmp_path / "model")
    ref = Reference(model_dir)
    model = ModelConfig(path=str(model_dir), device="cpu")
    with ray_backend("sglang", SGLangBackendConfig(), model=model, seed=3) as backend:
        prompts = [ref.prompt(q) for q in ("What is 2 + 3?", "Calculate 6 * 7.")]
        greedy = [GenerateRequest(p, SamplingParams(max_new_tokens=10, temperature=0)) for p in prompts]
        params = SamplingParams(max_new_tokens=10, temperature=1.0, top_p=0.9, seed=5, n=2)
        sampled = GenerateRequest(prompts[0], params)

        results = generate(backend, [*greedy, sampled])
        for request, result in zip(greedy, results[:2], strict=True):
            assert list(result.completions[0].token_ids) == ref.greedy(request.prompt_ids, 10)
        again = generate(backend, [sampled])[0]
        assert [c.token_ids for c in again.completions] == [c.token_ids for c in results[2].completions]

        original = {n: t.detach().clone() for n, t in ref.model.state_dict().items()}
        gen = torch.Generator().manual_seed(0)
        perturbed = {n: t + torch.randn(t.shape, generator=gen) * t.std() for n, t in original.items() if t.dim() == 2}
        backend.update_weights(list(perturbed.items()))
        backend.reset_prefix_cache()
        changed = generate(backend, greedy)
        assert [r.completions[0].token_ids for r in changed] != [r.completions[0].token_ids for r in results[:2]]
        backend.update_weights(list(original.items()))
        backend.reset_prefix_cache()
        restored = generate(backend, greedy)
        assert [r.completions[0].token_ids for r in restored] == [r.completions[0].token_ids for r in results[:2]]
