"""skyrl-gym environments under skyrl's real generator: the native backend on a tiny local model,
one step's rollouts collected as a training run does. A slow environment fails its own
trajectories at its own time limit; a rewritten reply replaces the model's in the trajectory."""

from __future__ import annotations

import time

import pytest
from skyrlgym_support import DIST, gsm8k_rows, needs_skyrl_gym, write_run

from skyrl_core.api import load_config
from skyrl_core.testing import collect_rollouts, generation_run

pytestmark = needs_skyrl_gym


def test_a_slow_environment_fails_its_trajectories_at_its_own_limit(gym_registry, gym_model_dir, tmp_path):
    from skyrlgym_test_envs import RELEASE

    slow = {**gsm8k_rows()[0], "env_class": f"{DIST}:test_slow", "sleep": 30}  # the qualified name, in the data
    rows = [slow, gsm8k_rows()[1]]
    path = write_run(
        tmp_path, gym_model_dir, rows,
        data=f'shuffle = false\nenv_map = {{ gsm8k = "{DIST}:gsm8k" }}',
        extra=f'\n[environments."{DIST}:test_slow"]\nenv_timeout_s = 0.5\n',
    )
    cfg = load_config(path, ["trainer.prompts_per_step=2"], gym_registry)
    assert cfg.generator.env_timeout_s == 60  # the run's limit; test_slow has its own
    RELEASE.clear()
    try:
        with generation_run(cfg, gym_registry) as run:
            started = time.monotonic()
            batch = collect_rollouts(run)
            elapsed = time.monotonic() - started
    finally:
        RELEASE.set()  # let the abandoned step threads return
    assert elapsed < 20, "the run waited for the slow environment"
    by_env = {t.env_class: [] for t in batch}
    for t in batch:
        by_env[t.env_class].append(t)
    assert sorted(by_env) == [f"{DIST}:gsm8k", f"{DIST}:test_slow"]
    for t in by_env[f"{DIST}:test_slow"]:
        assert t.error == f"{DIST}:test_slow: step timed out after 0.5 s (env_timeout_s of SkyRLGymEnv[test_slow])"
        assert (t.finish_reason, t.reward) == ("error", 0.0)
    for t in by_env[f"{DIST}:gsm8k"]:
        assert t.error is None and t.finish_reason in ("stop", "length")
    assert batch.metrics["rollout/env_errors"] == 2.0


def test_rewritten_replies_per_turn_rewards_and_metadata_reach_the_trajectory(gym_registry, gym_model_dir, tmp_path):
    rows = [{**r, "env_class": f"{DIST}:test_rewrite", "max_turns": 2} for r in gsm8k_rows()[:2]]
    path = write_run(tmp_path, gym_model_dir, rows, generator="max_turns = 2")
    cfg = load_config(path, ["trainer.prompts_per_step=2"], gym_registry)
    with generation_run(cfg, gym_registry) as run:
        batch = collect_rollouts(run)
        tokenizer = run.tokenizer
    assert len(batch) == 4 and batch.metrics["rollout/postprocessed_actions"] == 1.0
    for t in batch:
        t.check()
        assert (t.error, t.num_turns) == (None, 2)
        kept = [m["kept"] for m in t.extra["step_metadata"]]
        assert [m["turn"] for m in t.extra["step_metadata"]] == [1, 2]
        assert all(k.startswith("[") and k.endswith("]") for k in kept)
        assert [m["content"] for m in t.messages if m["role"] == "assistant"] == kept
        assert t.messages[t.extra["prompt_messages"] + 1] == {"role": "user", "content": "Turn 1 seen."}
        # the trained tokens are the rewritten replies' tokens; each turn's reward sits on its last token
        turns, current = [], []
        for token, mask in zip(t.response_ids, t.loss_mask, strict=True):
            if mask:
                current.append(token)
            elif current:
                turns.append(current)
                current = []
        turns.append(current)
        assert [tokenizer.decode(ids, skip_special_tokens=True) for ids in turns] == kept
        rewards = [r for r in t.token_rewards if r]
        assert rewards == [0.25, 0.5] and t.reward == pytest.approx(0.75)
        assert t.extra["retokenize_drift"] is False
