"""The LR schedule (``strategies.optim``)."""

from __future__ import annotations

import math

import pytest
import torch

from skyrl_core.strategies.optim import build_scheduler, lr_multiplier


def test_lr_multiplier_schedules() -> None:
    def m(step: int, schedule: str, warmup: int = 0, total: int = 10) -> float:
        return lr_multiplier(step, schedule=schedule, warmup_steps=warmup, total_steps=total)

    assert [m(s, "constant") for s in range(3)] == [1.0, 1.0, 1.0]
    # linear warmup reaches the peak on its last step
    assert [m(s, "constant", warmup=4) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    # cosine after 2 warmup steps over 10 total: progress (s - 2) / 8
    for s in range(2, 10):
        assert m(s, "cosine", warmup=2) == pytest.approx(0.5 * (1 + math.cos(math.pi * (s - 2) / 8)))
    assert m(6, "cosine", warmup=2) == pytest.approx(0.5)
    assert m(2, "linear", warmup=2) == 1.0
    assert m(6, "linear", warmup=2) == pytest.approx(0.5)
    assert m(50, "linear", warmup=2) == 0.0  # past the horizon it stays at the end value
    with pytest.raises(ValueError, match="lr_schedule"):
        m(0, "exponential")


def test_scheduler_drives_optimizer_lr() -> None:
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([param], lr=0.1)
    sched = build_scheduler(opt, schedule="linear", warmup_steps=1, total_steps=5)
    seen = []
    for _ in range(5):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([0.1, 0.1, 0.075, 0.05, 0.025])
