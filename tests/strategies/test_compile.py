"""``[strategy] compile``: the transformer blocks run through torch.compile, and the passes and
updates (plain and shared-prompt layouts, two shapes) equal the eager model's."""

from __future__ import annotations

import pytest
import torch

from skyrl_core.errors import SkyrlError
from skyrl_core.protocols.strategy import TrainBatch
from skyrl_core.strategies import model_parts
from skyrl_core.strategies.local_config import LocalStrategyConfig


def test_compile_blocks_compiles_each_decoder_layer(qwen2_dir) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(qwen2_dir)
    names = [n for n, _ in model.named_parameters()]
    assert model_parts.compile_blocks(model) == 2
    assert all(getattr(layer, "_compiled_call_impl", None) is not None for layer in model.model.layers)
    assert getattr(model.model.embed_tokens, "_compiled_call_impl", None) is None  # only the blocks
    assert [n for n, _ in model.named_parameters()] == names  # checkpoints and weight sync unchanged


def test_a_model_without_blocks_is_refused(qwen2_dir, make_strategy, monkeypatch) -> None:
    from transformers.models.qwen2 import modeling_qwen2

    monkeypatch.setattr(modeling_qwen2.Qwen2PreTrainedModel, "_no_split_modules", None)  # a model that names none
    with pytest.raises(SkyrlError, match=r"compile = true: Qwen2ForCausalLM names no transformer blocks"):
        make_strategy(qwen2_dir, strategy_config=LocalStrategyConfig(compile=True))


def test_auto_resolves_by_device_and_triton(monkeypatch) -> None:
    import torch.utils._triton as triton_probe

    assert model_parts.resolve_compile("auto", torch.device("cpu")) is False
    assert model_parts.resolve_compile(True, torch.device("cpu")) is True
    assert model_parts.resolve_compile(False, torch.device("cuda", 0)) is False
    monkeypatch.setattr(triton_probe, "has_triton", lambda: True)
    assert model_parts.resolve_compile("auto", torch.device("cuda", 0)) is True
    monkeypatch.setattr(triton_probe, "has_triton", lambda: False)
    assert model_parts.resolve_compile("auto", torch.device("cuda", 0)) is False


def test_auto_on_cpu_leaves_the_layers_eager(qwen2_dir, make_strategy) -> None:
    strategy = make_strategy(qwen2_dir, strategy_config=LocalStrategyConfig())
    assert LocalStrategyConfig().compile == "auto" and strategy.compiled is False
    assert all(getattr(m, "_compiled_call_impl", None) is None for m in strategy.policy.modules())


def test_auto_falls_back_to_eager_with_a_notice(qwen2_dir, make_strategy, monkeypatch, capsys) -> None:
    """Where 'auto' compiles (CUDA with Triton; forced here on the CPU) and the start-up probe fails,
    the run goes on with eager layers and says why, instead of stopping as compile = true does."""
    from skyrl_core.strategies import local

    monkeypatch.setattr(local.model_parts, "resolve_compile", lambda setting, device: True)

    def failing(*args, **kwargs):
        raise RuntimeError("inductor exploded")

    def broken(model, **_):  # a compiler that fails: every block's compiled call raises
        for layer in model.model.layers:
            layer._compiled_call_impl = failing
        return len(model.model.layers)

    monkeypatch.setattr(local.model_parts, "compile_blocks", broken)
    strategy = make_strategy(qwen2_dir, strategy_config=LocalStrategyConfig(compile="auto"))
    assert strategy.compiled is False
    assert all(getattr(m, "_compiled_call_impl", None) is None for m in strategy.policy.modules())
    assert "[strategy] compile auto: off, eager layers: torch.compile failed on a probe batch (RuntimeError: " \
        "inductor exploded)" in capsys.readouterr().out
    with pytest.raises(SkyrlError, match=r"compile = true: torch.compile failed on a probe batch"):
        make_strategy(qwen2_dir, strategy_config=LocalStrategyConfig(compile=True))


@pytest.mark.slow  # compiles the tiny model's decoder layers (~20-60 s on 2 CPU cores)
def test_compiled_passes_and_update_equal_eager_ones(qwen2_dir, make_strategy, make_batch, pg_loss) -> None:
    def build(compile: bool):
        return make_strategy(qwen2_dir, strategy_config=LocalStrategyConfig(compile=compile), need_critic=True)

    eager, compiled = build(False), build(True)
    base = make_batch(5, n=8)
    batch = TrainBatch([base.prompt_ids[i // 2] for i in range(8)], base.response_ids, base.tensors)  # groups of 2
    for role in ("policy", "critic"):
        a, b = (
            eager.forward(batch, role=role, need_entropy=role == "policy"),
            compiled.forward(batch, role=role, need_entropy=role == "policy"),
        )
        for x, y in ((a.logprobs, b.logprobs), (a.entropy, b.entropy), (a.values, b.values)):
            if x is not None:
                torch.testing.assert_close(y, x, atol=1e-5, rtol=1e-5)
    for other in (batch, make_batch(6, n=6), make_batch(7, n=6)):  # shared prompts, then plain rows of two shapes
        ma = eager.train_step(other, pg_loss, need_entropy=True)
        mb = compiled.train_step(other, pg_loss, need_entropy=True)
        assert mb["grad_norm"] == pytest.approx(ma["grad_norm"], rel=1e-4)
        assert mb["pg"] == pytest.approx(ma["pg"], rel=1e-5)
    for (name, pa), (_, pb) in zip(eager.policy.named_parameters(), compiled.policy.named_parameters(), strict=True):
        torch.testing.assert_close(pb, pa, atol=1e-5, rtol=1e-4, msg=name)
