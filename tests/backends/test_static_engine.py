"""The static engine (skyrl_core.backends.static): the conformance suite on CPU (eager steps), the
decoder against the HF forward, retirement and windowed stop checks against solo runs; on CUDA
(skipped elsewhere) the suite with CUDA graphs. Its sampler is skyrl_core.backends.sampling
(test_sampling.py); that it agrees with the HF engine is in test_native.py."""

from __future__ import annotations

import asyncio

import attrs
import pytest
import torch

from skyrl_core.backends.hf_engine import HFEngine
from skyrl_core.backends.native import NativeBackend
from skyrl_core.backends.native_config import NativeBackendConfig
from skyrl_core.backends.rows import RowSpec
from skyrl_core.backends.static import StaticEngine, make_engine, unsupported_reason
from skyrl_core.backends.static.engine import BUCKETS, bucket_size
from skyrl_core.backends.static.model import StaticDecoder, StaticKVCache
from skyrl_core.config.schema import ModelConfig, TinyModelConfig
from skyrl_core.models.tiny import build_tiny_model
from skyrl_core.protocols.backend import GenerateRequest, SamplingParams
from skyrl_core.testing.conformance import BackendConformance, Reference, make_unit_scale_copy

CUDA = torch.cuda.is_available()


class TestStaticEngineConformance(BackendConformance):
    """The whole suite through the static engine on CPU (same code as CUDA, steps run eagerly)."""

    logprob_atol = 1e-4

    def make_backend(self, model: ModelConfig, seed: int) -> NativeBackend:
        backend = NativeBackend(NativeBackendConfig(engine="static", sync_every=4), model=model, seed=seed)
        assert isinstance(backend.engine, StaticEngine)
        return backend


class TestStaticEnginePipelinedConformance(TestStaticEngineConformance):
    """The suite again with windows pipelined (the CUDA default), on the CPU."""

    def make_backend(self, model: ModelConfig, seed: int) -> NativeBackend:
        backend = super().make_backend(model, seed)
        backend.engine.pipeline = True
        return backend


class TestStaticEngineChunkedAttentionConformance(TestStaticEngineConformance):
    """The suite again with decode attention per row chunk (rows admitted longest prompt first)."""

    def make_backend(self, model: ModelConfig, seed: int) -> NativeBackend:
        backend = super().make_backend(model, seed)
        backend.engine.attention_chunks = 4
        return backend


def test_attention_spans_per_row_chunk(model_dir, ref):
    """``_spans``: one span when every chunk needs the same; else each chunk of the bucket its own
    longest live row (+ the window), rounded to span_step; padding-only chunks one span_step."""
    engine = StaticEngine(ref.model, ref.tokenizer, attention_chunks=4, span_step=16)
    assert engine._spans(16, [40] * 16, 7, 512) == 48
    lengths = [200, 190, 150, 120, 100, 90, 60, 33, 20, 10]  # sorted, as admission orders them
    assert engine._spans(16, lengths, 7, 512) == ((0, 4, 208), (4, 8, 112), (8, 12, 32), (12, 16, 16))
    assert engine._spans(16, lengths, 7, 128) == ((0, 4, 128), (4, 8, 112), (8, 12, 32), (12, 16, 16))
    assert StaticEngine(ref.model, ref.tokenizer, span_step=16)._spans(16, lengths, 7, 512) == 208
    assert engine._spans(4, lengths[:4], 7, 512) == 208  # too few rows to split


@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
class TestStaticEngineConformanceCUDA(BackendConformance):
    """The whole suite on the GPU with CUDA graphs (float32, TF32 off: greedy ties match the CPU reference)."""

    device = "cuda"
    logprob_atol = 2e-3

    def make_backend(self, model: ModelConfig, seed: int) -> NativeBackend:
        torch.backends.cuda.matmul.allow_tf32 = False
        backend = NativeBackend(NativeBackendConfig(engine="static"), model=model, seed=seed)
        assert isinstance(backend.engine, StaticEngine) and backend.engine.use_graphs
        return backend

    def test_graphs_were_captured(self, backend, prompts):
        params = SamplingParams(max_new_tokens=40, temperature=1.0, seed=1, n=3)
        asyncio.run(backend.generate([GenerateRequest(prompts[0], params)]))
        assert backend.engine.stats["graphs_captured"] > 0


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir, tmp_path_factory):
    return make_unit_scale_copy(tiny_model_dir, tmp_path_factory.mktemp("static") / "model")


