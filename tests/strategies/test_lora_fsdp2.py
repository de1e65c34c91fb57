"""LoRA in the fsdp2 strategy (2 CPU workers, gloo, on a local Ray cluster), against LoRA in local.

The same seed gives both strategies the same adapters, so one step must agree: log-probs,
the reference (the base model, adapters off), the loss, the updated adapters and the
merged weights; checkpoints hold the adapters only and restore them exactly; exports are
the merged model or the peft adapter.
"""

from __future__ import annotations

import json

import attrs
import pytest
import torch

from skyrl_core import runtime
from skyrl_core.algorithms.configs import PPOClipConfig
from skyrl_core.algorithms.policy_losses import ppo_clip
from skyrl_core.config.schema import AlgorithmConfig, LoraConfig, ModelConfig, RuntimeConfig, TrainerConfig
from skyrl_core.losses import make_policy_loss_fn, make_value_loss_fn

ray = pytest.importorskip("ray")
pytest.importorskip("peft")

LORA = LoraConfig(rank=4, alpha=8.0)
KW = {"micro_batch_tokens": 24, "need_ref": True, "need_critic": True, "lr": 5e-2}


def make_lora_fsdp2(path, *, seed: int = 0, model_kw=None, **trainer_kw):
    from skyrl_core.strategies.fsdp2 import Fsdp2Strategy

    extra = {k: trainer_kw.pop(k) for k in ("need_ref", "need_critic") if k in trainer_kw}
    runtime.configure(RuntimeConfig(mode="ray", train_gpus=2, colocate=False, inference_gpus=1))
    trainer = attrs.evolve(TrainerConfig(), **{"weight_decay": 0.0, **trainer_kw})
    model = ModelConfig(path=str(path), device="cpu", lora=LORA, **(model_kw or {}))
    return Fsdp2Strategy(None, model=model, trainer=trainer, seed=seed, **extra)


def merged(strategy) -> dict[str, torch.Tensor]:
    return {name: t.float().clone() for bucket in strategy.named_weights(1 << 12) for name, t in bucket}


def adapter(strategy) -> dict[str, torch.Tensor]:
    return dict(strategy.lora_adapter().tensors)


