"""The seeded, resumable prompt loader."""

from __future__ import annotations

import json

import pytest

from skyrl_core.data import PromptLoader
from skyrl_core.errors import DataError

ROWS = [f"row{i}" for i in range(10)]


def test_epochs_are_seeded_permutations_without_mixing():
    loader = PromptLoader(ROWS, seed=7)
    first = [loader.next_rows(3) for _ in range(3)]  # 9 of 10 rows: one left over
    assert len({r for batch in first for r in batch}) == 9
    assert (loader.epoch, loader.position) == (0, 9)
    nxt = loader.next_rows(3)  # the leftover row is skipped: a new epoch starts
    assert (loader.epoch, loader.position) == (1, 3)
    again = PromptLoader(ROWS, seed=7)
    assert [again.next_rows(3) for _ in range(4)] == [*first, nxt]
    other = PromptLoader(ROWS, seed=8)
    assert [other.next_rows(3) for _ in range(3)] != first
    epoch0 = [r for b in first for r in b]
    assert epoch0 != ROWS[:9]  # shuffled


def test_unshuffled_walks_rows_in_order():
    loader = PromptLoader(ROWS, shuffle=False)
    assert loader.next_rows(4) == ROWS[:4] and loader.next_rows(4) == ROWS[4:8]
    assert loader.next_rows(4) == ROWS[:4]


def test_state_dict_round_trip_continues_exactly():
    reference = PromptLoader(ROWS, seed=3)
    expected = [reference.next_rows(4) for _ in range(7)]
    stopped = PromptLoader(ROWS, seed=3)
    for _ in range(3):
        stopped.next_rows(4)
    state = json.loads(json.dumps(stopped.state_dict()))  # what a checkpoint stores
    resumed = PromptLoader(ROWS, seed=999)  # the state's seed wins
    resumed.load_state_dict(state)
    assert [resumed.next_rows(4) for _ in range(4)] == expected[3:]
    assert resumed.state_dict() == reference.state_dict()


def test_peek_does_not_advance():
    loader = PromptLoader(ROWS, seed=1)
    loader.next_rows(8)
    peeked = loader.peek_rows(4)  # crosses into the next epoch, without moving
    assert (loader.epoch, loader.position) == (0, 8)
    assert loader.next_rows(4) == peeked and loader.epoch == 1


def test_errors():
    with pytest.raises(DataError, match="empty dataset"):
        PromptLoader([])
    loader = PromptLoader(ROWS)
    with pytest.raises(DataError, match="asked for 11 prompts but the dataset has only 10 rows"):
        loader.next_rows(11)
    state = loader.state_dict()
    with pytest.raises(DataError, match="checkpoint was taken with 10 training rows but the dataset now has 9"):
        PromptLoader(ROWS[:9]).load_state_dict(state)
