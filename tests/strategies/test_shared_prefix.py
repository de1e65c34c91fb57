"""Shared-prompt passes (``[strategy] shared_prefix``): each distinct prompt of a micro-batch runs
once and its samples' responses run against its cached keys and values; log-probs, entropies,
values and gradients must equal the plain layout's."""

from __future__ import annotations

import pytest
import torch

from skyrl_core.errors import SkyrlError
from skyrl_core.protocols.strategy import TrainBatch
from skyrl_core.strategies import model_parts, shared_prefix
from skyrl_core.strategies.batch_layout import collate
from skyrl_core.strategies.local_config import LocalStrategyConfig

VOCAB = 61  # the tiny Qwen2 models of conftest.py


def grouped_batch(seed: int, groups: tuple[tuple[int, tuple[int, ...]], ...]) -> TrainBatch:
    """Each group: a prompt length and its samples' response lengths (prompts differ between groups)."""
    g = torch.Generator().manual_seed(seed)
    prompts, responses = [], []
    for plen, rlens in groups:
        prompt = torch.randint(0, VOCAB, (plen,), generator=g).tolist()
        for r in rlens:
            prompts.append(list(prompt))
            responses.append(torch.randint(0, VOCAB, (r,), generator=g).tolist())
    width = max(len(r) for r in responses)
    mask = torch.zeros(len(responses), width)
    for i, r in enumerate(responses):
        mask[i, : len(r)] = 1.0
    advantages = torch.randn(len(responses), 1, generator=g).expand(len(responses), width) * mask
    return TrainBatch(prompts, responses, {"loss_mask": mask, "advantages": advantages})


# Varied prompt lengths, responses of 1 token, an empty response, a prompt of its own.
MIXED = ((5, (4, 1, 6)), (2, (3, 3)), (7, (2, 0, 5, 1)), (3, (4,)))
# The anchor's shape in small: equal prompts and responses (no padding anywhere).
UNIFORM = ((4, (6, 6, 6, 6)), (4, (6, 6, 6, 6)))


def test_layout_indexes_the_predicting_hidden_states() -> None:
    batch = TrainBatch([[1, 2, 3], [4], [1, 2, 3], [5, 6]], [[7, 8, 9], [10], [11], []])
    sp = shared_prefix.shared_layout(batch, "cpu")
    assert sp is not None
    assert sp.prompt_ids.tolist() == [[1, 2, 3], [4, 0, 0], [5, 6, 0]]
    assert sp.prompt_mask.tolist() == [[1, 1, 1], [1, 0, 0], [1, 1, 0]]
    assert sp.owner.tolist() == [0, 1, 0, 2]
    assert sp.response_ids.tolist() == [[7, 8], [0, 0], [0, 0], [0, 0]]  # last response tokens never run
    assert sp.position_ids.tolist() == [[3, 4], [1, 2], [3, 4], [2, 3]]
    assert sp.attention_mask.tolist() == [
        [1, 1, 1, 1, 1],
        [1, 0, 0, 0, 0],
        [1, 1, 1, 0, 0],
        [1, 1, 0, 0, 0],
    ]
    # Prompt pass: 3 x 3 hidden states, then the response pass: 4 x 2.
    # seq 0: prompt 0's last (2), then its response positions 0 and 1 (9, 10); seq 1: prompt 1's
    # last (3); seq 2: prompt 0's last again (2); seq 3: no response.
    assert sp.index.tolist() == [2, 9, 10, 3, 2]
    assert sp.tokens == 3 * 3 + 4 * 2
    c = collate(batch, "cpu", shared_prefix=True)
    assert c.prefix is not None and c.targets.tolist() == [7, 8, 9, 10, 11]  # the plain layout's token order


def test_no_layout_without_shared_prompts() -> None:
    distinct = TrainBatch([[1, 2], [3], [1, 2]], [[4], [5], []])  # the repeated prompt has no response
    assert shared_prefix.shared_layout(distinct, "cpu") is None
    assert collate(distinct, "cpu", shared_prefix=True).prefix is None
    shared = TrainBatch([[1, 2], [1, 2]], [[4], [5]])
    assert collate(shared, "cpu").prefix is None  # only when asked
    assert collate(shared, "cpu", shared_prefix=True, packed=True).prefix is None  # never with packing


@pytest.mark.parametrize("groups", [MIXED, UNIFORM], ids=["mixed", "uniform"])
def test_logits_and_gradients_equal_the_plain_layout(qwen2_dir, groups) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(qwen2_dir, dtype=torch.float32)
    model.train()  # dropout is 0 in this config; train mode is what the update runs
    batch = grouped_batch(0, groups)
    plain = collate(batch, "cpu")
    shared = collate(batch, "cpu", shared_prefix=True)
    assert shared.prefix is not None and shared.prefix.tokens < plain.input_ids.numel()
    weights = torch.randn(int(plain.targets.numel()), VOCAB, generator=torch.Generator().manual_seed(1))

    def logits_and_grads(c) -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        if c.prefix is not None:
            logits = shared_prefix.response_logits(model, c.prefix)
        else:
            logits = model_parts.response_logits(model, c.model_inputs(), c.rows, c.cols, sliced=True)
        (logits.log_softmax(-1) * weights).sum().backward()
        return logits.detach(), [p.grad.clone() for p in model.parameters()]

    la, ga = logits_and_grads(plain)
    lb, gb = logits_and_grads(shared)
    torch.testing.assert_close(lb, la, atol=1e-5, rtol=1e-5)
    for (name, _), a, b in zip(model.named_parameters(), ga, gb, strict=True):
        torch.testing.assert_close(b, a, atol=1e-5 * max(1.0, float(a.abs().max())), rtol=1e-4, msg=name)


