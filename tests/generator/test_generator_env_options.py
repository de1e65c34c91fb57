"""What an environment may ask of the generator: its own time limit (``HasEnvTimeout``) and a
rewritten reply (``StepOutput.postprocessed_action``, SkyRL-Gym's convention).

Replies come from ``ScriptedBackend`` (a test double) so every token can be checked; the
tokenizer and chat template are the tiny model's real ones.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from generator_doubles import EnvsPlugin, ScriptedBackend

from skyrl_core.api import HasEnvTimeout, StepOutput, TextEnv, hookimpl
from skyrl_core.data.chat import encode
from skyrl_core.generator import generate_batch
from skyrl_core.specs import ComponentSpec
from skyrl_core.testing import fresh_registry


class OwnLimitEnv(TextEnv):
    """A sync step that takes ``extras['sleep']`` seconds, under its own ``env_timeout_s``."""

    def __init__(self, config: Any, extras: dict[str, Any]) -> None:
        super().__init__(config, extras)
        self.env_timeout_s = extras.get("limit")

    def step(self, action: str) -> StepOutput:
        time.sleep(self.extras["sleep"])
        return StepOutput(reward=1.0, done=True)


class RewritingEnv(TextEnv):
    """Replaces every reply by ``extras['rewrite']`` (as a dict, like SkyRL-Gym envs, when
    ``extras['as_dict']``); multi-turn until ``max_turns``, reward 0.5 per turn."""

    def step(self, action: str) -> Any:
        self.turns += 1
        done = self.turns >= self.max_turns
        obs = [] if done else [{"role": "user", "content": f"seen: {action}"}]
        rewrite = self.extras["rewrite"]
        if self.extras.get("as_dict"):
            return {"observations": obs, "reward": 0.5, "done": done, "metadata": {}, "postprocessed_action": rewrite}
        return StepOutput(observations=obs, reward=0.5, done=done, postprocessed_action=rewrite)


class BadRewriteEnv(TextEnv):
    """Returns a postprocessed_action that is not text."""

    def step(self, action: str) -> dict[str, Any]:
        return {"observations": [], "reward": 1.0, "done": True, "postprocessed_action": ["not", "text"]}


class OptionEnvs:
    @hookimpl
    def skyrl_register_environments(self) -> list[ComponentSpec]:
        return [
            ComponentSpec("own_limit", OwnLimitEnv, "sleeps under its own limit"),
            ComponentSpec("rewriting", RewritingEnv, "rewrites replies"),
            ComponentSpec("bad_rewrite", BadRewriteEnv, "a malformed rewrite"),
        ]


@pytest.fixture(scope="module")
def envs_registry():
    return fresh_registry(EnvsPlugin(), OptionEnvs())


def row(env: str, **extras: Any) -> dict[str, Any]:
    return {"prompt": [{"role": "user", "content": "What is 2 + 3?"}], "env_class": env, **extras}


def run(tokenizer, registry, cfg, rows, reply="\\boxed{5}"):
    backend = ScriptedBackend(tokenizer, lambda ctx, turn: reply)
    return asyncio.run(
        generate_batch(rows, backend=backend, tokenizer=tokenizer, registry=registry, config=cfg, samples_per_prompt=1)
    )


# -- env_timeout_s ---------------------------------------------------------------------------


def test_the_protocol_is_declared_by_the_attribute():
    assert isinstance(OwnLimitEnv(None, {"limit": 2.0}), HasEnvTimeout)
    assert not isinstance(RewritingEnv(None, {}), HasEnvTimeout)


def test_an_environment_limit_overrides_the_generator_limit_both_ways(tokenizer, envs_registry, make_cfg):
    cfg = make_cfg(env_timeout_s=0.3)
    rows = [
        row("own_limit", sleep=0.6, limit=5.0),  # slower than the generator's 0.3 s, within its own 5 s
        row("own_limit", sleep=1.0, limit=0.2),  # its own, shorter limit applies
        row("own_limit", sleep=0.6, limit=None),  # None: the generator's 0.3 s
    ]
    started = time.monotonic()
    batch = run(tokenizer, envs_registry, cfg, rows)
    assert time.monotonic() - started < 5  # the timed-out steps did not hold the batch up
    ok, own, default = batch.trajectories
    assert (ok.error, ok.finish_reason, ok.reward) == (None, "stop", 1.0)
    assert own.error == "own_limit: step timed out after 0.2 s (env_timeout_s of OwnLimitEnv)"
    assert (own.finish_reason, own.reward) == ("error", 0.0)
    assert default.error == "own_limit: step timed out after 0.3 s (generator.env_timeout_s)"
    assert batch.metrics["rollout/env_errors"] == 2.0


@pytest.mark.parametrize("bad", [0, -1.0, float("inf"), "10", True])
def test_a_bad_environment_limit_fails_its_trajectory(bad, tokenizer, envs_registry, make_cfg):
    (t,) = run(tokenizer, envs_registry, make_cfg(), [row("own_limit", sleep=0.0, limit=bad)]).trajectories
    assert t.finish_reason == "error"
    assert t.error == (
        f"own_limit: OwnLimitEnv.env_timeout_s must be a positive number of seconds or None, got {bad!r}"
    )


# -- postprocessed_action --------------------------------------------------------------------


@pytest.mark.parametrize("as_dict", [False, True])
def test_postprocessed_action_replaces_the_reply_tokens_and_text(as_dict, tokenizer, envs_registry, make_cfg):
    reply, rewrite = "\\boxed{5} because 2 + 3 = 5", "\\boxed{5}"
    (t,) = run(
        tokenizer, envs_registry, make_cfg(), [row("rewriting", rewrite=rewrite, as_dict=as_dict)], reply=reply
    ).trajectories
    t.check()
    sampled = [*encode(tokenizer, reply), tokenizer.eos_token_id]
    new = [*encode(tokenizer, rewrite), tokenizer.eos_token_id]  # the end-of-turn token the model sampled stays
    assert (t.error, t.finish_reason, t.num_turns) == (None, "stop", 1)
    assert t.response_ids == new
    assert t.loss_mask == [1] * len(new)
    same = next(i for i, (a, b) in enumerate(zip(new, sampled, strict=False)) if a != b)
    assert same > 0  # the shared prefix keeps the engine's log-probs, the rest is 0.0
    assert t.rollout_logprobs == [-(i + 1) / 100 for i in range(same)] + [0.0] * (len(new) - same)
    assert t.token_rewards == [0.0] * (len(new) - 1) + [0.5]
    assert t.messages[-1] == {"role": "assistant", "content": rewrite}
    assert t.extra["postprocessed_turns"] == 1
    assert t.extra["retokenize_drift"] is False  # tokens and conversation agree


def test_postprocessed_action_in_a_multi_turn_episode(tokenizer, envs_registry, make_cfg):
    rows = [row("rewriting", rewrite="SHORT", max_turns=2), row("arithmetic", reward_spec={"ground_truth": "5"})]
    batch = run(tokenizer, envs_registry, make_cfg(max_turns=2), rows, reply="a long reply that gets replaced")
    t, untouched = batch.trajectories
    t.check()
    assert (t.error, t.num_turns) == (None, 2)
    assert [m["content"] for m in t.messages if m["role"] == "assistant"] == ["SHORT", "SHORT"]
    # the observation quotes the reply the environment saw, not the rewrite
    assert t.messages[2] == {"role": "user", "content": "seen: a long reply that gets replaced"}
    assert t.extra["postprocessed_turns"] == 2 and t.extra["retokenize_drift"] is False
    assert sum(t.token_rewards) == pytest.approx(1.0)
    assert "postprocessed_turns" not in untouched.extra
    assert batch.metrics["rollout/postprocessed_actions"] == 0.5


def test_an_unchanged_or_absent_postprocessed_action_keeps_the_sampled_tokens(tokenizer, envs_registry, make_cfg):
    (same,) = run(tokenizer, envs_registry, make_cfg(), [row("rewriting", rewrite="\\boxed{5}")]).trajectories
    assert same.rollout_logprobs == [-(i + 1) / 100 for i in range(len(same.response_ids))]
    assert "postprocessed_turns" not in same.extra
    batch = run(tokenizer, envs_registry, make_cfg(), [row("echo")])
    assert "rollout/postprocessed_actions" not in batch.metrics


def test_a_postprocessed_action_longer_than_the_budget_is_cut(tokenizer, envs_registry, make_cfg):
    rewrite = "word " * 400
    (t,) = run(
        tokenizer, envs_registry, make_cfg(max_total_tokens=120, max_turns=3), [row("rewriting", rewrite=rewrite)]
    ).trajectories
    t.check()
    assert len(t.prompt_ids) + len(t.response_ids) == 120
    assert (t.finish_reason, t.extra["cut_by"], t.num_turns) == ("length", "max_total_tokens", 1)
    assert t.token_rewards[-1] == 0.5


def test_a_postprocessed_action_that_is_not_text_fails_the_trajectory(tokenizer, envs_registry, make_cfg):
    (t,) = run(tokenizer, envs_registry, make_cfg(), [row("bad_rewrite")]).trajectories
    assert t.finish_reason == "error"
    assert t.error == "bad_rewrite: step() returned a postprocessed_action that is not text: list"
