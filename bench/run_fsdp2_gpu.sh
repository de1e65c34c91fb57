#!/usr/bin/env bash
# The device command of issue 11's GPU verification: fsdp2 + Ray on 2 GPUs (bench/RESULTS.md).
#   bash bench/run_fsdp2_gpu.sh 2>&1 | tee $OUT/log.txt   (GPU machine, repo root, `.whl` carried:
#   the wheels skyrl_core and Ray need there, and ray_trim.tar.xz from shared/tools/make_ray_trim.sh)
# Phases of bench/fsdp2_scaling.py in order of value, each under its own timeout so that one hang
# cannot eat the call: training parity + weak and strong scaling, a DCP checkpoint saved at the most
# ranks and resumed at the fewest, colocated rounds + cuda_ipc, split rounds + NCCL broadcast.
# BENCH_ARGS is added to every phase (e.g. --world-sizes 1,2,4,8 --shape 0.5b); T_TRAIN/T_RESHARD/
# T_COLO/T_SPLIT are the timeouts (s).
set -x -o pipefail
OUT=${OUT:-/tmp/fsdp2-out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error TOKENIZERS_PARALLELISM=false
export RAY_AUTH_MODE=disabled NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
SITE=${SITE:-/tmp/site}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl || exit 1
tar xJf .whl/ray_trim.tar.xz -C "$SITE" || exit 1
export PYTHONPATH=$PWD:$SITE
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
nvidia-smi topo -m
python3 -c "import torch, transformers, ray; print(torch.__version__, transformers.__version__, ray.__version__)" || exit 1
bench="python3 bench/fsdp2_scaling.py --model-dir ${MODEL_DIR:-/tmp/fsdp2-models} ${BENCH_ARGS:-}"
stop_ray() { [ "${STOP_RAY:-1}" = 1 ] && python3 -m ray.scripts.scripts stop --force > /dev/null 2>&1; }  # STOP_RAY=0 on shared hosts
timeout -k 10 "${T_TRAIN:-150}" $bench --phases train --out "$OUT/train.json"; echo "== train rc $?"; stop_ray
timeout -k 10 "${T_RESHARD:-120}" $bench --phases reshard --out "$OUT/reshard.json"; echo "== reshard rc $?"; stop_ray
timeout -k 10 "${T_COLO:-130}" $bench --phases colocated --transports cuda_ipc,object_store,disk \
  --out "$OUT/colocated.json"; echo "== colocated rc $?"; stop_ray
timeout -k 10 "${T_SPLIT:-110}" $bench --phases split --transports broadcast,object_store,disk \
  --out "$OUT/split.json"; echo "== split rc $?"; stop_ray
tar czf "$OUT/raylogs.tgz" -C /tmp/ray session_latest/logs 2>/dev/null
ls -la "$OUT"
