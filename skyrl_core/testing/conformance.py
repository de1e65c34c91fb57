"""The inference-backend conformance suite: what every backend must do, checked against transformers.

A backend plugin runs it by subclassing ``BackendConformance`` in its own tests::

    from skyrl_core.testing.conformance import BackendConformance

    class TestMyBackend(BackendConformance):
        logprob_atol = 2e-2  # e.g. a bf16 engine

        def make_backend(self, model, seed):
            return MyBackend(MyBackendConfig(), model=model, seed=seed)

The suite builds one backend per test class from a tiny model folder
(``conformance_model_dir``: the session's ``tiny_model_dir`` with its weights re-drawn at
unit scale, so greedy decoding depends on the context instead of echoing the last token),
and compares it with a transformers reference model loaded from the same folder:

* greedy output equals ``model.generate(do_sample=False)``;
* returned log-probs match a teacher-forced forward pass within ``logprob_atol``, for
  greedy decoding (raw log-softmax) and for sampling with temperature, top-k, top-p and
  min-p (the log-probs of the filtered distribution, filters in transformers' order:
  temperature, top-k, top-p, min-p);
* ``max_new_tokens``, stop token ids and stop strings are exact (a stop string spanning
  several tokens, one ending inside a token, several stop strings at once), with tokens,
  text and log-probs trimmed consistently;
* ``n`` samples, seeds reproducible whatever else is in the batch, different seeds differ;
* a weight update changes the output and restoring the weights restores it exactly;
* many concurrent ``generate`` calls from asyncio tasks all complete with correct results.

Tolerance: ``logprob_atol`` (default 1e-3) is the largest absolute difference allowed
between a returned log-prob and the reference's, per token.
"""

from __future__ import annotations

import asyncio
import math
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from skyrl_core.backends.stops import decode_text
from skyrl_core.config.schema import ModelConfig
from skyrl_core.protocols.backend import (
    FINISH_REASONS,
    BackendCapabilities,
    Completion,
    GenerateRequest,
    GenerateResult,
    SamplingParams,
)

QUESTIONS = (
    "What is 2 + 3?",
    "Compute 123 * 45. Put your final answer in \\boxed{}.",
    "Solve: 700 - 98 = ?",
    "hi",
    "What is the value of 81 + 19? Think step by step.",
    "Calculate 6 * 7.",
)

#: Sampling settings whose log-probs are checked (rows of one batch use different ones).
SAMPLED_SETTINGS = (
    {"temperature": 0.7},
    {"temperature": 1.0, "top_k": 20},
    {"temperature": 0.8, "top_p": 0.9},
    {"temperature": 1.3, "top_k": 50, "top_p": 0.8},
    {"temperature": 1.0, "min_p": 0.05},
    {"temperature": 0.9, "top_k": 30, "top_p": 0.95, "min_p": 0.02},
)


def run(coro: Any) -> Any:
    """Run a coroutine to completion on a fresh event loop."""
    return asyncio.run(coro)


def generate(backend: Any, requests: Sequence[GenerateRequest]) -> list[GenerateResult]:
    """``backend.generate`` called from synchronous test code."""
    return run(backend.generate(list(requests)))


def reference_logprobs(logits: Any, params: SamplingParams) -> Any:
    """Log-probs ``(V,)`` of the distribution a token is sampled from, for one position's logits ``(V,)``.

    A deliberately plain implementation (the oracle): temperature, top-k, top-p on the
    renormalised top-k distribution, then min-p relative to the most likely token.
    """
    import torch

    logits = logits.double()
    if params.temperature == 0:
        return torch.log_softmax(logits, -1)
    x = logits / params.temperature
    if params.top_k > 0:
        kth = torch.topk(x, min(params.top_k, x.numel())).values[-1]
        x = x.masked_fill(x < kth, -math.inf)
    if params.top_p < 1:
        probs = torch.softmax(x, -1)
        order = torch.argsort(probs, descending=True)
        cumulative = torch.cumsum(probs[order], 0)
        keep_n = int((cumulative < params.top_p).sum()) + 1  # smallest prefix reaching top_p
        removed = order[keep_n:]
        x = x.clone()
        x[removed] = -math.inf
    if params.min_p > 0:
        probs = torch.softmax(x, -1)
        x = x.masked_fill(probs < params.min_p * probs.max(), -math.inf)
    return torch.log_softmax(x, -1)


