"""2-step GRPO runs with ``backend = "vllm"`` on CPU (full and LoRA): examples/cpu_tiny.toml, made small.

The real loop end to end: tiny model built locally, arithmetic data generated, rollouts
from a real in-process vLLM engine, two policy updates with a weight sync into the engine
after each, a checkpoint and an export. The engine's log-probs must agree with the
trainer's before training (the loop's start-up check) and again in step 2, which samples
from the engine after step 1's weights were synced: that only holds if the engine really
runs the updated policy.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from vllm_support import needs_vllm

pytestmark = [needs_vllm, pytest.mark.slow]

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "cpu_tiny.toml"


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_two_grpo_steps_with_vllm(tmp_path, lora):
    """With ``lora`` the engine gets only the adapter (vLLM LoRA), so step 2's agreement shows
    it really serves the synced adapter (skipping the load gives a difference of ~1.6 there)."""
    from safetensors.torch import load_file

    from skyrl_core.api import build_registry, load_config
    from skyrl_core.testing import train

    registry = build_registry()
    overrides = [
        f"run.dir={tmp_path / 'run'}",
        f"model.path={tmp_path / 'model'}",
        f"data.train=['{tmp_path / 'data' / 'train.parquet'}']",
        f"data.eval=['{tmp_path / 'data' / 'eval.parquet'}']",
        "model.tiny.layers=2",
        "trainer.steps=2",
        "trainer.prompts_per_step=4",
        "trainer.samples_per_prompt=4",
        "eval.every=0",
        "eval.max_rows=8",
        "tracking.plot=false",
        # A random tiny model earns no reward (no policy gradient): an entropy bonus and a large
        # learning rate move the weights, so step 2's rollouts depend on step 1's sync.
        "algorithm.entropy_coef=0.5",
        "trainer.lr=0.05" if lora else "trainer.lr=0.01",
        *(["model.lora.rank=8", "model.lora.alpha=16"] if lora else []),
    ]
    cfg = load_config(EXAMPLE, overrides, registry)
    assert cfg.backend.name == "vllm"
    train(cfg, registry)

    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    start = next(r for r in rows if "startup/logprob_diff_max" in r)
    assert start["startup/logprob_diff_max"] < 1e-3, "engine and trainer disagree before training"
    steps = {r["step"]: r for r in rows if "policy/rollout_logprob_diff_max" in r}
    assert sorted(steps) == [1, 2]
    assert all(math.isfinite(r["policy/loss"]) for r in steps.values())
    assert all(r["timing/weight_sync"] > 0 for r in steps.values())
    assert steps[2]["policy/rollout_logprob_diff_max"] < 1e-3, steps[2]
    if lora:
        assert all(r["weight_sync/adapter"] == 1.0 for r in steps.values())  # only the adapter was sent
        return  # the export is the merged model; the full run checks that weights moved

    before = load_file(str(tmp_path / "model" / "model.safetensors"))
    after = load_file(str(tmp_path / "run" / "export" / "model.safetensors"))
    moved = max((after[n].float() - before[n].float()).abs().max().item() for n in before if n in after)
    assert moved > 1e-3, "the policy did not change, so the weight sync was not exercised"
