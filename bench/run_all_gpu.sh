#!/usr/bin/env bash
# One device call for issue 21 when device time is short: the CUDA tests of the static engine and
# its Triton decode attention, the forced and realistic decode with a profile, then the GRPO bench
# with TRL's GRPOTrainer in the same run. Carry `.whl` and `.whl-trl` (bash bench/make_carry.sh).
#   bash bench/run_all_gpu.sh            (GPU machine, repo root; results under $OUT)
# T_TESTS / T_DECODE / T_REAL / T_BENCH bound the parts (seconds); BENCH_ARGS replaces gpu_bench.py's
# options; REALISTIC_ARGS="" also runs `generate` on the realistic workload (default --no-hf).
# SKYRL_TRITON_DECODE_CONFIG (JSON) overrides the decode-attention kernel's launch knobs.
set -o pipefail
save() { tar czf "$OUT/all.tgz" -C /tmp all-work; }  # after each part: a timeout keeps what ran
OUT=${OUT:-/tmp/all-out}; mkdir -p "$OUT" /tmp/all-work
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error TOKENIZERS_PARALLELISM=false
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=$PWD:/tmp/site
if ls .whl-trl/*.whl > /dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/trlsite .whl-trl/*.whl || exit 1
  export TRL_SITE=/tmp/trlsite
else
  BENCH_ARGS="--skip trl ${BENCH_ARGS:-}"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee /tmp/all-work/gpu.txt
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a /tmp/all-work/gpu.txt
if [ "${T_TESTS:-150}" != 0 ]; then
  timeout -k 5 "${T_TESTS:-150}" python3 -m pytest -p skyrl_core.testing.pytest_plugin -q -p no:cacheprovider \
    tests/backends/test_triton_attention.py tests/backends/test_static_engine.py ${EXTRA_TESTS:-} -k "CUDA or cuda" \
    > /tmp/all-work/pytest.txt 2>&1
  echo "== tests rc $?"; tail -8 /tmp/all-work/pytest.txt | cut -c1-300; save
fi
if [ "${T_DECODE:-60}" != 0 ]; then
  F="--shapes 0.5b --prompt-min 128 --prompt-max 129 --median-new 512 --sigma 0 --no-hf"
  timeout -k 5 "${T_DECODE:-60}" python3 bench/realistic_rollouts.py $F --reps 1 --profile --profile-rows 40 \
    --out /tmp/all-work/forced.json > /tmp/all-work/forced.txt 2>&1
  echo "== forced decode rc $?"; grep '"summary"\|decode_attention\|Error' /tmp/all-work/forced.txt | head -3 | cut -c1-300
  timeout -k 5 "${T_REAL:-${T_DECODE:-60}}" python3 bench/realistic_rollouts.py --shapes smollm2 ${REALISTIC_ARGS---no-hf} --reps 1 \
    --out /tmp/all-work/smollm2.json > /tmp/all-work/smollm2.txt 2>&1
  echo "== realistic smollm2 rc $?"; grep '"summary"\|decode_attention\|Error' /tmp/all-work/smollm2.txt | head -3 | cut -c1-300
  save
fi
if [ "${T_BENCH:-330}" != 0 ]; then
  timeout -k 5 "${T_BENCH:-330}" python3 bench/gpu_bench.py --out /tmp/all-work/bench.json \
    ${BENCH_ARGS:---steps 3 --ref-steps 1 --trl-steps 3 --batches 256 --hf-batches 256} 2>&1 \
    | grep -v "Loading weights\|Writing model" > /tmp/all-work/bench.txt
  echo "== bench rc $?"; grep -v '"trace"' /tmp/all-work/bench.txt | grep '"summary"\|"bench": "grpo\|ratio\|Error' | cut -c1-600 | tail -12
fi
save
