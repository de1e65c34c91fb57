"""The native backend: the conformance suite on CPU, plus batching, validation and lifecycle."""

from __future__ import annotations

import asyncio
import math
import threading

import attrs
import pytest
import torch

from skyrl_core.backends.native import NativeBackend
from skyrl_core.backends.native_config import NativeBackendConfig
from skyrl_core.config.schema import ModelConfig, TinyModelConfig
from skyrl_core.models.tiny import build_tiny_model
from skyrl_core.protocols.backend import GenerateRequest, SamplingParams
from skyrl_core.specs import Kind
from skyrl_core.testing.conformance import BackendConformance, Reference, generate, make_unit_scale_copy
from skyrl_core.testing.helpers import check_plugin, fresh_registry


class TestNativeConformance(BackendConformance):
    """The whole suite, native backend with its defaults (the static engine on a Qwen2), CPU, float32."""

    logprob_atol = 1e-4

    def make_backend(self, model: ModelConfig, seed: int) -> NativeBackend:
        return NativeBackend(NativeBackendConfig(), model=model, seed=seed)


class TestNativeConformanceHFEngine(BackendConformance):
    """The whole suite through the Hugging Face engine (``engine = "hf"``; the default for models the
    static engine does not support), CPU, float32."""

    logprob_atol = 1e-4

    def make_backend(self, model: ModelConfig, seed: int) -> NativeBackend:
        return NativeBackend(NativeBackendConfig(engine="hf"), model=model, seed=seed)


class TestNativeConformanceLlama(BackendConformance):
    """The whole suite on a tiny Llama (Metaspace tokenizer with byte fallback)."""

    logprob_atol = 1e-4

    @pytest.fixture(scope="class")
    @classmethod
    def conformance_model_dir(cls, tmp_path_factory):
        cfg = TinyModelConfig(arch="llama", hidden_size=64, layers=2, heads=4, kv_heads=2, intermediate_size=128)
        root = tmp_path_factory.mktemp("llama")
        return make_unit_scale_copy(build_tiny_model(root / "tiny", cfg), root / "model")

    def make_backend(self, model: ModelConfig, seed: int) -> NativeBackend:
        return NativeBackend(NativeBackendConfig(), model=model, seed=seed)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
class TestNativeConformanceCUDA(BackendConformance):
    """The whole suite on the GPU (float32; TF32 matmuls off so greedy ties match the CPU reference)."""

    device = "cuda"
    logprob_atol = 2e-3

    def make_backend(self, model: ModelConfig, seed: int) -> NativeBackend:
        torch.backends.cuda.matmul.allow_tf32 = False
        return NativeBackend(NativeBackendConfig(), model=model, seed=seed)


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir, tmp_path_factory):
    return make_unit_scale_copy(tiny_model_dir, tmp_path_factory.mktemp("native") / "model")


@pytest.fixture(scope="module")
def ref(model_dir):
    return Reference(model_dir)


@pytest.fixture
def make(model_dir):
    made = []

    def factory(**options) -> NativeBackend:
        backend = NativeBackend(
            NativeBackendConfig(**options), model=ModelConfig(path=str(model_dir), device="cpu"), seed=0
        )
        made.append(backend)
        return backend

    yield factory
    for backend in made:
        backend.shutdown()


def _requests(ref, count: int, **params) -> list[GenerateRequest]:
    questions = [f"What is {i} + {2 * i + 1}?" for i in range(count)]
    return [GenerateRequest(ref.prompt(q), SamplingParams(**params)) for q in questions]


def test_registered_as_builtin():
    registry = fresh_registry()
    component = registry.get(Kind.BACKEND, "native")
    assert component.load() is NativeBackend
    assert component.spec.config_cls is NativeBackendConfig
    from skyrl_core import builtins

    assert not [p for p in check_plugin(builtins) if "native" in p]


def test_concurrent_callers_share_batches(make, ref):
    backend = make(batch_wait_ms=20)
    requests = _requests(ref, 12, max_new_tokens=6, temperature=0)

    async def main():
        return await asyncio.gather(*(backend.generate([r]) for r in requests))

    results = asyncio.run(main())
    assert all(len(res[0].completions[0].token_ids) == 6 for res in results)
    assert backend.stats["requests"] == 12
    assert backend.stats["batches"] < 12, backend.stats


