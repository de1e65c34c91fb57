"""`skyrl train` with [strategy] name = "fsdp2" and [runtime] mode = "ray", end to end on CPU.

Runs examples/multi_gpu/cpu_ray_tiny.toml for 2 steps in a fresh process (which starts its
own local Ray cluster): 2 FSDP2 CPU workers, 1 native engine in a Ray actor, every weight
sync verified by checksum, a sharded checkpoint and a Hugging Face export at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "multi_gpu" / "cpu_ray_tiny.toml"


@pytest.mark.slow
@pytest.mark.ray
def test_two_step_train_with_fsdp2_on_ray(tmp_path):
    pytest.importorskip("ray")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "skyrl_core.cli", "train", str(EXAMPLE), "trainer.steps=2"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    run_dir = tmp_path / "runs" / "ray-cpu"
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2]
    # The engine in its actor scores its own samples like the trainer's workers do.
    assert rows[0]["startup/logprob_diff_mean"] < 1e-3
    for row in rows[1:]:
        assert row["policy/skipped"] == 0.0 and row["rollout/env_errors"] == 0.0

    ckpt = run_dir / "checkpoints" / "step-000002"
    meta = json.loads((ckpt / "strategy.json").read_text())
    assert meta["strategy"] == "fsdp2" and meta["world_size"] == 2 and meta["optimizer_steps"] == 2
    assert (ckpt / "dcp" / ".metadata").is_file()
    assert sorted(p.name for p in ckpt.glob("rng-rank*.pt")) == ["rng-rank0.pt", "rng-rank1.pt"]

    from transformers import AutoModelForCausalLM, AutoTokenizer

    export = run_dir / "export"
    model = AutoModelForCausalLM.from_pretrained(export)
    tokenizer = AutoTokenizer.from_pretrained(export)
    assert model.config.vocab_size >= len(tokenizer)
