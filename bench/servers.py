"""Server processes for the benchmarks, all on 127.0.0.1.

* :func:`ping_server`: the fast server of the RPC benchmarks (ping_server.mjs: plain Node,
  hand-written framing), so the clients, not a server, are what is measured. The Python
  twin (ping_server.py, on ``websockets``) is measured beside it for the capacity figures.
* :class:`RefServer`: the reference server (``python -m circle_ws_web.server``) with
  authentication and test controls, on one or many ports; restartable on the same ports
  (a restart is a SIGKILL and a new process, as in production).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SRC = ROOT / "src"

#: The key the benchmarks authenticate with (SPEC vector 1, a public test key).
TEST_KEY = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"


class Proc:
    """A server subprocess that prints one ``listening on URL`` line per port."""

    def __init__(self, args: list[str], nports: int, what: str, env: dict[str, str] | None = None) -> None:
        self.args = args
        self.nports = nports
        self.what = what
        self.env = env
        self.proc: subprocess.Popen[str] | None = None
        self.urls: list[str] = []
        self.started_at = 0.0  # perf_counter() when the last "listening on" line was read

    def start(self, timeout: float = 20.0) -> Proc:
        deadline = time.monotonic() + timeout
        while True:
            proc = subprocess.Popen(
                self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env
            )
            urls = []
            while len(urls) < self.nports:
                line = proc.stdout.readline()  # type: ignore[union-attr]
                if not line.startswith("listening on "):
                    break
                urls.append(line.split()[-1])
            if len(urls) == self.nports:
                self.started_at = time.perf_counter()
                break
            proc.kill()
            _, err = proc.communicate(timeout=10)
            # After a SIGKILL the port may be held for a moment: try again.
            if "in use" in err and time.monotonic() < deadline:
                time.sleep(0.05)
                continue
            raise RuntimeError(f"{self.what} did not start: {err.strip()[-2000:]}")
        self.proc = proc
        self.urls = urls
        _drain(proc)
        return self

    def kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    @property
    def url(self) -> str:
        return self.urls[0]

    def __enter__(self) -> Proc:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _drain(proc: subprocess.Popen[str]) -> None:
    """Read (and drop) what the server prints, so it never blocks on a full pipe."""
    for stream in (proc.stdout, proc.stderr):
        threading.Thread(target=stream.read, daemon=True).start()  # type: ignore[union-attr]


def node() -> str:
    path = shutil.which("node")
    if path is None:
        raise RuntimeError("node not found: the fast ping server needs Node.js (apt-get install nodejs)")
    return path


def ping_server(nports: int = 1) -> Proc:
    """The fast ping server (Node)."""
    return Proc([node(), str(HERE / "ping_server.mjs"), *["--port", "0"] * nports], nports, "node ping server")


def py_ping_server(nports: int = 1) -> Proc:
    """The Python ping server (``websockets``), for the server-capacity figures."""
    return Proc([sys.executable, str(HERE / "ping_server.py"), *["--port", "0"] * nports], nports, "python ping server")


class RefServer(Proc):
    """The reference server: authentication required, test controls on."""

    def __init__(self, nports: int = 1, ports: list[int] | None = None) -> None:
        port_args: list[str] = []
        for port in ports or [0] * nports:
            port_args += ["--port", str(port)]
        env = {**os.environ, "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        args = [sys.executable, "-m", "circle_ws_web.server", *port_args, "--require-auth", "--test-controls"]
        super().__init__(args, len(ports or [0] * nports), "reference server", env)

    def restart(self) -> float:
        """SIGKILL, then a new process on the same ports; returns perf_counter() when it listens."""
        ports = [u.rsplit(":", 1)[1] for u in self.urls]
        self.kill()
        args = list(self.args)
        i = 0
        for j, a in enumerate(args):
            if a == "--port":
                args[j + 1] = ports[i]
                i += 1
        self.args = args
        self.start()
        return self.started_at


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, seconds) a process has used so far, from /proc."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
