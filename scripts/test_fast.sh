#!/usr/bin/env bash
# The fast inner loop: every test folder, without the slow, Ray and engine tests, against the
# current virtual environment (no setup: run scripts/setup.sh once, or `pip install -e` the
# distributions). About 5 minutes on 2 cores: with pytest-xdist installed (the `test` extra) the
# `tests` folder runs on two workers (SKYRL_FAST_WORKERS, default 2; 0 runs it in one process).
#
#   bash scripts/test_fast.sh              # everything but -m "slow or ray or engine"
#   bash scripts/test_fast.sh -x -k config # extra arguments go to every pytest
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
VENV=${SKYRL_VENV:-$ROOT/.venv}
TEST_DIRS=(tests)
for dir in skyrl_*/tests plugins/*/tests; do
    [ -d "$dir" ] && TEST_DIRS+=("$dir")
done
XDIST=()
workers=${SKYRL_FAST_WORKERS:-2}
if [ "$workers" != 0 ] && "$VENV/bin/python" -c "import xdist" 2>/dev/null; then
    XDIST=(-n "$workers")
fi
status=0
for dir in "${TEST_DIRS[@]}"; do
    printf '\n== pytest %s [%ss]\n' "$dir" "$SECONDS"
    # one process per folder, as CI runs them (conftest.py files and test module names are per
    # folder); workers only for `tests`: in the small folders their start-up costs more than it saves
    par=()
    [ "$dir" = tests ] && par=("${XDIST[@]}")
    code=0
    "$VENV/bin/pytest" "$dir" -q -p no:cacheprovider -m "not slow and not ray and not engine" "${par[@]}" "$@" || code=$?
    if [ "$code" -ne 0 ] && [ "$code" -ne 5 ]; then
        status=1
    fi
done
printf '\n== fast tests done in %ss (exit %s)\n' "$SECONDS" "$status"
exit "$status"
