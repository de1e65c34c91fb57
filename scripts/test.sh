#!/usr/bin/env bash
# Set up everything on a fresh clone (scripts/setup.sh) and run every test folder with pytest
# against the installed wheels.
#
#   bash scripts/test.sh                 # everything
#   bash scripts/test.sh -x -k config    # extra arguments go to pytest
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
VENV=${SKYRL_VENV:-$ROOT/.venv}

bash scripts/setup.sh

TEST_DIRS=(tests)
for dir in skyrl_*/tests plugins/*/tests; do
    [ -d "$dir" ] && TEST_DIRS+=("$dir")
done

printf '\n== pytest %s [%ss]\n' "${TEST_DIRS[*]}" "$SECONDS"
# Import the installed packages, never the checkout: no PYTHONPATH, and the `pytest` script
# (unlike `python -m pytest`) does not put the current directory on sys.path.
# SKYRL_WHEEL_CHECK=1 makes tests/foundation/test_wheel_install.py verify exactly that.
unset PYTHONPATH SKYRL_LOAD_PLUGINS
export SKYRL_WHEEL_CHECK=1
status=0
"$VENV/bin/pytest" "${TEST_DIRS[@]}" "$@" || status=$?
printf '\n== tests finished with exit code %s [%ss]\n' "$status" "$SECONDS"
exit "$status"
