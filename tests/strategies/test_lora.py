"""LoRA in the ``local`` strategy: what trains, the KL reference, checkpoints and export.

Real peft adapters on tiny real Qwen2 models (built locally by ``conftest``).
"""

from __future__ import annotations

import json

import attrs
import pytest
import safetensors.torch
import torch

from skyrl_core.config.schema import LoraConfig
from skyrl_core.strategies import lora, lora_sync
from skyrl_core.strategies.checkpoint_files import POLICY_WEIGHTS, REF_WEIGHTS, STRATEGY_STATE, CheckpointError

pytest.importorskip("peft")


def lora_kw(**options) -> dict:
    return {"lora": LoraConfig(**{"rank": 4, "alpha": 8.0, **options})}


def lora_strategy(make_strategy, path, *, seed: int = 0, lora_options=None, **kw):
    """A LoRA LocalStrategy; ``seed`` draws the adapters' initial A."""
    return make_strategy(path, model_kw=lora_kw(**(lora_options or {})), seed=seed, **kw)


def adapter_names(strategy) -> list[str]:
    return sorted(n for n, p in strategy.policy.named_parameters() if "lora_" in n)


def value_loss(micro, out, scale):
    mask = micro.tensors["loss_mask"]
    return ((out.values - micro.tensors["advantages"]) ** 2 * mask).sum() / scale.num_tokens, {}


@pytest.mark.parametrize("checkpointing", [False, True])
def test_only_adapters_train_and_base_stays_byte_identical(
    qwen2_untied_dir, make_strategy, make_batch, pg_loss, checkpointing
) -> None:
    strategy = lora_strategy(make_strategy, qwen2_untied_dir, gradient_checkpointing=checkpointing)
    trainable = {id(p) for p in strategy.policy.parameters() if p.requires_grad}
    in_optimizer = {id(p) for g in strategy._policy.optimizer.param_groups for p in g["params"]}
    lora_params = {id(p) for n, p in strategy.policy.named_parameters() if "lora_" in n}
    assert in_optimizer == trainable == lora_params
    # all-linear: q, k, v, o, gate, up, down of both layers, never the output layer
    assert len(adapter_names(strategy)) == 2 * 7 * 2
    assert not any("lm_head" in n for n in adapter_names(strategy))

    before = {n: t.detach().clone() for n, t in strategy.policy.named_parameters()}
    for seed in range(3):
        m = strategy.train_step(make_batch(seed), pg_loss, need_entropy=True)
        assert m["skipped"] == 0.0 and m["grad_norm"] > 0
    after = dict(strategy.policy.named_parameters())

    base_file = safetensors.torch.load_file(str(qwen2_untied_dir / "model.safetensors"))
    merged_names = {n for n, _ in lora.merged_weights(strategy.policy)}
    assert merged_names == set(base_file)  # the base model's own names, nothing added
    for name, tensor in after.items():
        if "lora_" in name:
            continue
        assert torch.equal(tensor, before[name]), name
        assert torch.equal(tensor, base_file[name.replace(".base_layer", "")]), name
    changed_b = [n for n in after if "lora_B" in n and not torch.equal(after[n], before[n])]
    changed_a = [n for n in after if "lora_A" in n and not torch.equal(after[n], before[n])]
    assert len(changed_b) == len(adapter_names(strategy)) // 2
    assert changed_a  # A moves once B is no longer zero


def test_checkpointed_training_matches_plain(qwen2_dir, make_strategy, make_batch, pg_loss) -> None:
    runs = []
    for checkpointing in (False, True):
        strategy = lora_strategy(make_strategy, qwen2_dir, gradient_checkpointing=checkpointing)
        for seed in range(2):
            strategy.train_step(make_batch(seed), pg_loss)
        runs.append({n: p.detach() for n, p in strategy.policy.named_parameters() if p.requires_grad})
    for name, tensor in runs[0].items():
        torch.testing.assert_close(runs[1][name], tensor, rtol=1e-5, atol=1e-6)


def test_reference_is_the_base_model_without_a_copy(qwen2_dir, make_strategy, make_batch, pg_loss) -> None:
    batch = make_batch(3)
    base = make_strategy(qwen2_dir).forward(batch, temperature=0.7).logprobs
    strategy = lora_strategy(make_strategy, qwen2_dir, need_ref=True, lr=5e-2)
    assert strategy.ref is None  # no second model: the adapters are switched off instead
    for seed in range(3):
        strategy.train_step(make_batch(seed), pg_loss)
    ref = strategy.forward(batch, role="ref", temperature=0.7).logprobs
    policy = strategy.forward(batch, temperature=0.7).logprobs
    torch.testing.assert_close(ref, base, rtol=0, atol=1e-6)
    assert (policy - base).abs().max() > 1e-3  # the adapters did change the policy
    # the adapters are back on after the reference pass
    torch.testing.assert_close(strategy.forward(batch, temperature=0.7).logprobs, policy, rtol=0, atol=0)


