"""Per-row sampling: filtered log-probs against the plain oracle, draw frequencies, seeds."""

from __future__ import annotations

import math

import pytest
import torch

from skyrl_core.backends.sampling import RowSampling, draw, filtered_logprobs, sample_seed
from skyrl_core.protocols.backend import SamplingParams
from skyrl_core.testing.conformance import reference_logprobs

MIXED = [
    SamplingParams(temperature=0),
    SamplingParams(temperature=0.5),
    SamplingParams(temperature=1.0, top_k=3),
    SamplingParams(temperature=1.0, top_p=0.5),
    SamplingParams(temperature=2.0, top_k=10, top_p=0.7),
    SamplingParams(temperature=1.0, min_p=0.2),
    SamplingParams(temperature=0.7, top_k=20, top_p=0.9, min_p=0.1),
    SamplingParams(temperature=1.0, top_k=1),
]


def test_filtered_logprobs_match_the_oracle_row_by_row():
    logits = torch.randn(len(MIXED), 64, generator=torch.Generator().manual_seed(0)) * 3
    got = filtered_logprobs(logits, RowSampling.build(MIXED, "cpu"))
    for row, params in enumerate(MIXED):
        expected = reference_logprobs(logits[row], params).float()
        assert torch.equal(torch.isinf(got[row]), torch.isinf(expected)), params
        finite = torch.isfinite(expected)
        assert torch.allclose(got[row][finite], expected[finite], atol=1e-5), params
        assert math.isclose(float(got[row].exp().sum()), 1.0, rel_tol=1e-5)


def test_filters_keep_what_they_promise():
    logits = torch.randn(3, 100, generator=torch.Generator().manual_seed(1)) * 2
    params = [SamplingParams(top_k=7), SamplingParams(top_p=0.6), SamplingParams(min_p=0.3)]
    lp = filtered_logprobs(logits, RowSampling.build(params, "cpu"))
    assert int(torch.isfinite(lp[0]).sum()) == 7
    probs = torch.softmax(logits[1], -1)
    kept = torch.isfinite(lp[1])
    assert float(probs[kept].sum()) >= 0.6 and float(probs[kept].sum() - probs[kept].min()) < 0.6  # smallest set
    p2 = torch.softmax(logits[2], -1)
    assert torch.equal(torch.isfinite(lp[2]), p2 >= 0.3 * p2.max())


def test_greedy_rows_take_the_argmax_with_raw_logprobs():
    logits = torch.randn(2, 30, generator=torch.Generator().manual_seed(2))
    rs = RowSampling.build([SamplingParams(temperature=0), SamplingParams(temperature=1.0, top_k=2)], "cpu")
    tokens, lps = draw(filtered_logprobs(logits, rs), rs, torch.tensor([0.99, 0.0]))
    assert int(tokens[0]) == int(logits[0].argmax())
    assert math.isclose(float(lps[0]), float(torch.log_softmax(logits[0], -1).max()), rel_tol=1e-6)
    assert int(tokens[1]) == int(logits[1].argmax()), "u = 0 picks the first token of the CDF with mass"


def test_draw_frequencies_follow_the_distribution():
    probs = torch.tensor([0.5, 0.25, 0.15, 0.1, 0.0])
    n = 20000
    logits = torch.log(probs).expand(n, -1)
    rs = RowSampling.build([SamplingParams(temperature=1.0)] * n, "cpu")
    tokens, lps = draw(filtered_logprobs(logits, rs), rs, torch.rand(n, generator=torch.Generator().manual_seed(3)))
    freq = torch.bincount(tokens, minlength=5).double() / n
    assert torch.allclose(freq, probs.double(), atol=0.015), freq
    assert int(tokens.max()) < 4, "a zero-probability token is never drawn"
    assert torch.allclose(lps, torch.log(probs)[tokens], atol=1e-6)


def test_row_selection_keeps_parameters_aligned():
    rs = RowSampling.build(MIXED, "cpu")
    sub = rs.select(torch.tensor([2, 5]))
    assert sub.top_k.tolist() == [3, -1] and sub.min_p.tolist() == pytest.approx([0.0, 0.2])


def test_sample_seeds_are_distinct_and_stable():
    seeds = {sample_seed(s, j) for s in range(50) for j in range(8)}
    assert len(seeds) == 400 and all(0 <= x < 2**63 for x in seeds)
    assert sample_seed(7, 1) == sample_seed(7, 1)
