#!/usr/bin/env bash
# Build dist/circle_ws_web-<version>-py3-none-any.whl and the sdist from this checkout.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
if [ -x .venv/bin/python ]; then PY=.venv/bin/python; fi
if ! "$PY" -c "import build" 2>/dev/null; then
  "$PY" -m pip install -q build
fi
rm -rf dist
"$PY" -m build --sdist --wheel --outdir dist . >/dev/null
ls dist/*.whl dist/*.tar.gz
