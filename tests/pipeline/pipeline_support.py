"""Helpers for the asynchronous-training tests: a controlled slow environment, a policy loss
with a controlled minimum time, a hook that records which prompts each step trained, and a
tiny run config.

The ``slow`` environment is real (the generator runs it in its thread pool like any sync
environment); it sleeps ``delay_s`` (times a per-row factor) in ``step`` to stand in for a
tool call or a sandbox, so generation takes a known minimum time. Its reward depends on
the reply (its length modulo 2), so groups have non-zero advantages and the policy moves.

Run as a script (``python pipeline_support.py CONFIG [overrides...]``) it trains CONFIG with
this module loaded as a plugin: the resume test kills and restarts such a process.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import attrs

from skyrl_core import ComponentSpec, hookimpl
from skyrl_core.algorithms.configs import PPOClipConfig
from skyrl_core.algorithms.policy_losses import ppo_clip
from skyrl_core.config.fields import non_negative, option
from skyrl_core.testing.runs import read_metrics as metrics  # noqa: F401  (the tests' name for it)

TRAINED_LOG = "SKYRL_TEST_TRAINED_LOG"  # where the collect hook appends {"step", "uids"} lines


@attrs.define(kw_only=True)
class SlowEnvConfig:
    delay_s: float = option(
        0.2, help="Seconds step() sleeps (times the row's extra_info.slowness).", check=non_negative
    )


class SlowEnv:
    """One turn; sleeps, then rewards replies of even length."""

    def __init__(self, config: SlowEnvConfig | None = None, extras: dict[str, Any] | None = None) -> None:
        self.config = config or SlowEnvConfig()
        self.slowness = float((extras or {}).get("extra_info", {}).get("slowness", 1.0))

    def init(self, prompt: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        return prompt, {}

    def step(self, action: str) -> dict[str, Any]:
        time.sleep(self.config.delay_s * self.slowness)
        return {"observations": [], "reward": float(len(action) % 2 == 0), "done": True}


@hookimpl
def skyrl_register_environments() -> list[ComponentSpec]:
    return [ComponentSpec("slow", SlowEnv, "Sleeps in step(), rewards even-length replies (test).", SlowEnvConfig)]


@attrs.define(kw_only=True)
class SlowLossConfig(PPOClipConfig):
    sleep_s: float = option(0.2, help="Seconds each loss call sleeps (a bigger model's compute).", check=non_negative)


def slow_ppo_clip(inp: Any, config: SlowLossConfig) -> Any:
    """``ppo_clip``, plus a sleep: training that takes a known minimum time. The sleep releases
    the GIL, as a GPU kernel does, so it can overlap with generation."""
    time.sleep(config.sleep_s)
    return ppo_clip(inp, config)


@hookimpl
def skyrl_register_policy_losses() -> list[ComponentSpec]:
    return [ComponentSpec("slow_ppo_clip", slow_ppo_clip, "ppo_clip that sleeps per call (test).", SlowLossConfig)]


@hookimpl
def skyrl_collect_rollouts(run: Any, sample: Any, num_prompts: int) -> Any:
    """Record the uids of the prompts a step trains (only when $SKYRL_TEST_TRAINED_LOG is set).

    In ``async`` mode collection runs on the trainer thread at the start of step
    ``run.step + 1``, so the record names the step that trains these prompts.
    """
    path = os.environ.get(TRAINED_LOG)
    if not path:
        return None
    batch = sample(num_prompts)
    uids = [g[0].uid for g in batch.groups().values()]
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"step": run.step + 1, "uids": uids, "mode": run.config.trainer.mode}) + "\n")
    return batch


# -- a run ------------------------------------------------------------------------------------

BASE = """
[run]
name = "p"
seed = 5
dir = "{root}/run"

[model]
path = "{model}"

[data]
train = ["{root}/train.jsonl"]
max_prompt_tokens = 64

[environments.slow]
delay_s = {delay}

[generator]
max_new_tokens = 6
max_total_tokens = 80

[trainer]
steps = {steps}
prompts_per_step = 2
samples_per_prompt = 2
lr = 1e-3
{trainer}

[eval]
every = 0
before_train = false

[checkpoint]
every = {ckpt_every}
keep_last = 20
export_at_end = false

[tracking]
trackers = ["jsonl"]
plot = false
"""


def write_data(path: Path, rows: int = 48, slowness: list[float] | None = None) -> None:
    """``rows`` prompts for the ``slow`` env; row i sleeps ``slowness[i % len(slowness)]`` x delay."""
    slowness = slowness or [1.0]
    with path.open("w", encoding="utf-8") as f:
        for i in range(rows):
            a, b = i % 10, (i * 7) % 10
            row = {
                "prompt": [{"role": "user", "content": f"What is {a} + {b}?"}],
                "env_class": "slow",
                "reward_spec": {"method": "rule", "ground_truth": str(a + b)},
                "extra_info": {"slowness": slowness[i % len(slowness)]},
            }
            f.write(json.dumps(row) + "\n")


def write_config(
    root: Path,
    model: Path,
    *,
    steps: int = 4,
    delay: float = 0.2,
    trainer: str = "",
    ckpt_every: int = 0,
    slowness: list[float] | None = None,
    extra: str = "",
) -> Path:
    """A run of the ``slow`` env on ``model`` under ``root``; ``trainer`` adds [trainer] lines."""
    root.mkdir(parents=True, exist_ok=True)
    write_data(root / "train.jsonl", slowness=slowness)
    text = BASE.format(
        root=root.as_posix(), model=Path(model).as_posix(), delay=delay, steps=steps, trainer=trainer,
        ckpt_every=ckpt_every,
    )
    path = root / "run.toml"
    path.write_text(text + extra)
    return path


def registry(*plugins: Any) -> Any:
    """Builtins + this module (+ ``plugins``), no installed entry points."""
    from skyrl_core.testing.helpers import fresh_registry

    return fresh_registry(sys.modules[__name__], *plugins)


def train_file(path: Path, overrides: list[str] | None = None, *plugins: Any) -> dict[str, float]:
    """Train ``path`` in this process with this module as a plugin."""
    from skyrl_core.config.loader import load_config
    from skyrl_core.trainer import train

    reg = registry(*plugins)
    return train(load_config(path, overrides or [], reg), reg, config_path=str(path))



def trained(log: Path) -> dict[int, list[str]]:
    """The trained-prompts log by step (later lines for a step win)."""
    out: dict[int, list[str]] = {}
    for line in log.read_text().splitlines():
        row = json.loads(line)
        out[row["step"]] = row["uids"]
    return out


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    import pipeline_support  # the plugin under its importable name (not __main__)

    from skyrl_core.config.loader import load_config
    from skyrl_core.testing.helpers import fresh_registry
    from skyrl_core.trainer import train

    reg = fresh_registry(pipeline_support)
    train(load_config(sys.argv[1], sys.argv[2:], reg), reg, config_path=sys.argv[1])
