"""Request validation shared by every backend: each problem named, all of a request's problems together."""

from __future__ import annotations

import pytest

from skyrl_core.backends.validation import check_requests, request_problems
from skyrl_core.protocols.backend import GenerateRequest, SamplingParams


def test_every_problem_of_a_request_is_listed():
    problems = request_problems(
        GenerateRequest([1, 2, 999], SamplingParams(n=0, min_p=2)), vocab_size=512, max_model_len=3
    )
    assert problems == [
        "prompt token ids [999] are outside the vocabulary [0, 512)",
        "the prompt has 3 tokens; the model takes at most 3 (prompt + response). Shorten it or raise "
        "[backend] max_model_len",
        "n must be >= 1 (got 0)",
        "min_p must be in [0, 1] (got 2)",
    ]


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (GenerateRequest((), SamplingParams()), "prompt_ids is empty; a prompt needs at least one token"),
        (GenerateRequest([1, -1], SamplingParams()), "prompt token ids [-1] are outside the vocabulary [0, 50)"),
        (GenerateRequest([1], SamplingParams(max_new_tokens=0)), "max_new_tokens must be >= 1 (got 0)"),
        (GenerateRequest([1], SamplingParams(temperature=-0.1)), "temperature must be >= 0 (got -0.1)"),
        (GenerateRequest([1], SamplingParams(top_p=0)), "top_p must be in (0, 1] (got 0)"),
        (GenerateRequest([1], SamplingParams(top_p=1.5)), "top_p must be in (0, 1] (got 1.5)"),
        (GenerateRequest([1], SamplingParams(min_p=-0.5)), "min_p must be in [0, 1] (got -0.5)"),
    ],
)
def test_each_rule(request_, message):
    assert request_problems(request_, vocab_size=50, max_model_len=100) == [message]


def test_limits_a_backend_does_not_know_are_not_checked():
    request = GenerateRequest([10**6] * 9, SamplingParams())
    assert request_problems(request, vocab_size=None, max_model_len=None) == []


def test_the_error_names_the_backend_the_request_and_the_option_to_raise():
    good = GenerateRequest([1], SamplingParams())
    long = GenerateRequest([1] * 8, SamplingParams(n=0))
    with pytest.raises(ValueError) as info:
        check_requests(
            [good, long], backend="SGLangBackend", vocab_size=50, max_model_len=8, length_option="context_length"
        )
    assert str(info.value) == (
        "SGLangBackend.generate: request 1: the prompt has 8 tokens; the model takes at most 8 (prompt + response). "
        "Shorten it or raise [backend] context_length; n must be >= 1 (got 0)"
    )
    check_requests([good, good], backend="X", vocab_size=50, max_model_len=8)  # fine: no error