def test_batch_limits_split_work(make, ref):
    backend = make(max_batch_size=4, batch_wait_ms=0)
    requests = _requests(ref, 5, max_new_tokens=3, temperature=0, n=2)
    results = generate(backend, requests)
    assert [len(r.completions) for r in results] == [2] * 5
    assert backend.stats["batches"] == 3  # 2 requests (4 rows) per batch at most
    by_tokens = make(max_tokens_in_flight=1, batch_wait_ms=0)
    generate(by_tokens, requests[:3])
    assert by_tokens.stats["batches"] == 3  # over budget: every request runs alone
    # A request with more samples than max_batch_size still runs.
    (big,) = generate(backend, [attrs.evolve(requests[0], params=SamplingParams(max_new_tokens=2, n=6))])
    assert len(big.completions) == 6


def test_results_do_not_depend_on_batching(make, ref):
    requests = _requests(ref, 6, max_new_tokens=8, temperature=0.8, top_k=40, seed=3)
    one_batch = generate(make(), requests)
    small_batches = generate(make(max_batch_size=1), requests)
    for a, b in zip(one_batch, small_batches, strict=True):
        assert a.completions[0].token_ids == b.completions[0].token_ids
        assert max(abs(x - y) for x, y in zip(a.completions[0].logprobs, b.completions[0].logprobs, strict=True)) < 1e-4


@pytest.mark.parametrize("engine", ["static", "hf"])
def test_identical_prompts_are_prefilled_once(make, ref, engine):
    """A GRPO group arrives as n single-sample requests with the same prompt ids: the engine gets
    each distinct prompt once, and every request still gets its own seeded samples."""
    a, b = ref.prompt("What is 1 + 2?"), ref.prompt("What is 3 + 4?")
    prompts = [a, a, b, a, b]
    requests = [
        GenerateRequest(p, SamplingParams(max_new_tokens=6, temperature=0.9, seed=i)) for i, p in enumerate(prompts)
    ]
    backend = make(engine=engine, batch_wait_ms=0)
    seen: list[int] = []
    real = backend.engine.generate

    def counting(prompt_ids, rows, *args):
        seen.append(len(prompt_ids))
        return real(prompt_ids, rows, *args)

    backend.engine.generate = counting
    together = generate(backend, requests)
    assert seen == [2]
    alone = [generate(make(engine=engine, max_batch_size=1), [r])[0] for r in requests]
    for x, y in zip(together, alone, strict=True):
        assert x.completions[0].token_ids == y.completions[0].token_ids
        assert max(abs(u - v) for u, v in zip(x.completions[0].logprobs, y.completions[0].logprobs, strict=True)) < 1e-4


def test_invalid_requests_are_rejected_with_the_reason(make, ref):
    backend = make()
    prompt = ref.prompt("hi")
    cases = {
        "prompt_ids is empty": GenerateRequest((), SamplingParams()),
        "outside the vocabulary": GenerateRequest([*prompt, 10**6], SamplingParams()),
        "max_new_tokens must be >= 1": GenerateRequest(prompt, SamplingParams(max_new_tokens=0)),
        "top_p must be in": GenerateRequest(prompt, SamplingParams(top_p=0)),
        "n must be >= 1": GenerateRequest(prompt, SamplingParams(n=0)),
    }
    for message, request in cases.items():
        with pytest.raises(ValueError, match=message):
            generate(backend, [GenerateRequest(prompt, SamplingParams(max_new_tokens=1)), request])
    assert backend.stats["batches"] == 0, "nothing runs when one request of a call is invalid"


def test_max_model_len_caps_the_response(make, ref):
    prompt = ref.prompt("What is 1 + 1?")
    backend = make(max_model_len=len(prompt) + 3)
    (res,) = generate(backend, [GenerateRequest(prompt, SamplingParams(max_new_tokens=50, temperature=0))])
    assert len(res.completions[0].token_ids) == 3 and res.completions[0].finish_reason == "length"
    with pytest.raises(ValueError, match="max_model_len"):
        generate(make(max_model_len=len(prompt)), [GenerateRequest(prompt, SamplingParams())])


