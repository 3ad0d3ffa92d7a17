#!/usr/bin/env bash
# The circle-ws-web demo, offline: ./demo.sh [--port-open 8701] [--port-auth 8702]
#                                             [--http-port 8700] [--check [--screenshot PNG]]
#
# On a fresh Debian machine it installs what it needs (Chromium, Node/npm, a .venv with the
# pinned dependencies: tools/setup.sh), builds the wheel (./build_wheel.sh; skipped with
# --wheel PATH), then hands over to demo/serve.py, which prepares the offline web root
# (tools/webroot.py, cached in .cache/), starts three reference servers and the page's web
# server, prints the page URL, and stops everything on Ctrl-C.
# --check runs the whole tour headless in Chromium instead and exits 0 only if it worked.
# After building it makes a memory snapshot for the page (tools/snapshot.py; DEMO_SNAPSHOT=0: none).
# Every flag: ./demo.sh --help. Ports also from DEMO_PORT_OPEN, DEMO_PORT_AUTH, DEMO_HTTP_PORT.
set -euo pipefail
cd "$(dirname "$0")"

build=1
webroot=.cache/demo-webroot  # demo/serve.py's default
prev=""
for arg in "$@"; do
  case "$arg" in
    -h|--help) build=0 ;;
    --wheel|--wheel=*) build=0 ;;
    --webroot=*) webroot="${arg#--webroot=}" ;;
  esac
  [ "$prev" = "--webroot" ] && webroot="$arg"
  prev="$arg"
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

  # A memory snapshot of Pyodide with this wheel imported: the page then starts in about a
  # second instead of three. Made once per wheel (~10 s), cached in .cache/snapshots/; without
  # one (DEMO_SNAPSHOT=0, or making it failed) the page boots the ordinary way.
  if [ "${DEMO_SNAPSHOT:-1}" != 0 ]; then
    t=$(now)
    if out=$("$VENV/bin/python" tools/snapshot.py --webroot "$webroot" --wheel "$(ls dist/*.whl)" 2>&1); then
      echo "demo: $(echo "$out" | head -1) ($(took "$t") s)"
    else
      echo "$out" >&2
      echo "demo: warning: no memory snapshot, the page boots without one" >&2
    fi
  fi
fi

# exec: demo/serve.py becomes this process, so Ctrl-C and kill reach it directly; it stops
# its servers itself (and they also die with it: PR_SET_PDEATHSIG).
exec "$VENV/bin/python" demo/serve.py "$@"
