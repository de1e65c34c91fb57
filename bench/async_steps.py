"""Step time of ``[trainer] mode = "sync"`` vs ``"one_step_off"`` (and ``"async"``), in one run.

Each mode trains the same config for ``--steps`` steps with the real loop (``skyrl_core.trainer.train``),
one after another in this process; the step time of a mode is the mean ``timing/step`` over its
steps after the first (the first has nothing to overlap with and includes warm-up). Printed as
JSON lines, then a summary with each mode's ratio to ``sync``::

    python bench/async_steps.py --shape tiny --device cpu --steps 4 --env-delay 0.2     # CPU smoke run
    python bench/async_steps.py --shape 0.5b --placement local-split --out async.json   # 2 GPUs, one process
    python bench/async_steps.py --shape 0.5b --placement ray-split --out async.json     # 2 GPUs, fsdp2 + Ray engine

Workload: the builtin arithmetic task's rows, ``--prompts`` x ``--samples`` per
step, ``--new-tokens`` per reply, GRPO + PPO-clip, TIS on in the off-policy modes (their
default). ``--shape 0.5b`` is Qwen2.5-0.5B's shape with random bf16 weights and a small local
tokenizer (``gpu_bench.build_model_dir``; no download): its replies almost never stop early,
so every step generates about prompts x samples x new-tokens tokens. ``--env-delay`` makes
the environment sleep that long per reply (a tool call or sandbox), which generation then
includes.

Placements (``--placement``):

``local``        one process, trainer and engine on ``--device`` (one GPU: both share it);
``local-split``  one process, trainer on ``cuda:0`` and the native engine on ``cuda:1``;
``ray-split``    ``fsdp2`` with one training worker and one native engine in Ray actors, each
                 on its own GPU (``[runtime] colocate = false``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for path in (REPO, REPO / "bench"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from skyrl_core import ComponentSpec, hookimpl  # noqa: E402
from skyrl_core.envs.arithmetic import ArithmeticEnv, ArithmeticEnvConfig  # noqa: E402

RESULTS: list[dict[str, Any]] = []
ENV_DELAY = {"seconds": 0.0}


def log(**record: Any) -> None:
    RESULTS.append(record)
    print(json.dumps(record), flush=True)


class DelayedArithmetic(ArithmeticEnv):
    """The builtin arithmetic environment, sleeping ``--env-delay`` seconds per reply."""

    def step(self, action: str) -> dict[str, Any]:
        time.sleep(ENV_DELAY["seconds"])
        return super().step(action)


@hookimpl
def skyrl_register_environments() -> list[ComponentSpec]:
    return [ComponentSpec("bench_arithmetic", DelayedArithmetic, "Arithmetic + a fixed delay (bench).",
                          ArithmeticEnvConfig)]


def config_text(root: Path, model: Path, mode: str, args: argparse.Namespace) -> str:
    """The run's TOML for one mode."""
    device, placement = {
        "local": (args.device, ""),
        "local-split": ("cuda:0", '[backend]\nname = "native"\ndevice = "cuda:1"\n'),
        "ray-split": ("cuda", '[strategy]\nname = "fsdp2"\n\n'
                      '[runtime]\nmode = "ray"\ncolocate = false\ntrain_gpus = 1\ninference_gpus = 1\n'),
    }[args.placement]
    dtype = "bfloat16" if args.shape != "tiny" else "float32"
    return f"""
[run]
name = "{mode}"
seed = 1
dir = "{root}/{mode}"

[model]
path = "{model}"
device = "{device}"
dtype = "{dtype}"

{placement}

[data]
train = ["{root}/train.parquet"]
max_prompt_tokens = 64

[generator]
max_new_tokens = {args.new_tokens}
max_total_tokens = {args.new_tokens + 128}
temperature = 1.0

[trainer]
mode = "{mode}"
steps = {args.steps}
prompts_per_step = {args.prompts}
samples_per_prompt = {args.samples}
micro_batch_tokens = {args.micro_batch_tokens}
lr = 1e-6

[eval]
before_train = false

[checkpoint]
export_at_end = false

[tracking]
trackers = ["jsonl"]
plot = false
"""


