#!/usr/bin/env bash
# One device call that measures option variants of the GRPO step side by side (no TRL, no
# `generate` baseline: those are in bench/run_gpu.sh) and profiles the decode of the realistic
# rollouts. Carry `.whl` (attrs, cattrs, pluggy, pytest, ...).
#   bash bench/run_sweep_gpu.sh                (GPU machine, repo root)
# VARIANTS: `;`-separated option sets of bench/gpu_bench.py (default below); COMMON: options
# every variant gets; REALISTIC: options of bench/realistic_rollouts.py ('' skips it);
# TESTS: pytest node ids run first ('' skips them), TESTS_K: their -k expression. Each part is bounded by T_EACH seconds.
set -o pipefail
OUT=${OUT:-/tmp/sweep-out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error TOKENIZERS_PARALLELISM=false
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=$PWD:/tmp/site
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
git log -1 --format='commit %h %s' 2>/dev/null | tee -a "$OUT/gpu.txt"
T_EACH=${T_EACH:-150}
if [ -n "${TESTS-tests/strategies/test_local_cuda.py}" ]; then
  timeout -k 5 "$T_EACH" python3 -m pytest -p skyrl_core.testing.pytest_plugin -q -p no:cacheprovider \
    ${TESTS-tests/strategies/test_local_cuda.py} ${TESTS_K:+-k "$TESTS_K"} > "$OUT/pytest.txt" 2>&1
  tail -5 "$OUT/pytest.txt"
fi
COMMON=${COMMON:---skip trl,generate,ceilings --ref-steps 0 --steps 3}
VARIANTS=${VARIANTS:-;--compile;--micro-batch-tokens 32768;--shared-prefix true;--compile --micro-batch-tokens 32768}
i=0
IFS=';' read -ra parts <<< "$VARIANTS"
for v in "${parts[@]}"; do
  i=$((i + 1))
  echo "== variant $i: ${v:-default}"
  timeout -k 5 "$T_EACH" python3 bench/gpu_bench.py $COMMON $v --out "$OUT/variant$i.json" > "$OUT/variant$i.txt" 2>&1
  echo "rc $?"
  sed -n '/== summary/,$p' "$OUT/variant$i.txt" | cut -c1-300
  grep -h 'Traceback\|Error' "$OUT/variant$i.txt" | tail -3
done
if [ -n "${REALISTIC---shapes smollm2,0.5b --no-hf --profile --reps 1}" ]; then
  echo "== realistic rollouts"
  timeout -k 5 "${T_REALISTIC:-240}" python3 bench/realistic_rollouts.py ${REALISTIC---shapes smollm2,0.5b --no-hf --profile --reps 1} \
    --out "$OUT/realistic.json" > "$OUT/realistic.txt" 2>&1
  echo "rc $?"
  grep -v 'Loading weights\|Writing model' "$OUT/realistic.txt" | cut -c1-300 | tail -60
fi
