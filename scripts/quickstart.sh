#!/usr/bin/env bash
# Set up skyrl (scripts/setup.sh), check the installation, and run the quickstart:
# GRPO on a tiny locally built model, on this machine's CPU, with no network.
#
#   bash scripts/quickstart.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
VENV=${SKYRL_VENV:-$ROOT/.venv}

# A developer's editable installs are replaced by the wheels for the run, then put back.
trap 'bash scripts/setup.sh --restore-editable' EXIT
bash scripts/setup.sh
"$VENV/bin/skyrl" doctor
if [ -f examples/quickstart.toml ]; then
    "$VENV/bin/skyrl" train examples/quickstart.toml
else
    echo "examples/quickstart.toml does not exist yet: the quickstart arrives with the trainer." >&2
fi
