"""``local`` strategy checkpoints (exact resume) and Hugging Face export."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from skyrl_core.strategies.checkpoint_files import (
    CRITIC_WEIGHTS,
    POLICY_OPTIMIZER,
    POLICY_WEIGHTS,
    RNG_STATE,
    STRATEGY_STATE,
)


def noisy_pg_loss(pg_loss):
    """The test PG loss times a random factor, so a resumed run only matches if the RNG was restored."""

    def loss_fn(micro, out, scale):
        loss, metrics = pg_loss(micro, out, scale)
        return loss * (1.0 + torch.rand(())), metrics

    return loss_fn


def value_loss(micro, out, scale):
    mask = micro.tensors["loss_mask"]
    return ((out.values - micro.tensors["advantages"]) ** 2 * mask).sum() / scale.num_tokens, {}


def one_step(strategy, batch, pg_loss) -> None:
    strategy.train_step(batch, noisy_pg_loss(pg_loss), need_entropy=True)
    strategy.train_step(batch, value_loss, role="critic")


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    state = optimizer.state_dict()["state"]
    return [v for k in sorted(state) for _, v in sorted(state[k].items()) if isinstance(v, torch.Tensor)]


def test_resume_is_bit_identical(qwen2_dir, tmp_path, make_strategy, make_batch, pg_loss) -> None:
    opts = {
        "need_ref": True,
        "need_critic": True,
        "lr_schedule": "cosine",
        "warmup_steps": 1,
        "total_optimizer_steps": 4,
        "micro_batch_tokens": 30,
    }
    batches = [make_batch(20), make_batch(21)]

    torch.manual_seed(123)
    straight = make_strategy(qwen2_dir, **opts)
    for b in batches:
        one_step(straight, b, pg_loss)

    torch.manual_seed(123)
    first = make_strategy(qwen2_dir, **opts)
    one_step(first, batches[0], pg_loss)
    ckpt = tmp_path / "step-1"
    first.save_checkpoint(ckpt)
    torch.rand(5)  # the process goes on drawing random numbers before it dies
    del first

    resumed = make_strategy(qwen2_dir, **opts)  # starts from the initial weights
    resumed.load_checkpoint(ckpt)
    assert resumed.optimizer_steps == 1
    one_step(resumed, batches[1], pg_loss)

    for module in ("policy", "ref"):
        want, got = getattr(straight, module).state_dict(), getattr(resumed, module).state_dict()
        assert want.keys() == got.keys()
        assert all(torch.equal(want[k], got[k]) for k in want)
    want, got = straight._critic.module.state_dict(), resumed._critic.module.state_dict()
    assert all(torch.equal(want[k], got[k]) for k in want)
    for trained in ("_policy", "_critic"):
        opt_a, opt_b = getattr(straight, trained).optimizer, getattr(resumed, trained).optimizer
        pairs = list(zip(optimizer_tensors(opt_a), optimizer_tensors(opt_b), strict=True))
        assert pairs and all(torch.equal(a, b) for a, b in pairs)
        assert opt_a.param_groups[0]["lr"] == opt_b.param_groups[0]["lr"]

    files = {p.name for p in ckpt.iterdir()}
    assert {POLICY_WEIGHTS, POLICY_OPTIMIZER, CRITIC_WEIGHTS, RNG_STATE} <= files
    assert json.loads((ckpt / STRATEGY_STATE).read_text())["optimizer_steps"] == 1


def test_incomplete_checkpoint_is_a_clear_error(qwen2_dir, tmp_path, make_strategy) -> None:
    strategy = make_strategy(qwen2_dir)
    strategy.save_checkpoint(tmp_path / "ckpt")
    (tmp_path / "ckpt" / POLICY_OPTIMIZER).unlink()
    with pytest.raises(FileNotFoundError, match=r"missing optimizer\.pt"):
        strategy.load_checkpoint(tmp_path / "ckpt")
    with pytest.raises(FileNotFoundError, match="not a directory"):
        strategy.load_checkpoint(tmp_path / "nowhere")
    critic = make_strategy(qwen2_dir, need_critic=True)
    with pytest.raises(FileNotFoundError, match="critic weights"):
        critic.load_checkpoint(tmp_path / "ckpt")


def test_export_loads_with_auto_classes(tiny_model_cfg, tmp_path, make_strategy, make_batch, pg_loss) -> None:
    from skyrl_core.models.loading import load_tokenizer

    strategy = make_strategy(tiny_model_cfg.path)
    tokenizer = load_tokenizer(tiny_model_cfg)
    vocab = strategy.policy.config.vocab_size
    batch = make_batch(22)
    batch.prompt_ids = [[t % vocab for t in p] for p in batch.prompt_ids]
    strategy.train_step(batch, pg_loss)
    target = tmp_path / "export"
    for _ in range(2):  # a second export replaces the first
        strategy.train_step(batch, pg_loss)
        strategy.export_hf(target, tokenizer)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # no temporary folder left

    loaded = AutoModelForCausalLM.from_pretrained(target).eval()
    ids = tokenizer("What is 3 + 4?", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, strategy.policy(ids).logits)
    assert AutoTokenizer.from_pretrained(target)("What is 3 + 4?")["input_ids"] == ids[0].tolist()


def test_bf16_export_writes_bf16_weights(qwen2_dir, tmp_path, make_strategy) -> None:
    strategy = make_strategy(qwen2_dir, model_kw={"dtype": "bfloat16"})
    strategy.export_hf(tmp_path / "export", tokenizer=None)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "export", dtype="auto")
    assert next(loaded.parameters()).dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in strategy.policy.parameters())  # master weights untouched