@pytest.mark.slow
def test_lora_fsdp2_matches_local_checkpoints_and_exports(
    ray_cluster, qwen2_dir, make_strategy, make_batch, tmp_path
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    local = make_strategy(qwen2_dir, model_kw={"lora": LORA}, **KW)
    fsdp2 = make_lora_fsdp2(qwen2_dir, **KW)
    start = adapter(fsdp2)
    assert start.keys() == adapter(local).keys()
    assert all(torch.equal(start[k], t) for k, t in adapter(local).items())  # seeded: the same adapters

    batch = make_batch(0)
    base = local.forward(batch, role="ref").logprobs
    batch.tensors["old_logprobs"] = local.forward(batch).logprobs
    batch.tensors["ref_logprobs"] = base
    batch.tensors["returns"] = batch.tensors["advantages"] * 0.5
    batch.tensors["old_values"] = torch.zeros_like(batch.tensors["returns"])
    algo = attrs.evolve(AlgorithmConfig(), entropy_coef=0.01)
    loss = make_policy_loss_fn(ppo_clip, PPOClipConfig(), attrs.evolve(algo, kl=attrs.evolve(algo.kl, mode="loss")),
                               100, 0.05)
    m_fsdp2 = fsdp2.train_step(batch, loss, need_entropy=True)
    m_local = local.train_step(batch, loss, need_entropy=True)
    for key in ("policy/loss", "policy/kl_ref", "grad_norm", "skipped"):
        assert m_fsdp2[key] == pytest.approx(m_local[key], rel=1e-5, abs=1e-6), key
    value_fn = make_value_loss_fn(AlgorithmConfig(), 100)
    c_fsdp2 = fsdp2.train_step(batch, value_fn, role="critic")
    assert c_fsdp2["critic/loss"] == pytest.approx(local.train_step(batch, value_fn, role="critic")["critic/loss"],
                                                   rel=1e-5)

    for role in ("policy", "ref"):
        torch.testing.assert_close(fsdp2.forward(batch, role=role).logprobs, local.forward(batch, role=role).logprobs,
                                   atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(fsdp2.forward(batch, role="ref").logprobs, base, atol=1e-5, rtol=0)
    after = adapter(fsdp2)
    assert any(not torch.equal(after[k], start[k]) for k in start)
    for name, tensor in adapter(local).items():
        torch.testing.assert_close(after[name], tensor, atol=1e-4, rtol=0, msg=name)
    w_fsdp2, w_local = merged(fsdp2), merged(local)
    assert sorted(w_fsdp2) == sorted(w_local) and not any("lora" in n for n in w_fsdp2)
    for name, tensor in w_local.items():
        torch.testing.assert_close(w_fsdp2[name], tensor, atol=1e-4, rtol=0, msg=name)

    # Exports: merged Hugging Face model (default), peft adapter.
    fsdp2.export_hf(tmp_path / "merged", tokenizer=None)
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "merged", dtype=torch.float32).state_dict()
    for name, tensor in w_local.items():
        torch.testing.assert_close(exported[name], tensor, atol=1e-4, rtol=0, msg=name)
    fsdp2.model_config = attrs.evolve(fsdp2.model_config, lora=attrs.evolve(LORA, export="adapter"))
    fsdp2.export_hf(tmp_path / "adapter", tokenizer=None)
    peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(qwen2_dir), tmp_path / "adapter")
    ids = torch.tensor([[3, 14, 15, 9, 26, 5]])
    with torch.no_grad():
        torch.testing.assert_close(peft_model(ids).logits, local.policy(ids).logits, atol=1e-4, rtol=1e-4)

    # Checkpoint: the adapters (and critic head) only; a fresh strategy restores them exactly.
    ckpt = tmp_path / "ckpt"
    fsdp2.save_checkpoint(ckpt)
    assert json.loads((ckpt / "strategy.json").read_text())["lora"]["rank"] == 4
    from torch.distributed.checkpoint import FileSystemReader

    keys = FileSystemReader(str(ckpt / "dcp")).read_metadata().state_dict_metadata
    weight_keys = [k for k in keys if k.startswith(("policy.", "critic.")) and "optim" not in k.split(".")[0]]
    assert weight_keys and all("lora_" in k or k.startswith("critic.critic.head") for k in weight_keys)
    fsdp2.shutdown()  # its workers hold the cluster's training slots
    resumed = make_lora_fsdp2(qwen2_dir, seed=7, **KW)
    assert any(not torch.equal(t, after[k]) for k, t in adapter(resumed).items())
    resumed.load_checkpoint(ckpt)
    assert all(torch.equal(t, after[k]) for k, t in adapter(resumed).items())
    resumed.shutdown()



def test_lora_fsdp2_with_ref_path_and_critic_path_matches_local(
    ray_cluster, qwen2_dir, qwen2_untied_dir, make_strategy, make_batch
) -> None:
    """A reference of its own (no adapters) and a critic from another checkpoint with adapters of its
    own: the same as LoRA in local, before and after a critic step."""
    paths = {"ref_path": str(qwen2_untied_dir), "critic_path": str(qwen2_untied_dir)}
    local = make_strategy(qwen2_dir, model_kw={"lora": LORA, **paths}, **KW)
    fsdp2 = make_lora_fsdp2(qwen2_dir, model_kw=paths, **KW)
    batch = make_batch(3)
    ref = fsdp2.forward(batch, role="ref").logprobs
    torch.testing.assert_close(ref, local.forward(batch, role="ref").logprobs, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ref, make_strategy(qwen2_untied_dir).forward(batch).logprobs, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fsdp2.forward(batch, role="critic").values, local.forward(batch, role="critic").values,
                               atol=1e-5, rtol=1e-5)
    batch.tensors["returns"] = batch.tensors["advantages"] * 0.5
    batch.tensors["old_values"] = torch.zeros_like(batch.tensors["returns"])
    value_fn = make_value_loss_fn(AlgorithmConfig(), 100)
    c_fsdp2 = fsdp2.train_step(batch, value_fn, role="critic")
    c_local = local.train_step(batch, value_fn, role="critic")
    assert c_fsdp2["critic/loss"] == pytest.approx(c_local["critic/loss"], rel=1e-5)
    torch.testing.assert_close(fsdp2.forward(batch, role="critic").values, local.forward(batch, role="critic").values,
                               atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(fsdp2.forward(batch, role="ref").logprobs, ref, atol=0, rtol=0)
    fsdp2.shutdown()
