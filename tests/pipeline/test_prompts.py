"""``TrackedLoader``: drawn-but-untrained prompts are saved as pending and served first on resume."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from skyrl_core.data.loader import PromptLoader
from skyrl_core.errors import DataError
from skyrl_core.pipeline import TrackedLoader, track_prompts


def _rows(n: int = 10) -> list[SimpleNamespace]:
    return [SimpleNamespace(uid=str(i)) for i in range(n)]


def _uids(rows) -> list[str]:
    return [r.uid for r in rows]


def test_pending_is_what_was_drawn_and_not_released_in_order():
    loader = TrackedLoader(PromptLoader(_rows(), seed=1, shuffle=False))
    a, b, c = loader.draw(2, "a"), loader.draw(1, "b"), loader.draw(2, "c")
    assert _uids(a + b + c) == ["0", "1", "2", "3", "4"]
    loader.release("b")
    assert _uids(loader.pending()) == ["0", "1", "3", "4"]
    assert loader.requeue("c") == 2  # served again, before new rows
    assert _uids(loader.pending()) == ["3", "4", "0", "1"]
    assert _uids(loader.peek_rows(3)) == ["3", "4", "5"]
    assert _uids(loader.draw(3, "d")) == ["3", "4", "5"]
    assert loader.state_dict()["pending"] == ["0", "1", "3", "4", "5"]


def test_a_checkpoint_round_trip_serves_pending_prompts_first():
    source = TrackedLoader(PromptLoader(_rows(), seed=3))
    source.draw(3, 1)
    source.draw(3, 2)
    source.release(1)
    state = source.state_dict()
    assert state["position"] == 6 and len(state["pending"]) == 3

    resumed = TrackedLoader(PromptLoader(_rows(), seed=3))
    resumed.load_state_dict(state)
    assert _uids(resumed.draw(3, "x")) == state["pending"]
    reference = PromptLoader(_rows(), seed=3)
    reference.next_rows(6)
    assert _uids(resumed.draw(2, "y")) == _uids(reference.next_rows(2))  # then the loader goes on


def test_unknown_pending_uids_are_a_clear_error():
    loader = TrackedLoader(PromptLoader(_rows(4), seed=0))
    state = {**PromptLoader(_rows(4), seed=0).state_dict(), "pending": ["2", "77"]}
    with pytest.raises(DataError, match=r"\['77'\].*same \[data\] train files"):
        loader.load_state_dict(state)


def test_sync_mode_keeps_the_plain_loader_unless_a_checkpoint_left_pending_prompts():
    plain = PromptLoader(_rows(), seed=0)
    assert track_prompts(plain, "sync", None) is plain
    assert track_prompts(plain, "sync", {"loader": {"pending": []}}) is plain
    wrapped = track_prompts(plain, "sync", {"loader": {"pending": ["1"]}})
    assert isinstance(wrapped, TrackedLoader) and not wrapped.track
    wrapped.draw(2, None)
    assert wrapped.pending() == []  # sync mode trains what it draws at once: nothing to remember
    assert isinstance(track_prompts(plain, "async", None), TrackedLoader)
