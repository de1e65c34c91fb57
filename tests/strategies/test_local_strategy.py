"""The ``local`` strategy on tiny real Qwen2 models (CPU): passes, updates, ref, critic, weights."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import AutoModelForCausalLM

from skyrl_core.losses import sft_loss
from skyrl_core.protocols.strategy import TrainBatch
from skyrl_core.strategies.local_config import LocalStrategyConfig


def hf_logprobs(model, batch: TrainBatch, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference: one plain HF forward per sequence, log_softmax(logits / T), entropy."""
    lp = torch.zeros(len(batch), batch.response_len)
    ent = torch.zeros(len(batch), batch.response_len)
    with torch.no_grad():
        for i, (p, r) in enumerate(zip(batch.prompt_ids, batch.response_ids, strict=True)):
            ids = torch.tensor([p + r])
            logits = model(ids).logits[0, len(p) - 1 : len(p) + len(r) - 1].float() / temperature
            logp = torch.log_softmax(logits, dim=-1)
            lp[i, : len(r)] = logp.gather(-1, torch.tensor(r)[:, None]).squeeze(-1)
            ent[i, : len(r)] = -(logp.exp() * logp).sum(-1)
    return lp, ent


def params(strategy) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in strategy.policy.named_parameters()}


@pytest.mark.parametrize("logits_mode", ["auto", "full"])
@pytest.mark.parametrize("temperature", [0.7, 1.0])
def test_forward_matches_plain_hf(qwen2_dir, make_strategy, make_batch, logits_mode, temperature) -> None:
    cfg = LocalStrategyConfig(logits=logits_mode, forward_micro_batch_tokens=20)
    strategy = make_strategy(qwen2_dir, strategy_config=cfg)
    if logits_mode == "auto":
        assert strategy.logits_mode == "sliced"  # Qwen2 has a plain LM head, so the check passes
    batch = make_batch(3)
    out = strategy.forward(batch, temperature=temperature, need_entropy=True)
    model = AutoModelForCausalLM.from_pretrained(qwen2_dir).eval()
    want_lp, want_ent = hf_logprobs(model, batch, temperature)
    assert out.logprobs.shape == (len(batch), batch.response_len)
    torch.testing.assert_close(out.logprobs, want_lp, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.entropy, want_ent, atol=1e-5, rtol=1e-5)
    for i, r in enumerate(batch.response_ids):  # zeros past each response's end
        assert out.logprobs[i, len(r) :].eq(0).all()
        assert out.logprobs[i, : len(r)].lt(0).all()


def test_empty_responses_are_tolerated(qwen2_dir, make_strategy, pg_loss) -> None:
    strategy = make_strategy(qwen2_dir, micro_batch_tokens=8)
    mask = torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    batch = TrainBatch([[1, 2], [3, 4, 5], [6]], [[], [7, 8], []], {"loss_mask": mask, "advantages": mask})
    out = strategy.forward(batch, need_entropy=True)
    assert out.logprobs[0].eq(0).all() and out.logprobs[2].eq(0).all() and out.logprobs[1].lt(0).all()
    metrics = strategy.train_step(batch, pg_loss)
    assert metrics["skipped"] == 0.0 and metrics["grad_norm"] > 0


def test_temperature_zero_reports_raw_log_softmax(qwen2_dir, make_strategy, make_batch) -> None:
    strategy = make_strategy(qwen2_dir)
    batch = make_batch(4)
    greedy = strategy.forward(batch, temperature=0.0)
    torch.testing.assert_close(greedy.logprobs, strategy.forward(batch, temperature=1.0).logprobs)
    assert greedy.entropy is None


def test_micro_batching_does_not_change_the_update(qwen2_dir, make_strategy, make_batch, pg_loss) -> None:
    batch = make_batch(5, n=8)
    results = {}
    for budget in (1, 12, 100_000):  # one sequence each, a few, all at once
        strategy = make_strategy(qwen2_dir, micro_batch_tokens=budget, grad_clip=0.0)
        metrics = strategy.train_step(batch, pg_loss, need_entropy=True)
        results[budget] = (metrics, params(strategy))
    base_metrics, base_params = results[100_000]
    assert results[1][0]["micro_batches"] == len(batch)
    assert base_metrics["micro_batches"] == 1
    for budget in (1, 12):
        metrics, weights = results[budget]
        assert metrics["grad_norm"] == pytest.approx(base_metrics["grad_norm"], rel=1e-4)
        assert metrics["pg"] == pytest.approx(base_metrics["pg"], rel=1e-4, abs=1e-6)
        for name, w in weights.items():
            torch.testing.assert_close(w, base_params[name], atol=1e-6, rtol=1e-5, msg=name)


