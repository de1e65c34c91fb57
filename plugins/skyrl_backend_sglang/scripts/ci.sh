#!/usr/bin/env bash
# CI stage of skyrl-backend-sglang: build (or reuse) the SGLang CPU venv and run this plugin's tests
# against real SGLang engines and a real launch_server on loopback.
#
#   bash plugins/skyrl_backend_sglang/scripts/ci.sh [pytest args]     # e.g. -x -k conformance
#
# Environment: SKYRL_SGLANG_VENV (default ~/.cache/skyrl/venv-sglang-cpu-<versions>, reused by CI runs
# in fresh clones; see setup_cpu_venv.sh), SGLANG_VERSION (default 0.5.20),
# SKYRL_TEST_RESULTS (a folder for the JUnit XML; scripts/test.sh sets it).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
VENV=${SKYRL_SGLANG_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/skyrl/venv-sglang-cpu-${SGLANG_VERSION:-0.5.20}-torch-2.13.0}
cd "$ROOT"

start=$SECONDS
# SKYRL_STAGE_PREPARED=1: scripts/test.sh built (or refreshed) the venv ahead, beside the main tests
[ "${SKYRL_STAGE_PREPARED:-0}" = 1 ] || bash "$HERE/setup_cpu_venv.sh" "$VENV"
echo "== sglang venv ready [$((SECONDS - start))s]"
# scripts/test.sh builds the venvs ahead, while the main test folders run.
[ "${SKYRL_STAGE_PREPARE_ONLY:-0}" = 1 ] && exit 0

args=(plugins/skyrl_backend_sglang/tests -p no:cacheprovider --durations=10)
if [ -n "${SKYRL_TEST_RESULTS:-}" ]; then
    mkdir -p "$SKYRL_TEST_RESULTS"
    args+=(--junitxml="$SKYRL_TEST_RESULTS/plugins_skyrl_backend_sglang_tests_sglang-venv.xml")
fi
unset PYTHONPATH SKYRL_LOAD_PLUGINS
code=0
"$VENV/bin/pytest" "${args[@]}" "$@" || code=$?
echo "== sglang plugin tests: exit $code [$((SECONDS - start))s in this stage]"
exit "$code"