class Reference:
    """The transformers model and tokenizer of a folder, on CPU in float32."""

    def __init__(self, path: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.path = path
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        self.eos = self.tokenizer.eos_token_id

    def prompt(self, question: str) -> list[int]:
        """Chat-templated prompt ids for a user question."""
        text = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
        )
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def greedy(self, prompt: Sequence[int], max_new_tokens: int) -> list[int]:
        """``model.generate(do_sample=False)`` stopping at EOS (kept)."""
        import torch

        ids = torch.tensor([list(prompt)])
        with torch.no_grad():
            out = self.model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                do_sample=False,
                max_new_tokens=max_new_tokens,
                eos_token_id=self.eos,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        return out[0, ids.shape[1] :].tolist()

    def logprobs(self, prompt: Sequence[int], output: Sequence[int], params: SamplingParams) -> list[float]:
        """Teacher-forced log-probs of ``output`` after ``prompt`` under ``params``' distribution."""
        import torch

        ids = torch.tensor([[*prompt, *output]])
        with torch.no_grad():
            logits = self.model(ids).logits[0, len(prompt) - 1 : -1]
        return [float(reference_logprobs(row, params)[t]) for row, t in zip(logits, output, strict=True)]

    def text(self, ids: Sequence[int]) -> str:
        return decode_text(self.tokenizer, ids)


def make_unit_scale_copy(src: Path, dst: Path, seed: int = 0) -> Path:
    """Copy a model folder, re-drawing every matrix with std 1/sqrt(fan_in) (tied weights stay tied)."""
    import torch
    from transformers import AutoModelForCausalLM

    shutil.copytree(src, dst)
    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, param in model.named_parameters():
            if param.dim() == 2:
                param.copy_(torch.randn(param.shape, generator=gen) / math.sqrt(param.shape[1]))
    model.save_pretrained(dst)
    return dst


def _check_well_formed(c: Completion, ref: Reference, max_new_tokens: int) -> None:
    assert len(c.token_ids) == len(c.logprobs), "one log-prob per token"
    assert 1 <= len(c.token_ids) <= max_new_tokens
    assert c.finish_reason in FINISH_REASONS
    assert all(lp <= 1e-6 and math.isfinite(lp) for lp in c.logprobs), c.logprobs
    if c.text is not None:
        assert c.text == ref.text(c.token_ids)


def _assert_close(got: Sequence[float], expected: Sequence[float], atol: float, what: str) -> None:
    assert len(got) == len(expected), what
    worst = max((abs(a - b) for a, b in zip(got, expected, strict=True)), default=0.0)
    assert worst <= atol, f"{what}: log-probs differ from the reference by up to {worst:.2e} (> {atol:.0e})"