def test_gradient_reaches_every_parameter(qwen2_untied_dir, make_strategy, make_batch, pg_loss) -> None:
    strategy = make_strategy(qwen2_untied_dir, gradient_checkpointing=True)
    before = params(strategy)
    metrics = strategy.train_step(make_batch(6), pg_loss)
    assert metrics["skipped"] == 0.0 and metrics["grad_norm"] > 0
    unchanged = [n for n, p in strategy.policy.named_parameters() if torch.equal(p.detach(), before[n])]
    assert unchanged == []


def test_gradient_checkpointing_gives_the_same_update(qwen2_dir, make_strategy, make_batch, pg_loss) -> None:
    batch = make_batch(7)
    updated = []
    for checkpointing in (False, True):
        strategy = make_strategy(qwen2_dir, gradient_checkpointing=checkpointing, micro_batch_tokens=30)
        strategy.train_step(batch, pg_loss, need_entropy=True)
        updated.append(params(strategy))
    for name, w in updated[0].items():
        torch.testing.assert_close(updated[1][name], w, atol=1e-6, rtol=1e-5, msg=name)


def test_non_finite_loss_is_skipped(qwen2_dir, make_strategy, make_batch, pg_loss) -> None:
    strategy = make_strategy(qwen2_dir, micro_batch_tokens=16)
    batch = make_batch(8)
    before = params(strategy)

    def nan_loss(micro, out, scale):
        loss, metrics = pg_loss(micro, out, scale)
        return loss * float("nan"), metrics

    metrics = strategy.train_step(batch, nan_loss)
    assert metrics["skipped"] == 1.0
    assert all(torch.equal(p.detach(), before[n]) for n, p in strategy.policy.named_parameters())
    assert all(p.grad is None for p in strategy.policy.parameters())
    # a later good step trains normally
    assert strategy.train_step(batch, pg_loss)["skipped"] == 0.0


def test_non_finite_gradient_is_skipped_and_can_raise(qwen2_dir, make_strategy, make_batch, pg_loss) -> None:
    batch = make_batch(9)
    strategy = make_strategy(qwen2_dir)
    before = params(strategy)
    weight = strategy.policy.model.norm.weight
    handle = weight.register_hook(lambda g: g * float("inf"))  # finite loss, infinite gradient
    metrics = strategy.train_step(batch, pg_loss)
    assert metrics["skipped"] == 1.0 and not math.isfinite(metrics["grad_norm"])
    assert all(torch.equal(p.detach(), before[n]) for n, p in strategy.policy.named_parameters())
    handle.remove()

    strict = make_strategy(qwen2_dir, skip_nan=False)
    with pytest.raises(FloatingPointError, match="skip_nan"):
        strict.train_step(batch, lambda m, o, s: (pg_loss(m, o, s)[0] * float("inf"), {}))


def test_lr_follows_the_schedule(qwen2_dir, make_strategy, make_batch, pg_loss) -> None:
    strategy = make_strategy(
        qwen2_dir, lr=1e-3, lr_schedule="cosine", warmup_steps=2, total_optimizer_steps=6, micro_batch_tokens=64
    )
    batch = make_batch(10, n=2)
    lrs = [strategy.train_step(batch, pg_loss)["lr"] for _ in range(6)]
    # two warmup steps, then cosine over the remaining 4: progress 0, 1/4, 2/4, 3/4
    want = [0.5e-3, 1e-3] + [1e-3 * 0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(4)]
    assert want[4] == pytest.approx(0.5e-3)
    assert lrs == pytest.approx(want, abs=1e-12)


def test_sft_reduces_the_loss(qwen2_dir, make_strategy, make_batch) -> None:
    strategy = make_strategy(qwen2_dir, lr=3e-3, micro_batch_tokens=24)
    batch = make_batch(11, with_advantages=False)
    mask = batch.tensors["loss_mask"]
    nll_before = -float((strategy.forward(batch).logprobs * mask).sum() / mask.sum())
    losses = [strategy.train_step(batch, sft_loss)["sft/loss"] for _ in range(8)]
    # the reported loss is the mini-batch's token-mean NLL (before the update)
    assert losses[0] == pytest.approx(nll_before, rel=1e-5)
    assert losses[-1] < losses[0] - 0.5
    after = strategy.forward(batch).logprobs
    assert -float((after * mask).sum() / mask.sum()) < losses[-1]


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_autocast_keeps_fp32_master_weights(qwen2_dir, make_strategy, make_batch, pg_loss, dtype) -> None:
    strategy = make_strategy(qwen2_dir, model_kw={"dtype": dtype})
    fp32 = make_strategy(qwen2_dir)
    batch = make_batch(12)
    lp16 = strategy.forward(batch).logprobs
    lp32 = fp32.forward(batch).logprobs
    assert lp16.dtype == torch.float32
    assert (lp16 - lp32).abs().max() < 0.1  # half-precision rounding, not a different model
    metrics = strategy.train_step(batch, pg_loss)
    assert metrics["skipped"] == 0.0
    assert (strategy._policy.scaler is not None) == (dtype == "float16")  # fp16 needs loss scaling
    assert all(p.dtype == torch.float32 for p in strategy.policy.parameters())


