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

# The lowest websockets pyproject.toml allows, in a venv of its own (.venv-oldest): the CPython
# scenarios and the unit tests run on it first, so code that needs a newer websockets fails
# here. The other pins come from requirements-dev.txt, less what only the browser, docs, CLI and
# benchmark tests use; the package runs from src/ (no install). The pure parser tests
# (test_rpc_fuzz, test_rpc_hostile) never touch websockets and run once, below.
OLDEST=.venv-oldest
OLDEST_WEBSOCKETS=$(sed -n 's/^ *"websockets>=\([0-9.]*\); sys_platform.*/\1/p' pyproject.toml)
oldest_want=$( (cat requirements-dev.txt; echo "websockets==$OLDEST_WEBSOCKETS") | sha256sum | cut -d' ' -f1)
if [ ! -f "$OLDEST/.requirements.sha" ] || [ "$(cat "$OLDEST/.requirements.sha")" != "$oldest_want" ]; then
  echo "test.sh: $OLDEST with websockets==$OLDEST_WEBSOCKETS" >&2
  python3 -m venv --clear "$OLDEST"
  "$OLDEST/bin/python" -m pip install -q "websockets==$OLDEST_WEBSOCKETS" $(grep -vE \
    '^(#|$|websockets|playwright|pytest-playwright|jupyter|matplotlib|mypy|build|hatchling|eth-account|mkdocs|griffe|pymdown|pexpect)' \
    requirements-dev.txt)
  echo "$oldest_want" > "$OLDEST/.requirements.sha"
fi
oldest_run() {
  PYTHONPATH=src "$OLDEST/bin/python" -m pytest -p no:cacheprovider -q tests/test_scenarios.py tests/unit \
    --ignore=tests/unit/test_rpc_fuzz.py --ignore=tests/unit/test_rpc_hostile.py
}

if [ $# -gt 0 ]; then  # a chosen subset: one run, as pytest would do it
  oldest_run
  exec "$VENV/bin/python" -m pytest -p no:cacheprovider "$@"
fi

# Everything: the browser tests (tests/browser, ~10 minutes, most of it waiting on Pyodide pages
# and timers) run in a second pytest process alongside the CPython ones, which would otherwise
# wait for them: the suite takes the browser part's time instead of the sum. Two processes, not
# pytest-xdist workers: once Playwright's browser is up in a process, pytest-asyncio cannot run
# there (tests/conftest.py), so the two kinds must never share one. Their output is kept apart:
# the browser part's goes to a log printed when it is done.
mkdir -p .cache/test-logs
browser_log=.cache/test-logs/browser.log
"$VENV/bin/python" -m pytest -p no:cacheprovider tests/browser >"$browser_log" 2>&1 &
browser_pid=$!
trap 'kill "$browser_pid" 2>/dev/null || true' INT TERM
echo "test.sh: the browser tests run alongside (pid $browser_pid); their output follows at the end ($browser_log)"
rc_oldest=0 rc_cpython=0 rc_browser=0
oldest_run || rc_oldest=$?
"$VENV/bin/python" -m pytest -p no:cacheprovider --ignore=tests/browser || rc_cpython=$?
wait "$browser_pid" || rc_browser=$?
echo
echo "=== browser tests (tests/browser) ==="
cat "$browser_log"
echo
echo "test.sh: websockets $OLDEST_WEBSOCKETS run exit $rc_oldest, CPython tests exit $rc_cpython, browser tests exit $rc_browser"
[ "$rc_oldest" = 0 ] && [ "$rc_cpython" = 0 ] && [ "$rc_browser" = 0 ]