def build(make_strategy, path, mode, **kw):
    cfg = LocalStrategyConfig(shared_prefix=mode, forward_micro_batch_tokens=kw.pop("forward_tokens", None))
    return make_strategy(path, strategy_config=cfg, **kw)


@pytest.mark.parametrize("micro_batch_tokens", [8192, 24], ids=["one-micro-batch", "split-groups"])
def test_strategy_passes_and_update_equal_the_plain_layout(qwen2_dir, make_strategy, pg_loss, micro_batch_tokens):
    plain = build(make_strategy, qwen2_dir, False, micro_batch_tokens=micro_batch_tokens, need_ref=True)
    shared = build(make_strategy, qwen2_dir, True, micro_batch_tokens=micro_batch_tokens, need_ref=True)
    assert not plain.prefix_sharing and shared.prefix_sharing
    batch = grouped_batch(2, MIXED)
    for role in ("policy", "ref"):
        a = plain.forward(batch, role=role, temperature=0.7, need_entropy=True)
        b = shared.forward(batch, role=role, temperature=0.7, need_entropy=True)
        torch.testing.assert_close(b.logprobs, a.logprobs, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(b.entropy, a.entropy, atol=1e-5, rtol=1e-5)

    ma = plain.train_step(batch, pg_loss, temperature=0.7, need_entropy=True)
    mb = shared.train_step(batch, pg_loss, temperature=0.7, need_entropy=True)
    assert mb["pg"] == pytest.approx(ma["pg"], rel=1e-5)
    assert mb["grad_norm"] == pytest.approx(ma["grad_norm"], rel=1e-5)
    # After one AdamW step the first moment is (1 - beta1) * gradient: the same gradients.
    state_a, state_b = plain._policy.optimizer.state, shared._policy.optimizer.state
    pairs = zip(plain.policy.named_parameters(), shared.policy.named_parameters(), strict=True)
    for (name, pa), (_, pb) in pairs:
        ga, gb = state_a[pa]["exp_avg"], state_b[pb]["exp_avg"]
        torch.testing.assert_close(gb, ga, atol=1e-7 + 1e-5 * float(ga.abs().max()), rtol=1e-4, msg=name)


def test_critic_values_equal_the_plain_layout(qwen2_dir, make_strategy) -> None:
    batch = grouped_batch(3, MIXED)
    a = build(make_strategy, qwen2_dir, False, need_critic=True).forward(batch, role="critic").values
    shared = build(make_strategy, qwen2_dir, True, need_critic=True)
    assert shared.prefix_sharing
    torch.testing.assert_close(shared.forward(batch, role="critic").values, a, atol=1e-5, rtol=1e-5)


def test_auto_turns_on_where_it_applies_and_off_elsewhere(qwen2_dir, make_strategy) -> None:
    assert build(make_strategy, qwen2_dir, "auto").prefix_sharing
    assert not build(make_strategy, qwen2_dir, "auto", gradient_checkpointing=True).prefix_sharing
    assert build(make_strategy, qwen2_dir, "auto", model_kw={"dtype": "bfloat16"}).prefix_sharing  # autocast
    packed = make_strategy(qwen2_dir, strategy_config=LocalStrategyConfig(packing=True))
    assert not packed.prefix_sharing
    full = make_strategy(qwen2_dir, strategy_config=LocalStrategyConfig(logits="full"))
    assert not full.prefix_sharing


def test_true_says_what_is_missing(qwen2_dir, make_strategy) -> None:
    with pytest.raises(SkyrlError, match=r"shared_prefix = true: gradient checkpointing is on"):
        build(make_strategy, qwen2_dir, True, gradient_checkpointing=True)
    with pytest.raises(SkyrlError, match=r"shared_prefix = true: .*packing"):
        make_strategy(qwen2_dir, strategy_config=LocalStrategyConfig(packing=True, shared_prefix=True))
    with pytest.raises(SkyrlError, match=r"shared_prefix = true: .*logits resolved to 'full'"):
        make_strategy(qwen2_dir, strategy_config=LocalStrategyConfig(logits="full", shared_prefix=True))


def test_a_model_whose_cache_breaks_the_layout_is_refused(qwen2_dir, make_strategy, monkeypatch) -> None:
    """Stand-in for a model on which the two layouts disagree: the gathered cache rows are
    shuffled, so each response attends to another prompt; the start-up probe must notice."""
    from transformers import DynamicCache

    real = DynamicCache.batch_select_indices

    def wrong_rows(self, indices):
        real(self, indices.flip(0))

    monkeypatch.setattr(DynamicCache, "batch_select_indices", wrong_rows)
    with pytest.raises(SkyrlError, match=r"shared_prefix = true: on a probe batch it did not reproduce"):
        build(make_strategy, qwen2_dir, True)
    assert not build(make_strategy, qwen2_dir, "auto").prefix_sharing


def test_sliding_window_models_are_not_supported(tmp_path) -> None:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        use_sliding_window=True,
        sliding_window=8,
        max_window_layers=0,
    )
    model = Qwen2ForCausalLM(config)
    reason = shared_prefix.unsupported_reason(model_parts.backbone(model))
    assert reason is not None and "sliding" in reason
    assert shared_prefix.unsupported_reason(None) is not None
