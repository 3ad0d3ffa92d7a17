"""The offline web root of the browser benchmarks and a static server for it.

The wheel is built from the current source (never a stale dist/), the web root is
tools/webroot.py's (Pyodide and the pinned wheels, no request leaves the machine), and
bench/web/ is served at /bench/. Pages are cross-origin isolated (COOP/COEP headers): that
gives ``performance.now()`` its fine resolution (5 us instead of 100 us), which the round-trip
figures need.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WEB = HERE / "web"
#: Where the web root is prepared (CIRCLE_BENCH_WEBROOT overrides: the quick test uses its own).
WEBROOT = Path(os.environ.get("CIRCLE_BENCH_WEBROOT") or ROOT / ".cache" / "bench-webroot")


@functools.cache
def _tool(name: str) -> ModuleType:
    """tools/<name>.py, imported once (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", ROOT / "tools" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def webroot_module() -> ModuleType:
    """tools/webroot.py: prepares the offline Pyodide web root."""
    return _tool("webroot")


def snapshot_module() -> ModuleType:
    """tools/snapshot.py: makes and installs memory snapshots."""
    return _tool("snapshot")


def build_wheel(outdir: Path) -> Path:
    """Build the circle-ws-web wheel from this checkout into ``outdir``."""
    cmd = [sys.executable, "-m", "build", "--wheel", "--outdir", str(outdir)]
    if importlib.util.find_spec("hatchling") is not None:
        cmd.append("--no-isolation")
    proc = subprocess.run([*cmd, str(ROOT)], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"building the wheel failed:\n{proc.stdout}\n{proc.stderr}")
    (wheel,) = outdir.glob("circle_ws_web-*.whl")
    return wheel


def prepare() -> Path:
    """Build the wheel and refresh the bench web root; returns the web root."""
    with tempfile.TemporaryDirectory() as tmp:
        wheel = build_wheel(Path(tmp))
        return webroot_module().prepare_webroot(WEBROOT, wheel)


class Channel:
    """The driver's side of the page's command loop: commands out by long poll, results in."""

    def __init__(self) -> None:
        self.commands: queue.Queue[dict[str, Any]] = queue.Queue()
        self.results: queue.Queue[dict[str, Any]] = queue.Queue()
        self.log: list[str] = []
        self._next_id = 0

    def send(self, kind: str, code: str) -> int:
        self._next_id += 1
        self.commands.put({"id": self._next_id, "kind": kind, "code": code})
        return self._next_id

    def quit(self) -> None:
        self.commands.put({"quit": True})


def _handler_base() -> type:
    return webroot_module().StaticHandler  # type: ignore[no-any-return]


class _Handler(_handler_base()):  # type: ignore[misc]
    """tools/webroot.py's StaticHandler (web root at /, bench/web at /bench/) plus the
    page's command channel at /api/, and cross-origin isolation for precise timers."""

    channel: Channel

    def do_GET(self) -> None:
        if self.path == "/api/next":
            try:
                self._json(self.channel.commands.get(timeout=15))
            except queue.Empty:
                self._json({"wait": True})
            return
        super().do_GET()

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if self.path == "/api/result":
            self.channel.results.put(body)
        elif self.path == "/api/log":
            self.channel.log.append(f"{body.get('level')}: {body.get('text')}")
        self._json({})

    def _json(self, value: Any) -> None:
        data = json.dumps(value).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def end_headers(self) -> None:
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        super().end_headers()


@contextmanager
def static_server(webroot: Path, channel: Channel) -> Iterator[str]:
    """Serve ``webroot`` at / and bench/web at /bench/, and ``channel`` at /api/; yields the
    base URL."""
    handler = type("Handler", (_Handler,), {"mounts": {"/bench/": WEB, "/": webroot}, "channel": channel})
    server = webroot_module().QuietHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="bench-static", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
