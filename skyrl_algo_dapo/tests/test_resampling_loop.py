"""Dynamic sampling inside the real loop: one step's collection with the native backend, a
tiny model, the real generator, and an environment whose rewards the test scripts per prompt.

The environment ``scripted`` gives the ``i``-th sample of a prompt the reward ``rewards[i]`` of
that row, so the test decides which prompts are informative; the loader walks the rows in
order, so it also knows which prompts each sampling round draws.
"""

from __future__ import annotations

import contextlib
import json
from collections import defaultdict
from pathlib import Path
from typing import Any, ClassVar

import pytest
import tomllib
from skyrl_algo_dapo.dynamic_sampling import DynamicSamplingError
from skyrl_algo_dapo.overlong import RAW_REWARD

from skyrl_algo_dapo import plugin
from skyrl_core.api import ComponentSpec, StepOutput, TextEnv, hookimpl, parse_config
from skyrl_core.testing import collect_rollouts, fresh_registry, generation_run

SAMPLES = 2


class ScriptedEnv(TextEnv):
    """Test environment: the n-th sample of row ``extra_info.id`` earns ``rewards[n]`` of that row."""

    handed_out: ClassVar[dict[int, int]] = defaultdict(int)

    def step(self, action: str) -> StepOutput:
        self.turns += 1
        row_id = self.extras["extra_info"]["id"]
        n = ScriptedEnv.handed_out[row_id]
        ScriptedEnv.handed_out[row_id] += 1
        rewards = self.extras["rewards"]
        return StepOutput(reward=float(rewards[n % len(rewards)]), done=True)


class ScriptedEnvPlugin:
    @hookimpl
    def skyrl_register_environments(self) -> list[ComponentSpec]:
        return [ComponentSpec("scripted", ScriptedEnv, "Test environment: rewards scripted per row.")]


def write_rows(path: Path, rewards: list[list[float]]) -> Path:
    with path.open("w") as f:
        for i, r in enumerate(rewards):
            row = {"prompt": [{"role": "user", "content": f"What is {i} + {i}?"}], "env_class": "scripted",
                   "extra_info": {"id": i}, "rewards": r}
            f.write(json.dumps(row) + "\n")
    return path


@pytest.fixture
def make_run(tiny_model_dir, tmp_path):
    """``make_run(rewards, dapo_toml)``: a run with a real backend over rows scripted by ``rewards``."""
    stack = contextlib.ExitStack()
    ScriptedEnv.handed_out.clear()

    def make(rewards: list[list[float]], dapo: str, prompts_per_step: int = 2) -> Any:
        data = write_rows(tmp_path / "rows.jsonl", rewards)
        # run.seed = 1: the sampling seeds under which the tiny random model runs into max_new_tokens
        # on every sample (the overlong-shaping checks below rely on it)
        toml = (
            f'[run]\nseed = 1\ndir = "{tmp_path / "run"}"\n'
            f'[model]\npath = "{tiny_model_dir}"\ndevice = "cpu"\n'
            f'[data]\ntrain = ["{data}"]\nshuffle = false\nmax_prompt_tokens = 64\n'
            "[generator]\nmax_new_tokens = 4\nmax_total_tokens = 96\n"
            f"[trainer]\nprompts_per_step = {prompts_per_step}\nsamples_per_prompt = {SAMPLES}\n" + dapo
        )
        registry = fresh_registry(plugin, ScriptedEnvPlugin())
        cfg = parse_config(tomllib.loads(toml), registry=registry)
        return stack.enter_context(generation_run(cfg, registry))

    with stack:
        yield make


def row_ids(batch: Any) -> list[int]:
    return [int(g[0].uid) for g in batch.groups().values()]


def test_quota_is_reached_with_fresh_prompts(make_run):
    # rows 1 and 3 are informative; 0 and 2 are all-wrong and all-right
    run = make_run([[0, 0], [1, 0], [1, 1], [0, 1], [1, 0], [0, 0]], "[dapo]\n")
    batch = collect_rollouts(run)

    assert row_ids(batch) == [1, 3]
    assert sorted(batch.groups()) == [0, 1] and len(batch) == 2 * SAMPLES
    assert all(len(g) == SAMPLES for g in batch.groups().values())
    assert sorted(t.extra[RAW_REWARD] for t in batch) == [0.0, 0.0, 1.0, 1.0]
    assert run.train_loader.position == 4  # two rounds of two prompts
    m = batch.metrics
    assert (m["dapo/sampling_rounds"], m["dapo/prompts_sampled"], m["dapo/filter_rate"]) == (2.0, 4.0, 0.5)
    assert m["reward/mean"] == pytest.approx(4 / 8)  # everything sampled: 1+0 + 1+1, 0+1 + 1+0 ... over 8
    # the tiny random model runs into max_new_tokens: overlong shaping saw every sample
    assert all(t.finish_reason == "length" for t in batch)
    assert all(not any(t.loss_mask) for t in batch)
    assert all(t.reward == pytest.approx(t.extra[RAW_REWARD] - 1.0) for t in batch)
    assert m["dapo/overlong_filtered_frac"] == 1.0


def test_round_limit_hit_is_a_clear_error(make_run):
    run = make_run([[0, 0], [1, 1], [0, 0], [1, 0], [0, 0], [1, 1]], "[dapo]\nmax_sampling_rounds = 2\n",
                   prompts_per_step=3)
    with pytest.raises(DynamicSamplingError) as err:
        collect_rollouts(run)
    text = str(err.value)
    assert "after 2 sampling round(s) of 3 prompts (6 groups of 2 samples)" in text
    assert "only 1 of the step's 3 groups were informative" in text
    assert "Observed informative fraction: 0.167 (1/6)" in text
    assert "3 at 0, 2 at 1" in text


def test_without_dynamic_sampling_the_loop_samples_once(make_run):
    run = make_run([[0, 0], [1, 0], [1, 1], [0, 1]], "[dapo]\ndynamic_sampling = false\n")
    batch = collect_rollouts(run)
    assert row_ids(batch) == [0, 1] and "dapo/filter_rate" not in batch.metrics
    assert batch.metrics["dapo/overlong_filtered_frac"] == 1.0  # shaping still on
