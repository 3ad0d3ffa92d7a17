#!/usr/bin/env bash
# The circle-ws-web demo, offline: ./demo.sh [--port-open 8701] [--port-auth 8702]
#                                             [--http-port 8700] [--check [--screenshot PNG]]
#
# On a fresh Debian machine it installs what it needs (Chromium, Node/npm, a .venv with the
# pinned dependencies: tools/setup.sh), builds the wheel (./build_wheel.sh; skipped with
# --wheel PATH), then hands over to demo/serve.py, which prepares the offline web root
# (tools/webroot.py, cached in .cache/), starts two reference servers and the page's web
# server, prints the page URL, and stops everything on Ctrl-C.
# --check runs the whole tour headless in Chromium instead and exits 0 only if it worked.
# Every flag: ./demo.sh --help. Ports also from DEMO_PORT_OPEN, DEMO_PORT_AUTH, DEMO_HTTP_PORT.
set -euo pipefail
cd "$(dirname "$0")"

build=1
for arg in "$@"; do
  case "$arg" in
    -h|--help) build=0 ;;
    --wheel|--wheel=*) build=0 ;;
  esac
done

now() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

t=$(now)
source tools/setup.sh
setup_system
setup_venv
echo "demo: system and .venv ready ($(took "$t") s)"

if [ "$build" = 1 ]; then
  t=$(now)
  if ! out=$(./build_wheel.sh 2>&1); then
    echo "$out" >&2
    echo "demo: error: ./build_wheel.sh failed" >&2
    exit 3
  fi
  echo "demo: wheel built: $(ls dist/*.whl) ($(took "$t") s)"
fi

# exec: demo/serve.py becomes this process, so Ctrl-C and kill reach it directly; it stops
# its servers itself (and they also die with it: PR_SET_PDEATHSIG).
exec "$VENV/bin/python" demo/serve.py "$@"
