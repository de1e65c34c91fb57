#!/usr/bin/env bash
# The one-GPU device command of the fsdp2 speed work: bench/fsdp2_scaling.py's compare phase
# (local vs fsdp2 at world size 1, 0.5B and 1.5B shapes, profiler summaries, DCP save/resume and
# HF export). Carry `.whl`: attrs, cattrs, typing_extensions, pluggy, Ray's pure-Python and cp312
# dependencies (click, jsonschema*, referencing, rpds-py, msgpack, protobuf) and ray_trim.tar.xz
# (../shared/tools/make_ray_trim.sh).
#   bash bench/run_compare_gpu.sh            (GPU machine, repo root; BENCH_ARGS adds options)
#   VARIANTS="--compile;--compile --checkpointing off" FLAGS="" bash bench/run_compare_gpu.sh
set -o pipefail
OUT=${OUT:-/tmp/compare-out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error TOKENIZERS_PARALLELISM=false
export RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0
SITE=${SITE:-/tmp/site}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl || exit 1
[ -d "$SITE/ray" ] || tar xJf .whl/ray_trim.tar.xz -C "$SITE" || exit 1
export PYTHONPATH=$PWD:$SITE
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
# VARIANTS: `;`-separated option sets, each one more compare run in this call (own log and JSON);
# FLAGS replaces the default `--profile --dcp`.
VARIANTS=${VARIANTS:-${BENCH_ARGS:-}}
i=0
IFS=';' read -ra parts <<< "$VARIANTS"
[ ${#parts[@]} -eq 0 ] && parts=("")
for v in "${parts[@]}"; do
  i=$((i + 1))
  echo "== compare $i: ${v:-default}"
  timeout -k 10 "${T_COMPARE:-420}" python3 bench/fsdp2_scaling.py --phases compare ${FLAGS---profile --dcp} \
    --model-dir /tmp/fsdp2-models --out "$OUT/compare$i.json" $v > "$OUT/compare$i.log" 2>&1
  echo "== compare $i rc $?"
  grep -v 'Loading weights\|Writing model\|USDT' "$OUT/compare$i.log" | grep -v '^{' | tail -${TAIL:-80}
  grep '"what": "error"\|Traceback\|Error' "$OUT/compare$i.log" | head -20
done
