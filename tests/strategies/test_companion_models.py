"""``[model] ref_path`` and ``critic_path`` on the local strategy: the reference and the critic's body
start from another checkpoint than the policy (SkyRL's ``trainer.ref.model.path`` and
``trainer.critic.model.path``). The fsdp2 strategy's counterpart is in test_fsdp2.py.

The expected outputs come from another ``LocalStrategy`` whose *policy* is that checkpoint (the
policy path is the one the conformance suite checks against transformers).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from skyrl_core.errors import SkyrlError

RESPONSE_VOCAB = 61


def _save_qwen2(path: Path, *, hidden: int, vocab: int, seed: int) -> Path:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         tie_word_embeddings=True, initializer_range=0.2)
    Qwen2ForCausalLM(config).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def wider_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another architecture (hidden size 48 instead of 32) with the policy's vocabulary."""
    return _save_qwen2(tmp_path_factory.mktemp("qwen2_wide"), hidden=48, vocab=RESPONSE_VOCAB, seed=7)


@pytest.fixture(scope="module")
def small_vocab_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save_qwen2(tmp_path_factory.mktemp("qwen2_small_vocab"), hidden=32, vocab=40, seed=8)


def test_reference_from_ref_path(qwen2_dir, qwen2_untied_dir, make_strategy, make_batch, pg_loss) -> None:
    strategy = make_strategy(qwen2_dir, need_ref=True, model_kw={"ref_path": str(qwen2_untied_dir)})
    other = make_strategy(qwen2_untied_dir)
    batch = make_batch(3)
    ref = strategy.forward(batch, role="ref", temperature=0.7).logprobs
    torch.testing.assert_close(ref, other.forward(batch, temperature=0.7).logprobs, atol=1e-6, rtol=0)
    assert not torch.allclose(ref, strategy.forward(batch, temperature=0.7).logprobs)  # not the policy
    for _ in range(2):
        strategy.train_step(batch, pg_loss)
    torch.testing.assert_close(strategy.forward(batch, role="ref", temperature=0.7).logprobs, ref, atol=0, rtol=0)
    # update_ref_every_epoch: the reference becomes the current policy
    strategy.reset_ref()
    torch.testing.assert_close(strategy.forward(batch, role="ref").logprobs, strategy.forward(batch).logprobs)


def test_a_reference_of_another_architecture(qwen2_dir, wider_dir, make_strategy, make_batch) -> None:
    strategy = make_strategy(qwen2_dir, need_ref=True, model_kw={"ref_path": str(wider_dir)})
    batch = make_batch(4)
    torch.testing.assert_close(strategy.forward(batch, role="ref").logprobs,
                               make_strategy(wider_dir).forward(batch).logprobs, atol=1e-6, rtol=0)
    with pytest.raises(SkyrlError, match="another architecture"):
        strategy.reset_ref()


def test_an_untied_policy_cannot_be_copied_into_a_tied_reference(qwen2_dir, qwen2_untied_dir, make_strategy,
                                                                  make_batch) -> None:
    strategy = make_strategy(qwen2_untied_dir, need_ref=True, model_kw={"ref_path": str(qwen2_dir)})
    before = strategy.forward(make_batch(2), role="ref").logprobs
    with pytest.raises(SkyrlError, match="tied on one side only"):
        strategy.reset_ref()
    torch.testing.assert_close(strategy.forward(make_batch(2), role="ref").logprobs, before, atol=0, rtol=0)


def test_the_reference_survives_a_checkpoint(qwen2_dir, qwen2_untied_dir, make_strategy, make_batch, tmp_path):
    kw = dict(need_ref=True, model_kw={"ref_path": str(qwen2_untied_dir)})
    strategy = make_strategy(qwen2_dir, **kw)
    strategy.reset_ref()  # the reference is now the policy, no longer ref_path's weights
    strategy.save_checkpoint(tmp_path / "ckpt")
    restored = make_strategy(qwen2_dir, **kw)
    restored.load_checkpoint(tmp_path / "ckpt")
    batch = make_batch(5)
    torch.testing.assert_close(restored.forward(batch, role="ref").logprobs,
                               strategy.forward(batch, role="ref").logprobs, atol=0, rtol=0)


