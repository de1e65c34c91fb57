"""Failing, raising, slow and malformed environments end their own trajectory only."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from generator_doubles import ScriptedBackend

from skyrl_core.generator import generate_batch
from skyrl_core.protocols.backend import GenerateRequest


def row(env: str, **extras: Any) -> dict[str, Any]:
    return {"prompt": [{"role": "user", "content": "What is 2 + 3?"}], "env_class": env, **extras}


GOOD = {**row("arithmetic"), "reward_spec": {"method": "rule", "ground_truth": "5"}}


def run(backend, tokenizer, registry, cfg, rows, samples=1):
    return asyncio.run(
        generate_batch(
            rows, backend=backend, tokenizer=tokenizer, registry=registry, config=cfg, samples_per_prompt=samples
        )
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ("raising", "raising: step raised RuntimeError: database connection lost"),
        ("init_raising", "init_raising: init raised KeyError"),
        ("slow", "slow: step timed out after 0.3 s (generator.env_timeout_s)"),
        ("slow_async", "slow_async: step timed out after 0.3 s"),
        ("bad_output", "bad_output: step() returned a non-numeric reward 'lots'"),
        ("bad_init", "bad_init: init() prompt message {'role': 'user'} must be a message"),
    ],
)
def test_failing_env_ends_its_trajectory_with_error_and_zero_reward(
    env, message, tokenizer, registry, make_cfg, release_slow_envs
):
    backend = ScriptedBackend(tokenizer, lambda ctx, turn: "\\boxed{5}")
    rows = [GOOD, row(env), GOOD]
    batch = run(backend, tokenizer, registry, make_cfg(env_timeout_s=0.3), rows, samples=2)
    assert len(batch) == 6
    for t in batch:
        t.check()
        if t.env_class == env:
            assert t.error is not None and t.error.startswith(message), t.error
            assert t.finish_reason == "error"
            assert t.reward == 0.0 and all(r == 0.0 for r in t.token_rewards)
        else:
            assert (t.error, t.finish_reason, t.reward) == (None, "stop", 1.0)
    assert batch.metrics["rollout/env_errors"] == 2.0
    assert batch.metrics["rollout/finish_reason/error"] == pytest.approx(2 / 6)
    assert batch.metrics["reward/arithmetic/mean"] == 1.0
    assert batch.metrics[f"reward/{env}/mean"] == 0.0


def test_arithmetic_env_without_ground_truth_is_a_recorded_error(tokenizer, registry, make_cfg):
    backend = ScriptedBackend(tokenizer, lambda ctx, turn: "\\boxed{5}")
    batch = run(backend, tokenizer, registry, make_cfg(), [row("arithmetic")])
    (t,) = batch.trajectories
    assert t.finish_reason == "error" and "reward_spec.ground_truth must be an integer" in t.error
    assert t.response_ids == [] and t.reward == 0.0


def test_backend_failure_is_raised_not_swallowed(tokenizer, registry, make_cfg):
    class BrokenBackend:
        """Test double: a backend whose generate() fails."""

        async def generate(self, requests: list[GenerateRequest]):
            raise RuntimeError("CUDA error: device lost")

    with pytest.raises(RuntimeError, match="device lost"):
        run(BrokenBackend(), tokenizer, registry, make_cfg(), [GOOD, GOOD], samples=3)


def test_unknown_env_class_in_plain_rows_is_a_data_error(tokenizer, registry, make_cfg):
    from skyrl_core.errors import DataError

    backend = ScriptedBackend(tokenizer, lambda ctx, turn: "x")
    with pytest.raises(DataError, match=r"no environment named 'arithmetik'\. Did you mean 'arithmetic'"):
        run(backend, tokenizer, registry, make_cfg(), [row("arithmetik")])


def test_env_thread_pool_is_kept_between_batches_and_retired_after_a_timeout(
    tokenizer, registry, make_cfg, release_slow_envs
):
    """The env thread pool outlives a batch (no thread start-up per step); a batch whose sync env call
    timed out in it retires it (the thread stuck in the hung env goes with it) and the next batch gets a
    new one; an async env's timeout leaves no thread behind and keeps the pool."""
    import threading

    from skyrl_core import generator

    backend = ScriptedBackend(tokenizer, lambda ctx, turn: "\\boxed{5}")
    cfg = make_cfg(env_timeout_s=0.3)
    run(backend, tokenizer, registry, cfg, [GOOD, GOOD])
    pools = list(generator._ENV_POOLS.values())  # held: ids of freed objects can come back
    threads = {t for t in threading.enumerate() if t.name.startswith("skyrl-env")}
    batch = run(backend, tokenizer, registry, cfg, [GOOD, GOOD])
    assert all(t.reward == 1.0 for t in batch)
    assert list(generator._ENV_POOLS.values()) == pools
    assert threads and threads <= set(threading.enumerate())  # still serving (a busy pool may add more)
    batch = run(backend, tokenizer, registry, cfg, [GOOD, row("slow_async")])  # a coroutine: no thread stuck
    assert [t.error is not None for t in batch] == [False, True]
    assert list(generator._ENV_POOLS.values()) == pools
    batch = run(backend, tokenizer, registry, cfg, [GOOD, row("slow")])
    assert [t.error is not None for t in batch] == [False, True]
    assert not any(p in pools for p in generator._ENV_POOLS.values())  # retired
    batch = run(backend, tokenizer, registry, cfg, [GOOD])
    assert batch.trajectories[0].reward == 1.0 and len(generator._ENV_POOLS) == 1
