"""Fixtures for the strategy tests: tiny real Qwen2 models saved locally, batches, a factory."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest
import torch

from skyrl_core.config.schema import ModelConfig, TrainerConfig
from skyrl_core.protocols.strategy import TrainBatch

VOCAB = 61


def _save_tiny_qwen2(path: Path, *, tie: bool, seed: int) -> Path:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        tie_word_embeddings=tie,
        initializer_range=0.2,  # larger than default so log-probs are far from uniform
    )
    Qwen2ForCausalLM(config).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def qwen2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Qwen2ForCausalLM with tied embeddings."""
    return _save_tiny_qwen2(tmp_path_factory.mktemp("qwen2_tied"), tie=True, seed=0)


@pytest.fixture(scope="session")
def qwen2_untied_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Qwen2ForCausalLM with a separate LM head."""
    return _save_tiny_qwen2(tmp_path_factory.mktemp("qwen2_untied"), tie=False, seed=1)


def make_batch(seed: int = 0, n: int = 6, *, with_advantages: bool = True) -> TrainBatch:
    """``n`` sequences of varied prompt/response lengths; the loss mask has an observation gap."""
    g = torch.Generator().manual_seed(seed)
    prompts, responses = [], []
    for _ in range(n):
        p = int(torch.randint(2, 9, (1,), generator=g))
        r = int(torch.randint(1, 8, (1,), generator=g))
        prompts.append(torch.randint(0, VOCAB, (p,), generator=g).tolist())
        responses.append(torch.randint(0, VOCAB, (r,), generator=g).tolist())
    width = max(len(r) for r in responses)
    mask = torch.zeros(n, width)
    for i, r in enumerate(responses):
        mask[i, : len(r)] = 1.0
        if len(r) >= 4:
            mask[i, 1:3] = 0.0  # an environment observation inside the response
    tensors = {"loss_mask": mask}
    if with_advantages:
        tensors["advantages"] = torch.randn(n, 1, generator=g).expand(n, width) * mask
    return TrainBatch(prompts, responses, tensors)


def make_strategy(path: Path, *, strategy_config=None, model_kw=None, seed: int = 0, **trainer_kw):
    """A LocalStrategy on CPU over the model at ``path`` (trainer options as keywords)."""
    from skyrl_core.strategies.local import LocalStrategy

    extra = {k: trainer_kw.pop(k) for k in ("need_ref", "need_critic", "total_optimizer_steps") if k in trainer_kw}
    trainer = attrs.evolve(TrainerConfig(), **{"lr": 1e-2, "weight_decay": 0.0, **trainer_kw})
    model = ModelConfig(**{"path": str(path), "device": "cpu", **(model_kw or {})})
    return LocalStrategy(strategy_config, model=model, trainer=trainer, seed=seed, **extra)


def pg_loss(micro, out, scale):
    """A policy-gradient loss (token mean over the mini-batch) with a small entropy bonus."""
    mask = micro.tensors["loss_mask"]
    loss = -(micro.tensors["advantages"] * out.logprobs * mask).sum() / scale.num_tokens
    if out.entropy is not None:
        loss = loss - 0.01 * (out.entropy * mask).sum() / scale.num_tokens
    return loss, {"pg": float(loss.detach()) * scale.num_tokens / max(float(mask.sum()), 1.0)}


@pytest.fixture
def batch() -> TrainBatch:
    return make_batch()


@pytest.fixture(name="make_batch")
def _make_batch_fixture():
    return make_batch


@pytest.fixture(name="make_strategy")
def _make_strategy_fixture():
    return make_strategy


@pytest.fixture(name="pg_loss")
def _pg_loss_fixture():
    return pg_loss