def test_update_weights_tied_lm_head_and_errors(make, ref):
    backend = make()
    emb = backend.model.get_input_embeddings().weight
    assert backend.model.get_output_embeddings().weight is emb, "the test model has tied embeddings"
    new = torch.randn(emb.shape)
    backend.update_weights([("lm_head.weight", new)])
    assert torch.equal(emb.detach(), new)
    with pytest.raises(ValueError, match=r"1 tensors copied(.|\n)*unknown name 'model.layers.0.mlp.up_proj.weightt'"):
        backend.update_weights(
            [("model.norm.weight", torch.ones(emb.shape[1])), ("model.layers.0.mlp.up_proj.weightt", torch.zeros(1))]
        )
    with pytest.raises(ValueError, match=r"shape mismatch model\.norm\.weight"):
        backend.update_weights([("model.norm.weight", torch.ones(3))])


def test_sleep_wake_and_dtype_on_cpu(make, ref):
    backend = make(dtype="bfloat16")
    assert next(backend.model.parameters()).dtype is torch.bfloat16
    assert backend.capabilities.sleep is False
    backend.sleep()
    backend.wake()  # no-ops on CPU
    (res,) = generate(backend, _requests(ref, 1, max_new_tokens=4, temperature=1.0, seed=1))
    assert len(res.completions[0].token_ids) == 4


def test_shutdown_aborts_queued_work_and_refuses_new_work(make, ref):
    backend = make(batch_wait_ms=50)
    requests = _requests(ref, 3, max_new_tokens=4, temperature=0)

    async def main():
        task = asyncio.ensure_future(backend.generate(requests))
        await asyncio.sleep(0.005)  # queued, the batcher is still waiting for company
        backend.shutdown()
        return await task

    results = asyncio.run(main())
    assert {c.finish_reason for r in results for c in r.completions} == {"abort"}
    with pytest.raises(RuntimeError, match="shut down"):
        generate(backend, requests)


def test_a_cancelled_caller_does_not_break_the_others(make, ref):
    backend = make(batch_wait_ms=30)
    a, b = _requests(ref, 2, max_new_tokens=5, temperature=0)

    async def main():
        doomed = asyncio.ensure_future(backend.generate([a]))
        kept = asyncio.ensure_future(backend.generate([b]))
        await asyncio.sleep(0)
        doomed.cancel()
        return await kept

    (res,) = asyncio.run(main())
    assert len(res.completions[0].token_ids) == 5
    assert backend.stats["requests"] == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_sleep_releases_gpu_memory_and_wake_restores(model_dir, ref):
    backend = NativeBackend(NativeBackendConfig(), model=ModelConfig(path=str(model_dir), device="cuda"), seed=0)
    try:
        assert backend.capabilities.sleep is True
        requests = _requests(ref, 2, max_new_tokens=6, temperature=0)
        before = generate(backend, requests)
        awake = torch.cuda.memory_allocated()
        backend.sleep()
        assert torch.cuda.memory_allocated() < awake
        assert next(backend.model.parameters()).device.type == "cpu"
        with pytest.raises(RuntimeError, match="asleep"):
            generate(backend, requests)
        backend.update_weights(ref.model.state_dict().items())  # allowed while asleep
        backend.wake()
        after = generate(backend, requests)
        assert [r.completions[0].token_ids for r in after] == [r.completions[0].token_ids for r in before]
    finally:
        backend.shutdown()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_bfloat16_on_cuda_samples_with_close_logprobs(model_dir, ref):
    backend = NativeBackend(
        NativeBackendConfig(dtype="bfloat16"), model=ModelConfig(path=str(model_dir), device="cuda"), seed=0
    )
    try:
        requests = _requests(ref, 4, max_new_tokens=8, temperature=1.0, top_p=0.9, seed=5)
        for request, result in zip(requests, generate(backend, requests), strict=True):
            c = result.completions[0]
            expected = ref.logprobs(request.prompt_ids, c.token_ids, request.params)
            finite = [(a, b) for a, b in zip(c.logprobs, expected, strict=True) if math.isfinite(b)]
            assert len(finite) >= len(expected) - 1  # bf16 may flip a token at the top-p boundary
            assert max(abs(a - b) for a, b in finite) < 0.1
    finally:
        backend.shutdown()


