"""Collation of a micro-batch into padded model inputs (``strategies.batch_layout``)."""

from __future__ import annotations

import pytest
import torch

from skyrl_core.errors import DataError
from skyrl_core.protocols.strategy import TrainBatch
from skyrl_core.strategies.batch_layout import collate


def test_collate_right_pads_and_indexes_response_tokens() -> None:
    batch = TrainBatch([[1, 2, 3], [4]], [[5, 6], [7, 8, 9]])
    c = collate(batch, "cpu", pad_id=0)
    assert c.input_ids.tolist() == [[1, 2, 3, 5, 6], [4, 7, 8, 9, 0]]
    assert c.attention_mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]]
    assert c.position_ids.tolist() == [[0, 1, 2, 3, 4]] * 2
    # token j of the response is predicted by the hidden state at prompt_len - 1 + j
    assert c.rows.tolist() == [0, 0, 1, 1, 1]
    assert c.cols.tolist() == [2, 3, 0, 1, 2]
    assert c.targets.tolist() == [5, 6, 7, 8, 9]
    grid = c.scatter(torch.arange(1.0, 6.0))
    assert grid.tolist() == [[1.0, 2.0, 0.0], [3.0, 4.0, 5.0]]


def test_collate_rejects_empty_prompt() -> None:
    with pytest.raises(DataError, match="empty prompt"):
        collate(TrainBatch([[1], []], [[2], [3]]), "cpu")
