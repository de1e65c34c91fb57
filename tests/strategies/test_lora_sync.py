"""LoRA weight sync into a real native backend: merged weights, and the adapter path.

The oracle is independent of the code under test: the adapter is exported in peft's
format, loaded by peft onto a fresh copy of the base model and merged with
``merge_and_unload``; greedy tokens and log-probs are computed from that model by hand.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import attrs
import pytest
import safetensors.torch
import torch

from skyrl_core.backends.native import NativeBackend
from skyrl_core.backends.native_config import NativeBackendConfig
from skyrl_core.config.schema import LoraConfig, ModelConfig, RuntimeConfig, TrainerConfig
from skyrl_core.runtime.weight_sync import transfer_weights, verify_engine_weights
from skyrl_core.strategies import lora, lora_sync
from skyrl_core.testing.conformance import make_unit_scale_copy
from skyrl_core.testing.lora import assert_same_outputs, engine_greedy, greedy_oracle, pg_batch, pg_loss

pytest.importorskip("peft")



class PeftNativeBackend(NativeBackend):
    """Test double of an engine that loads LoRA adapters (``capabilities.lora_adapters``).

    No backend shipped with skyrl-core declares adapter loading (the vLLM plugin does, and its
    own CI stage tests it against real vLLM). This is the real native engine plus adapter
    loading from the peft folder ``LoraAdapter.save`` writes, so the core suite covers the
    adapter path without vLLM installed.
    """

    def __init__(self, config=None, **kwargs) -> None:
        # peft injects the adapters into the HF modules, which only the HF engine runs (the static
        # engine, the CPU default since issue 21, computes with its own fused weights).
        super().__init__(attrs.evolve(config or NativeBackendConfig(), engine="hf"), **kwargs)
        self.capabilities = attrs.evolve(self.capabilities, lora_adapters=True)
        self.peft = None
        self.versions: list[int] = []

    def load_lora_adapter(self, adapter: lora_sync.LoraAdapter) -> None:
        from peft import PeftModel, set_peft_model_state_dict

        with self._lock, tempfile.TemporaryDirectory() as tmp:
            folder = adapter.save(Path(tmp) / adapter.name)
            if self.peft is None:
                self.peft = PeftModel.from_pretrained(self.model, folder)  # injects into self.model in place
            else:
                state = safetensors.torch.load_file(str(folder / "adapter_model.safetensors"))
                set_peft_model_state_dict(self.peft, state)
        self.versions.append(adapter.version)


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir, tmp_path_factory):
    """The tiny model with unit-scale weights, so that greedy continuations depend on every weight."""
    return make_unit_scale_copy(tiny_model_dir, tmp_path_factory.mktemp("lora-sync") / "model")




@pytest.fixture(scope="module")
def trained(model_dir):
    """A LoRA strategy after three updates that clearly moved the policy."""
    from skyrl_core.strategies.local import LocalStrategy

    torch.manual_seed(0)
    model = attrs.evolve(engine_config(model_dir), lora=LoraConfig(rank=4, alpha=8.0))
    trainer = TrainerConfig(lr=5e-2, weight_decay=0.0)
    strategy = LocalStrategy(None, model=model, trainer=trainer, seed=0)
    for seed in range(3):
        strategy.train_step(pg_batch(seed), pg_loss)
    return strategy





@pytest.fixture(scope="module")
def oracle(trained, model_dir, tmp_path_factory):
    adapter_dir = tmp_path_factory.mktemp("adapter") / "adapter"
    lora.export_adapter(trained.peft, adapter_dir, None)
    return greedy_oracle(model_dir, adapter_dir)


def engine_config(model_dir: Path) -> ModelConfig:
    return ModelConfig(path=str(model_dir), device="cpu", dtype="float32")


def test_merged_sync_gives_the_merged_models_outputs(trained, model_dir, oracle) -> None:
    backend = NativeBackend(NativeBackendConfig(), model=engine_config(model_dir), seed=0)
    try:
        before = engine_greedy(backend)
        assert before != oracle  # the adapters changed what greedy decoding produces
        stats = transfer_weights(trained, backend, RuntimeConfig())
        assert stats["weight_sync/buckets"] >= 1 and "weight_sync/adapter" not in stats
        assert_same_outputs(engine_greedy(backend), oracle)
        # every tensor the engine holds is the trainer's merged tensor, byte for byte
        assert verify_engine_weights(trained, backend) == len(backend.model.state_dict()) - 1  # tied lm_head
    finally:
        backend.shutdown()


def test_adapter_sync_is_chosen_for_engines_that_load_adapters(trained, model_dir, oracle) -> None:
    backend = PeftNativeBackend(NativeBackendConfig(), model=engine_config(model_dir), seed=0)
    try:
        stats = transfer_weights(trained, backend, RuntimeConfig())
        assert stats["weight_sync/adapter"] == 1.0
        assert len(backend.versions) == 1
        size = sum(t.numel() * 4 for _, t in lora.adapter_state(trained.peft).items())
        assert stats["weight_sync/bytes"] == size  # the adapter only, not the model
        assert_same_outputs(engine_greedy(backend), oracle)
        transfer_weights(trained, backend, RuntimeConfig())  # a newer version replaces the old one
        assert backend.versions == sorted(set(backend.versions)) and len(backend.versions) == 2
        assert_same_outputs(engine_greedy(backend), oracle)
    finally:
        backend.shutdown()


def test_sync_override(trained, model_dir, oracle) -> None:
    merged_cfg = attrs.evolve(trained.model_config, lora=attrs.evolve(trained.model_config.lora, sync="merged"))
    forced_merged = copy.copy(trained)  # shares the model; only its [model.lora] sync differs
    forced_merged.model_config = merged_cfg
    backend = PeftNativeBackend(NativeBackendConfig(), model=engine_config(model_dir), seed=0)
    try:
        stats = transfer_weights(forced_merged, backend, RuntimeConfig())
        assert "weight_sync/adapter" not in stats and backend.versions == []
        assert_same_outputs(engine_greedy(backend), oracle)
    finally:
        backend.shutdown()

    adapter_cfg = attrs.evolve(trained.model_config.lora, sync="adapter")
    forced_adapter = copy.copy(trained)
    forced_adapter.model_config = attrs.evolve(trained.model_config, lora=adapter_cfg)
    plain = NativeBackend(NativeBackendConfig(), model=engine_config(model_dir), seed=0)
    try:
        with pytest.raises(lora.LoraError, match="NativeBackend backend cannot load LoRA adapters"):
            transfer_weights(forced_adapter, plain, RuntimeConfig())
    finally:
        plain.shutdown()
