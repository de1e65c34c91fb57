"""Generator options from SkyRL: ``zero_reward_on_non_stop`` and ``[model] chat_template_kwargs``.

Replies come from ``ScriptedBackend`` (a test double, see conftest.py) so that finish reasons and
token positions are known; the training runs in tests/trainer/test_skyrl_options.py exercise the
same options with the real native backend.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import attrs
import pytest
from generator_doubles import ScriptedBackend

from skyrl_core.config.schema import ModelConfig
from skyrl_core.data.chat import ChatTokens, encode, prompt_token_ids, render
from skyrl_core.data.rows import load_prompt_rows
from skyrl_core.generator import ZEROED_REWARD, generate_batch
from skyrl_core.models.tiny import CHATML_TEMPLATE

# ChatML plus Qwen3's switch: with enable_thinking = false the generation prompt carries an empty think block.
THINKING_TEMPLATE = CHATML_TEMPLATE.replace(
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
    "{% if enable_thinking is defined and enable_thinking is false %}{{ '<think>\\n\\n</think>\\n\\n' }}{% endif %}"
    "{% endif %}",
)


def arith_row(a: int = 2, b: int = 3) -> dict[str, Any]:
    return {
        "prompt": [{"role": "user", "content": f"What is {a} + {b}?"}],
        "env_class": "arithmetic",
        "reward_spec": {"method": "rule", "ground_truth": str(a + b)},
    }


def run(backend, tokenizer, registry, cfg, rows, samples=1):
    return asyncio.run(
        generate_batch(rows, backend=backend, tokenizer=tokenizer, registry=registry, config=cfg,
                       samples_per_prompt=samples)
    )


# -- zero reward unless the answer finished ---------------------------------------------------------


@pytest.mark.parametrize("zero", [False, True])
def test_a_truncated_correct_answer_earns_nothing_with_zero_reward_on_non_stop(tokenizer, registry, make_cfg, zero):
    # "\boxed{5}" is complete within 12 tokens, but the reply goes on and is cut: finish "length"
    long_reply = "\\boxed{5} because two plus three is five, as anyone can count"
    budget = len(encode(tokenizer, "\\boxed{5}")) + 3
    backend = ScriptedBackend(tokenizer, lambda ctx, turn: long_reply if "2 + 3" in ctx else "\\boxed{9}")
    cfg = make_cfg(max_new_tokens=budget, zero_reward_on_non_stop=zero)
    batch = run(backend, tokenizer, registry, cfg, [arith_row(2, 3), arith_row(4, 5)])
    cut, short = batch.trajectories
    assert cut.finish_reason == "length" and short.finish_reason == "stop"
    assert short.reward == 1.0  # a finished answer keeps its reward
    if zero:
        assert cut.reward == 0.0 and cut.token_rewards == [0.0] * len(cut.response_ids)
        assert cut.extra[ZEROED_REWARD] == 1.0  # what it would have earned
        assert batch.metrics["reward/zeroed_non_stop"] == 0.5
        assert batch.metrics["reward/mean"] == 0.5
    else:
        assert cut.reward == 1.0 and ZEROED_REWARD not in cut.extra
        assert "reward/zeroed_non_stop" not in batch.metrics


def test_zero_reward_on_non_stop_also_covers_the_turn_limit(tokenizer, registry, make_cfg):
    """Multi-turn: an episode the generator stops at max_turns ends with finish reason 'length'."""
    backend = ScriptedBackend(tokenizer, lambda ctx, turn: "Let me look.")
    batch = run(backend, tokenizer, registry, make_cfg(max_turns=2, zero_reward_on_non_stop=True),
                [{"prompt": [{"role": "user", "content": "Find it."}], "env_class": "never_done"}])
    (t,) = batch.trajectories
    assert t.finish_reason == "length" and t.extra["cut_by"] == "max_turns"
    assert ZEROED_REWARD in t.extra and t.reward == 0.0
    assert batch.metrics["reward/zeroed_non_stop"] == 1.0


# -- chat_template_kwargs ------------------------------------------------------------------------------


@pytest.fixture
def thinking_tokenizer(tokenizer):
    tok = copy.deepcopy(tokenizer)
    tok.chat_template = THINKING_TEMPLATE
    return tok


def test_render_passes_the_template_variables(thinking_tokenizer):
    messages = [{"role": "user", "content": "Hi"}]
    plain = render(thinking_tokenizer, messages, add_generation_prompt=True)
    off = render(thinking_tokenizer, messages, add_generation_prompt=True, template_kwargs={"enable_thinking": False})
    assert off == plain + "<think>\n\n</think>\n\n"
    assert prompt_token_ids(thinking_tokenizer, messages, {"enable_thinking": False}) == encode(thinking_tokenizer, off)
    assert ChatTokens(thinking_tokenizer, {"enable_thinking": False}).prompt_ids(messages) == encode(
        thinking_tokenizer, off
    )


def test_generator_templates_every_turn_with_the_kwargs(thinking_tokenizer, registry, make_cfg, tiny_model_dir):
    replies = ["Let me look.", "FINAL answer"]
    backend = ScriptedBackend(thinking_tokenizer, lambda ctx, turn: replies[turn])
    cfg = make_cfg(max_turns=3)
    model = ModelConfig(path=str(tiny_model_dir), chat_template_kwargs={"enable_thinking": False})
    cfg = attrs.evolve(cfg, model=model)
    batch = run(backend, thinking_tokenizer, registry, cfg, [{"prompt": [{"role": "user", "content": "Find it."}],
                                                             "env_class": "echo"}])
    (t,) = batch.trajectories
    assert t.num_turns == 2 and t.finish_reason == "stop"
    text = thinking_tokenizer.decode(t.prompt_ids)
    assert text.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    # the second turn's generation prompt got the same empty think block
    context = thinking_tokenizer.decode(backend.requests[1].prompt_ids)
    assert context.endswith("Observation 1: ok<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n")


def test_the_length_filter_counts_the_templated_prompt_with_the_kwargs(thinking_tokenizer, tmp_path, registry):
    import json

    rows = [arith_row(i, i) for i in range(4)]
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    plain = prompt_token_ids(thinking_tokenizer, rows[0]["prompt"])
    with_kwargs = prompt_token_ids(thinking_tokenizer, rows[0]["prompt"], {"enable_thinking": False})
    assert len(with_kwargs) > len(plain)
    limit = len(plain)  # fits without the think block, not with it
    kept = load_prompt_rows([str(data)], tokenizer=thinking_tokenizer, max_prompt_tokens=limit, registry=registry)
    assert len(kept.rows) == 4
    dropped = load_prompt_rows([str(data)], tokenizer=thinking_tokenizer, max_prompt_tokens=limit, registry=registry,
                               template_kwargs={"enable_thinking": False})
    assert dropped.num_too_long == 4
