#!/usr/bin/env bash
# Set up skyrl from a fresh clone: a virtual environment with every distribution of this
# repository installed from freshly built wheels (not editable).
#
#   bash scripts/setup.sh            # creates .venv if missing (SKYRL_VENV=DIR for another place)
#
# Steps: .venv with the CPU build of torch (pinned: a plain `torch` requirement can pull a
# multi-GB CUDA build); a wheel of skyrl-core and of every plugin package (skyrl_*/ and
# plugins/*/) into dist/wheels; those wheels installed with all of skyrl-core's extras;
# then `skyrl plugins --json` must list every plugin distribution with status ok.
# scripts/test.sh and scripts/quickstart.sh run this first.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
VENV=${SKYRL_VENV:-$ROOT/.venv}
TORCH_VERSION=2.13.0
WHEELS=$ROOT/dist/wheels

step() { printf '\n== %s [%ss]\n' "$*" "$SECONDS"; }

# Every distribution of the repository: the core first, then the plugin packages.
PROJECTS=(.)
for pyproject in skyrl_*/pyproject.toml plugins/*/pyproject.toml; do
    [ -f "$pyproject" ] && PROJECTS+=("$(dirname "$pyproject")")
done

restore_editable() {
    # A developer's venv had editable installs: put them back after the wheel-based run.
    local record=$VENV/.skyrl-editable-before
    [ -f "$record" ] || return 0
    echo "== restoring editable installs: $(tr '\n' ' ' <"$record")"
    xargs -r -I{} "$VENV/bin/pip" install -q --no-deps --no-build-isolation -e {} <"$record"
    rm -f "$record"
}
if [ "${1:-}" = "--restore-editable" ]; then
    restore_editable
    exit 0
fi

# pip byte-compiles every module it installs only when Python will not write bytecode itself
# (PYTHONDONTWRITEBYTECODE set); otherwise the first import writes the .pyc of what is used.
NO_COMPILE=$([ -n "${PYTHONDONTWRITEBYTECODE:-}" ] || echo --no-compile)
step "virtual environment: $VENV"
if [ ! -x "$VENV/bin/python" ]; then
    PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
    "$PYTHON" -m venv "$VENV"
fi
PY=$VENV/bin/python
# The pip script, not `python -m pip`: that would put the checkout (and its build metadata,
# e.g. skyrl_core.egg-info) on sys.path, where pip and importlib.metadata would see it.
PIP=$VENV/bin/pip
"$PIP" install -q $NO_COMPILE "torch==$TORCH_VERSION" "setuptools>=68" wheel

step "building wheels of ${PROJECTS[*]}"
rm -rf "$WHEELS"
mkdir -p "$WHEELS"
for project in "${PROJECTS[@]}"; do
    # setuptools reuses build/lib: a module deleted from the source would stay in the wheel.
    rm -rf "$project/build"
done
"$PIP" wheel -q --no-deps --no-build-isolation --wheel-dir "$WHEELS" "${PROJECTS[@]/#/./}"
ls "$WHEELS"

# Remember which of these distributions were installed editable (a developer's venv), so that
# `scripts/setup.sh --restore-editable` can put them back (scripts/test.sh does, on exit).
"$PY" -I - "$VENV/.skyrl-editable-before" "${PROJECTS[@]}" <<'PYEOF'
import importlib.metadata as md, json, pathlib, sys, tomllib
found = []
for project in sys.argv[2:]:
    name = tomllib.load(open(f"{project}/pyproject.toml", "rb"))["project"]["name"]
    try:
        direct = json.loads(md.distribution(name).read_text("direct_url.json") or "{}")
    except md.PackageNotFoundError:
        continue
    if direct.get("dir_info", {}).get("editable"):
        found.append(str(pathlib.Path(project).resolve()))
record = pathlib.Path(sys.argv[1])
if found and not record.exists():  # keep the first record if an earlier run was interrupted
    record.write_text("\n".join(found) + "\n")
PYEOF

step "installing the wheels"
EXTRAS=$("$PY" -c 'import tomllib; print(",".join(tomllib.load(open("pyproject.toml", "rb"))["project"].get("optional-dependencies", {})))')
CORE_WHEEL=$(ls "$WHEELS"/skyrl_core-*.whl)
"$PIP" install -q $NO_COMPILE "$CORE_WHEEL${EXTRAS:+[$EXTRAS]}" "$WHEELS"/*.whl
# Same version numbers as an earlier install (editable or not): replace them with these wheels.
"$PIP" install -q $NO_COMPILE --force-reinstall --no-deps "$WHEELS"/*.whl

step "checking that every plugin distribution loads"
NAMES=$("$PY" -I - "${PROJECTS[@]}" <<'PYEOF'
import sys, tomllib
print(" ".join(tomllib.load(open(f"{p}/pyproject.toml", "rb"))["project"]["name"] for p in sys.argv[1:]))
PYEOF
)
unset SKYRL_LOAD_PLUGINS
"$VENV/bin/skyrl" plugins --json >"$WHEELS/plugins.json" || true
"$PY" -I - "$WHEELS/plugins.json" $NAMES <<'PYEOF'
import json, sys
entries = {e["distribution"]: e for e in json.load(open(sys.argv[1]))}
bad = [f"{name}: {entries[name]['status']} {entries[name]['error'] or ''}" if name in entries else f"{name}: not listed"
       for name in sys.argv[2:] if entries.get(name, {}).get("status") != "ok"]
for e in entries.values():
    print(f"  {e['distribution']:<24} {e['version']:<8} {e['status']}")
if bad:
    sys.exit("skyrl plugins --json: these distributions did not load:\n  " + "\n  ".join(bad))
PYEOF
step "setup done: $VENV"
