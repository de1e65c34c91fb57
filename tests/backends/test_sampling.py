"""The one sampler of both engines: filtered log-probs against the plain oracle, draw frequencies,
counter-based random numbers, seeds."""

from __future__ import annotations

import math

import attrs
import pytest
import torch

from skyrl_core.backends.sampling import (
    RowSampling,
    SamplingFlags,
    counter_uniform,
    draw,
    filtered_logprobs,
    sample,
    sample_seed,
)
from skyrl_core.protocols.backend import SamplingParams
from skyrl_core.testing.conformance import SAMPLED_SETTINGS, reference_logprobs

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


@pytest.mark.parametrize(
    "rows", [MIXED, [SamplingParams(**s) for s in SAMPLED_SETTINGS] + [SamplingParams(temperature=0)]]
)
def test_filtered_logprobs_match_the_oracle_row_by_row(rows):
    logits = torch.randn(len(rows), 300, generator=torch.Generator().manual_seed(0)) * 3
    got = filtered_logprobs(logits, RowSampling.build(rows, "cpu"))
    for row, params in enumerate(rows):
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
    rs = RowSampling.build(MIXED, "cpu", seeds=range(10, 10 + len(MIXED)))
    sub = rs.select(torch.tensor([2, 5]))
    assert sub.top_k.tolist() == [3, -1] and sub.min_p.tolist() == pytest.approx([0.0, 0.2])
    assert sub.seeds.tolist() == [12, 15] and sub.flags == rs.flags


def test_flags_say_which_filters_a_batch_needs():
    assert SamplingFlags.of(MIXED) == SamplingFlags(top_k=True, top_p=True, min_p=True, all_greedy=False)
    greedy = SamplingFlags.of([SamplingParams(temperature=0, top_k=5, top_p=0.5)])
    assert greedy == SamplingFlags(top_k=False, top_p=False, min_p=False, all_greedy=True)
    assert not SamplingFlags.of([SamplingParams(temperature=0.7)]).filters


def test_loading_rows_into_larger_buffers_pads_with_greedy_rows():
    buffers = RowSampling.empty(4, "cpu")
    buffers.load(RowSampling.build(MIXED[1:3], "cpu", seeds=[7, 8]))
    assert buffers.greedy.tolist() == [False, False, True, True]
    assert buffers.seeds[:2].tolist() == [7, 8] and buffers.flags == SamplingFlags.of(MIXED[1:3])


def test_filters_a_row_does_not_use_leave_its_distribution_alone():
    """Flags belong to the batch: a plain row sampled beside a top-k row gets the same draw."""
    logits = torch.randn(1, 50, generator=torch.Generator().manual_seed(4)) * 2
    plain = RowSampling.build([SamplingParams(temperature=0.9)], "cpu", seeds=[3])
    mixed = RowSampling.build([SamplingParams(temperature=0.9), SamplingParams(top_k=2)], "cpu", seeds=[3, 4])
    counters = torch.tensor([5, 5])
    for i in range(200):
        alone = sample(logits, attrs.evolve(plain, seeds=torch.tensor([i])), counters[:1])
        crowded = sample(logits.expand(2, -1), attrs.evolve(mixed, seeds=torch.tensor([i, 0])), counters)
        assert int(alone[0][0]) == int(crowded[0][0])
        assert math.isclose(float(alone[1][0]), float(crowded[1][0]), abs_tol=1e-6)


def test_counter_uniform_is_deterministic_uniform_and_seed_dependent():
    seeds = torch.arange(4000, dtype=torch.long) * 7919
    counters = torch.arange(4000, dtype=torch.long) % 13
    u = counter_uniform(seeds, counters)
    assert torch.equal(u, counter_uniform(seeds, counters))
    assert float(u.min()) >= 0 and float(u.max()) < 1
    assert abs(float(u.mean()) - 0.5) < 0.02 and abs(float(u.var()) - 1 / 12) < 0.01
    big = torch.tensor([2**63 - 1, -(2**63)], dtype=torch.long)  # int64 wrap-around stays in range
    assert torch.all(counter_uniform(big, torch.zeros(2, dtype=torch.long)) >= 0)
    assert not torch.equal(counter_uniform(seeds + 1, counters), u)


@pytest.mark.parametrize("p", [SamplingParams(temperature=0.8, top_k=4), SamplingParams(temperature=0.7)])
def test_sample_draws_from_the_filtered_distribution_and_greedy_rows_take_argmax(p):
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(1, 6, generator=gen).expand(20000, 6).contiguous()
    rows = [p] * 19999 + [SamplingParams(temperature=0)]
    rs = RowSampling.build(rows, "cpu", seeds=range(20000))
    tokens, lps = sample(logits, rs, torch.zeros(20000, dtype=torch.long))
    expected = filtered_logprobs(logits[:1], rs.select(torch.tensor([0])))[0].exp()
    freq = torch.bincount(tokens[:-1], minlength=6).float() / 19999
    assert float((freq - expected).abs().max()) < 0.015
    assert float(freq[expected == 0].sum()) == 0  # filtered tokens are never drawn
    assert int(tokens[-1]) == int(logits[0].argmax())
    torch.testing.assert_close(lps[:-1], expected.log()[tokens[:-1]])
    torch.testing.assert_close(lps[-1], torch.log_softmax(logits[0], -1).max())


def test_sample_seeds_are_distinct_and_stable():
    seeds = {sample_seed(s, j) for s in range(50) for j in range(8)}
    assert len(seeds) == 400 and all(0 <= x < 2**63 for x in seeds)
    assert sample_seed(7, 1) == sample_seed(7, 1)
