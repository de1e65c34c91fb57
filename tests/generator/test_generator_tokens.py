"""Token accounting of the generator: single- and multi-turn, stop strings, limits, drift, metrics.

The replies come from ``ScriptedBackend`` (a test double, see conftest.py) so that every
token position can be checked; the tokenizer and chat template are the tiny model's real ones.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from generator_doubles import ScriptedBackend

from skyrl_core.data.chat import encode, prompt_token_ids, render
from skyrl_core.generator import Generator, generate_batch, sampling_params


def row(env: str, content: str = "What is 2 + 3?", **extras: Any) -> dict[str, Any]:
    return {"prompt": [{"role": "user", "content": content}], "env_class": env, **extras}


def arith_row(a: int = 2, b: int = 3) -> dict[str, Any]:
    return {**row("arithmetic", f"What is {a} + {b}?"), "reward_spec": {"method": "rule", "ground_truth": str(a + b)}}


def run(backend, tokenizer, registry, cfg, rows, samples=1, **kw):
    return asyncio.run(
        generate_batch(
            rows, backend=backend, tokenizer=tokenizer, registry=registry, config=cfg, samples_per_prompt=samples, **kw
        )
    )


def test_single_turn_reward_on_last_token_and_prompt_templated_once(tokenizer, registry, make_cfg):
    backend = ScriptedBackend(tokenizer, lambda ctx, turn: "\\boxed{5}")
    batch = run(backend, tokenizer, registry, make_cfg(), [arith_row()], samples=2)
    assert len(batch) == 2 and [t.group_id for t in batch] == [0, 0]
    for t in batch:
        t.check()
        assert t.prompt_ids == prompt_token_ids(tokenizer, row("arithmetic", "What is 2 + 3?")["prompt"])
        assert t.response_ids == [*encode(tokenizer, "\\boxed{5}"), tokenizer.eos_token_id]
        assert t.loss_mask == [1] * len(t.response_ids)
        assert t.rollout_logprobs == [-(i + 1) / 100 for i in range(len(t.response_ids))]
        assert t.token_rewards == [0.0] * (len(t.response_ids) - 1) + [1.0]
        assert (t.finish_reason, t.num_turns, t.error) == ("stop", 1, None)
        assert t.messages[-1] == {"role": "assistant", "content": "\\boxed{5}"}
    assert batch.metrics["reward/mean"] == 1.0
    assert batch.metrics["reward/arithmetic/correct"] == 1.0
    assert batch.metrics["rollout/finish_reason/stop"] == 1.0
    assert batch.metrics["rollout/retokenize_drift"] == 0.0


def test_multi_turn_tokens_concatenate_exactly(tokenizer, registry, make_cfg):
    replies = ["Let me look.", "Still looking.", "FINAL answer"]
    backend = ScriptedBackend(tokenizer, lambda ctx, turn: replies[turn])
    batch = run(backend, tokenizer, registry, make_cfg(max_turns=5), [row("echo", "Find it.")])
    (t,) = batch.trajectories
    t.check()
    assert (t.num_turns, t.finish_reason, t.error) == (3, "stop", None)

    # The token sequence is exactly the chat template of the final conversation (minus the
    # template's trailing newline after the last <|im_end|>).
    expected = encode(tokenizer, render(tokenizer, t.messages, add_generation_prompt=False))
    ours = t.prompt_ids + t.response_ids
    assert ours == expected[: len(ours)]
    assert tokenizer.decode(expected[len(ours) :]) == "\n"
    assert [m["role"] for m in t.messages] == ["user", "assistant", "user", "assistant", "user", "assistant"]

    # Each request's prompt is the previous context, token for token (never re-tokenized).
    requests = [list(r.prompt_ids) for r in backend.requests]
    assert requests[0] == t.prompt_ids
    for req in requests[1:]:
        assert ours[: len(req)] == req

    # Loss mask: 1 on exactly the model tokens; the rest are template + observation tokens.
    model_turns, i = [], 0
    mask, resp = t.loss_mask, t.response_ids
    while i < len(resp):
        j = i
        while j < len(resp) and mask[j] == mask[i]:
            j += 1
        model_turns.append((mask[i], resp[i:j], t.rollout_logprobs[i:j], t.token_rewards[i:j]))
        i = j
    assert [m for m, *_ in model_turns] == [1, 0, 1, 0, 1]
    for k, (_, ids, lps, rewards) in enumerate(model_turns[::2]):
        assert ids == [*encode(tokenizer, replies[k]), tokenizer.eos_token_id]
        assert lps == [-(n + 1) / 100 for n in range(len(ids))]
        assert rewards[:-1] == [0.0] * (len(ids) - 1)
        assert rewards[-1] == pytest.approx([0.1, 0.1, 1.0][k])
    for n, (_, ids, lps, rewards) in enumerate(model_turns[1::2], start=1):
        assert tokenizer.decode(ids) == f"\n<|im_start|>user\nObservation {n}: ok<|im_end|>\n<|im_start|>assistant\n"
        assert lps == [0.0] * len(ids) and rewards == [0.0] * len(ids)
    assert t.reward == pytest.approx(1.2)
    assert batch.metrics["rollout/retokenize_drift"] == 0.0
    assert batch.metrics["reward/echo/turns"] == 3.0
    assert batch.metrics["rollout/num_turns/mean"] == 3.0


def test_stop_string_turn_gets_template_end_of_turn(tokenizer, registry, make_cfg):
    replies = ["run <call>ls</call> and ignore this", "FINAL"]
    backend = ScriptedBackend(tokenizer, lambda ctx, turn: replies[turn])
    batch = run(backend, tokenizer, registry, make_cfg(max_turns=3, stop=["STOPNEVER"]), [row("stopstr")])
    (t,) = batch.trajectories
    assert backend.requests[0].params.stop == ("STOPNEVER", "</call>")
    assert t.messages[1]["content"] == "run <call>ls</call>"
    first = t.loss_mask.index(0)
    # The model stopped on the stop string (no end-of-turn token): <|im_end|> is inserted, mask 0.
    assert t.response_ids[first - 1] != tokenizer.eos_token_id
    assert t.response_ids[first] == tokenizer.eos_token_id and t.rollout_logprobs[first] == 0.0
    assert batch.metrics["rollout/retokenize_drift"] == 0.0
    assert t.reward == pytest.approx(1.1)


def test_drift_metric_counts_non_canonical_tokenizations(tokenizer, registry, make_cfg):
    word = "What"
    canonical = encode(tokenizer, word)
    spelled = [encode(tokenizer, ch)[0] for ch in word]  # same text, other tokens
    assert len(canonical) == 1 and tokenizer.decode(spelled) == word

    def script(ctx: str, turn: int):
        return spelled if "odd" in ctx else canonical

    rows = [row("echo", "even"), row("echo", "odd"), row("echo", "even too"), row("echo", "even 3")]
    batch = run(ScriptedBackend(tokenizer, script), tokenizer, registry, make_cfg(), rows)
    drifted = [t.extra["retokenize_drift"] for t in batch]
    assert drifted == [False, True, False, False]
    assert batch.metrics["rollout/retokenize_drift"] == 0.25


def test_total_length_limit_truncates_the_last_generation(tokenizer, registry, make_cfg):
    prompt_len = len(prompt_token_ids(tokenizer, row("echo")["prompt"]))
    limit = prompt_len + 12
    replies = ["one two three", "four five six seven eight nine ten eleven twelve"]
    backend = ScriptedBackend(tokenizer, lambda ctx, turn: replies[min(turn, 1)])
    batch = run(backend, tokenizer, registry, make_cfg(max_turns=4, max_total_tokens=limit), [row("echo")])
    (t,) = batch.trajectories
    assert len(t.prompt_ids) + len(t.response_ids) <= limit
    assert t.finish_reason == "length"
    assert backend.requests[-1].params.max_new_tokens < make_cfg().generator.max_new_tokens


def test_turn_limit_of_the_generator_and_of_the_row(tokenizer, registry, make_cfg):
    backend = ScriptedBackend(tokenizer, lambda ctx, turn: f"try {turn}")
    rows = [row("never_done"), row("never_done", max_turns=3)]
    batch = run(backend, tokenizer, registry, make_cfg(max_turns=2), rows)
    first, second = batch.trajectories
    assert (first.num_turns, first.finish_reason, first.extra["cut_by"]) == (2, "length", "max_turns")
    assert second.num_turns == 3  # the row's own max_turns column wins
    # Envs that honour max_turns see the effective value in extras and end themselves.
    batch = run(backend, tokenizer, registry, make_cfg(max_turns=2), [row("echo")])
    assert (batch.trajectories[0].num_turns, batch.trajectories[0].finish_reason) == (2, "stop")


def test_many_trajectories_in_flight_and_requests_batched(tokenizer, registry, make_cfg):
    backend = ScriptedBackend(tokenizer, lambda ctx, turn: "FINAL" if turn == 2 else "step")
    rows = [row("async_tool", f"q{i}") for i in range(8)]
    batch = run(backend, tokenizer, registry, make_cfg(max_turns=3, max_concurrent=64), rows, samples=4)
    assert len(batch) == 32 and [t.group_id for t in batch] == [g for g in range(8) for _ in range(4)]
    assert all(t.num_turns == 3 and t.reward == 0.5 for t in batch)
    assert len(backend.requests) == 96
    assert backend.calls < 96 / 4  # concurrent trajectories share generate() calls
    # With one trajectory at a time the results are identical.
    serial = ScriptedBackend(tokenizer, lambda ctx, turn: "FINAL" if turn == 2 else "step")
    again = run(serial, tokenizer, registry, make_cfg(max_turns=3, max_concurrent=1), rows, samples=4)
    assert [t.response_ids for t in again] == [t.response_ids for t in batch]
    assert serial.calls == 96


def test_sampling_params_from_config(tokenizer, registry, make_cfg):
    cfg = make_cfg(temperature=0.7, top_p=0.9, top_k=5, max_new_tokens=17, stop=["###"])
    gen = Generator(ScriptedBackend(tokenizer, lambda c, t: "x"), tokenizer, registry, cfg)
    p = sampling_params(cfg, gen.chat)
    assert (p.temperature, p.top_p, p.top_k, p.max_new_tokens, p.stop) == (0.7, 0.9, 5, 17, ("###",))
    assert tokenizer.eos_token_id in p.stop_token_ids
    e = sampling_params(cfg, gen.chat, for_eval=True)
    assert (e.temperature, e.top_k, e.max_new_tokens) == (0.0, -1, 17)
    gen.close()
    # Each sample of a prompt gets its own seed; the same (row, sample, turn) always the same one.
    backend = ScriptedBackend(tokenizer, lambda c, t: "x")
    run(backend, tokenizer, registry, cfg, [row("echo")], samples=3)
    seeds = [r.params.seed for r in backend.requests]
    assert len(set(seeds)) == 3
    backend2 = ScriptedBackend(tokenizer, lambda c, t: "x")
    run(backend2, tokenizer, registry, cfg, [row("echo")], samples=3)
    assert [r.params.seed for r in backend2.requests] == seeds
