#!/usr/bin/env bash
# The one device command: CUDA tests of the native backend (conformance suite through the static
# engine with CUDA graphs), then the benchmark. Full logs go to $OUT; the tails are printed.
#   bash bench/run_gpu.sh            (on the GPU machine, repo root, with .whl carried)
# EXTRA_TESTS adds test paths, BENCH_ARGS adds options of bench/gpu_bench.py; T_TESTS and T_BENCH
# (seconds, default 240 and 480) bound the two parts; T_TESTS=0 skips the tests.
# TRL's GRPOTrainer runs in the same bench (issue 21) when `.whl-trl` is carried: wheels of trl,
# datasets, dill and multiprocess (the image has accelerate, pandas, pyarrow, xxhash, fsspec) and a
# copy of the anchor folder, `cp -r ../shared/tools/anchors/trl_anchor .whl-trl/` (../shared does not
# travel). They go to /tmp/trlsite, on the TRL child's path only.
set -o pipefail
OUT=${OUT:-/tmp/bench-out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error TOKENIZERS_PARALLELISM=false
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=$PWD:/tmp/site
if ls .whl-trl/*.whl > /dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/trlsite \
    .whl-trl/*.whl || exit 1
  export TRL_SITE=/tmp/trlsite
else
  BENCH_ARGS="--skip trl ${BENCH_ARGS:-}"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
if [ "${T_TESTS:-240}" != 0 ]; then  # T_TESTS=0: no tests (another call of the session ran them)
  timeout -k 5 "${T_TESTS:-240}" python3 -m pytest -p skyrl_core.testing.pytest_plugin -q -p no:cacheprovider \
    tests/backends/test_static_engine.py tests/backends/test_native.py tests/algorithms/test_fused_logprobs.py \
    tests/strategies/test_local_cuda.py ${EXTRA_TESTS:-} -k "CUDA or cuda or sleep" > "$OUT/pytest.txt" 2>&1
  tail -25 "$OUT/pytest.txt"
fi
timeout -k 5 "${T_BENCH:-480}" python3 bench/gpu_bench.py --out "$OUT/bench.json" ${BENCH_ARGS:-} 2>&1 | grep -v "Loading weights\|Writing model" \
  > "$OUT/bench.txt"
grep -v '"trace"' "$OUT/bench.txt" | cut -c1-700 | tail -40
