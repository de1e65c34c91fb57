"""Two training steps of ``examples/dapo/cpu_smoke.toml`` through the real ``skyrl train`` command,
with only skyrl-core and this plugin loaded (``SKYRL_LOAD_PLUGINS=skyrl-algo-dapo``).

The example is shortened by command-line overrides: a smaller tiny model, a short warm start
(enough to produce some well-formed answers) and a format reward, so that some groups have
differing rewards and dynamic sampling can fill the step.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from dapo_support import REPO

EXAMPLE = REPO / "examples" / "dapo" / "cpu_smoke.toml"
SHORT = [
    "model.tiny.hidden_size=64",
    "model.tiny.layers=2",
    "model.tiny.intermediate_size=128",
    "warm_start.steps=40",
    "data.generate_options.sft_unboxed=0.0",  # every warm-start answer boxed: a short warm start suffices
    "warm_start.batch_size=8",
    "environments.arithmetic.format_reward=0.1",
    "trainer.steps=2",
    "trainer.prompts_per_step=2",
    "trainer.samples_per_prompt=4",
    "dapo.prompts_per_round=2",
    "dapo.max_sampling_rounds=20",
    "eval.before_train=false",
    "eval.max_rows=4",
    "tracking.trackers=['console', 'jsonl']",
    "tracking.plot=false",
    "checkpoint.export_at_end=false",
]


@pytest.mark.slow
def test_two_dapo_steps_with_only_this_plugin(tmp_path):
    skyrl = Path(sys.executable).parent / "skyrl"
    env = dict(os.environ, SKYRL_LOAD_PLUGINS="skyrl-algo-dapo")
    proc = subprocess.run(
        [str(skyrl), "train", str(EXAMPLE), *SHORT], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, f"exit {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    run_dir = tmp_path / "runs" / "dapo-smoke"

    # only this plugin was loaded, and the resolved config has what [dapo] implies
    manifest = json.loads((run_dir / "manifest.json").read_text())
    loaded = {p["distribution"]: p["status"] for p in manifest["plugins"]}
    assert loaded.pop("skyrl-core") == "ok" and loaded.pop("skyrl-algo-dapo") == "ok"
    assert set(loaded.values()) <= {"disabled"}, loaded
    resolved = tomllib.loads((run_dir / "config.toml").read_text())
    assert resolved["algorithm"]["policy_loss"] == {"name": "ppo_clip", "eps_low": 0.2, "eps_high": 0.28}
    assert resolved["algorithm"]["loss_reduction"] == "token_mean"
    assert resolved["dapo"]["dynamic_sampling"] is True

    steps = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    trained = [m for m in steps if "dapo/filter_rate" in m]
    assert [m["step"] for m in trained] == [1, 2]
    for m in trained:
        assert 1 <= m["dapo/sampling_rounds"] <= 20
        assert m["dapo/prompts_sampled"] == 2 * m["dapo/sampling_rounds"]
        assert 0.0 <= m["dapo/filter_rate"] < 1.0
        assert m["dapo/filter_rate"] * m["dapo/prompts_sampled"] <= m["dapo/prompts_sampled"] - 2
        for key in ("dapo/overlong_penalty_mean", "dapo/overlong_filtered_frac", "policy/clip_frac", "policy/pg_loss"):
            assert key in m, key
        assert m["rollout/env_errors"] == 0.0
    assert "eval/arithmetic/pass@1" in steps[-1]
