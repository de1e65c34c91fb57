"""CPU GRPO step: skyrl's real loop vs TRL's GRPOTrainer on the CPU anchor shape, in one run.

::

    .venv/bin/python bench/cpu_grpo_vs_trl.py                      # ~10 min on 2 busy cores
    .venv/bin/python bench/cpu_grpo_vs_trl.py --reps 3 --out bench/results/cpu-trl.json
    .venv/bin/python bench/cpu_grpo_vs_trl.py --skip trl            # ours and generation only

The shape (issue 21, ``SHAPE=cpu`` of ``shared/tools/anchors/trl_anchor/trl_grpo_step.py``):
a Qwen2 with vocab 1024, hidden 256, MLP 704, 4 layers, 4/2 heads, tied embeddings (3.2M
parameters), random fp32 weights (``torch.manual_seed(0)``, the anchor's tokenizer); 16
prompts x 4 samples per step, prompts of exactly 32 tokens, exactly 64 generated tokens per
sample, no reference model, one optimizer step per step, lr 1e-6.

* **TRL**: the anchor script itself, run as a subprocess with ``SHAPE=cpu`` in its own venv
  (built once under ``~/.cache/skyrl/trl-cpu-venv`` with the pins in ``TRL_PINS``; ``--trl-python``
  uses another). Its number is the median seconds per optimizer step after the first.
* **ours**: ``skyrl_core.trainer.train`` (what ``skyrl train`` runs) on
  ``bench/configs/cpu_anchor.toml``, in a subprocess of this script (a fresh process, like
  TRL's), with an environment of its own (``bench_length``: reward = characters of the reply
  mod 7, TRL's ``reward_len``) and ``[generator] ignore_eos`` for the exact lengths. Its number is
  the median ``timing/step`` of metrics.jsonl over the steps after the first; the phases
  (``timing/generate``, ``timing/update``, ``timing/weight_sync``) are medians too.
* **generation only**: the native backend with ``engine = "hf"`` and ``"static"`` vs
  transformers ``generate`` (``min_new_tokens = max_new_tokens = 64``, no stop token) on the
  same 64 requests and weights, in this process: tokens/s and ratios. The backend decodes on
  this thread while it waits (``LoopThread.run_until_complete(lend=True)``), as in training.

Other engineers share these two cores, so every figure is noisy: the repetitions interleave
(ours, TRL, ours, TRL, ...), medians are reported with the load average before and after
each, and the ratio is TRL's median over ours. Prints JSON lines, then a summary.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.trl_anchor import find_anchor, run_anchor  # noqa: E402
from skyrl_core import ComponentSpec, hookimpl  # noqa: E402

CONFIG = REPO / "bench" / "configs" / "cpu_anchor.toml"
TRL_VENV = Path.home() / ".cache" / "skyrl" / "trl-cpu-venv"
#: The TRL venv: the CPU torch of our own venv, and the releases of TRL (and what it needs) that ran
#: the anchor on 2026-12-07.
TRL_PINS = ("torch==2.13.0", "trl==1.16.0", "transformers==5.25.0", "datasets==5.2.0", "accelerate==1.16.0")
PROMPTS, SAMPLES, PROMPT_TOKENS, NEW_TOKENS = 16, 4, 32, 64
RESULTS: list[dict[str, Any]] = []
CHILD_ENV: dict[str, str] = {}  # added to the environment of both children (--threads)


def log(**record: Any) -> None:
    RESULTS.append(record)
    print(json.dumps(record), flush=True)


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def median_after_first(values: list[float]) -> float:
    return statistics.median(values[1:] or values)


# -- the environment of our run ------------------------------------------------------------


class LengthEnv:
    """One-turn environment: reward = characters of the reply mod 7 (TRL anchor's ``reward_len``)."""

    def __init__(self, config: Any = None, extras: dict[str, Any] | None = None) -> None:
        self.extras = dict(extras or {})

    def init(self, prompt: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        return prompt, {}

    def step(self, action: str) -> dict[str, Any]:
        return {"observations": [], "reward": float(len(action) % 7), "done": True, "metadata": {}}

    def close(self) -> None:
        return None


@hookimpl
def skyrl_register_environments() -> list[ComponentSpec]:
    return [ComponentSpec("bench_length", LengthEnv, "Reward = reply length mod 7 (bench).")]


# -- model and data ------------------------------------------------------------------------


def build_model(dest: Path, tokenizer_dir: Path) -> Path:
    """The anchor's ``SHAPE=cpu`` Qwen2 with random fp32 weights (seed 0) and its tokenizer."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    cfg = Qwen2Config(vocab_size=1024, hidden_size=256, intermediate_size=704, num_hidden_layers=4,
                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    Qwen2ForCausalLM(cfg).to(torch.float32).save_pretrained(dest)
    tok.save_pretrained(dest)
    return dest


def write_prompts(path: Path, model_dir: Path) -> list[list[int]]:
    """64 rows of 32 single-token letters (`` a`` .. `` z``: one token each, never merged), as the
    anchor's prompts; returns their token ids (checked to be exactly ``PROMPT_TOKENS`` long)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    rng = random.Random(1)
    letters = [c for c in string.ascii_lowercase if len(tok.encode(" " + c, add_special_tokens=False)) == 1]
    texts = ["".join(" " + rng.choice(letters) for _ in range(PROMPT_TOKENS)) for _ in range(PROMPTS * 4)]
    ids = [tok.encode(t, add_special_tokens=False) for t in texts]
    assert {len(i) for i in ids} == {PROMPT_TOKENS}, "prompts must be exactly 32 tokens"
    with path.open("w") as f:
        for t in texts:
            f.write(json.dumps({"prompt": [{"role": "user", "content": t}], "env_class": "bench_length"}) + "\n")
    return ids


# -- ours: the real loop in a child process ------------------------------------------------


def run_ours_child(root: Path, steps: int, overrides: list[str]) -> None:
    """(In the child process.) Train the anchor config; metrics go to ``root/run/metrics.jsonl``."""
    from skyrl_core.config.loader import load_config
    from skyrl_core.testing.helpers import fresh_registry
    from skyrl_core.trainer import train

    registry = fresh_registry(sys.modules[__name__], entry_points=True)
    base = [f"run.dir={root / 'run'}", f"model.path={root / 'model'}",
            f'data.train=["{root / "prompts.jsonl"}"]', f"trainer.steps={steps}"]
    cfg = load_config(CONFIG, base + overrides, registry)
    train(cfg, registry, config_path=str(CONFIG))


def run_ours(root: Path, steps: int, overrides: list[str], rep: int) -> dict[str, Any]:
    import shutil

    shutil.rmtree(root / "run", ignore_errors=True)
    before = load()
    start = time.perf_counter()
    cmd = [sys.executable, __file__, "--child", str(root), "--steps", str(steps)]
    for o in overrides:
        cmd += ["--set", o]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **CHILD_ENV})
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"our run failed (exit {proc.returncode})")
    rows = [json.loads(line) for line in (root / "run" / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["step"] >= 1]
    lengths = sorted({(r["rollout/prompt_length/mean"], r["rollout/response_length/mean"]) for r in rows})
    phases = {}
    for key in ("timing/step", "timing/generate", "timing/update", "timing/weight_sync", "timing/old_logprobs"):
        values = [r[key] for r in rows if key in r]
        if values:
            phases[key.split("/")[1]] = median_after_first(values)
    record = dict(system="ours", rep=rep, step_seconds=[r["timing/step"] for r in rows],
                  steady_median_s=phases["step"], phases=phases, prompt_response_lengths=lengths,
                  run_seconds=round(wall, 1), load_before=before, load_after=load(), overrides=overrides)
    log(**record)
    return record


# -- TRL -----------------------------------------------------------------------------------


def ensure_trl_venv(venv: Path) -> Path:
    """``venv``'s python, building the venv with ``TRL_PINS`` first if it does not hold them."""
    python = venv / "bin" / "python"
    stamp = venv / "skyrl-pins.txt"
    if python.exists() and stamp.exists() and stamp.read_text().split() == list(TRL_PINS):
        return python
    print(f"building the TRL venv in {venv} ({' '.join(TRL_PINS)})", file=sys.stderr, flush=True)
    subprocess.run([sys.executable if sys.version_info[:2] == (3, 11) else "python3.11", "-m", "venv", "--clear",
                    str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, TRL_PINS[0]], check=True)  # the CPU torch first, so nothing pulls a CUDA one
    subprocess.run([*pip, *TRL_PINS], check=True)
    stamp.write_text("\n".join(TRL_PINS) + "\n")
    return python


def run_trl(python: Path, anchor: Path, steps: int, rep: int, workdir: Path) -> dict[str, Any]:
    before = load()
    result = run_anchor(anchor, "cpu", steps, workdir, python=python, env=CHILD_ENV)
    record = dict(system="trl", rep=rep, step_seconds=result["step_seconds"], steady_median_s=result["steady_median_s"],
                  completion_mean_length=result["completion_mean_length"], versions=result["versions"],
                  run_seconds=result["run_seconds"], load_before=before, load_after=load())
    log(**record)
    return record


# -- generation only -----------------------------------------------------------------------


def bench_generation(model_dir: Path, prompts: list[list[int]], reps: int) -> dict[str, Any]:
    """Native backend (``hf``, ``static``) vs transformers ``generate``: 16 prompts x 4 samples x 64 tokens."""
    import torch

    from skyrl_core.backends.native import NativeBackend
    from skyrl_core.backends.native_config import NativeBackendConfig
    from skyrl_core.config.schema import ModelConfig
    from skyrl_core.pipeline import LoopThread
    from skyrl_core.protocols.backend import GenerateRequest, SamplingParams

    prompts = prompts[:PROMPTS]
    model_cfg = ModelConfig(path=str(model_dir), device="cpu", dtype="float32")
    backends = {e: NativeBackend(NativeBackendConfig(engine=e), model=model_cfg, seed=0) for e in ("hf", "static")}
    requests = [GenerateRequest(p, SamplingParams(max_new_tokens=NEW_TOKENS, n=SAMPLES, temperature=1.0, seed=i))
                for i, p in enumerate(prompts)]
    model = backends["hf"].model
    ids = torch.tensor(prompts).repeat_interleave(SAMPLES, 0)
    tokens = len(prompts) * SAMPLES * NEW_TOKENS

    loop = LoopThread()

    def ours(engine: str) -> None:
        # As the trainer runs it in sync mode: this thread waits and decodes (skyrl_core.threads).
        results = loop.run_until_complete(backends[engine].generate(requests), lend=True)
        assert all(len(c.token_ids) == NEW_TOKENS for r in results for c in r.completions)

    def generate() -> None:
        with torch.inference_mode():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True, temperature=1.0,
                                 top_p=1.0, top_k=0, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
                                 pad_token_id=0, eos_token_id=None)
        assert out.shape[1] == PROMPT_TOKENS + NEW_TOKENS

    runs = {"generate": generate, "hf": lambda: ours("hf"), "static": lambda: ours("static")}
    for fn in runs.values():  # warm-up (first-call allocations, lazy imports)
        fn()
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    before = load()
    for _ in range(reps):
        for name, fn in runs.items():
            t = time.perf_counter()
            fn()
            seconds[name].append(time.perf_counter() - t)
    for b in backends.values():
        b.shutdown()
    loop.close()
    med = {name: statistics.median(v) for name, v in seconds.items()}
    record = dict(system="generation", tokens=tokens, seconds=seconds, median_s=med,
                  tokens_per_s={n: round(tokens / s) for n, s in med.items()},
                  vs_generate={n: round(med["generate"] / s, 2) for n, s in med.items()},
                  threads=torch.get_num_threads(), load_before=before, load_after=load())
    log(**record)
    return record


