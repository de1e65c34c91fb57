"""The fsdp2 strategy on a local Ray cluster with 2 CPU workers (gloo), against the local strategy.

One Ray cluster serves the whole module (start-up is ~3 s); each test builds its own
strategies (~3-5 s each: two actors importing torch, a process group, sharded models).
"""

from __future__ import annotations

import json

import attrs
import pytest
import torch

from skyrl_core import runtime
from skyrl_core.algorithms.configs import PPOClipConfig
from skyrl_core.algorithms.policy_losses import ppo_clip
from skyrl_core.config.schema import AlgorithmConfig, ModelConfig, RuntimeConfig, TrainerConfig
from skyrl_core.errors import SkyrlError
from skyrl_core.losses import make_policy_loss_fn, make_value_loss_fn
from skyrl_core.strategies.fsdp2 import _pickle_loss, split_over_ranks

ray = pytest.importorskip("ray")

MICRO_TOKENS = 24  # several micro-batches per rank, so accumulation and dummy passes are exercised



def make_fsdp2(path, *, world_size: int = 2, seed: int = 0, strategy_config=None, model_kw=None, **trainer_kw):
    """An Fsdp2Strategy over ``world_size`` CPU workers, trainer options as in ``make_strategy``."""
    from skyrl_core.strategies.fsdp2 import Fsdp2Strategy

    extra = {k: trainer_kw.pop(k) for k in ("need_ref", "need_critic", "total_optimizer_steps") if k in trainer_kw}
    runtime.configure(RuntimeConfig(mode="ray", train_gpus=world_size, colocate=False, inference_gpus=1))
    trainer = attrs.evolve(TrainerConfig(), **{"lr": 1e-2, "weight_decay": 0.0, **trainer_kw})
    model = ModelConfig(path=str(path), device="cpu", **(model_kw or {}))
    return Fsdp2Strategy(strategy_config, model=model, trainer=trainer, seed=seed, **extra)


def rl_batch(make_batch, seed: int, reference) -> object:
    """A batch with old log-probs from ``reference`` (so the PPO ratio starts at 1) and returns."""
    batch = make_batch(seed)
    batch.tensors["old_logprobs"] = reference.forward(batch).logprobs
    batch.tensors["returns"] = batch.tensors["advantages"] * 0.5
    batch.tensors["old_values"] = torch.zeros_like(batch.tensors["returns"])
    return batch


def policy_loss(kl_mode: str = "none"):
    algo = attrs.evolve(AlgorithmConfig(), entropy_coef=0.01)
    algo = attrs.evolve(algo, kl=attrs.evolve(algo.kl, mode=kl_mode))
    return make_policy_loss_fn(ppo_clip, PPOClipConfig(), algo, 100, 0.05)


def weights(strategy) -> dict[str, torch.Tensor]:
    return {name: t.float().clone() for bucket in strategy.named_weights(1 << 12) for name, t in bucket}


# -- no Ray needed ---------------------------------------------------------------------------


def test_split_over_ranks_balances_tokens_and_drops_empty_responses():
    lengths = [10, 3, 7, 7, 1, 5]
    has = [True, True, True, True, False, True]
    shares = split_over_ranks(lengths, has, 2)
    assert sorted(i for s in shares for i in s) == [0, 1, 2, 3, 5]
    loads = [sum(lengths[i] for i in s) for s in shares]
    assert abs(loads[0] - loads[1]) <= 3
    assert all(s == sorted(s) for s in shares)
    assert split_over_ranks([4], [True], 3)[1:] == [[], []]


def test_loss_functions_must_pickle_by_reference():
    assert _pickle_loss(policy_loss())  # PolicyLossFn: a plain object
    assert _pickle_loss(make_value_loss_fn(AlgorithmConfig(), 10))

    def closure(micro, out, scale):
        return out.logprobs.sum(), {}

    with pytest.raises(SkyrlError, match="module-level function or an instance of a module-level class"):
        _pickle_loss(closure)


