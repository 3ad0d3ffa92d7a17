#!/usr/bin/env bash
# Run every test (CPython and headless Chromium) on a fresh Debian machine.
# Installs what it needs: Chromium and Node/npm from apt when missing, a private virtualenv in
# .venv with the pinned test dependencies, the offline Pyodide web root (npm + PyPI, cached in
# .cache/), and a freshly built wheel. Extra arguments go to pytest (e.g. ./test.sh -k restart).
set -euo pipefail
cd "$(dirname "$0")"
source tools/setup.sh
setup_system
setup_venv
./build_wheel.sh >/dev/null
"$VENV/bin/python" tools/webroot.py --wheel "$(ls dist/*.whl)" >/dev/null
exec "$VENV/bin/python" -m pytest -p no:cacheprovider "$@"
