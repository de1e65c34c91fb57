"""Strategy building blocks: packing, collation, LR schedule, RNG state, directory replacement."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from skyrl_core.errors import DataError
from skyrl_core.protocols.strategy import TrainBatch
from skyrl_core.strategies import common


@pytest.mark.parametrize("sort", [True, False])
def test_packing_respects_budget_and_covers_every_sequence(sort: bool) -> None:
    lengths = [5, 17, 3, 9, 9, 2, 30, 11, 4]
    budget = 24
    groups = common.pack_by_token_budget(lengths, budget, sort=sort)
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
    assert common.pack_by_token_budget(lengths, 1) == [[0], [1], [2], [3]]
    assert common.pack_by_token_budget(lengths, 10_000) == [[0, 1, 2, 3]]
    assert common.pack_by_token_budget([], 8) == []
    with pytest.raises(ValueError, match="budget"):
        common.pack_by_token_budget(lengths, 0)


def test_collate_right_pads_and_indexes_response_tokens() -> None:
    batch = TrainBatch([[1, 2, 3], [4]], [[5, 6], [7, 8, 9]])
    c = common.collate(batch, "cpu", pad_id=0)
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
        common.collate(TrainBatch([[1], []], [[2], [3]]), "cpu")


def test_loss_scale_counts_tokens_and_sequences() -> None:
    mask = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    scale = common.loss_scale(TrainBatch([[1]] * 3, [[1, 2, 3], [1], [1]], {"loss_mask": mask}))
    assert (scale.num_tokens, scale.num_sequences) == (3.0, 2.0)
    with pytest.raises(KeyError, match="loss_mask"):
        common.loss_scale(TrainBatch([[1]], [[2]]))


def test_lr_multiplier_schedules() -> None:
    def m(step: int, schedule: str, warmup: int = 0, total: int = 10) -> float:
        return common.lr_multiplier(step, schedule=schedule, warmup_steps=warmup, total_steps=total)

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
    sched = common.build_scheduler(opt, schedule="linear", warmup_steps=1, total_steps=5)
    seen = []
    for _ in range(5):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([0.1, 0.1, 0.075, 0.05, 0.025])


def test_rng_state_round_trip() -> None:
    state = common.rng_state()
    first = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    common.set_rng_state(state)
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == first


def test_replace_dir_swaps_complete_folders(tmp_path) -> None:
    dest = tmp_path / "export"
    for version in ("old", "new"):
        tmp = tmp_path / f".export.tmp-{version}"
        tmp.mkdir()
        (tmp / "weights").write_text(version)
        common.replace_dir(tmp, dest)
        assert (dest / "weights").read_text() == version
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


def test_require_files_names_every_missing_piece(tmp_path) -> None:
    (tmp_path / "model.safetensors").write_text("")
    files = [("model.safetensors", "weights"), ("optimizer.pt", "optimizer state"), ("rng.pt", "RNG states")]
    with pytest.raises(FileNotFoundError, match=r"missing optimizer\.pt \(optimizer state\), rng\.pt \(RNG states\)\."):
        common.require_files(tmp_path, files)
    common.require_files(tmp_path, files[:1])