# -- main ------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=2, help="interleaved repetitions of ours and TRL")
    parser.add_argument("--steps", type=int, default=5, help="our steps per run; the first is not in the median")
    parser.add_argument("--trl-steps", type=int, default=4, help="TRL steps per run; the first is not in the median")
    parser.add_argument("--gen-reps", type=int, default=3, help="repetitions of the generation-only comparison")
    parser.add_argument("--threads", type=int, default=None,
                        help="OMP_NUM_THREADS for both children (TRL and ours) and torch threads here; default: "
                        "torch's own choice (the core count). 1 takes the thread pool's oversubscription out of "
                        "the comparison when others load the machine")
    parser.add_argument("--skip", default="", help="comma list of: trl, ours, generation")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="an override of our config (e.g. backend.engine=hf); repeatable")
    parser.add_argument("--anchor", default=None, help="the TRL anchor script (default: shared/ beside the checkout)")
    parser.add_argument("--trl-python", default=None, help="a python with TRL (default: build/reuse the pinned venv)")
    parser.add_argument("--trl-venv", default=str(TRL_VENV), help="where the pinned TRL venv is built")
    parser.add_argument("--out", default=None, help="also write every record as a JSON list here")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return parser


def main() -> int:
    args = build_parser().parse_args()
    if args.child:
        run_ours_child(Path(args.child), args.steps, args.set)
        return 0
    skip = {s for s in args.skip.split(",") if s}
    if args.threads:
        CHILD_ENV["OMP_NUM_THREADS"] = str(args.threads)
    anchor = find_anchor(args.anchor)
    trl_python = None
    if "trl" not in skip:
        trl_python = Path(args.trl_python) if args.trl_python else ensure_trl_venv(Path(args.trl_venv))

    import torch
    import transformers

    if args.threads:
        torch.set_num_threads(args.threads)
    log(system="machine", cpus=os.cpu_count(), child_env=CHILD_ENV, torch=torch.__version__,
        transformers=transformers.__version__, threads=torch.get_num_threads(), python=sys.version.split()[0],
        load=load(),
        commit=subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True).stdout.strip())
    with tempfile.TemporaryDirectory(prefix="skyrl-cpu-trl-") as tmp:
        root = Path(tmp)
        build_model(root / "model", anchor.parent / "tok")
        prompt_ids = write_prompts(root / "prompts.jsonl", root / "model")
        ours: list[dict[str, Any]] = []
        trl: list[dict[str, Any]] = []
        for rep in range(args.reps):
            if "ours" not in skip:
                ours.append(run_ours(root, args.steps, args.set, rep))
            if trl_python is not None:
                trl.append(run_trl(trl_python, anchor, args.trl_steps, rep, root))
        gen = None if "generation" in skip else bench_generation(root / "model", prompt_ids, args.gen_reps)

    summary: dict[str, Any] = {"system": "summary"}
    if ours:
        summary["ours_step_s"] = statistics.median(r["steady_median_s"] for r in ours)
        summary["ours_phases_s"] = {k: round(statistics.median(r["phases"][k] for r in ours), 3)
                                    for k in ours[0]["phases"]}
    if trl:
        summary["trl_step_s"] = statistics.median(r["steady_median_s"] for r in trl)
    if ours and trl:
        summary["trl_over_ours"] = round(summary["trl_step_s"] / summary["ours_step_s"], 2)
        summary["per_rep_ratio"] = [round(t["steady_median_s"] / o["steady_median_s"], 2)
                                    for o, t in zip(ours, trl, strict=False)]
    if gen:
        summary["generation_tokens_per_s"] = gen["tokens_per_s"]
        summary["generation_vs_generate"] = gen["vs_generate"]
    summary["load"] = load()
    log(**summary)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(RESULTS, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
