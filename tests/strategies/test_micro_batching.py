"""Micro-batches by token budget and the mini-batch's loss totals (``strategies.micro_batching``)."""

from __future__ import annotations

import pytest
import torch

from skyrl_core.protocols.strategy import TrainBatch
from skyrl_core.strategies.micro_batching import loss_scale, pack_by_token_budget


@pytest.mark.parametrize("sort", [True, False])
def test_packing_respects_budget_and_covers_every_sequence(sort: bool) -> None:
    lengths = [5, 17, 3, 9, 9, 2, 30, 11, 4]
    budget = 24
    groups = pack_by_token_budget(lengths, budget, sort=sort)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    for g in groups:
        padded = len(g) * max(lengths[i] for i in g)
        assert padded <= budget or len(g) == 1  # only a lone over-long sequence may exceed it
    assert [6] in groups  # length 30 > 24 goes alone
    if not sort:
        # in-order packing keeps the original order
        assert [i for g in groups for i in g] == list(range(len(lengths)))
    else:
        # longest first
        assert groups[0] == [6]


def test_packing_extremes() -> None:
    lengths = [4, 4, 4, 4]
    assert pack_by_token_budget(lengths, 1) == [[0], [1], [2], [3]]
    assert pack_by_token_budget(lengths, 10_000) == [[0, 1, 2, 3]]
    assert pack_by_token_budget([], 8) == []
    with pytest.raises(ValueError, match="budget"):
        pack_by_token_budget(lengths, 0)


def test_loss_scale_counts_tokens_and_sequences() -> None:
    mask = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    scale = loss_scale(TrainBatch([[1]] * 3, [[1, 2, 3], [1], [1]], {"loss_mask": mask}))
    assert (scale.num_tokens, scale.num_sequences) == (3.0, 2.0)
    with pytest.raises(KeyError, match="loss_mask"):
        loss_scale(TrainBatch([[1]], [[2]]))
