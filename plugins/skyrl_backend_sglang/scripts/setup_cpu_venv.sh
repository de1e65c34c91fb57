#!/usr/bin/env bash
# A virtual environment where a real SGLang engine runs on a CPU-only machine (x86_64, Python 3.11,
# torch 2.13.0+cpu), with skyrl-core and this plugin installed editable from the checkout.
#
#   bash plugins/skyrl_backend_sglang/scripts/setup_cpu_venv.sh [VENV]
#
# Default VENV: $SKYRL_SGLANG_VENV, else ~/.cache/skyrl/venv-sglang-cpu-<sglang>-torch-<torch>, outside
# the checkout, so that CI runs in fresh clones on the same machine reuse it (building it takes
# 2-3 minutes and ~3 GB; reusing it ~20 s). SKYRL_SGLANG_VENV=.venv-sglang keeps one in the checkout
# (git-ignored).
#   SGLANG_VERSION=0.5.23 bash .../setup_cpu_venv.sh                      # 0.5.20 (default) to 0.5.23 work
#
# Steps: torch 2.13.0 (CPU build); sglang with --no-deps (its requirements pin CUDA wheels);
# requirements-cpu.txt (what the CPU text path needs); patch_sglang_cpu.py (two optional imports
# made optional: torchvision and an unused vllm kernel); skyrl-core[ray] + this plugin + pytest.
# A finished venv is reused while its inputs (this script, the requirements, the patch, the
# version) are unchanged; only the editable installs are refreshed. Never install SGLang into the
# main .venv: its pins (transformers, tokenizers) differ from skyrl-core's tested versions.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
SGLANG_VERSION=${SGLANG_VERSION:-0.5.20}
TORCH_VERSION=2.13.0
VENV=${1:-${SKYRL_SGLANG_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/skyrl/venv-sglang-cpu-$SGLANG_VERSION-torch-$TORCH_VERSION}}
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}

# pip byte-compiles every module it installs only when Python will not write bytecode itself
# (PYTHONDONTWRITEBYTECODE set); otherwise the first import writes the .pyc of what is used.
NO_COMPILE=$([ -n "${PYTHONDONTWRITEBYTECODE:-}" ] || echo --no-compile)
stamp=$(cat "$HERE/setup_cpu_venv.sh" "$HERE/requirements-cpu.txt" "$HERE/patch_sglang_cpu.py" \
    | sha256sum | cut -c1-16)-$SGLANG_VERSION-$TORCH_VERSION
if [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/.skyrl-sglang-stamp" 2>/dev/null)" = "$stamp" ]; then
    echo "== $VENV is up to date (sglang $SGLANG_VERSION)"
else
    echo "== building $VENV (sglang $SGLANG_VERSION, torch $TORCH_VERSION) [${SECONDS}s]"
    rm -rf "$VENV"
    mkdir -p "$(dirname "$VENV")"
    "$PYTHON" -m venv "$VENV"
    PIP=$VENV/bin/pip
    "$PIP" install -q -U pip
    "$PIP" install -q $NO_COMPILE "torch==$TORCH_VERSION"
    "$PIP" install -q $NO_COMPILE --no-deps "sglang==$SGLANG_VERSION"
    "$PIP" install -q $NO_COMPILE -r "$HERE/requirements-cpu.txt"
    "$VENV/bin/python" "$HERE/patch_sglang_cpu.py"
    echo "$stamp" >"$VENV/.skyrl-sglang-stamp"
fi
# scripts/test.sh may build this venv while it builds the checkout's own wheels (both write build/ and
# *.egg-info): wait while the file SKYRL_CHECKOUT_BUSY names exists (at most 30 minutes)
for _ in $(seq 900); do [ -n "${SKYRL_CHECKOUT_BUSY:-}" ] && [ -e "$SKYRL_CHECKOUT_BUSY" ] || break; sleep 2; done
# The checkout's code, editable (fast to refresh; the tests import what is checked out). pip then
# lists sglang's CUDA-only requirements as missing and its exact pins as unmet: expected here.
"$VENV/bin/pip" install -q $NO_COMPILE -e "$ROOT[ray]" -e "$ROOT/plugins/skyrl_backend_sglang" "pytest>=8" "pytest-timeout>=2.3"
"$VENV/bin/python" - <<'PYEOF'
import importlib.metadata as md
import sglang, torch, transformers
import sys
print("== venv", sys.prefix, "| torch", torch.__version__, "| sglang", sglang.__version__, "| transformers", transformers.__version__,
      "| skyrl-backend-sglang", md.version("skyrl-backend-sglang"))
PYEOF
