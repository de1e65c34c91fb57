"""``[trainer] gradient_checkpointing = "auto"``: the memory estimate, the verdict, and what strategies do."""

from __future__ import annotations

import pytest
import torch
from transformers import Qwen2Config

from skyrl_core.config.loader import structure
from skyrl_core.config.schema import TrainerConfig
from skyrl_core.strategies import memory

QWEN_0_5B = Qwen2Config(
    vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
    num_attention_heads=14, num_key_value_heads=2,
)


def test_activation_estimate_of_the_0_5b_shape() -> None:
    # 24 layers x (12 h + 4 i) values in bf16, plus the logits (bf16) and their float32 log-softmax
    per_token = memory.activation_bytes_per_token(QWEN_0_5B, compute_bytes=2)
    assert per_token == 24 * (12 * 896 + 4 * 4864) * 2 + 151936 * (2 + 4)
    # float32 activations (no autocast) double the layer part
    assert memory.activation_bytes_per_token(QWEN_0_5B, 4) == 24 * (12 * 896 + 4 * 4864) * 4 + 151936 * 8


def test_verdict_turns_on_only_past_the_headroom() -> None:
    gib = 1 << 30
    fits = memory.fits_or_checkpoint(need_bytes=60 * gib, free_bytes=78 * gib, tokens=16384)
    assert not fits.on and "auto: off" in fits.reason
    tight = memory.fits_or_checkpoint(need_bytes=70 * gib, free_bytes=78 * gib, tokens=16384)
    assert tight.on
    assert "16384-token micro-batch needs about 70.0 GiB" in tight.reason
    assert "78.0 GiB of the GPU is free" in tight.reason and "micro_batch_tokens" in tight.reason


@pytest.mark.parametrize(("setting", "on"), [(True, True), (False, False), ("auto", False)])
def test_settings_on_cpu(setting, on) -> None:
    choice = memory.decide_checkpointing(
        setting, config=QWEN_0_5B, tokens=1 << 20, device=torch.device("cpu"), compute_bytes=4, pending_bytes=0
    )
    assert choice.on is on  # auto is off on CPU however large the micro-batch


def test_the_option_takes_auto_true_and_false_only() -> None:
    assert TrainerConfig().gradient_checkpointing == "auto"
    for value in ("auto", True, False):
        cfg, issues = structure({"gradient_checkpointing": value}, TrainerConfig)
        assert not issues and cfg.gradient_checkpointing == value
    _, issues = structure({"gradient_checkpointing": 1}, TrainerConfig)
    assert issues and "gradient_checkpointing" in str(issues[0])
    _, issues = structure({"gradient_checkpointing": "yes"}, TrainerConfig)
    assert issues and "'auto'" in str(issues[0])


def _checkpointed(model) -> bool:
    flag = getattr(model, "is_activation_checkpointing", None)  # transformers >= 5
    return bool(flag if flag is not None else model.is_gradient_checkpointing)


def test_local_strategy_follows_the_decision(qwen2_dir, make_strategy, capsys) -> None:
    auto = make_strategy(qwen2_dir, gradient_checkpointing="auto")
    assert not auto.checkpointing.on and not _checkpointed(auto.policy)
    forced = make_strategy(qwen2_dir, gradient_checkpointing=True)
    assert forced.checkpointing.on and _checkpointed(forced.policy)
    assert "gradient checkpointing" not in capsys.readouterr().out  # only auto turning it on is announced