def test_fsdp2_needs_ray_mode_and_rejects_float16(qwen2_dir):
    from skyrl_core.strategies.fsdp2 import Fsdp2Strategy

    runtime.configure(RuntimeConfig(mode="local"))
    model = ModelConfig(path=str(qwen2_dir), device="cpu")
    with pytest.raises(SkyrlError, match="set \\[runtime\\] mode = 'ray'"):
        Fsdp2Strategy(None, model=model, trainer=TrainerConfig(), seed=0)
    runtime.configure(RuntimeConfig(mode="ray", train_gpus=2))
    with pytest.raises(SkyrlError, match="float16"):
        Fsdp2Strategy(None, model=attrs.evolve(model, dtype="float16"), trainer=TrainerConfig(), seed=0)


# -- parity with the local strategy ----------------------------------------------------------


def test_one_step_matches_local(ray_cluster, qwen2_dir, make_strategy, make_batch):
    """Same log-probs, ref log-probs, values, loss and (within float tolerance) updated weights."""
    kw = dict(micro_batch_tokens=MICRO_TOKENS, need_ref=True, need_critic=True)
    local = make_strategy(qwen2_dir, **kw)
    fsdp2 = make_fsdp2(qwen2_dir, **kw)
    assert fsdp2.logits_mode == local.logits_mode == "sliced"
    batch = rl_batch(make_batch, 0, local)
    before = weights(local)

    for role in ("policy", "ref"):
        a = fsdp2.forward(batch, role=role, temperature=0.7, need_entropy=True)
        b = local.forward(batch, role=role, temperature=0.7, need_entropy=True)
        torch.testing.assert_close(a.logprobs, b.logprobs, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(a.entropy, b.entropy, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fsdp2.forward(batch, role="critic").values, local.forward(batch, role="critic").values,
                               atol=1e-5, rtol=1e-5)

    loss = policy_loss(kl_mode="loss")
    batch.tensors["ref_logprobs"] = local.forward(batch, role="ref").logprobs
    m_fsdp2 = fsdp2.train_step(batch, loss, need_entropy=True)
    m_local = local.train_step(batch, loss, need_entropy=True)
    for key in ("policy/loss", "policy/entropy", "policy/kl_ref", "grad_norm", "lr", "tokens", "skipped"):
        assert m_fsdp2[key] == pytest.approx(m_local[key], rel=1e-5, abs=1e-6), key
    assert m_fsdp2["micro_batches"] >= 2  # really split over ranks and micro-batches

    value_fn = make_value_loss_fn(AlgorithmConfig(), 100)
    c_fsdp2 = fsdp2.train_step(batch, value_fn, role="critic")
    c_local = local.train_step(batch, value_fn, role="critic")
    assert c_fsdp2["critic/loss"] == pytest.approx(c_local["critic/loss"], rel=1e-5)
    assert c_fsdp2["critic/grad_norm"] == pytest.approx(c_local["critic/grad_norm"], rel=1e-4)

    w_fsdp2, w_local = weights(fsdp2), weights(local)
    assert sorted(w_fsdp2) == sorted(w_local)
    for name in w_local:
        # Adam turns gradients near its eps into steps of up to lr, so float summation-order noise
        # can move a weight by a visible fraction of one step: compare at 1% of the step size (lr).
        torch.testing.assert_close(w_fsdp2[name], w_local[name], atol=1e-4, rtol=0, msg=name)
    moved = max(float((w_local[n] - before[n]).abs().max()) for n in before)
    assert moved > 5e-3  # the step really moved the weights (by about lr = 1e-2)
    after = fsdp2.forward(batch)
    torch.testing.assert_close(after.logprobs, local.forward(batch).logprobs, atol=1e-4, rtol=1e-4)
    fsdp2.shutdown()


def test_ref_path_and_critic_path_match_local(ray_cluster, qwen2_dir, qwen2_untied_dir, make_strategy, make_batch):
    """``[model] ref_path`` and ``critic_path`` on the fsdp2 workers: the reference and the critic's body
    come from the other checkpoint, as on the local strategy; the reference stays frozen and
    ``reset_ref`` (update_ref_every_epoch) copies the policy into it."""
    model_kw = {"ref_path": str(qwen2_untied_dir), "critic_path": str(qwen2_untied_dir)}
    kw = dict(micro_batch_tokens=MICRO_TOKENS, need_ref=True, need_critic=True, model_kw=model_kw)
    local = make_strategy(qwen2_dir, **kw)
    fsdp2 = make_fsdp2(qwen2_dir, **kw)
    batch = rl_batch(make_batch, 2, local)
    other = make_strategy(qwen2_untied_dir)
    ref = fsdp2.forward(batch, role="ref").logprobs
    torch.testing.assert_close(ref, other.forward(batch).logprobs, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ref, local.forward(batch, role="ref").logprobs, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(ref, fsdp2.forward(batch).logprobs, atol=1e-3)
    torch.testing.assert_close(fsdp2.forward(batch, role="critic").values, local.forward(batch, role="critic").values,
                               atol=1e-5, rtol=1e-5)
    batch.tensors["ref_logprobs"] = ref
    fsdp2.train_step(batch, policy_loss(kl_mode="loss"))
    torch.testing.assert_close(fsdp2.forward(batch, role="ref").logprobs, ref, atol=0, rtol=0)
    fsdp2.reset_ref()
    torch.testing.assert_close(fsdp2.forward(batch, role="ref").logprobs, fsdp2.forward(batch).logprobs,
                               atol=1e-6, rtol=0)
    fsdp2.shutdown()


def test_packed_fsdp2_matches_padded_local(ray_cluster, qwen2_dir, make_strategy, make_batch):
    """``[strategy] packing = true`` on the fsdp2 workers: the padded local strategy's log-probs and loss."""
    from skyrl_core.strategies.fsdp2_config import Fsdp2StrategyConfig

    local = make_strategy(qwen2_dir, micro_batch_tokens=MICRO_TOKENS)
    fsdp2 = make_fsdp2(qwen2_dir, micro_batch_tokens=MICRO_TOKENS, strategy_config=Fsdp2StrategyConfig(packing=True))
    batch = rl_batch(make_batch, 1, local)
    a, b = fsdp2.forward(batch, need_entropy=True), local.forward(batch, need_entropy=True)
    torch.testing.assert_close(a.logprobs, b.logprobs, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a.entropy, b.entropy, atol=1e-5, rtol=1e-5)
    m_fsdp2, m_local = fsdp2.train_step(batch, policy_loss()), local.train_step(batch, policy_loss())
    for key in ("policy/loss", "grad_norm", "tokens"):
        assert m_fsdp2[key] == pytest.approx(m_local[key], rel=1e-5, abs=1e-6), key
    fsdp2.shutdown()


def test_checkpointing_and_prefetch_leave_the_step_unchanged(ray_cluster, qwen2_dir, make_strategy, make_batch):
    """Activation checkpointing forced on and two layers of explicit prefetch: still local's step;
    ``auto`` on CPU keeps checkpointing off, and CPU workers use foreach AdamW, as ``local`` does."""
    from skyrl_core.strategies.fsdp2_config import Fsdp2StrategyConfig

    local = make_strategy(qwen2_dir, micro_batch_tokens=MICRO_TOKENS)
    assert not local.checkpointing.on  # auto, on CPU
    fsdp2 = make_fsdp2(qwen2_dir, micro_batch_tokens=MICRO_TOKENS, gradient_checkpointing=True,
                       strategy_config=Fsdp2StrategyConfig(prefetch_layers=2))
    assert fsdp2.checkpointing.on and not fsdp2.fused_optimizer
    batch = rl_batch(make_batch, 2, local)
    fsdp2.start_profile()  # and each rank's profile of the step: the gloo collectives show as communication
    m_fsdp2, m_local = fsdp2.train_step(batch, policy_loss()), local.train_step(batch, policy_loss())
    profiles = fsdp2.stop_profile(top=5)
    for key in ("policy/loss", "grad_norm", "tokens"):
        assert m_fsdp2[key] == pytest.approx(m_local[key], rel=1e-5, abs=1e-6), key
    torch.testing.assert_close(fsdp2.forward(batch).logprobs, local.forward(batch).logprobs, atol=1e-4, rtol=1e-4)
    assert len(profiles) == 2 and all(p["device"] == "cpu" and len(p["top"]) == 5 for p in profiles)
    assert all(p["shares"]["comm"] > 0 and sum(p["shares"].values()) == pytest.approx(1, abs=1e-3) for p in profiles)
    assert fsdp2.peak_memory_gib() == [0.0, 0.0]  # CPU workers
    fsdp2.shutdown()


@pytest.mark.parametrize("world_size", [1, 2])
def test_gathered_micro_batches_leave_the_step_unchanged(ray_cluster, qwen2_dir, make_strategy, make_batch,
                                                         world_size):
    """Parameters kept gathered across a step and one deferred gradient reduce-scatter
    (``defer_gradient_sync`` and ``reshard_after_forward = false``; 'auto' at world size 1, forced at
    2): still local's step over several micro-batches, and the passes after it see the new weights
    (no stale gathered copy from a no-grad forward)."""
    from skyrl_core.strategies.fsdp2_config import Fsdp2StrategyConfig

    local = make_strategy(qwen2_dir, micro_batch_tokens=MICRO_TOKENS)
    options = {} if world_size == 1 else {"defer_gradient_sync": True, "reshard_after_forward": False}
    fsdp2 = make_fsdp2(qwen2_dir, world_size=world_size, micro_batch_tokens=MICRO_TOKENS,
                       strategy_config=Fsdp2StrategyConfig(**options))
    batch = rl_batch(make_batch, 3, local)
    torch.testing.assert_close(fsdp2.forward(batch).logprobs, local.forward(batch).logprobs, atol=1e-5, rtol=1e-5)
    for _ in range(2):
        m_fsdp2, m_local = fsdp2.train_step(batch, policy_loss()), local.train_step(batch, policy_loss())
        assert m_fsdp2["micro_batches"] >= 2
        for key in ("policy/loss", "grad_norm", "tokens"):
            assert m_fsdp2[key] == pytest.approx(m_local[key], rel=1e-5, abs=1e-6), key
        torch.testing.assert_close(fsdp2.forward(batch).logprobs, local.forward(batch).logprobs, atol=1e-4, rtol=1e-4)
    fsdp2.shutdown()


@pytest.mark.slow
@pytest.mark.compiles
def test_compiled_fsdp2_step_matches_local(ray_cluster, qwen2_dir, make_strategy, make_batch):
    """``[strategy] compile`` on fsdp2: each sharded decoder layer compiled in place (FSDP2's hooks stay
    eager); the step and the log-probs after it are still local's eager ones."""
    from skyrl_core.strategies.fsdp2_config import Fsdp2StrategyConfig

    local = make_strategy(qwen2_dir, micro_batch_tokens=MICRO_TOKENS)
    fsdp2 = make_fsdp2(qwen2_dir, micro_batch_tokens=MICRO_TOKENS, strategy_config=Fsdp2StrategyConfig(compile=True))
    batch = rl_batch(make_batch, 5, local)
    m_fsdp2, m_local = fsdp2.train_step(batch, policy_loss()), local.train_step(batch, policy_loss())
    for key in ("policy/loss", "grad_norm", "tokens"):
        assert m_fsdp2[key] == pytest.approx(m_local[key], rel=1e-4, abs=1e-5), key
    torch.testing.assert_close(fsdp2.forward(batch).logprobs, local.forward(batch).logprobs, atol=2e-4, rtol=2e-4)
    fsdp2.shutdown()


# -- checkpoints -----------------------------------------------------------------------------


def test_checkpoint_saved_at_world_size_2_loads_at_1_and_2(ray_cluster, qwen2_dir, make_batch, tmp_path):
    """Weights restore exactly at either world size, and the next step (optimizer moments, LR
    schedule) continues as if there had been no interruption."""
    kw = dict(micro_batch_tokens=MICRO_TOKENS, need_ref=True, lr_schedule="linear", total_optimizer_steps=4)
    loss = policy_loss()
    first = make_fsdp2(qwen2_dir, **kw)
    b1, b2 = rl_batch(make_batch, 1, first), rl_batch(make_batch, 2, first)
    first.train_step(b1, loss)
    saved = weights(first)
    ckpt = tmp_path / "ckpt"
    first.save_checkpoint(ckpt)
    meta = json.loads((ckpt / "strategy.json").read_text())
    assert meta["strategy"] == "fsdp2" and meta["world_size"] == 2 and meta["optimizer_steps"] == 1
    continued = first.train_step(b2, loss)
    expected = weights(first)
    first.shutdown()

    for world_size in (1, 2):
        resumed = make_fsdp2(qwen2_dir, world_size=world_size, **kw)
        resumed.load_checkpoint(ckpt)
        assert resumed.optimizer_steps == 1
        restored = weights(resumed)
        for name, tensor in saved.items():
            assert torch.equal(restored[name], tensor), (world_size, name)
        again = resumed.train_step(b2, loss)
        assert again["lr"] == pytest.approx(continued["lr"])  # the schedule resumed at step 1
        assert again["policy/loss"] == pytest.approx(continued["policy/loss"], rel=1e-5)
        got = weights(resumed)
        for name, tensor in expected.items():
            torch.testing.assert_close(got[name], tensor, atol=1e-4, rtol=0, msg=f"world size {world_size}: {name}")
        resumed.shutdown()


def test_nan_skip_checkpoint_errors_and_hf_export(ray_cluster, qwen2_dir, make_batch, tmp_path):
    from transformers import AutoModelForCausalLM

    from skyrl_core.strategies.checkpoint_files import CheckpointError

    strategy = make_fsdp2(qwen2_dir, micro_batch_tokens=MICRO_TOKENS)
    # A non-finite loss on the rank that holds sequence 0 skips the step on every rank (no hang).
    bad = rl_batch(make_batch, 3, strategy)
    bad.tensors["advantages"][0] = float("nan")
    before = weights(strategy)
    metrics = strategy.train_step(bad, policy_loss())
    assert metrics["skipped"] == 1.0 and metrics["grad_norm"] != metrics["grad_norm"]  # NaN
    assert all(torch.equal(t, before[n]) for n, t in weights(strategy).items())
    good = rl_batch(make_batch, 4, strategy)
    assert strategy.train_step(good, policy_loss())["skipped"] == 0.0  # the ranks are still in step

    with pytest.raises(CheckpointError, match="not a directory"):
        strategy.load_checkpoint(tmp_path / "missing")
    local_ckpt = tmp_path / "local"
    local_ckpt.mkdir()
    (local_ckpt / "strategy.json").write_text(json.dumps({"strategy": "local"}))
    (local_ckpt / "rng.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="written by the 'local' strategy"):
        strategy.load_checkpoint(local_ckpt)

    out = tmp_path / "export"
    strategy.export_hf(out, tokenizer=None)
    exported = AutoModelForCausalLM.from_pretrained(out)
    assert not list(tmp_path.glob(".export.tmp-*"))
    mine = weights(strategy)
    theirs = exported.state_dict()
    for name, tensor in mine.items():
        assert torch.equal(theirs[name], tensor), name
    assert torch.equal(theirs["lm_head.weight"], mine["model.embed_tokens.weight"])  # tied, saved once
    strategy.shutdown()
