"""The ``local`` strategy on one CUDA GPU (skipped without one): bf16, fused AdamW, offload, resume."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_auto_device_bf16_training_with_ref_and_critic(qwen2_dir, tmp_path, make_strategy, make_batch, pg_loss):
    gpu = make_strategy(qwen2_dir, model_kw={"device": "auto", "dtype": "bfloat16"}, need_ref=True, need_critic=True)
    cpu = make_strategy(qwen2_dir)
    assert gpu.device.type == "cuda"
    assert gpu._policy.optimizer.defaults["fused"] is True
    batch = make_batch(30, n=8)
    lp_gpu = gpu.forward(batch, need_entropy=True)
    lp_cpu = cpu.forward(batch, need_entropy=True)
    assert lp_gpu.logprobs.device.type == "cpu" and lp_gpu.logprobs.dtype == torch.float32
    assert (lp_gpu.logprobs - lp_cpu.logprobs).abs().max() < 0.1  # bf16 rounding only
    torch.testing.assert_close(gpu.forward(batch, role="ref").logprobs, lp_gpu.logprobs)

    def value_loss(micro, out, scale):
        mask = micro.tensors["loss_mask"]
        return ((out.values - micro.tensors["advantages"]) ** 2 * mask).sum() / scale.num_tokens, {}

    for _ in range(3):
        m = gpu.train_step(batch, pg_loss, need_entropy=True)
        c = gpu.train_step(batch, value_loss, role="critic")
        assert m["skipped"] == 0.0 and c["critic/skipped"] == 0.0
    assert all(p.dtype == torch.float32 and p.is_cuda for p in gpu.policy.parameters())
    after = gpu.forward(batch).logprobs
    assert not torch.allclose(after, lp_gpu.logprobs)

    # offload frees the GPU; onload restores the same model and optimizer
    used = torch.cuda.memory_allocated()
    gpu.offload()
    assert all(not p.is_cuda for p in gpu.policy.parameters())
    assert all(not v.is_cuda for s in gpu._policy.optimizer.state.values() for v in s.values() if torch.is_tensor(v))
    assert torch.cuda.memory_allocated() < used
    with pytest.raises(RuntimeError, match="onload"):
        gpu.forward(batch)
    gpu.onload()
    torch.testing.assert_close(gpu.forward(batch).logprobs, after)
    assert gpu.train_step(batch, pg_loss)["skipped"] == 0.0  # fused AdamW state is back on the GPU

    # checkpoint round trip on the GPU
    gpu.save_checkpoint(tmp_path / "ckpt")
    other = make_strategy(qwen2_dir, model_kw={"device": "auto", "dtype": "bfloat16"}, need_ref=True, need_critic=True)
    other.load_checkpoint(tmp_path / "ckpt")
    torch.testing.assert_close(other.forward(batch).logprobs, gpu.forward(batch).logprobs, atol=0, rtol=0)
    torch.testing.assert_close(other.forward(batch, role="critic").values, gpu.forward(batch, role="critic").values)
    opt = other._policy.optimizer
    assert all(v.is_cuda for s in opt.state.values() for k, v in s.items() if torch.is_tensor(v) and k != "step")
    assert other.train_step(batch, pg_loss)["skipped"] == 0.0


def test_fp32_cuda_forward_matches_cpu(qwen2_dir, make_strategy, make_batch):
    gpu = make_strategy(qwen2_dir, model_kw={"device": "cuda"})
    cpu = make_strategy(qwen2_dir)
    batch = make_batch(31)
    torch.testing.assert_close(gpu.forward(batch).logprobs, cpu.forward(batch).logprobs, atol=1e-4, rtol=1e-4)


def test_fp16_uses_a_gradient_scaler(qwen2_dir, make_strategy, make_batch, pg_loss):
    gpu = make_strategy(qwen2_dir, model_kw={"device": "cuda", "dtype": "float16"})
    batch = make_batch(32)
    for _ in range(2):
        assert gpu.train_step(batch, pg_loss)["skipped"] == 0.0
    assert gpu._policy.scaler is not None and gpu._policy.scaler.get_scale() > 0


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_shared_prefix_and_compile_on_cuda(qwen2_dir, make_strategy, make_batch, pg_loss, dtype):
    """``[strategy] shared_prefix`` and ``compile`` on the GPU give the plain eager passes and update
    (fp32: to rounding; bf16 autocast: to bf16 rounding)."""
    from skyrl_core.protocols.strategy import TrainBatch
    from skyrl_core.strategies.local_config import LocalStrategyConfig

    def build(**options):
        cfg = LocalStrategyConfig(**options)
        return make_strategy(qwen2_dir, strategy_config=cfg, model_kw={"device": "cuda", "dtype": dtype})

    # compile is 'auto' (on) on CUDA, shared_prefix 'auto' (off) there: name both for each strategy
    plain = build(shared_prefix=False, compile=False)
    shared = build(shared_prefix=True, compile=False)
    compiled = build(shared_prefix=True, compile=True)
    assert shared.prefix_sharing and compiled.prefix_sharing
    base = make_batch(40, n=12)
    batch = TrainBatch([base.prompt_ids[i // 3] for i in range(12)], base.response_ids, base.tensors)  # groups of 3
    tol = 1e-4 if dtype == "float32" else 5e-2
    reference = plain.forward(batch, need_entropy=True)
    for other in (shared, compiled):
        out = other.forward(batch, need_entropy=True)
        torch.testing.assert_close(out.logprobs, reference.logprobs, atol=tol, rtol=tol)
        torch.testing.assert_close(out.entropy, reference.entropy, atol=tol, rtol=tol)
    m = [s.train_step(batch, pg_loss, need_entropy=True) for s in (plain, shared, compiled)]
    assert all(x["skipped"] == 0.0 for x in m)
    assert m[1]["grad_norm"] == pytest.approx(m[0]["grad_norm"], rel=10 * tol)
    assert m[2]["grad_norm"] == pytest.approx(m[0]["grad_norm"], rel=10 * tol)
