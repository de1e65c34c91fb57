"""A 2-step GRPO run with ``backend = "sglang"`` on CPU: examples/cpu_smoke.toml, made small.

The real loop end to end: tiny model built locally, arithmetic data generated, rollouts
from a real SGLang engine, two policy updates, a weight sync into the engine after each,
evaluation and checkpoint. The engine's log-probs must agree with the trainer's (the
loop's start-up mismatch check), and the synced engine must reproduce what the trained
policy computes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import needs_sglang

pytestmark = [needs_sglang, pytest.mark.slow]

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "cpu_smoke.toml"


def test_two_grpo_steps_with_sglang(tmp_path):
    from skyrl_core.api import build_registry, load_config
    from skyrl_core.testing import train

    registry = build_registry()
    overrides = [
        f"run.dir={tmp_path / 'run'}",
        f"model.path={tmp_path / 'model'}",
        f"data.train=['{tmp_path / 'data' / 'train.parquet'}']",
        f"data.eval=['{tmp_path / 'data' / 'eval.parquet'}']",
        "model.tiny.layers=2",
        "model.tiny.hidden_size=64",
        "trainer.steps=2",
        "trainer.prompts_per_step=4",
        "trainer.samples_per_prompt=4",
        "eval.every=0",
        "eval.max_rows=8",
        "tracking.plot=false",
        # Rewards of a random tiny model are all 0 (no policy gradient): an entropy bonus and a large
        # learning rate make the weights move, so the sync after step 1 matters for step 2's rollouts.
        "algorithm.entropy_coef=0.5",
        "trainer.lr=0.01",
    ]
    cfg = load_config(EXAMPLE, overrides, registry)
    assert cfg.backend.name == "sglang"
    last = train(cfg, registry)

    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    start = next(r for r in rows if "startup/logprob_diff_max" in r)
    assert start["startup/logprob_diff_max"] < 1e-3, "engine and trainer disagree before training"
    steps = {r["step"]: r for r in rows if "policy/rollout_logprob_diff_max" in r}
    assert sorted(steps) == [1, 2]
    assert all(math.isfinite(r["policy/loss"]) for r in steps.values())
    assert all(r["timing/weight_sync"] > 0 for r in steps.values())
    # Step 2 samples from the engine after the first update was synced: its log-probs match the
    # trainer's recomputation only if the engine holds the updated weights.
    assert steps[2]["policy/rollout_logprob_diff_max"] < 1e-3, steps[2]

    from safetensors.torch import load_file

    before = load_file(str(tmp_path / "model" / "model.safetensors"))
    after = load_file(str(tmp_path / "run" / "export" / "model.safetensors"))
    moved = max((after[n].float() - before[n].float()).abs().max().item() for n in before if n in after)
    assert moved > 1e-3, "the policy did not change, so the weight sync was not exercised"
    assert last
