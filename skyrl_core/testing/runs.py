"""A tiny, fast ``skyrl train`` config for tests (tiny Qwen2, 1-digit arithmetic, seconds per step).

::

    cfg = write_tiny_config(tmp_path, steps=2)
    assert skyrl_core.cli.main(["train", str(cfg), "eval.every=1"]) == 0
    rows = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TINY_RUN_TOML = """
[run]
name = "t"
seed = 3
dir = "{root}/run"

[model]
path = "{root}/model"

[model.tiny]
hidden_size = 64
layers = 2
heads = 4
kv_heads = 2
intermediate_size = 128
vocab_size = 400

[data]
train = ["{root}/data/train.parquet"]
eval = ["{root}/data/eval.parquet"]
generate = "arithmetic"
max_prompt_tokens = 64

[data.generate_options]
digits = 1
train_rows = 64
eval_rows = 8
sft_rows = 64

[generator]
max_new_tokens = 8
max_total_tokens = 80

[trainer]
steps = {steps}
prompts_per_step = 4
samples_per_prompt = 4
prompts_per_minibatch = 2
lr = 1e-3

[eval]
every = 0

[checkpoint]
every = {ckpt_every}
keep_last = 2

[tracking]
trackers = ["jsonl"]
"""


def write_tiny_config(root: Path, *, steps: int = 2, ckpt_every: int = 1, extra: str = "") -> Path:
    """Write a tiny run config under ``root``; ``extra`` TOML is appended."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / "run.toml"
    path.write_text(TINY_RUN_TOML.format(root=root.as_posix(), steps=steps, ckpt_every=ckpt_every) + extra)
    return path


def read_metrics(run_dir: Path) -> dict[int, dict[str, Any]]:
    """``metrics.jsonl`` of a run by step (later lines for a step win, as after a resume)."""
    out: dict[int, dict[str, Any]] = {}
    for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        out.setdefault(row["step"], {}).update(row)
    return out