@pytest.fixture(scope="module")
def ref(model_dir):
    return Reference(model_dir)


@pytest.fixture(scope="module")
def prompts(ref):
    qs = ["What is 2 + 3?", "hi", "Compute 123 * 45. Put your final answer in \\boxed{}.", "Calculate 6 * 7."]
    return [ref.prompt(q) for q in qs]


def _backend(model_dir, **options) -> NativeBackend:
    return NativeBackend(NativeBackendConfig(**options), model=ModelConfig(path=str(model_dir), device="cpu"), seed=0)


def _gen(backend, requests):
    return asyncio.run(backend.generate(list(requests)))


# -- selection ---------------------------------------------------------------------------------


def test_auto_takes_the_static_engine_on_cpu(model_dir):
    """Changed by design in issue 21: on the CPU too, "auto" runs supported models on the static
    engine (eager steps, no graphs), which generated faster there than the HF engine."""
    backend = _backend(model_dir)
    try:
        assert isinstance(backend.engine, StaticEngine) and not backend.engine.use_graphs
    finally:
        backend.shutdown()
    hf = _backend(model_dir, engine="hf")
    try:
        assert isinstance(hf.engine, HFEngine)
    finally:
        hf.shutdown()


def test_static_on_an_unsupported_model_says_what_to_do(ref):
    class Odd(torch.nn.Module):
        config = attrs.make_class("Cfg", {"model_type": attrs.field(default="gpt2")})()

    assert "gpt2" in unsupported_reason(Odd())
    config = NativeBackendConfig(engine="static")
    with pytest.raises(ValueError, match="engine = 'auto'"):
        make_engine(config, Odd(), ref.tokenizer, torch.device("cpu"))
    for device in ("cuda", "cpu"):
        assert make_engine(attrs.evolve(config, engine="auto"), Odd(), ref.tokenizer, torch.device(device)) is None


def test_bucket_sizes_cover_every_row_count():
    for rows in range(1, 700):
        b = bucket_size(rows)
        assert b >= rows and (b in BUCKETS or b % 128 == 0)
    assert bucket_size(256) == 256 and bucket_size(65) == 96


# -- decoder -----------------------------------------------------------------------------------


@torch.no_grad()
def test_fused_projections_alias_the_model_parameters(model_dir):
    ref = Reference(model_dir)
    before = {k: v.clone() for k, v in ref.model.state_dict().items()}
    dec = StaticDecoder(ref.model)
    attn = ref.model.model.layers[0].self_attn
    fused = dec._fused[0]
    assert attn.q_proj.weight.data_ptr() == fused.qkv_w.data_ptr()
    for k, v in ref.model.state_dict().items():
        assert torch.equal(v, before[k]), k
    attn.k_proj.weight.data.copy_(torch.ones_like(attn.k_proj.weight))  # what update_weights does
    rows = attn.q_proj.weight.shape[0]
    assert torch.equal(fused.qkv_w[rows : rows + attn.k_proj.weight.shape[0]], attn.k_proj.weight)
    assert dec.fuse() is False
    attn.q_proj.weight.data = attn.q_proj.weight.data.clone()  # storage replaced, as model.to() does
    assert dec.fuse() is True and attn.q_proj.weight.data_ptr() == dec._fused[0].qkv_w.data_ptr()


@torch.no_grad()
def test_prefill_and_decode_logits_match_the_hf_forward(ref, prompts):
    dec = StaticDecoder(ref.model)
    cache = dec.new_cache(4, 128)
    a, b = prompts[0], prompts[1]
    ids = torch.zeros(2, len(a), dtype=torch.long)
    ids[0], ids[1, : len(b)] = torch.tensor(a), torch.tensor(b)
    # Prompt b fills rows 1 and 3; rows 0 and 2 stay empty of it.
    logits = dec.prefill(cache, ids, torch.tensor([len(a), len(b)]), torch.tensor([0, 1, 3]), torch.tensor([0, 1, 1]))
    torch.testing.assert_close(logits[0], ref.model(torch.tensor([a])).logits[0, -1], atol=1e-4, rtol=0)
    torch.testing.assert_close(logits[1], ref.model(torch.tensor([b])).logits[0, -1], atol=1e-4, rtol=0)
    cache.compact(torch.tensor([0, 3]), 128)  # b's second copy moves from row 3 to row 1
    nxt = torch.tensor([5, 9])
    step = dec.decode(cache, nxt, torch.tensor([len(a), len(b)]), span=128)
    torch.testing.assert_close(step[0], ref.model(torch.tensor([[*a, 5]])).logits[0, -1], atol=1e-4, rtol=0)
    torch.testing.assert_close(step[1], ref.model(torch.tensor([[*b, 9]])).logits[0, -1], atol=1e-4, rtol=0)