def test_reference_model_stays_frozen(qwen2_dir, make_strategy, make_batch, pg_loss) -> None:
    strategy = make_strategy(qwen2_dir, need_ref=True)
    batch = make_batch(13)
    ref0 = strategy.forward(batch, role="ref").logprobs
    torch.testing.assert_close(ref0, strategy.forward(batch).logprobs)
    for _ in range(3):
        strategy.train_step(batch, pg_loss)
    assert not torch.allclose(strategy.forward(batch).logprobs, ref0)
    torch.testing.assert_close(strategy.forward(batch, role="ref").logprobs, ref0, atol=0, rtol=0)
    with pytest.raises(ValueError, match="frozen"):
        strategy.train_step(batch, pg_loss, role="ref")
    strategy.reset_ref()
    torch.testing.assert_close(strategy.forward(batch, role="ref").logprobs, strategy.forward(batch).logprobs)


def test_missing_roles_say_how_they_were_built(qwen2_dir, make_strategy, make_batch) -> None:
    strategy = make_strategy(qwen2_dir)
    with pytest.raises(ValueError, match="need_ref=False"):
        strategy.forward(make_batch(), role="ref")
    with pytest.raises(ValueError, match="need_critic=False"):
        strategy.forward(make_batch(), role="critic")


def test_critic_values_and_training(qwen2_dir, make_strategy, make_batch) -> None:
    strategy = make_strategy(qwen2_dir, need_critic=True, lr=1e-3, micro_batch_tokens=40)
    batch = make_batch(14)
    values = strategy.forward(batch, role="critic").values
    assert values.shape == (len(batch), batch.response_len)
    for i, r in enumerate(batch.response_ids):
        assert values[i, len(r) :].eq(0).all()
    mask = batch.tensors["loss_mask"]
    batch.tensors["returns"] = torch.linspace(-1, 1, batch.response_len).expand_as(mask) * mask

    def value_loss(micro, out, scale):
        m = micro.tensors["loss_mask"]
        err = ((out.values - micro.tensors["returns"]) ** 2 * m).sum()
        return 0.5 * err / scale.num_tokens, {"value_loss": float(err.detach()) / max(float(m.sum()), 1.0)}

    policy_before = params(strategy)
    losses = [strategy.train_step(batch, value_loss, role="critic")["critic/value_loss"] for _ in range(15)]
    assert losses[-1] < 0.5 * losses[0]
    # training the critic leaves the policy alone (it has its own copy of the transformer)
    assert all(torch.equal(p.detach(), policy_before[n]) for n, p in strategy.policy.named_parameters())


def test_named_weights_reproduce_the_policy(qwen2_dir, make_strategy, make_batch, pg_loss) -> None:
    strategy = make_strategy(qwen2_dir)
    strategy.train_step(make_batch(15), pg_loss)
    buckets = list(strategy.named_weights(bucket_bytes=20_000))
    assert len(buckets) > 1
    names = [n for bucket in buckets for n, _ in bucket]
    assert len(names) == len(set(names))
    # every parameter is covered; the tied LM head comes once, as the embedding
    assert "lm_head.weight" not in names and "model.embed_tokens.weight" in names
    assert set(names) == {n for n, _ in strategy.policy.named_parameters()}
    assert all(not t.requires_grad for bucket in buckets for _, t in bucket)

    fresh = AutoModelForCausalLM.from_pretrained(qwen2_dir).eval()
    missing, unexpected = fresh.load_state_dict(dict(n_t for b in buckets for n_t in b), strict=False)
    assert missing in ([], ["lm_head.weight"]) and unexpected == []
    batch = make_batch(16)
    ids = torch.tensor([batch.prompt_ids[0] + batch.response_ids[0]])
    with torch.no_grad():
        torch.testing.assert_close(fresh(ids).logits, strategy.policy(ids).logits)


def test_untied_named_weights_include_the_lm_head(qwen2_untied_dir, make_strategy) -> None:
    strategy = make_strategy(qwen2_untied_dir)
    names = {n for bucket in strategy.named_weights() for n, _ in bucket}
    assert "lm_head.weight" in names
    assert names == set(strategy.policy.state_dict())


def test_offload_onload_are_harmless_on_cpu(qwen2_dir, make_strategy, make_batch) -> None:
    strategy = make_strategy(qwen2_dir)
    batch = make_batch(17)
    before = strategy.forward(batch).logprobs
    strategy.offload()
    strategy.onload()
    torch.testing.assert_close(strategy.forward(batch).logprobs, before)


def test_registered_as_builtin_local_strategy() -> None:
    from skyrl_core.specs import Kind
    from skyrl_core.strategies.local import LocalStrategy
    from skyrl_core.testing.helpers import fresh_registry

    spec_cls = fresh_registry().get(Kind.STRATEGY, "local").load()
    assert spec_cls is LocalStrategy