def test_critic_body_from_critic_path(qwen2_dir, qwen2_untied_dir, wider_dir, make_strategy, make_batch) -> None:
    batch = make_batch(6)
    strategy = make_strategy(qwen2_dir, need_critic=True, seed=3, model_kw={"critic_path": str(qwen2_untied_dir)})
    # the same critic as a run whose policy is critic_path (same body, same seeded head)
    expected = make_strategy(qwen2_untied_dir, need_critic=True, seed=3).forward(batch, role="critic").values
    torch.testing.assert_close(strategy.forward(batch, role="critic").values, expected, atol=1e-6, rtol=0)
    default = make_strategy(qwen2_dir, need_critic=True, seed=3).forward(batch, role="critic").values
    assert not torch.allclose(expected, default)
    # a wider body gets a head of its own width
    wide = make_strategy(qwen2_dir, need_critic=True, model_kw={"critic_path": str(wider_dir)})
    assert wide.forward(batch, role="critic").values.shape == expected.shape


def test_critic_from_critic_path_learns_without_touching_the_policy(qwen2_dir, wider_dir, make_strategy,
                                                                   make_batch) -> None:
    from skyrl_core.config.schema import AlgorithmConfig
    from skyrl_core.losses import make_value_loss_fn

    strategy = make_strategy(qwen2_dir, need_critic=True, model_kw={"critic_path": str(wider_dir)})
    batch = make_batch(7)
    mask = batch.tensors["loss_mask"]
    batch.tensors["returns"] = mask.clone()
    batch.tensors["old_values"] = strategy.forward(batch, role="critic").values
    policy = strategy.forward(batch).logprobs

    def mse() -> float:
        v = strategy.forward(batch, role="critic").values
        return float((((v - 1.0) ** 2) * mask).sum() / mask.sum())

    start = mse()
    fn = make_value_loss_fn(AlgorithmConfig(value_clip=10.0), 100)
    for _ in range(3):
        strategy.train_step(batch, fn, role="critic")
    assert mse() < start
    torch.testing.assert_close(strategy.forward(batch).logprobs, policy, atol=0, rtol=0)


def test_lora_with_ref_path_and_critic_path(qwen2_dir, qwen2_untied_dir, make_strategy, make_batch, pg_loss) -> None:
    """With LoRA the reference is normally the base with the adapters off; ref_path gives it a model of its
    own, and the critic from critic_path gets adapters of its own."""
    lora = {"rank": 4, "alpha": 8.0}
    model_kw = {"lora": lora, "ref_path": str(qwen2_untied_dir), "critic_path": str(qwen2_untied_dir)}
    from skyrl_core.config.schema import LoraConfig

    model_kw["lora"] = LoraConfig(**lora)
    strategy = make_strategy(qwen2_dir, need_ref=True, need_critic=True, seed=3, model_kw=model_kw)
    other = make_strategy(qwen2_untied_dir, need_critic=True, seed=3)
    batch = make_batch(8)
    ref = strategy.forward(batch, role="ref").logprobs
    torch.testing.assert_close(ref, other.forward(batch).logprobs, atol=1e-5, rtol=0)
    # adapters start at B = 0: the critic is critic_path's body plus the seeded head
    torch.testing.assert_close(strategy.forward(batch, role="critic").values,
                               other.forward(batch, role="critic").values, atol=1e-5, rtol=0)
    critic_trainable = [n for n, p in strategy._critic.module.named_parameters() if p.requires_grad]
    assert critic_trainable and all("lora_" in n or n.startswith("head.") for n in critic_trainable)
    for _ in range(2):
        strategy.train_step(batch, pg_loss)
    torch.testing.assert_close(strategy.forward(batch, role="ref").logprobs, ref, atol=0, rtol=0)
    strategy.reset_ref()  # merged policy weights into the separate reference
    torch.testing.assert_close(strategy.forward(batch, role="ref").logprobs, strategy.forward(batch).logprobs,
                               atol=1e-5, rtol=0)


def test_bad_companions_are_clear_errors(qwen2_dir, small_vocab_dir, make_strategy, tmp_path) -> None:
    with pytest.raises(SkyrlError, match=r"\[model\] ref_path = .*no such folder"):
        make_strategy(qwen2_dir, need_ref=True, model_kw={"ref_path": str(tmp_path / "nope")})
    with pytest.raises(SkyrlError, match=r"\[model\] critic_path: that model embeds 40 token ids but the policy 61"):
        make_strategy(qwen2_dir, need_critic=True, model_kw={"critic_path": str(small_vocab_dir)})
    # not asked for: not loaded (a missing folder is not even looked at)
    make_strategy(qwen2_dir, model_kw={"ref_path": str(tmp_path / "nope")})
