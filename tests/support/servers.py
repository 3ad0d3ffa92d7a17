"""Real reference servers for tests: subprocesses on 127.0.0.1 that can be stopped, started
and restarted on the same port (a restart is a real process kill, as in production)."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

#: The key the scenario suites authenticate with (SPEC vector 1; a test key, never a real one).
TEST_KEY = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"

SRC = Path(__file__).resolve().parents[2] / "src"


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


_EPHEMERAL = _ephemeral_range()
_handed_out: set[int] = set()
_ports = random.Random(os.getpid() ^ time.time_ns())


def free_port() -> int:
    """A port nothing listens on, outside the kernel's ephemeral range.

    Why not bind port 0: that port comes from the ephemeral range, and once released any
    outgoing connection on the machine (a client's own end of a socket) may take it as its
    local port and hold it for minutes: a server restarted on it then finds it in use.
    """
    low, high = (10_000, _EPHEMERAL[0] - 1) if _EPHEMERAL[0] > 11_000 else (_EPHEMERAL[1] + 1, 65_535)
    for _ in range(1_000):
        port = _ports.randint(low, high)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port in {low}-{high}")


class ServerProcess:
    """``python -m circle_ws_web.server`` on a fixed port, with test controls."""

    def __init__(
        self, port: int, *, require_auth: bool, extra: tuple[str, ...] = (), python: str = sys.executable
    ) -> None:
        self.python = python
        self.port = port
        self.require_auth = require_auth
        self.extra = extra
        self.proc: subprocess.Popen[str] | None = None
        self.output: list[str] = []

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> None:
        assert self.proc is None, "already running"
        args = [self.python, "-m", "circle_ws_web.server", "--port", str(self.port), "--test-controls"]
        if self.require_auth:
            args.append("--require-auth")
        if self.python == sys.executable:
            env = {**os.environ, "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        else:  # another interpreter (a fresh venv): run what is installed there
            env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        deadline = time.monotonic() + timeout
        while True:
            proc = subprocess.Popen(
                [*args, *self.extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
            )
            line = proc.stdout.readline()  # type: ignore[union-attr]
            if line.startswith("listening on"):
                break
            proc.wait()
            rest = proc.stdout.read()  # type: ignore[union-attr]
            # The port may still be held by the previous process for a moment after a kill.
            if "already in use" in line + rest and time.monotonic() < deadline:
                time.sleep(0.1)
                continue
            raise RuntimeError(f"server on port {self.port} did not start: {line}{rest}")
        self.proc = proc
        threading.Thread(target=self._drain, args=(proc,), daemon=True).start()

    def _drain(self, proc: subprocess.Popen[str]) -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            self.output.append(line)

    def stop(self, *, hard: bool = True) -> None:
        """Kill the process (SIGKILL by default: connections drop without a close frame)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.send_signal(signal.SIGKILL if hard else signal.SIGTERM)
        proc.wait(10)

    def restart(self, down: float = 0.0) -> None:
        self.stop()
        time.sleep(down)
        self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class StalledServer:
    """Accepts TCP connections and never answers: a WebSocket handshake that never completes."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


class ProcessPool:
    """Named reference server processes on free ports, started and stopped together, and a port
    where nothing listens. The scenario pools below share this; each names its own servers."""

    def __init__(self, servers: dict[str, ServerProcess]) -> None:
        self.servers = servers
        self._dead = free_port()

    def start(self) -> None:
        try:
            for server in self.servers.values():
                server.start()
        except BaseException:  # the fixture never gets the pool: stop what did start, or it outlives the run
            self.close()
            raise

    def ensure_running(self) -> None:
        """Start again whatever a test stopped or killed (a process that died counts too)."""
        for server in self.servers.values():
            if not server.running:
                server.proc = None
                server.start()

    def close(self) -> None:
        for server in self.servers.values():
            server.stop()

    def url(self, name: str) -> str:
        return self.servers[name].url

    def dead_url(self) -> str:
        return f"ws://127.0.0.1:{self._dead}"


class ServerPool(ProcessPool):
    """The two servers every scenario uses: "auth" (authentication required) and "open"."""

    def __init__(self) -> None:
        super().__init__({
            "auth": ServerProcess(free_port(), require_auth=True),
            "open": ServerProcess(free_port(), require_auth=False),
        })
        self.stalled = StalledServer()

    def close(self) -> None:
        super().close()
        self.stalled.close()

    def stalled_url(self) -> str:
        return f"ws://127.0.0.1:{self.stalled.port}"
