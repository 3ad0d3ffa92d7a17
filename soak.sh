#!/usr/bin/env bash
# The chaos soak for as long as you like (docs/chaos.md): clients through a fault-injecting
# proxy in front of real servers; prints the figures table at the end, exits 1 on any violation.
#
#   ./soak.sh --minutes N [--seed S] [--slack SECONDS] [--rev GIT-REV] [--browser]
#
# --minutes   chaos duration (fractions allowed: --minutes 0.5); default 5
# --seed      the fault and client seed (default: random; printed either way)
# --rev       soak that git revision's src/ (e.g. HEAD, to leave out uncommitted work in the tree)
# --browser   the clients run in Pyodide in headless Chromium (tests/browser/test_chaos_soak_browser.py)
set -euo pipefail
cd "$(dirname "$0")"
minutes=5 seed="" slack=3 rev="" browser=0
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) minutes=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --slack) slack=$2; shift 2 ;;
    --rev) rev=$2; shift 2 ;;
    --browser) browser=1; shift ;;
    -h|--help) sed -n 2,11p "$0"; exit 0 ;;
    *) echo "soak.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
seconds=$(python3 -c "import sys; s = float(sys.argv[1]) * 60; assert s > 0; print(f'{s:g}')" "$minutes") \
  || { echo "soak.sh: --minutes must be a number > 0" >&2; exit 2; }
[ -n "$seed" ] || seed=$RANDOM$RANDOM
source tools/setup.sh
[ "$browser" = 1 ] && setup_system
setup_venv
tmp=$(mktemp -d -t chaos-soak-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
export PYTHONPATH="$PWD/tests${PYTHONPATH:+:$PYTHONPATH}"
if [ -n "$rev" ]; then
  git archive "$rev" src pyproject.toml README.md | tar -x -C "$tmp"
  export CHAOS_SRC="$tmp/src" PYTHONPATH="$tmp/src:$PYTHONPATH"
  echo "soaking $(git rev-parse --short "$rev") ($rev), not the working tree"
fi
if [ "$browser" = 0 ]; then
  exec "$VENV/bin/python" -m chaos --seconds "$seconds" --seed "$seed" --slack "$slack"
fi
# The browser fixtures build the wheel (from the working tree, or the revision's below) and
# the offline Pyodide web root themselves, in the session's temp dir.
if [ -n "$rev" ]; then
  "$VENV/bin/python" -m build --wheel --no-isolation --outdir "$tmp/dist" "$tmp" >/dev/null
  CIRCLE_WS_WHEEL=$(ls "$tmp"/dist/*.whl)
  export CIRCLE_WS_WHEEL
fi
CHAOS_SECONDS=$seconds CHAOS_SEED=$seed CHAOS_SLACK=$slack \
  "$VENV/bin/python" -m pytest -p no:cacheprovider -q -s tests/browser/test_chaos_soak_browser.py