def test_reset_ref_folds_the_adapters_into_the_base(qwen2_dir, make_strategy, make_batch, pg_loss) -> None:
    batch = make_batch(4)
    strategy = lora_strategy(make_strategy, qwen2_dir, need_ref=True, lr=5e-2)
    for seed in range(2):
        strategy.train_step(make_batch(seed), pg_loss)
    policy = strategy.forward(batch).logprobs
    strategy.reset_ref()
    torch.testing.assert_close(strategy.forward(batch).logprobs, policy, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(strategy.forward(batch, role="ref").logprobs, policy, rtol=1e-5, atol=1e-5)
    m = strategy.train_step(make_batch(5), pg_loss)  # training goes on from the folded model
    assert m["skipped"] == 0.0


def test_resume_restores_adapters_exactly(qwen2_dir, tmp_path, make_strategy, make_batch, pg_loss) -> None:
    opts = {"need_ref": True, "need_critic": True, "lr_schedule": "cosine", "warmup_steps": 1,
            "total_optimizer_steps": 4}

    def step(strategy, seed):
        strategy.train_step(make_batch(seed), pg_loss, need_entropy=True)
        strategy.train_step(make_batch(seed), value_loss, role="critic")

    straight = lora_strategy(make_strategy, qwen2_dir, **opts)
    step(straight, 0)
    step(straight, 1)

    first = lora_strategy(make_strategy, qwen2_dir, **opts)
    step(first, 0)
    first.save_checkpoint(tmp_path / "ckpt")
    files = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert lora.ADAPTER_WEIGHTS in files and lora.CRITIC_TRAINABLE in files
    assert POLICY_WEIGHTS not in files and REF_WEIGHTS not in files  # no base weights
    saved = safetensors.torch.load_file(str(tmp_path / "ckpt" / lora.ADAPTER_WEIGHTS))
    assert saved and all(".lora_A." in k or ".lora_B." in k for k in saved)
    assert json.loads((tmp_path / "ckpt" / STRATEGY_STATE).read_text())["lora"]["rank"] == 4

    resumed = lora_strategy(make_strategy, qwen2_dir, seed=99, **opts)  # other random adapters at start
    resumed.load_checkpoint(tmp_path / "ckpt")
    for name, tensor in lora.adapter_state(first.peft).items():
        assert torch.equal(lora.adapter_state(resumed.peft)[name], tensor), name
    step(resumed, 1)
    for (name, a), (_, b) in zip(straight.policy.named_parameters(), resumed.policy.named_parameters(), strict=True):
        assert torch.equal(a, b), name
    for (name, a), (_, b) in zip(
        straight._critic.module.named_parameters(), resumed._critic.module.named_parameters(), strict=True
    ):
        assert torch.equal(a, b), name
    assert resumed.optimizer_steps == straight.optimizer_steps == 2


def test_checkpoint_of_other_lora_settings_is_refused(qwen2_dir, tmp_path, make_strategy) -> None:
    lora_strategy(make_strategy, qwen2_dir).save_checkpoint(tmp_path / "lora")
    make_strategy(qwen2_dir).save_checkpoint(tmp_path / "full")
    with pytest.raises(CheckpointError, match=r"'rank': 4.*'rank': 8.*\[model.lora\]"):
        lora_strategy(make_strategy, qwen2_dir, lora_options={"rank": 8}).load_checkpoint(tmp_path / "lora")
    with pytest.raises(CheckpointError, match="written by full fine-tuning"):
        lora_strategy(make_strategy, qwen2_dir).load_checkpoint(tmp_path / "full")
    with pytest.raises(CheckpointError, match="this run uses full fine-tuning"):
        make_strategy(qwen2_dir).load_checkpoint(tmp_path / "lora")


def test_export_merged_and_adapter(tiny_model_cfg, tmp_path, make_strategy, make_batch, pg_loss) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from skyrl_core.models.loading import load_tokenizer

    tokenizer = load_tokenizer(tiny_model_cfg)
    strategy = lora_strategy(make_strategy, tiny_model_cfg.path, lr=5e-2)
    for seed in range(2):
        strategy.train_step(make_batch(seed), pg_loss)
    ids = torch.tensor([[3, 14, 15, 9, 26, 5]])
    with torch.no_grad():
        expected = strategy.policy(ids).logits

    strategy.export_hf(tmp_path / "merged", tokenizer)
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    assert not any("lora" in n for n in merged.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, expected, rtol=1e-4, atol=1e-4)

    adapter_cfg = attrs.evolve(strategy.model_config.lora, export="adapter")
    strategy.model_config = attrs.evolve(strategy.model_config, lora=adapter_cfg)
    strategy.export_hf(tmp_path / "adapter", tokenizer)
    folder = sorted(p.name for p in (tmp_path / "adapter").iterdir())
    assert "adapter_config.json" in folder and "adapter_model.safetensors" in folder
    assert "model.safetensors" not in folder and "tokenizer.json" in folder
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["r"] == 4 and config["lora_alpha"] == 8.0 and config["base_model_name_or_path"] == tiny_model_cfg.path
    base = AutoModelForCausalLM.from_pretrained(tiny_model_cfg.path)
    reloaded = PeftModel.from_pretrained(base, tmp_path / "adapter")
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids).logits, expected, rtol=1e-6, atol=1e-6)


