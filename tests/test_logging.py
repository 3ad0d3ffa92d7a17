"""The library is quiet: with logging unconfigured nothing reaches stderr, not even warnings
(a NullHandler on the ``circle_ws_web`` logger); expected activity (a reconnect) is INFO; what
needs a person (giving up) is ERROR.

Each case runs in a fresh interpreter, because pytest configures logging in its own process.
tests/browser/test_logging_browser.py checks the same in Pyodide."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

SCRIPT = r"""
import asyncio, logging, sys
from circle_ws_web import CircleWsClient, ConnectionLostError

async def main(url, level, give_up):
    if level != "none":
        logging.basicConfig(level=getattr(logging, level), stream=sys.stderr,
                            format="%(levelname)s %(name)s: %(message)s")
    c = CircleWsClient(url, reconnect_initial_delay=0.05, reconnect_max_delay=0.2,
                       reconnect_max_attempts=1 if give_up else None, reconnect_min_uptime=0)
    await c.connect()
    await c.call("test.garbage", {})          # bad frames: WARNING-level lines
    try:
        await c.call("test.drop", {})         # the server drops us: a reconnect cycle
    except ConnectionLostError:
        pass
    await c.wait_connected(10)
    print("reconnected", c.metrics.reconnects, flush=True)
    if give_up:
        sys.stdout.write("waiting\n"); sys.stdout.flush()
        sys.stdin.readline()                  # the test stops the server now
        try:
            await c.call("test.drop", {})
        except ConnectionLostError:
            pass
        while c.status.value != "disconnected":
            await asyncio.sleep(0.02)
        print("gave up", flush=True)
    await c.disconnect()

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3] == "give-up"))
"""


def run(url: str, level: str, give_up: bool = False, stop=None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, url, level, "give-up" if give_up else "stay"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    if give_up:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().startswith("reconnected 1")
        assert proc.stdout.readline() == "waiting\n"
        stop()
        proc.stdin.write("\n")
        proc.stdin.flush()
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_unconfigured_logging_prints_nothing(servers) -> None:
    done = run(servers.url("open"), "none")
    assert done.returncode == 0, done.stderr
    assert "reconnected 1" in done.stdout
    assert done.stderr == ""  # not even the bad-frame warnings: the NullHandler takes them


def test_info_shows_the_reconnect_cycle(servers) -> None:
    done = run(servers.url("open"), "INFO")
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert any(line.startswith("INFO circle_ws_web:") and "reconnected" in line for line in lines), lines
    assert any(line.startswith("INFO circle_ws_web:") and "reconnecting in" in line for line in lines), lines
    assert any(line.startswith("WARNING circle_ws_web:") and "bad frame" in line for line in lines), lines


def test_warning_level_shows_no_reconnect_but_shows_giving_up(servers) -> None:
    server = servers.servers["open"]
    done = run(server.url, "WARNING", give_up=True, stop=server.stop)
    assert done.returncode == 0, done.stderr
    assert "gave up" in done.stdout
    lines = [line for line in done.stderr.splitlines() if "bad frame" not in line]
    assert not [line for line in lines if "reconnect" in line and not line.startswith("ERROR")], lines
    assert any(line.startswith("ERROR circle_ws_web:") and "giving up" in line for line in lines), lines


@pytest.mark.parametrize("level", ["none", "INFO"])
def test_the_key_is_never_logged(servers, level: str) -> None:
    from support.servers import TEST_KEY

    script = SCRIPT.replace("CircleWsClient(url,", f"CircleWsClient(url, {TEST_KEY!r},")
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    done = subprocess.run(
        [sys.executable, "-c", script, servers.url("auth"), level, "stay"],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert TEST_KEY not in done.stdout + done.stderr
    if level == "INFO":
        assert "authenticated as 04" in done.stderr  # the public key only
