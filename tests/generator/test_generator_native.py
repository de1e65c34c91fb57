"""The generator on the real native backend and tiny model: multi-turn arithmetic with retries.

Checks token accounting end to end with real sampling: requests extend the previous
context token for token, observation tokens carry mask 0 and log-prob 0, and the rollout
log-probs of model tokens equal a teacher-forced forward pass of the same weights.
"""

from __future__ import annotations

import asyncio

import attrs
import torch

from skyrl_core.config.schema import EvalConfig, GeneratorConfig, ModelConfig, RunConfig
from skyrl_core.data.chat import ChatTokens
from skyrl_core.envs.arithmetic import RETRY_MESSAGE
from skyrl_core.generator import generate_batch, sampling_params


class Recording:
    """Forwards to the real backend and keeps the requests (not a double: nothing is replaced)."""

    def __init__(self, backend) -> None:
        self.backend, self.requests = backend, []

    async def generate(self, requests):
        self.requests += list(requests)
        return await self.backend.generate(requests)


def rows(n: int) -> list[dict]:
    return [
        {
            "prompt": [{"role": "user", "content": f"What is {i} + {i}?"}],
            "env_class": "arithmetic",
            "reward_spec": {"method": "rule", "ground_truth": str(2 * i)},
            "data_source": "doubles",
        }
        for i in range(n)
    ]


def segments(mask: list[int]) -> list[tuple[int, int, int]]:
    """(mask value, start, end) runs."""
    out, i = [], 0
    while i < len(mask):
        j = i
        while j < len(mask) and mask[j] == mask[i]:
            j += 1
        out.append((mask[i], i, j))
        i = j
    return out


def test_multi_turn_on_native_backend(native, tokenizer, registry, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    cfg = RunConfig(
        model=ModelConfig(path=str(tiny_model_dir)),
        generator=GeneratorConfig(max_new_tokens=8, max_turns=3, temperature=1.0, max_total_tokens=256),
    )
    backend = Recording(native)
    batch = asyncio.run(
        generate_batch(
            rows(4), backend=backend, tokenizer=tokenizer, registry=registry, config=cfg, samples_per_prompt=2
        )
    )
    assert len(batch) == 8
    assert any(t.num_turns == 3 for t in batch)  # a random model is wrong, so it gets retries
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    for t in batch:
        t.check()
        assert t.error is None and t.finish_reason in ("stop", "length")
        ids = t.prompt_ids + t.response_ids
        runs = segments(t.loss_mask)
        assert sum(1 for m, _, _ in runs if m == 1) == t.num_turns
        for m, start, end in runs:
            if m == 0:
                text = tokenizer.decode(t.response_ids[start:end])
                assert text.endswith(f"<|im_start|>user\n{RETRY_MESSAGE}<|im_end|>\n<|im_start|>assistant\n")
                assert t.rollout_logprobs[start:end] == [0.0] * (end - start)
            else:
                assert all(lp < 0 for lp in t.rollout_logprobs[start:end])
        rewarded = [i for i, r in enumerate(t.token_rewards) if r != 0]
        assert all(t.loss_mask[i] == 1 and (i + 1 == len(t.loss_mask) or t.loss_mask[i + 1] == 0) for i in rewarded)
        # Teacher-forced log-probs of the model tokens match the engine's (temperature 1).
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0].float()
        logp = torch.log_softmax(logits[:-1], dim=-1)[torch.arange(len(ids) - 1), torch.tensor(ids[1:])]
        ours = torch.tensor(t.rollout_logprobs)
        mask = torch.tensor(t.loss_mask, dtype=torch.bool)
        forced = logp[len(t.prompt_ids) - 1 :]
        torch.testing.assert_close(ours[mask], forced[mask], atol=2e-3, rtol=0)
    # Each request is the previous context extended, token for token.
    full = {tuple(t.prompt_ids + t.response_ids) for t in batch}
    for req in backend.requests:
        assert any(seq[: len(req.prompt_ids)] == req.prompt_ids for seq in full)
    assert 0.0 <= batch.metrics["rollout/retokenize_drift"] <= 1.0
    assert batch.metrics["reward/arithmetic/turns"] > 1.0


def test_seeded_sampling_is_reproducible_and_eval_is_greedy(native, tokenizer, registry, tiny_model_dir):
    cfg = RunConfig(
        model=ModelConfig(path=str(tiny_model_dir)),
        generator=GeneratorConfig(max_new_tokens=6, temperature=1.0),
        eval=EvalConfig(temperature=0.0),
    )

    def gen(**kw):
        return asyncio.run(
            generate_batch(rows(3), backend=native, tokenizer=tokenizer, registry=registry, config=cfg, **kw)
        )

    first, second = gen(samples_per_prompt=3), gen(samples_per_prompt=3)
    assert [t.response_ids for t in first] == [t.response_ids for t in second]
    assert len({tuple(t.response_ids) for t in first}) > 1
    greedy = gen(samples_per_prompt=2, for_eval=True)
    for a, b in zip(greedy.trajectories[::2], greedy.trajectories[1::2], strict=True):
        assert a.response_ids == b.response_ids



def test_ignore_eos_runs_every_turn_to_max_new_tokens(native, tokenizer, registry, tiny_model_dir):
    """``[generator] ignore_eos``: training rollouts pass no stop token ids, so the real backend
    samples through EOS / end-of-turn tokens up to ``max_new_tokens``; eval still stops at them."""
    # A high temperature makes the draws nearly uniform, so some sample meets a stop token.
    cfg = RunConfig(
        model=ModelConfig(path=str(tiny_model_dir)),
        generator=GeneratorConfig(max_new_tokens=96, temperature=50.0, ignore_eos=True, max_total_tokens=256),
    )
    batch = asyncio.run(
        generate_batch(
            rows(4), backend=native, tokenizer=tokenizer, registry=registry, config=cfg, samples_per_prompt=4
        )
    )
    chat = ChatTokens(tokenizer)
    stops = set(chat.stop_token_ids())
    assert stops
    assert all(len(t.response_ids) == 96 and t.finish_reason == "length" for t in batch)
    assert any(stops & set(t.response_ids[:-1]) for t in batch)  # it went on past a stop token
    assert sampling_params(cfg, chat).stop_token_ids == ()
    assert set(sampling_params(cfg, chat, for_eval=True).stop_token_ids) == stops
    plain = attrs.evolve(cfg, generator=attrs.evolve(cfg.generator, ignore_eos=False))
    assert set(sampling_params(plain, chat).stop_token_ids) == stops
