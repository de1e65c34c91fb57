#!/usr/bin/env bash
# One device call: tune the Triton decode attention (bench/decode_attention_tune.py), measure the
# forced generation against `generate` with the tuned launch knobs (gpu_bench.py, generation only),
# then issue 20's local-vs-fsdp2 compare (bench/run_compare_gpu.sh). Carry `.whl`.
#   bash bench/run_tune_gpu.sh       (GPU machine, repo root; results under $OUT)
# T_TUNE / T_GEN / T_COMPARE bound the parts (seconds); the tuned knobs stay in /tmp/keep/best.json
# for a next call on the same warm machine (SKYRL_TRITON_DECODE_CONFIG=$(cat /tmp/keep/best.json)).
set -o pipefail
OUT=${OUT:-/tmp/tune-out}; mkdir -p "$OUT" /tmp/keep
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error TOKENIZERS_PARALLELISM=false
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
[ -d /tmp/site/ray ] || tar xJf .whl/ray_trim.tar.xz -C /tmp/site || exit 1
export PYTHONPATH=$PWD:/tmp/site
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
if [ "${T_TUNE:-200}" != 0 ]; then
  timeout -k 5 "${T_TUNE:-200}" python3 bench/decode_attention_tune.py --out "$OUT/tune.json" \
    --best-out /tmp/keep/best.json ${TUNE_ARGS:---matmuls} > "$OUT/tune.log" 2>&1
  echo "== tune rc $?"; grep -v '^{"shape": {' "$OUT/tune.log" | cut -c1-700 | tail -12
  grep '"default_us"' "$OUT/tune.log" | grep overall_best | cut -c1-300
fi
if [ "${T_GEN:-110}" != 0 ]; then
  SKYRL_TRITON_DECODE_CONFIG=$(cat /tmp/keep/best.json 2>/dev/null) timeout -k 5 "${T_GEN:-110}" \
    python3 bench/gpu_bench.py --skip trl,grpo,ceilings --batches 256 --hf-batches 256 --out "$OUT/gen.json" \
    > "$OUT/gen.log" 2>&1
  echo "== generation rc $? (config $(cat /tmp/keep/best.json 2>/dev/null))"
  grep -v '"trace"' "$OUT/gen.log" | grep 'tok\|ratio\|Error' | cut -c1-400 | tail -6
fi
if [ "${T_COMPARE:-280}" != 0 ]; then
  OUT=$OUT FLAGS="${FLAGS---profile --dcp}" TAIL=${TAIL:-40} bash bench/run_compare_gpu.sh
fi
