"""Sequence packing (``[strategy] packing = true``): several sequences per row, no padding
between them, and exactly the padded layout's log-probs, entropies, values and updates."""

from __future__ import annotations

import pytest
import torch

from skyrl_core.errors import SkyrlError
from skyrl_core.protocols.strategy import TrainBatch
from skyrl_core.strategies.batch_layout import collate
from skyrl_core.strategies.local_config import LocalStrategyConfig
from skyrl_core.strategies.micro_batching import pack_by_token_budget, pack_rows

VOCAB = 61  # the tiny Qwen2 models of conftest.py


def test_pack_rows_first_fit_decreasing() -> None:
    lengths = [5, 2, 7, 3, 1, 4]
    rows = pack_rows(lengths, 7)
    assert sorted(i for r in rows for i in r) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in r) <= 7 for r in rows)
    assert rows == [[2], [0, 1], [5, 3], [4]]  # 7 | 5+2 | 4+3 | 1 (first fit, longest first)
    with pytest.raises(ValueError, match="more than the row width"):
        pack_rows([8], 7)


def test_packed_budget_counts_packed_rows() -> None:
    lengths = [6, 2, 3, 4, 1, 3, 2]
    padded = pack_by_token_budget(lengths, 12)
    packed = pack_by_token_budget(lengths, 12, packed=True)
    assert padded == [[0, 3], [2, 5, 1, 6], [4]]  # 2 x 6 | 4 x 3 | 1 x 1
    assert packed == [[0, 3], [2, 5, 1, 6, 4]]  # rows 6 | 4 and 3 | 3 | 2 | 2 + 1: 2 x 6 | 4 x 3
    c = collate(TrainBatch([[1] * n for n in (3, 3, 2, 2, 1)], [[]] * 5), "cpu", packed=True)
    assert c.input_ids.shape == (4, 3)  # the budget's estimate is the layout collate builds
    wide = pack_by_token_budget(lengths, 12, packed=True, row_width=12)
    assert wide == [[0, 3], [2, 5, 1, 6, 4]]  # one row of 12 each: 6 + 4 | 3 + 3 + 2 + 2 + 1
    c = collate(TrainBatch([[1] * n for n in (6, 4)], [[]] * 2), "cpu", packed=True, row_width=12)
    assert c.input_ids.shape == (1, 12) and c.position_ids[0].tolist() == [*range(6), *range(4), 0, 1]


def test_collate_packed_layout() -> None:
    batch = TrainBatch([[1, 2, 3], [4], [5, 6]], [[7, 8], [9, 10, 11], [12]])  # lengths 5, 4, 3
    c = collate(batch, "cpu", packed=True)
    assert c.packed and c.num_seqs == 3
    assert c.input_ids.tolist() == [[1, 2, 3, 7, 8], [4, 9, 10, 11, 0], [5, 6, 12, 0, 0]]
    assert c.position_ids.tolist() == [[0, 1, 2, 3, 4], [0, 1, 2, 3, 0], [0, 1, 2, 0, 1]]
    assert c.model_inputs()["attention_mask"] is None
    batch = TrainBatch([[1, 2, 3], [4], [5]], [[7, 8], [9, 10], [12]])  # lengths 5, 3, 2: rows 5 | 3+2
    c = collate(batch, "cpu", packed=True)
    assert c.input_ids.tolist() == [[1, 2, 3, 7, 8], [4, 9, 10, 5, 12]]
    assert c.position_ids.tolist() == [[0, 1, 2, 3, 4], [0, 1, 2, 0, 1]]
    assert c.rows.tolist() == [0, 0, 1, 1, 1]
    assert c.cols.tolist() == [2, 3, 0, 1, 3]  # the third sequence's token is predicted from column 3
    assert c.targets.tolist() == [7, 8, 9, 10, 12]
    assert c.scatter(torch.arange(1.0, 6.0)).tolist() == [[1.0, 2.0], [3.0, 4.0], [5.0, 0.0]]


def packing_batch(seed: int) -> TrainBatch:
    """Two long sequences and many short ones, so that short sequences share rows."""
    g = torch.Generator().manual_seed(seed)
    shapes = [(6, 10), (9, 7), (2, 1), (1, 2), (3, 2), (2, 3), (4, 1), (2, 2), (1, 1), (3, 3)]
    prompts = [torch.randint(0, VOCAB, (p,), generator=g).tolist() for p, _ in shapes]
    responses = [torch.randint(0, VOCAB, (r,), generator=g).tolist() for _, r in shapes]
    mask = torch.zeros(len(shapes), 10)
    for i, (_, r) in enumerate(shapes):
        mask[i, :r] = 1.0
    advantages = torch.randn(len(shapes), 1, generator=g).expand(len(shapes), 10) * mask
    return TrainBatch(prompts, responses, {"loss_mask": mask, "advantages": advantages})


