#!/usr/bin/env bash
# Run every benchmark (CPython and headless Chromium) and write bench/results/latest.{json,md,png}.
# Set-up as test.sh does (Chromium and Node from apt when missing, .venv, the offline Pyodide
# web root); matplotlib (the chart) is installed into .venv when it is missing.
# Arguments go to `python -m bench`: --quick (under 2 minutes), --out DIR, --only rpc,cold,...
set -euo pipefail
cd "$(dirname "$0")"
source tools/setup.sh
setup_system
setup_venv
if ! "$VENV/bin/python" -c "import matplotlib" 2>/dev/null; then
  "$VENV/bin/python" -m pip install -q "matplotlib==3.11.2"
fi
exec "$VENV/bin/python" -m bench "$@"