def test_backend_options_are_validated_from_toml():
    from skyrl_core.config.loader import parse_config
    from skyrl_core.errors import ConfigError

    raw = {"model": {"path": "m"}, "backend": {"name": "native", "max_batch_size": 8, "dtype": "bfloat16"}}
    cfg = parse_config(raw, fresh_registry())
    assert cfg.backend.config == NativeBackendConfig(max_batch_size=8, dtype="bfloat16")
    bad = {"model": {"path": "m"}, "backend": {"name": "native", "max_batch_size": 0, "max_batch": 3}}
    with pytest.raises(ConfigError) as err:
        parse_config(bad, fresh_registry())
    assert "backend.max_batch_size" in str(err.value) and "max_batch" in str(err.value)


# -- one seed, either engine -------------------------------------------------------------------

#: Greedy and sampled settings (each filter alone and together) for the engine-parity test.
PARITY_SETTINGS = (
    {"temperature": 0},
    {"temperature": 1.0},
    {"temperature": 0.7, "top_k": 5},
    {"temperature": 0.9, "top_p": 0.8},
    {"temperature": 1.0, "min_p": 0.1},
    {"temperature": 1.2, "top_k": 30, "top_p": 0.9, "min_p": 0.05},
)


def _on_a_rounding_boundary(ref, request, sample_index: int, prefix, tokens) -> bool:
    """Whether both ``tokens`` are what the shared sampler draws at this step for logits within
    1e-5 of the reference model's (which the two engines' float32 forward passes are)."""
    from skyrl_core.backends.sampling import RowSampling, sample, sample_seed

    rows = RowSampling.build([request.params], "cpu", [sample_seed(request.params.seed, sample_index)])
    with torch.no_grad():
        logits = ref.model(torch.tensor([[*request.prompt_ids, *prefix]])).logits[:, -1]
    gen = torch.Generator().manual_seed(0)
    counter = torch.tensor([len(prefix)])
    noisy = (logits + 1e-5 * torch.randn(logits.shape, generator=gen) for _ in range(200))
    return set(tokens) <= {int(sample(x, rows, counter)[0][0]) for x in noisy}


def _assert_same_samples(ref, requests, a, b, what: str) -> int:
    """Same tokens, stops and log-probs (within 1e-5) on both engines; returns how many samples
    part at a draw that float rounding decides (checked with ``_on_a_rounding_boundary``)."""
    parted = 0
    for request, x, y in zip(requests, a, b, strict=True):
        for j, (cx, cy) in enumerate(zip(x.completions, y.completions, strict=True)):
            where = f"{what}: sample {j} of {request.params}"
            t = next((t for t, (p, q) in enumerate(zip(cx.token_ids, cy.token_ids, strict=False)) if p != q), None)
            if t is None:
                assert cx.token_ids == cy.token_ids, where
                assert (cx.finish_reason, cx.stop_reason) == (cy.finish_reason, cy.stop_reason), where
                t = len(cx.token_ids)
            else:
                parted += 1
                pair = (cx.token_ids[t], cy.token_ids[t])
                assert _on_a_rounding_boundary(ref, request, j, cx.token_ids[:t], pair), (
                    f"{where}: token {t} differs, {pair}, away from any rounding boundary"
                )
            worst = max((abs(p - q) for p, q in zip(cx.logprobs[:t], cy.logprobs[:t], strict=True)), default=0.0)
            assert worst <= 1e-5, f"{where}: log-probs differ by {worst:.1e}"
    return parted