def test_unmatched_target_modules_is_a_clear_error(qwen2_dir, make_strategy) -> None:
    with pytest.raises(lora.LoraError, match=r"target_modules = \['qkv'\].*Linear layers of .*q_proj"):
        lora_strategy(make_strategy, qwen2_dir, lora_options={"target_modules": ["qkv"]})
    with pytest.raises(lora.LoraError, match="tied to the input embeddings"):
        lora_strategy(make_strategy, qwen2_dir, lora_options={"target_modules": ["q_proj", "lm_head"]})


def test_exclusions_and_named_targets(qwen2_dir, make_strategy) -> None:
    only_v = lora_strategy(make_strategy, qwen2_dir, lora_options={"target_modules": ["q_proj", "v_proj"],
                                                                   "exclude_modules": ["q_proj"]})
    assert sorted({n.split(".")[-4] for n in adapter_names(only_v)}) == ["v_proj"]
    no_mlp = lora_strategy(make_strategy, qwen2_dir, lora_options={"exclude_modules": ["gate_proj", "up_proj",
                                                                                       "down_proj"]})
    assert sorted({n.split(".")[-4] for n in adapter_names(no_mlp)}) == ["k_proj", "o_proj", "q_proj", "v_proj"]


def test_sync_mode_choice() -> None:
    from skyrl_core.protocols.backend import BackendCapabilities

    plain, capable = BackendCapabilities(), BackendCapabilities(lora_adapters=True)
    assert lora_sync.choose_sync(LoraConfig(rank=8), plain, "native") == "merged"
    assert lora_sync.choose_sync(LoraConfig(rank=8), capable, "x") == "adapter"
    assert lora_sync.choose_sync(LoraConfig(rank=8, sync="merged"), capable, "x") == "merged"
    with pytest.raises(lora.LoraError, match=r"sync = 'adapter': the native backend cannot load LoRA adapters"):
        lora_sync.choose_sync(LoraConfig(rank=8, sync="adapter"), plain, "native")


def test_adapter_init_follows_the_seed_and_lora_dropout_is_kept(qwen2_dir, make_strategy) -> None:
    a = lora_strategy(make_strategy, qwen2_dir, seed=3)
    torch.rand(10)  # whatever the global generator did in between
    b = lora_strategy(make_strategy, qwen2_dir, seed=3)
    c = lora_strategy(make_strategy, qwen2_dir, seed=4)
    state_a, state_b, state_c = (lora.adapter_state(s.peft) for s in (a, b, c))
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    assert any(not torch.equal(state_a[k], state_c[k]) for k in state_a if ".lora_A." in k)

    d = lora_strategy(make_strategy, qwen2_dir, lora_options={"dropout": 0.1})  # disable_dropout is on
    layers = lora.adapter_layers(d.policy).values()
    assert {layer.lora_dropout["default"].p for layer in layers} == {0.1}
    others = [m for n, m in d.policy.named_modules() if isinstance(m, torch.nn.Dropout) and "lora_dropout" not in n]
    assert all(m.p == 0.0 for m in others)


def test_bfloat16_base_stays_bfloat16_and_adapters_train_in_float32(
    qwen2_dir, make_strategy, make_batch, pg_loss
) -> None:
    strategy = make_strategy(qwen2_dir, model_kw={"lora": LoraConfig(rank=4), "dtype": "bfloat16"})
    dtypes = {("lora_" in n, p.dtype) for n, p in strategy.policy.named_parameters()}
    assert dtypes == {(False, torch.bfloat16), (True, torch.float32)}  # no fp32 copy of the frozen base
    m = strategy.train_step(make_batch(0), pg_loss)
    assert m["skipped"] == 0.0 and m["grad_norm"] > 0
    merged = dict(lora.merged_weights(strategy.policy))
    assert {t.dtype for t in merged.values()} == {torch.bfloat16}