@pytest.mark.parametrize(("logits_mode", "width"), [("sliced", None), ("full", None), ("sliced", 40)])
def test_packed_passes_equal_padded_ones(qwen2_dir, make_strategy, pg_loss, logits_mode, width) -> None:
    def build(packing: bool):
        cfg = LocalStrategyConfig(
            packing=packing, packing_width=width if packing else None, logits=logits_mode, forward_micro_batch_tokens=40
        )
        return make_strategy(qwen2_dir, strategy_config=cfg, micro_batch_tokens=40, need_ref=True)

    padded, packed = build(False), build(True)
    batch = packing_batch(0)
    lengths = [batch.seq_len(i) for i in range(len(batch))]
    pad_groups = pack_by_token_budget(lengths, 40)
    pack_groups = pack_by_token_budget(lengths, 40, packed=True, row_width=width)
    pad_cells = sum(len(g) * max(lengths[i] for i in g) for g in pad_groups)
    pack_cells = sum(
        collate(batch.select(g), "cpu", packed=True, row_width=width).input_ids.numel() for g in pack_groups
    )
    if width is None:
        assert pack_cells < pad_cells  # less compute spent on padding
    else:
        assert pack_cells == 40 * len(pack_groups)  # one row as wide as the budget per micro-batch

    for role in ("policy", "ref"):
        a = padded.forward(batch, role=role, temperature=0.8, need_entropy=True)
        b = packed.forward(batch, role=role, temperature=0.8, need_entropy=True)
        torch.testing.assert_close(b.logprobs, a.logprobs, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(b.entropy, a.entropy, atol=1e-5, rtol=1e-5)

    ma = padded.train_step(packing_batch(1), pg_loss)
    mb = packed.train_step(packing_batch(1), pg_loss)
    assert mb["micro_batches"] <= ma["micro_batches"]
    assert mb["grad_norm"] == pytest.approx(ma["grad_norm"], rel=1e-5)
    # After one AdamW step the first moment is (1 - beta1) * gradient: the same gradients.
    state_a, state_b = padded._policy.optimizer.state, packed._policy.optimizer.state
    pairs = zip(padded.policy.named_parameters(), packed.policy.named_parameters(), strict=True)
    for (name, pa), (_, pb) in pairs:
        ga, gb = state_a[pa]["exp_avg"], state_b[pb]["exp_avg"]
        torch.testing.assert_close(gb, ga, atol=1e-7 + 1e-5 * float(ga.abs().max()), rtol=1e-4, msg=name)


def test_packed_critic_values_equal_padded_ones(qwen2_dir, make_strategy) -> None:
    def build(packing: bool):
        cfg = LocalStrategyConfig(packing=packing)
        return make_strategy(qwen2_dir, strategy_config=cfg, micro_batch_tokens=40, need_critic=True)

    batch = packing_batch(3)
    a = build(False).forward(batch, role="critic").values
    b = build(True).forward(batch, role="critic").values
    torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)


def test_a_model_that_mixes_packed_sequences_is_refused(qwen2_dir, make_strategy, monkeypatch) -> None:
    """Stand-in for a model whose attention ignores packed position ids: transformers' detection
    of packed sequences switched off, so attention runs causally across a whole row."""
    import transformers.masking_utils as mu

    monkeypatch.setattr(mu, "find_packed_sequence_indices", lambda position_ids: None)
    with pytest.raises(SkyrlError, match=r"packing = true.*does not keep packed sequences apart"):
        make_strategy(qwen2_dir, strategy_config=LocalStrategyConfig(packing=True))


def test_packing_width_wider_than_a_budget_is_refused(qwen2_dir, make_strategy) -> None:
    cfg = LocalStrategyConfig(packing=True, packing_width=64, forward_micro_batch_tokens=256)
    with pytest.raises(SkyrlError, match=r"packing_width = 64 is wider than trainer.micro_batch_tokens = 32"):
        make_strategy(qwen2_dir, strategy_config=cfg, micro_batch_tokens=32)
    cfg = LocalStrategyConfig(packing=True, packing_width=64, forward_micro_batch_tokens=48)
    with pytest.raises(SkyrlError, match=r"wider than strategy.forward_micro_batch_tokens = 48"):
        make_strategy(qwen2_dir, strategy_config=cfg, micro_batch_tokens=64)
