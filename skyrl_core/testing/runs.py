"""Runs in tests: a tiny, fast ``skyrl train`` config (tiny Qwen2, 1-digit arithmetic, seconds per
step), the real CLI and training loop, and a run that only collects rollouts.

::

    cfg = write_tiny_config(tmp_path, steps=2)
    assert run_skyrl(["train", str(cfg), "eval.every=1"]) == 0
    rows = read_metrics(tmp_path / "run")
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
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


# -- running the real commands and loop from a test ------------------------------------------


def run_skyrl(argv: list[str]) -> int:
    """``skyrl ARGV...`` in this process (the real CLI, errors printed as users see them); the exit code."""
    from skyrl_core.cli import main

    return main(argv)


def cli_parser(registry: Any = None) -> Any:
    """The ``skyrl`` argument parser with the commands plugins add (``skyrl_add_commands``) of
    ``registry`` (default: every installed plugin)."""
    from skyrl_core.cli import build_parser

    return build_parser(registry)


def train(cfg: Any, registry: Any, config_path: str | None = None) -> dict[str, float]:
    """Run RL training on a validated config, as ``skyrl train`` does; return the last metrics."""
    from skyrl_core.trainer import train as run_training

    return run_training(cfg, registry, config_path=config_path)


@contextmanager
def generation_run(cfg: Any, registry: Any) -> Iterator[Any]:
    """A ``RunContext`` that can collect rollouts and nothing more: components resolved and
    checked, tokenizer, backend, training prompt loader and event loop, but no strategy. Closed
    (backend shut down, loop stopped) on exit.

    ::

        with generation_run(cfg, registry) as run:
            batch = collect_rollouts(run)      # one step's rollouts, plugin hooks included
    """
    from skyrl_core.components import build_backend
    from skyrl_core.data import PromptLoader, load_prompts
    from skyrl_core.models.loading import load_tokenizer
    from skyrl_core.pipeline import LoopThread, track_prompts
    from skyrl_core.startup import close_run, open_run

    run = open_run(cfg, registry)
    try:
        assert run.components is not None
        run.tokenizer = load_tokenizer(cfg.model)
        run.backend = build_backend(cfg, registry, run.components.backend, cfg.model)
        rows = load_prompts(cfg, registry, run.tokenizer, cfg.data.train, min_rows=cfg.trainer.prompts_per_step)
        loader = PromptLoader(rows, seed=cfg.run.seed, shuffle=cfg.data.shuffle)
        run.train_loader = track_prompts(loader, cfg.trainer.mode, None)
        run.loop = LoopThread()
        yield run
    finally:
        close_run(run)


def collect_rollouts(run: Any) -> Any:
    """One step's rollouts of ``run``, collected as a ``sync`` run does (``skyrl_collect_rollouts``
    and ``skyrl_shape_rewards`` hooks included)."""
    from skyrl_core.pipeline.sync import SyncPipeline

    return SyncPipeline(run).next_batch()