# -- windows and retirement --------------------------------------------------------------------


@pytest.mark.parametrize(("pipeline", "chunks"), [(False, 1), (True, 1), (True, 4)],
                         ids=["one-window", "pipelined", "pipelined-chunked-attention"])
def test_mixed_batch_equals_solo_runs_whatever_the_window(model_dir, ref, prompts, pipeline, chunks):
    """Rows with different limits, stop ids and stop strings retire at different windows;
    every row still equals the same request run alone, with per-token checks (sync_every=1).
    Pipelined (the CUDA default: the next window runs while one is read back), rows retire a
    window later, with the same outputs; with attention in row chunks (rows admitted longest
    prompt first, each chunk attending to its own longest row), the same outputs again."""
    base = SamplingParams(max_new_tokens=24, temperature=1.0, seed=21)
    (probe,) = _gen(_b := _backend(model_dir, engine="static", sync_every=1), [GenerateRequest(prompts[0], base)])
    _b.shutdown()
    ids = list(probe.completions[0].token_ids)
    stop_text = ref.text(ids[:8])[len(ref.text(ids[:5])) :]
    requests = [
        GenerateRequest(prompts[0], attrs.evolve(base, stop_token_ids=(ids[6],))),
        GenerateRequest(prompts[0], attrs.evolve(base, stop=(stop_text,) if stop_text.strip() else ())),
        GenerateRequest(prompts[1], SamplingParams(max_new_tokens=3, temperature=0)),
        GenerateRequest(prompts[2], SamplingParams(max_new_tokens=30, temperature=0.7, top_k=10, seed=4, n=3)),
        GenerateRequest(prompts[3], SamplingParams(max_new_tokens=1, temperature=1.0, seed=5)),
        GenerateRequest(prompts[1], SamplingParams(max_new_tokens=17, temperature=1.0, min_p=0.1, seed=6, n=2)),
    ]
    solo_backend = _backend(model_dir, engine="static", sync_every=1)
    windowed = _backend(model_dir, engine="static", sync_every=7)
    windowed.engine.pipeline = pipeline
    windowed.engine.attention_chunks = chunks
    try:
        solo = [_gen(solo_backend, [r])[0] for r in requests]
        together = _gen(windowed, requests)
        for request, alone, res in zip(requests, solo, together, strict=True):
            assert [c.token_ids for c in res.completions] == [c.token_ids for c in alone.completions]
            assert [c.finish_reason for c in res.completions] == [c.finish_reason for c in alone.completions]
            for a, c in zip(alone.completions, res.completions, strict=True):
                torch.testing.assert_close(list(c.logprobs), list(a.logprobs), atol=1e-5, rtol=0)
                assert len(c.token_ids) <= request.params.max_new_tokens
        assert together[0].completions[0].finish_reason == "stop"
        assert list(together[0].completions[0].token_ids) == ids[: ids.index(ids[6]) + 1]
        assert windowed.engine.stats["compactions"] >= 1
        assert (windowed.engine.stats["chunked_windows"] > 0) == (chunks > 1)
    finally:
        solo_backend.shutdown()
        windowed.shutdown()


def test_engine_on_a_llama_model(tmp_path):
    cfg = TinyModelConfig(arch="llama", hidden_size=64, layers=2, heads=4, kv_heads=2, intermediate_size=128)
    path = make_unit_scale_copy(build_tiny_model(tmp_path / "tiny", cfg), tmp_path / "model")
    ref = Reference(path)
    engine = StaticEngine(ref.model, ref.tokenizer, sync_every=5)
    prompt = ref.prompt("What is 2 + 3?")
    (out,) = engine.generate([prompt], [RowSpec(0, SamplingParams(max_new_tokens=12, temperature=0), 12, 0)])
    assert out.ids == ref.greedy(prompt, 12)[: len(out.ids)] and out.finish_reason == "length"


