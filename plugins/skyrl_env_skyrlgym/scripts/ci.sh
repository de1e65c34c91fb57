#!/usr/bin/env bash
# CI stage of skyrl-env-skyrlgym: build (or reuse) a venv with the real skyrl-gym from the package
# registry and run this plugin's tests there: skyrl-gym's gsm8k, gsm8k_multi_turn and text2sql (a
# real SQLite database) through short CPU training runs, and the adapter's unit tests.
# scripts/test.sh runs it after the main test folders (whose venv has no skyrl-gym: there these
# tests check the plugin without it and skip the rest).
#
#   bash plugins/skyrl_env_skyrlgym/scripts/ci.sh [pytest args]     # e.g. -x -k text2sql
#
# The venv lives outside the checkout (a cache keyed by the skyrl-gym and torch versions and this
# script), so CI runs in fresh clones on the same machine reuse it: building it takes about a
# minute on 2 cores (torch from the local wheel cache, skyrl-gym, pandas and omegaconf from the
# registry), reusing it ~15 s (skyrl-core and the plugin are reinstalled editable from this
# checkout every time, so do not run it from two checkouts at once).
#
# Environment: SKYRL_SKYRLGYM_VENV (default ~/.cache/skyrl/venv-skyrlgym-<versions>),
# SKYRL_GYM_VERSION (default 0.4.0), SKYRL_TEST_RESULTS (a folder for the JUnit XML;
# scripts/test.sh sets it).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
GYM_VERSION=${SKYRL_GYM_VERSION:-0.4.0}
TORCH_VERSION=2.13.0
VENV=${SKYRL_SKYRLGYM_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/skyrl/venv-skyrlgym-$GYM_VERSION-torch-$TORCH_VERSION}
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
cd "$ROOT"

# pip byte-compiles every module it installs only when Python will not write bytecode itself
# (PYTHONDONTWRITEBYTECODE set); otherwise the first import writes the .pyc of what is used.
NO_COMPILE=$([ -n "${PYTHONDONTWRITEBYTECODE:-}" ] || echo --no-compile)
start=$SECONDS
# SKYRL_STAGE_PREPARED=1: scripts/test.sh built (or refreshed) the venv ahead, beside the main tests
if [ "${SKYRL_STAGE_PREPARED:-0}" != 1 ]; then
    stamp=$(sha256sum "$HERE/ci.sh" | cut -c1-16)-$GYM_VERSION-$TORCH_VERSION
    if [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/.skyrl-skyrlgym-stamp" 2>/dev/null)" = "$stamp" ]; then
        echo "== $VENV is up to date (skyrl-gym $GYM_VERSION)"
    else
        echo "== building $VENV (skyrl-gym $GYM_VERSION, torch $TORCH_VERSION)"
        rm -rf "$VENV"
        mkdir -p "$(dirname "$VENV")"
        "$PYTHON" -m venv "$VENV"
        # torch first and pinned: skyrl-core's plain `torch` requirement could pull a multi-GB CUDA build
        "$VENV/bin/pip" install -q $NO_COMPILE "torch==$TORCH_VERSION"
        "$VENV/bin/pip" install -q $NO_COMPILE "skyrl-gym==$GYM_VERSION"
        echo "$stamp" >"$VENV/.skyrl-skyrlgym-stamp"
    fi
    # scripts/test.sh may build this venv while it builds the checkout's own wheels (both write build/ and
    # *.egg-info): wait while the file SKYRL_CHECKOUT_BUSY names exists (at most 30 minutes)
    for _ in $(seq 900); do [ -n "${SKYRL_CHECKOUT_BUSY:-}" ] && [ -e "$SKYRL_CHECKOUT_BUSY" ] || break; sleep 2; done
    # The checkout's code, editable (fast to refresh; the tests import what is checked out).
    # skyrl-env-gsm8k and skyrl-env-sql too: the scoring corpus compares their scoring = "skyrl" with skyrl-gym.
    "$VENV/bin/pip" install -q $NO_COMPILE -e "$ROOT" -e "$ROOT/plugins/skyrl_env_skyrlgym" -e "$ROOT/skyrl_env_gsm8k" \
        -e "$ROOT/skyrl_env_sql" "pytest>=8" "pytest-timeout>=2.3"
    "$VENV/bin/python" - <<'PYEOF'
import importlib.metadata as md
import sys
print("== venv", sys.prefix, "| torch", md.version("torch"), "| skyrl-gym", md.version("skyrl-gym"),
      "| omegaconf", md.version("omegaconf"), "| skyrl-env-skyrlgym", md.version("skyrl-env-skyrlgym"),
      "| skyrl-env-gsm8k", md.version("skyrl-env-gsm8k"), "| skyrl-env-sql", md.version("skyrl-env-sql"))
PYEOF
fi
echo "== skyrl-gym venv ready [$((SECONDS - start))s]"
# scripts/test.sh builds the venvs ahead, while the main test folders run.
[ "${SKYRL_STAGE_PREPARE_ONLY:-0}" = 1 ] && exit 0

args=(plugins/skyrl_env_skyrlgym/tests -p no:cacheprovider --durations=10)
if [ -n "${SKYRL_TEST_RESULTS:-}" ]; then
    mkdir -p "$SKYRL_TEST_RESULTS"
    args+=(--junitxml="$SKYRL_TEST_RESULTS/plugins_skyrl_env_skyrlgym_tests_skyrlgym-venv.xml")
fi
unset PYTHONPATH SKYRL_LOAD_PLUGINS SKYRL_EXCLUDE_PLUGINS SKYRL_SKYRLGYM_MODULES
code=0
"$VENV/bin/pytest" "${args[@]}" "$@" || code=$?
echo "== skyrl-gym plugin tests: exit $code [$((SECONDS - start))s in this stage]"
exit "$code"