class BackendConformance:
    """Subclass it and implement ``make_backend``; every ``test_*`` here then runs on your backend."""

    #: Largest allowed |returned log-prob - reference log-prob|.
    logprob_atol: float = 1e-3
    #: The ``[model] device`` the backend is built with.
    device: str = "cpu"

    def make_backend(self, model: ModelConfig, seed: int) -> Any:
        """Build the backend under test for the model folder in ``model.path``."""
        raise NotImplementedError("subclasses of BackendConformance implement make_backend(model, seed)")

    # -- fixtures -------------------------------------------------------------------------

    @pytest.fixture(scope="class")
    @classmethod
    def conformance_model_dir(cls, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
        """The model folder both the backend and the reference load (override to use another)."""
        return make_unit_scale_copy(tiny_model_dir, tmp_path_factory.mktemp("conformance") / "model")

    @pytest.fixture(scope="class")
    @classmethod
    def backend(cls, conformance_model_dir: Path) -> Any:
        backend = cls().make_backend(ModelConfig(path=str(conformance_model_dir), device=cls.device), seed=1234)
        yield backend
        backend.shutdown()

    @pytest.fixture(scope="class")
    @classmethod
    def ref(cls, conformance_model_dir: Path) -> Reference:
        return Reference(conformance_model_dir)

    @pytest.fixture(scope="class")
    @classmethod
    def prompts(cls, ref: Reference) -> list[list[int]]:
        return [ref.prompt(q) for q in QUESTIONS]

    # -- basics -----------------------------------------------------------------------------

    def test_capabilities_declared(self, backend):
        assert isinstance(backend.capabilities, BackendCapabilities)

    def test_no_requests(self, backend):
        assert generate(backend, []) == []

    # -- greedy and log-probs -----------------------------------------------------------------

    def test_greedy_matches_transformers(self, backend, ref, prompts):
        params = SamplingParams(max_new_tokens=16, temperature=0, stop_token_ids=(ref.eos,))
        results = generate(backend, [GenerateRequest(p, params) for p in prompts])
        outputs = set()
        for prompt, result in zip(prompts, results, strict=True):
            (c,) = result.completions
            expected = ref.greedy(prompt, 16)
            assert list(c.token_ids) == expected, f"greedy output differs for prompt {ref.text(prompt)!r}"
            ended_on_eos = expected[-1] == ref.eos
            assert c.finish_reason == ("stop" if ended_on_eos else "length")
            _check_well_formed(c, ref, 16)
            _assert_close(c.logprobs, ref.logprobs(prompt, c.token_ids, params), self.logprob_atol, "greedy")
            outputs.add(tuple(c.token_ids))
        assert len(outputs) > 1, "the test model should answer different prompts differently"

    def test_sampled_logprobs_match_the_filtered_distribution(self, backend, ref, prompts):
        settings = [SamplingParams(max_new_tokens=12, seed=100 + i, **s) for i, s in enumerate(SAMPLED_SETTINGS)]
        requests = [GenerateRequest(prompts[i % len(prompts)], p) for i, p in enumerate(settings)]
        results = generate(backend, requests)  # one batch, every row with its own parameters
        for request, result in zip(requests, results, strict=True):
            (c,) = result.completions
            _check_well_formed(c, ref, 12)
            expected = ref.logprobs(request.prompt_ids, c.token_ids, request.params)
            _assert_close(c.logprobs, expected, self.logprob_atol, f"sampling with {request.params}")

    # -- lengths and stops ------------------------------------------------------------------

    def test_max_new_tokens_exact(self, backend, ref, prompts):
        for m in (1, 5, 13):
            params = SamplingParams(max_new_tokens=m, temperature=1.0, seed=m)
            (result,) = generate(backend, [GenerateRequest(prompts[1], params)])
            (c,) = result.completions
            assert len(c.token_ids) == m and c.finish_reason == "length" and c.stop_reason is None
            _check_well_formed(c, ref, m)

    def _unstopped(self, backend, prompt, seed: int, max_new_tokens: int = 32) -> Completion:
        params = SamplingParams(max_new_tokens=max_new_tokens, temperature=1.0, seed=seed)
        (result,) = generate(backend, [GenerateRequest(prompt, params)])
        return result.completions[0]

    def test_stop_token_ids(self, backend, ref, prompts):
        base = self._unstopped(backend, prompts[0], seed=5)
        ids = list(base.token_ids)
        pos = next(i for i in range(3, len(ids)) if ids.index(ids[i]) == i)  # first occurrence, not at the start
        params = SamplingParams(max_new_tokens=32, temperature=1.0, seed=5, stop_token_ids=(ids[pos], -1))
        (result,) = generate(backend, [GenerateRequest(prompts[0], params)])
        (c,) = result.completions
        assert list(c.token_ids) == ids[: pos + 1], "the stop token is kept and nothing follows it"
        assert (c.finish_reason, c.stop_reason) == ("stop", ids[pos])
        _assert_close(c.logprobs, base.logprobs[: pos + 1], 1e-6, "stop token: log-probs trimmed with the tokens")
        _check_well_formed(c, ref, 32)

    def _stop_case(self, backend, ref, prompts, mid_token: bool) -> tuple[int, int, str, Completion]:
        """Find (prompt, seed, stop string, unstopped output) where the stop needs several tokens."""
        for seed in range(20):
            prompt = seed % len(prompts)
            base = self._unstopped(backend, prompts[prompt], seed=seed)
            ids = list(base.token_ids)
            texts = [ref.text(ids[:k]) for k in range(len(ids) + 1)]
            for i in range(2, len(ids) - 3):
                j = i + 2 if not mid_token else i + 1  # stop covers tokens i..j (mid-token: part of j)
                piece_j = texts[j + 1][len(texts[j]) :]
                if not (texts[j + 1].startswith(texts[i]) and texts[j].startswith(texts[i])):
                    continue
                stop = texts[j + 1][len(texts[i]) :] if not mid_token else texts[j][len(texts[i]) :] + piece_j[:1]
                if mid_token and len(piece_j.strip()) < 2:
                    continue
                if "\ufffd" in stop or len(stop.strip()) < 2 or stop.isspace():
                    continue
                k = next(k for k in range(len(ids) + 1) if stop in texts[k])
                start = texts[k].find(stop)
                spans = start < len(texts[k - 1])  # the match begins before the last token's text
                ends_inside = start + len(stop) < len(texts[k])
                if spans and (ends_inside if mid_token else True):
                    return prompt, seed, stop, base
        raise AssertionError("no suitable stop string found in 20 sampled outputs of the test model")

    def _check_stopped(self, backend, ref, prompts, prompt, seed, stops, base) -> Completion:
        params = SamplingParams(max_new_tokens=32, temperature=1.0, seed=seed, stop=tuple(stops))
        (result,) = generate(backend, [GenerateRequest(prompts[prompt], params)])
        (c,) = result.completions
        ids = list(base.token_ids)
        texts = [ref.text(ids[:k]) for k in range(len(ids) + 1)]
        k = next(k for k in range(len(ids) + 1) if any(s in texts[k] for s in stops))  # shortest prefix
        assert list(c.token_ids) == ids[:k], f"stop {stops!r}: expected the shortest prefix ({k} tokens)"
        assert c.text == texts[k]
        assert c.finish_reason == "stop" and c.stop_reason in stops and c.stop_reason in c.text
        assert not any(s in texts[k - 1] for s in stops)
        _assert_close(c.logprobs, base.logprobs[:k], 1e-6, "stop string: log-probs trimmed with the tokens")
        return c

    def test_stop_string_spanning_tokens(self, backend, ref, prompts):
        prompt, seed, stop, base = self._stop_case(backend, ref, prompts, mid_token=False)
        self._check_stopped(backend, ref, prompts, prompt, seed, [stop], base)

    def test_stop_string_ending_mid_token(self, backend, ref, prompts):
        prompt, seed, stop, base = self._stop_case(backend, ref, prompts, mid_token=True)
        c = self._check_stopped(backend, ref, prompts, prompt, seed, [stop], base)
        assert c.text.find(stop) + len(stop) < len(c.text), "the final token's extra characters stay"

    def test_first_of_several_stop_strings(self, backend, ref, prompts):
        prompt, seed, stop, base = self._stop_case(backend, ref, prompts, mid_token=False)
        never = "\x00never-generated\x00"
        c = self._check_stopped(backend, ref, prompts, prompt, seed, [never, stop], base)
        assert c.stop_reason == stop
        # A stop string that only occurs later does not win over an earlier one.
        full = ref.text(base.token_ids)
        later = full[full.find(stop) + len(stop) :].strip()[:3]
        if later and "\ufffd" not in later and later not in full[: full.find(stop) + len(stop)]:
            c = self._check_stopped(backend, ref, prompts, prompt, seed, [later, stop], base)
            assert c.stop_reason == stop

    def test_unmatched_stop_string_runs_to_length(self, backend, ref, prompts):
        params = SamplingParams(max_new_tokens=10, temperature=1.0, seed=3, stop=("\x00never-generated\x00",))
        (result,) = generate(backend, [GenerateRequest(prompts[2], params)])
        (c,) = result.completions
        assert (len(c.token_ids), c.finish_reason, c.stop_reason) == (10, "length", None)

    # -- samples and seeds --------------------------------------------------------------------

    def test_n_samples(self, backend, ref, prompts):
        params = SamplingParams(max_new_tokens=12, temperature=1.0, n=4, seed=7)
        (result,) = generate(backend, [GenerateRequest(prompts[0], params)])
        assert len(result.completions) == 4
        for c in result.completions:
            _check_well_formed(c, ref, 12)
        assert len({tuple(c.token_ids) for c in result.completions}) > 1, "n samples should differ"
        (again,) = generate(backend, [GenerateRequest(prompts[0], params)])
        assert [c.token_ids for c in again.completions] == [c.token_ids for c in result.completions]

    def test_seed_reproducible_whatever_else_is_in_the_batch(self, backend, prompts):
        seeded = GenerateRequest(
            prompts[3], SamplingParams(max_new_tokens=16, temperature=1.0, top_p=0.95, seed=11, n=2)
        )
        (alone,) = generate(backend, [seeded])
        others = [
            GenerateRequest(prompts[0], SamplingParams(max_new_tokens=5, temperature=1.0)),
            GenerateRequest(prompts[4], SamplingParams(max_new_tokens=20, temperature=0)),
            GenerateRequest(prompts[1], SamplingParams(max_new_tokens=9, temperature=0.5, top_k=5, n=3)),
        ]
        crowded = generate(backend, [others[0], seeded, *others[1:]])[1]
        assert [c.token_ids for c in crowded.completions] == [c.token_ids for c in alone.completions]
        _assert_close(crowded.completions[0].logprobs, alone.completions[0].logprobs, self.logprob_atol, "seeded")
        (other_seed,) = generate(backend, [attr_evolve(seeded, seed=12)])
        assert [c.token_ids for c in other_seed.completions] != [c.token_ids for c in alone.completions]

    # -- weights ------------------------------------------------------------------------------

    def test_weight_update_changes_and_restores_outputs(self, backend, ref, prompts):
        import torch

        requests = [
            GenerateRequest(prompts[0], SamplingParams(max_new_tokens=12, temperature=0)),
            GenerateRequest(prompts[2], SamplingParams(max_new_tokens=12, temperature=1.0, seed=9)),
        ]
        before = generate(backend, requests)
        original = {name: t.detach().clone() for name, t in ref.model.state_dict().items()}
        gen = torch.Generator().manual_seed(0)
        perturbed = {n: t + torch.randn(t.shape, generator=gen) * t.std() for n, t in original.items() if t.dim() == 2}
        backend.update_weights(perturbed.items())
        changed = generate(backend, requests)
        assert [r.completions[0].token_ids for r in changed] != [r.completions[0].token_ids for r in before]
        backend.update_weights(original.items())
        backend.reset_prefix_cache()
        after = generate(backend, requests)
        for b, a in zip(before, after, strict=True):
            assert a.completions[0].token_ids == b.completions[0].token_ids
            _assert_close(a.completions[0].logprobs, b.completions[0].logprobs, 1e-6, "restored weights")

    def test_weight_update_rejects_unknown_names(self, backend):
        import torch

        with pytest.raises(Exception, match="no_such_layer"):
            backend.update_weights([("model.no_such_layer.weight", torch.zeros(2, 2))])

    # -- concurrency --------------------------------------------------------------------------

    def test_concurrent_generate_calls(self, backend, ref, prompts):
        requests = [
            GenerateRequest(
                prompts[i % len(prompts)],
                SamplingParams(max_new_tokens=4 + i % 7, temperature=0 if i % 2 else 1.0, seed=i, n=1 + i % 3),
            )
            for i in range(16)
        ]
        solo = [generate(backend, [r])[0] for r in requests]

        async def many() -> list[list[GenerateResult]]:
            async def one(r: GenerateRequest) -> list[GenerateResult]:
                await asyncio.sleep(0)
                return await backend.generate([r])

            return await asyncio.gather(*(one(r) for r in requests))

        together = run(many())
        for request, alone, (res,) in zip(requests, solo, together, strict=True):
            assert [c.token_ids for c in res.completions] == [c.token_ids for c in alone.completions]
            for c in res.completions:
                _check_well_formed(c, ref, request.params.max_new_tokens)


def attr_evolve(request: GenerateRequest, **params: Any) -> GenerateRequest:
    """A copy of ``request`` with some sampling parameters replaced."""
    import attrs

    return GenerateRequest(request.prompt_ids, attrs.evolve(request.params, **params))