@pytest.mark.parametrize("pipeline", [False, True], ids=["one-window", "pipelined"])
def test_abort_ends_live_rows(model_dir, ref, prompts, pipeline):
    engine = StaticEngine(Reference(model_dir).model, ref.tokenizer, sync_every=2, pipeline=pipeline)
    calls = iter([False, False, True])
    outs = engine.generate(
        [prompts[0]], [RowSpec(0, SamplingParams(max_new_tokens=50, temperature=1.0), 50, s) for s in (1, 2)],
        should_abort=lambda: next(calls),
    )
    assert [o.finish_reason for o in outs] == ["abort", "abort"]
    assert all(len(o.ids) == 1 + 2 * 2 for o in outs)  # first token + two windows of 2


@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_cuda_graphs_match_eager_steps_in_bfloat16(model_dir, prompts):
    """Same bf16 model, graphs on and off: identical tokens (graph replay runs the same kernels;
    compile stays off in both, since compiled layer math rounds bf16 differently)."""
    requests = [
        GenerateRequest(prompts[i % 4], SamplingParams(max_new_tokens=40, temperature=1.0, seed=i, n=2))
        for i in range(6)
    ]
    results = []
    for graphs in (False, True):
        backend = NativeBackend(
            NativeBackendConfig(engine="static", dtype="bfloat16", cuda_graphs=graphs, compile=False),
            model=ModelConfig(path=str(model_dir), device="cuda"),
            seed=0,
        )
        try:
            results.append([[c.token_ids for c in r.completions] for r in _gen(backend, requests)])
            assert (backend.engine.stats["graphs_captured"] > 0) == graphs
        finally:
            backend.shutdown()
    assert results[0] == results[1]


@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_cuda_sleep_releases_the_static_cache_and_wake_recaptures(model_dir, prompts):
    model = ModelConfig(path=str(model_dir), device="cuda")
    backend = NativeBackend(NativeBackendConfig(engine="static"), model=model, seed=0)
    try:
        request = GenerateRequest(prompts[0], SamplingParams(max_new_tokens=20, temperature=0))
        (before,) = _gen(backend, [request])
        assert backend.engine.stats["cache_bytes"] > 0
        backend.sleep()
        assert backend.engine.stats["cache_bytes"] == 0
        backend.wake()
        (after,) = _gen(backend, [request])
        assert after.completions[0].token_ids == before.completions[0].token_ids
    finally:
        backend.shutdown()


# -- the compiled decode step ([backend] compile) ------------------------------------------------


@torch.no_grad()
def test_compiled_decode_matches_the_eager_step(ref, prompts):
    """CompiledDecode gives the eager decode's logits (float32, CPU inductor) for two row counts
    (static, then dynamic shapes) and after the fused weights were rebuilt (sleep/wake)."""
    eager = StaticDecoder(ref.model)
    compiled = StaticDecoder(ref.model, compile=True)
    assert compiled.compiled is not None and eager.compiled is None
    for rows in (4, 3):
        cache = eager.new_cache(rows, 64)
        ids = torch.tensor([p[:8] for p in prompts[:rows]])
        eager.prefill(cache, ids, torch.full((rows,), 8), torch.arange(rows), torch.arange(rows))
        tokens = torch.tensor([5, 9, 11, 13][:rows])
        spare = StaticKVCache(cache.k.shape[0], rows, cache.k.shape[2], 64, cache.k.shape[4], cache.k.dtype, "cpu")
        spare.k.copy_(cache.k)
        spare.v.copy_(cache.v)
        want = eager.decode(cache, tokens, torch.full((rows,), 8), span=16)
        got = compiled.decode(spare, tokens, torch.full((rows,), 8), span=16)
        torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-5)
        torch.testing.assert_close(spare.k, cache.k, atol=1e-5, rtol=1e-5)  # same cache writes
    layer = ref.model.model.layers[0]
    layer.self_attn.q_proj.weight.data = layer.self_attn.q_proj.weight.data.clone()
    assert compiled.fuse() and eager.fuse()
    cache = eager.new_cache(2, 64)
    ids = torch.tensor([p[:8] for p in prompts[:2]])
    eager.prefill(cache, ids, torch.full((2,), 8), torch.arange(2), torch.arange(2))
    spare = StaticKVCache(cache.k.shape[0], 2, cache.k.shape[2], 64, cache.k.shape[4], cache.k.dtype, "cpu")
    spare.k.copy_(cache.k)
    spare.v.copy_(cache.v)
    want = eager.decode(cache, torch.tensor([3, 4]), torch.tensor([8, 8]), span=16)
    torch.testing.assert_close(compiled.decode(spare, torch.tensor([3, 4]), torch.tensor([8, 8]), span=16), want,
                               atol=2e-5, rtol=1e-5)


