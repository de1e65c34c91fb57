#!/usr/bin/env bash
# Build the documentation site from docs/ with mkdocs (built-in theme), in strict mode: a broken
# link between pages, a missing anchor or a Markdown problem fails the build.
#
#   bash docs/build.sh                  # writes the site to dist/site
#   bash docs/build.sh --port 8000      # builds, then serves it at http://127.0.0.1:8000 (Ctrl-C stops)
#   bash docs/build.sh --out DIR        # writes the site to DIR
#
# Needs mkdocs: pip install '.[docs]' (scripts/setup.sh installs every extra into .venv).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
out=$ROOT/dist/site
port=""
while [ $# -gt 0 ]; do
    case "$1" in
        --port) port=${2:?--port needs a number}; shift 2 ;;
        --out) out=${2:?--out needs a folder}; shift 2 ;;
        -h|--help) sed -n '2,9p' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "docs/build.sh: unknown argument '$1' (use --port N or --out DIR)" >&2; exit 2 ;;
    esac
done

# mkdocs from PATH, else from the repository's .venv.
if command -v mkdocs >/dev/null 2>&1; then
    mkdocs=(mkdocs)
elif [ -x "$ROOT/.venv/bin/mkdocs" ]; then
    mkdocs=("$ROOT/.venv/bin/mkdocs")
else
    echo "docs/build.sh: mkdocs is not installed; run: pip install '.[docs]'" >&2
    exit 1
fi
python=$(dirname "$(command -v "${mkdocs[0]}")")/python
[ -x "$python" ] || python=python3

"${mkdocs[@]}" build --strict --clean --config-file "$ROOT/mkdocs.yml" --site-dir "$out"
echo "site written to $out"
if [ -n "$port" ]; then
    echo "serving $out at http://127.0.0.1:$port (Ctrl-C stops)"
    exec "$python" -m http.server "$port" --bind 127.0.0.1 --directory "$out"
fi