def test_a_seed_gives_the_same_samples_on_either_engine(make, ref):
    """engine = "hf" and engine = "static" share one sampler, one stop checker and one seeding
    scheme: seeded requests give the same tokens, stops and log-probs (within 1e-5), alone or
    batched with others, greedy or sampled, n > 1.

    Not bit for bit: the engines' forward passes round differently (logits differ by ~1e-6),
    so a draw that sits on a decision boundary (a CDF step, a top-p / min-p cut, an argmax
    tie) can go either way; measured on this model, 3 of 384 samples of 64 tokens parted so,
    each at a token that a 1e-6 perturbation of the logits flips. Such a sample is compared up
    to that token, and that token is checked to be such a boundary."""
    prompts = [ref.prompt(q) for q in ("What is 2 + 3?", "hi", "Compute 123 * 45.", "Calculate 6 * 7.")]
    requests = [
        GenerateRequest(prompts[i % len(prompts)], SamplingParams(max_new_tokens=40, seed=i, n=1 + i % 3, **s))
        for i, s in enumerate(PARITY_SETTINGS)
    ]
    # Stops end rows at different steps (and windows of the static engine) within the batch.
    hf, static = make(engine="hf"), make(engine="static", sync_every=4)
    (probe,) = generate(hf, [requests[1]])
    ids, params = list(probe.completions[0].token_ids), requests[1].params
    requests.append(attrs.evolve(requests[1], params=attrs.evolve(params, stop_token_ids=(ids[9],))))
    requests.append(attrs.evolve(requests[1], params=attrs.evolve(params, stop=(ref.text(ids[4:7]),))))
    together = generate(hf, requests)
    parted = _assert_same_samples(ref, requests, together, generate(static, requests), "one batch")
    for request in requests:
        (alone,) = generate(static, [request])
        (hf_alone,) = generate(hf, [request])
        parted += _assert_same_samples(ref, [request], [hf_alone], [alone], "alone")
    samples = 2 * sum(r.params.n for r in requests)
    assert parted <= samples // 10, f"{parted} of {samples} samples parted at rounding boundaries"
    other = (ids[5] + 1) % len(ref.tokenizer)  # the check itself tells a real difference from rounding
    assert not _on_a_rounding_boundary(ref, requests[1], 0, ids[:5], (ids[5], other))
    assert {c.finish_reason for r in together for c in r.completions} == {"stop", "length"}
    assert static.stats["batches"] == 1 + len(requests)


def test_cpu_threads_of_the_generation_thread(make, ref):
    """``[backend] cpu_threads``: a small decode (parameters x rows < 1e9) runs on one thread of the
    executor; a large one on the process's default; an explicit count wins; the caller's thread keeps
    its own count and the samples do not depend on it."""
    main_threads = torch.get_num_threads()
    requests = _requests(ref, 3, max_new_tokens=5, temperature=1.0, seed=3, n=2)

    def run(backend):
        seen = []
        engine_generate = backend.engine.generate

        def generate(*args, **kwargs):  # the generation thread's count while the batch runs
            seen.append(torch.get_num_threads())
            return engine_generate(*args, **kwargs)

        backend.engine.generate = generate
        out = asyncio.run(backend.generate(requests))
        started_later = []  # a thread that starts now begins with the default count
        later = threading.Thread(target=lambda: started_later.append(torch.get_num_threads()))
        later.start()
        later.join()
        assert started_later == [main_threads]
        return [c.token_ids for r in out for c in r.completions], seen[0]

    small = make()
    ids_small, threads = run(small)
    assert threads == 1 and torch.get_num_threads() == main_threads
    large = make()
    large._params = 10**9  # as if a 1B-parameter model: 6 rows x 1e9 is not small
    ids_large, threads = run(large)
    assert threads == main_threads and ids_large == ids_small
    fixed = make(cpu_threads=3)
    ids_fixed, threads = run(fixed)
    assert threads == 3 and ids_fixed == ids_small


def test_decodes_on_the_waiting_thread_on_the_cpu(make, ref):
    """On the CPU a batch runs on the thread that waits for it with ``lend=True`` (``skyrl_core.threads``:
    one OpenMP team in the process), with that thread's own torch thread count, or ``cpu_threads`` for
    the batch only; the samples are the executor's."""
    from skyrl_core.pipeline import LoopThread

    main_threads = torch.get_num_threads()
    requests = _requests(ref, 3, max_new_tokens=5, temperature=1.0, seed=3, n=2)
    loop = LoopThread()
    try:
        for options in ({}, {"cpu_threads": 1}):
            backend = make(**options)
            seen = []
            engine_generate = backend.engine.generate

            def generate(*args, _inner=engine_generate, _seen=seen, **kwargs):
                _seen.append((threading.current_thread().name, torch.get_num_threads()))
                return _inner(*args, **kwargs)

            backend.engine.generate = generate
            on_executor = loop.run_until_complete(backend.generate(requests))
            lent = loop.run_until_complete(backend.generate(requests), lend=True)
            assert backend.stats["lent_batches"] == 1 and backend.stats["batches"] == 2
            assert seen[0][0].startswith("skyrl-native") and seen[1][0] == threading.current_thread().name
            assert seen[1][1] == options.get("cpu_threads", main_threads)
            assert torch.get_num_threads() == main_threads  # set back after the batch
            assert [c.token_ids for r in lent for c in r.completions] == [
                c.token_ids for r in on_executor for c in r.completions
            ]
    finally:
        loop.close()