def test_compiled_engine_generates_what_the_eager_engine_does(model_dir, prompts):
    """`[backend] compile = true` on the CPU: greedy and seeded sampled rows equal the eager engine's
    tokens, with log-probs to float rounding."""
    requests = [
        GenerateRequest(prompts[0], SamplingParams(max_new_tokens=12, temperature=0)),
        GenerateRequest(prompts[2], SamplingParams(max_new_tokens=12, temperature=1.0, seed=3, n=2)),
    ]
    eager = _backend(model_dir, engine="static", compile=False, sync_every=4)
    compiled = _backend(model_dir, engine="static", compile=True, sync_every=4)
    try:
        assert compiled.engine.decoder.compiled is not None and eager.engine.decoder.compiled is None
        want, got = _gen(eager, requests), _gen(compiled, requests)
        for a, b in zip(want, got, strict=True):
            assert [c.token_ids for c in b.completions] == [c.token_ids for c in a.completions]
            for ca, cb in zip(a.completions, b.completions, strict=True):
                torch.testing.assert_close(list(cb.logprobs), list(ca.logprobs), atol=1e-4, rtol=0)
    finally:
        eager.shutdown()
        compiled.shutdown()


def test_compile_auto_is_off_on_the_cpu(model_dir):
    backend = _backend(model_dir, engine="static")
    try:
        assert backend.engine.decoder.compiled is None
    finally:
        backend.shutdown()


@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_cuda_compiled_graphs_match_eager_steps(model_dir, prompts):
    """`compile = "auto"` on CUDA compiles the decode layers inside the captured graphs; in float32
    (TF32 off) they give the uncompiled eager engine's tokens and log-probs, over several buckets."""
    torch.backends.cuda.matmul.allow_tf32 = False
    requests = [
        GenerateRequest(prompts[i % 4], SamplingParams(max_new_tokens=24 + 4 * i, temperature=1.0, seed=i, n=2))
        for i in range(6)
    ]
    results = []
    for compiled in (False, True):
        config = NativeBackendConfig(engine="static", dtype="float32", sync_every=4, cuda_graphs=compiled,
                                     compile="auto" if compiled else False)
        backend = NativeBackend(config, model=ModelConfig(path=str(model_dir), device="cuda"), seed=0)
        try:
            assert (backend.engine.decoder.compiled is not None) == compiled
            results.append(_gen(backend, requests))
            if compiled:
                assert backend.engine.stats["graphs_captured"] > 1 and backend.engine.stats["compactions"] > 0
        finally:
            backend.shutdown()
    for a, b in zip(*results, strict=True):
        assert [c.token_ids for c in b.completions] == [c.token_ids for c in a.completions]
        for ca, cb in zip(a.completions, b.completions, strict=True):
            torch.testing.assert_close(list(cb.logprobs), list(ca.logprobs), atol=2e-3, rtol=0)


@torch.no_grad()
def test_a_compiler_failure_says_to_turn_compile_off(ref, prompts, monkeypatch):
    """A compiler error in the decode step is an error naming the option that avoids it."""
    import torch._dynamo.exc

    dec = StaticDecoder(ref.model, compile=True)

    def broken(*args, **kwargs):
        raise torch._dynamo.exc.InternalTorchDynamoError("triton missing")

    monkeypatch.setattr(dec.compiled, "_first", broken)
    cache = dec.new_cache(1, 32)
    with pytest.raises(RuntimeError, match=r"\[backend\] compile = false"):
        dec.decode(cache, torch.tensor([3]), torch.tensor([0]), span=16)