def write_data(root: Path, args: argparse.Namespace) -> None:
    """The arithmetic preparer's training rows, scored by the delayed environment."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from skyrl_core.prepare import run_preparer

    rows = max(256, args.prompts * (args.steps + 4))
    files = run_preparer("arithmetic", root / "data", {"train_rows": rows, "eval_rows": 8, "sft_rows": 8})
    table = pq.read_table(files["train"])
    table = table.set_column(table.schema.get_field_index("env_class"), "env_class",
                             pa.array(["bench_arithmetic"] * table.num_rows))
    pq.write_table(table, root / "train.parquet")


def run_mode(root: Path, model: Path, mode: str, args: argparse.Namespace) -> dict[str, float]:
    """Train one mode; return mean timings over steps 2.. and the staleness seen."""
    from skyrl_core.config.loader import load_config
    from skyrl_core.testing.helpers import fresh_registry
    from skyrl_core.trainer import train

    cfg_path = root / f"{mode}.toml"
    cfg_path.write_text(config_text(root, model, mode, args))
    registry = fresh_registry(sys.modules[__name__], entry_points=True)
    start = time.perf_counter()
    train(load_config(cfg_path, [], registry), registry, config_path=str(cfg_path))
    wall = time.perf_counter() - start
    rows = [json.loads(line) for line in (root / mode / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if r["step"] >= 2]
    keys = ("timing/step", "timing/generate", "timing/old_logprobs", "timing/update", "timing/weight_sync",
            "timing/wait_rollouts", "timing/drain_requests", "rollout/staleness/mean", "rollout/staleness/max")
    out = {key: statistics.mean(r.get(key, 0.0) for r in steps) for key in keys}
    out["phases_sum"] = sum(out[k] for k in keys[1:5])
    out["run_seconds"] = wall
    log(mode=mode, placement=args.placement, shape=args.shape, steps_averaged=len(steps), **out)
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", choices=["tiny", "0.5b"], default="tiny")
    parser.add_argument("--model", default=None, help="an existing Hugging Face model folder instead of --shape")
    parser.add_argument("--device", default="cpu", help="for --placement local: cpu, cuda, cuda:N")
    parser.add_argument("--placement", choices=["local", "local-split", "ray-split"], default="local")
    parser.add_argument("--modes", default="sync,one_step_off", help="comma list; sync first (the baseline)")
    parser.add_argument("--steps", type=int, default=4, help="per mode; the first is not averaged")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--micro-batch-tokens", type=int, default=16384)
    parser.add_argument("--env-delay", type=float, default=0.0, help="seconds the environment sleeps per reply")
    parser.add_argument("--out", default=None, help="also write every record as a JSON list here")
    return parser


def main() -> int:
    parser = build_parser()
    args = parser.parse_args()
    ENV_DELAY["seconds"] = args.env_delay
    modes = [m for m in args.modes.split(",") if m]
    if modes[0] != "sync":
        parser.error("--modes must start with sync (the baseline the ratios are against)")

    with tempfile.TemporaryDirectory(prefix="skyrl-async-bench-") as tmp:
        root = Path(tmp)
        if args.model:
            model = Path(args.model)
        elif args.shape == "tiny":
            from skyrl_core.config.schema import TinyModelConfig
            from skyrl_core.models.tiny import build_tiny_model

            model = build_tiny_model(root / "model", TinyModelConfig())
        else:
            import torch
            from gpu_bench import build_model_dir

            model, _ = build_model_dir(args.shape, root, torch.device("cpu"))
        write_data(root, args)
        results = {mode: run_mode(root, model, mode, args) for mode in modes}

    base = results["sync"]["timing/step"]
    print(f"\n{'mode':<14}{'step s':>9}{'phases s':>10}{'wait s':>9}{'staleness':>11}{'sync/mode':>11}")
    for mode, r in results.items():
        print(f"{mode:<14}{r['timing/step']:>9.3f}{r['phases_sum']:>10.3f}{r['timing/wait_rollouts']:>9.3f}"
              f"{r['rollout/staleness/mean']:>11.2f}{base / r['timing/step']:>11.2f}")
    log(summary={mode: base / r["timing/step"] for mode, r in results.items()}, baseline="sync")
    if args.out:
        Path(args.out).write_text(json.dumps(RESULTS, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
