#!/usr/bin/env python3
"""Run the circle-ws-web demo offline: three reference servers, a static web server, the page.

Called by ``./demo.sh`` (which first sets up the machine and builds the wheel); usable on its
own from the project's virtualenv::

    .venv/bin/python demo/serve.py [--port-open 8701] [--port-auth 8702] [--port-third 8703] [--http-port 8700]
                                   [--webroot DIR] [--wheel WHEEL] [--check [--screenshot PNG]]

What it starts (and stops again on Ctrl-C, SIGTERM or SIGHUP, leaving no process behind):

* ``python -m circle_ws_web.server --port PORT_OPEN``                  (no authentication)
* ``python -m circle_ws_web.server --port PORT_AUTH --require-auth``   (authentication required)
* ``python -m circle_ws_web.server --port PORT_THIRD --require-auth``  (not in the page's list:
  the page adds it while it runs, to show a server joining the fleet)

  all with ``--test-controls``, for the page's "drop this connection" button (``test.drop``).
  Each one's pid is printed; one that exits or is killed while the demo serves is started again
  on the same port 3 s later (:class:`Supervisor`; not with ``--check``, which restarts servers
  itself);
* a static web server on 127.0.0.1:HTTP_PORT (in this process) serving the demo page from
  ``demo/``, Pyodide + micropip + ecdsa/six from the web root of ``tools/webroot.py``, the
  circle-ws-web wheel, and a generated ``/config.json`` that tells the page to use all of that
  (without it, the page falls back to Pyodide from the jsDelivr CDN).

Every port is checked before anything starts; a taken port ends the run with a one-line
message and exit code 2. ``--check`` runs the page headless in Chromium and exits 0 only when
the whole tour worked (see ``demo/check.py``).

Ports can also come from the environment: DEMO_PORT_OPEN, DEMO_PORT_AUTH, DEMO_PORT_THIRD,
DEMO_HTTP_PORT (the third falls back to a free port when 8703 is taken and none was given).
"""

from __future__ import annotations

import argparse
import errno
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import unquote, urlsplit

DEMO_DIR = Path(__file__).resolve().parent
ROOT = DEMO_DIR.parent
DEFAULT_WEBROOT = ROOT / ".cache" / "demo-webroot"
DEFAULT_SCREENSHOT = ROOT / ".cache" / "demo-check.png"
HOST = "127.0.0.1"
EXIT_PORT_TAKEN = 2
EXIT_SETUP_FAILED = 3
SERVER_START_TIMEOUT = 20.0
#: A reference server that exits or is killed while the demo serves is started again this many
#: seconds later (the page shows it reconnecting meanwhile) ...
RESTART_PAUSE = 3.0
#: ... unless it failed this many times in a row: it did not start, or exited with an error
#: within QUICK_EXIT seconds of starting. Then the demo gives up on it and says so.
RESTART_GIVE_UP = 3
QUICK_EXIT = 5.0

#: Files of demo/ the page may load (everything else under demo/ is not served).
PAGE_FILES = {"index.html", "app.js", "app.py", "style.css", "screenshot.png"}


class DemoError(RuntimeError):
    """A step failed; the message is meant for the user, as one line."""

    def __init__(self, message: str, code: int = EXIT_SETUP_FAILED) -> None:
        super().__init__(message)
        self.code = code


def log(text: str) -> None:
    print(f"demo: {text}", flush=True)


# --- settings ----------------------------------------------------------------------------------


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range 1-65535: {value}")
    return value


def _env_port(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return _port(raw)
    except argparse.ArgumentTypeError as exc:
        raise SystemExit(f"demo: {name}={raw!r}: {exc}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="./demo.sh",
        description="The circle-ws-web demo page with three local reference servers (two in the "
                    "page's list, a third to add while it runs), offline.",
        epilog="Ports can also be set with DEMO_PORT_OPEN, DEMO_PORT_AUTH, DEMO_PORT_THIRD and DEMO_HTTP_PORT.",
    )
    parser.add_argument("--port-open", type=_port, default=_env_port("DEMO_PORT_OPEN", 8701),
                        metavar="PORT", help="server without authentication (default: 8701)")
    parser.add_argument("--port-auth", type=_port, default=_env_port("DEMO_PORT_AUTH", 8702),
                        metavar="PORT", help="server started with --require-auth (default: 8702)")
    parser.add_argument("--port-third", type=_port, default=None, metavar="PORT",
                        help="a third server (authentication required), not in the page's list: "
                             "add it while the page runs (default: 8703, or a free port if taken)")
    parser.add_argument("--http-port", type=_port, default=_env_port("DEMO_HTTP_PORT", 8700),
                        metavar="PORT", help="static web server for the page (default: 8700)")
    parser.add_argument("--webroot", type=Path, default=DEFAULT_WEBROOT, metavar="DIR",
                        help="where tools/webroot.py prepares Pyodide and the wheel "
                             f"(default: {DEFAULT_WEBROOT.relative_to(ROOT)})")
    parser.add_argument("--wheel", type=Path, default=None, metavar="WHEEL",
                        help="circle-ws-web wheel to serve (default: newest dist/*.whl; "
                             "./demo.sh builds it unless --wheel is given)")
    parser.add_argument("--check", action="store_true",
                        help="run the page headless in Chromium, check the tour, exit 0 if it worked")
    parser.add_argument("--screenshot", type=Path, default=DEFAULT_SCREENSHOT, metavar="PNG",
                        help=f"with --check: where to write the screenshot "
                             f"(default: {DEFAULT_SCREENSHOT.relative_to(ROOT)})")
    return parser


# --- ports -------------------------------------------------------------------------------------


def port_problem(port: int, host: str = HOST) -> str | None:
    """None if ``port`` can be listened on (as our servers do, with SO_REUSEADDR), else why not."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            sock.listen(1)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return "is already in use"
            if exc.errno == errno.EACCES:
                return "needs privileges (pick a port above 1023)"
            return f"cannot be used: {exc.strerror or exc}"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def check_ports(ports: dict[str, tuple[int, str]]) -> None:
    """Raise DemoError (one line) if two roles share a port or a port is taken."""
    seen: dict[int, str] = {}
    for role, (port, flag) in ports.items():
        if port in seen:
            raise DemoError(f"the {role} and the {seen[port]} both want port {port}; change {flag}",
                            EXIT_PORT_TAKEN)
        seen[port] = role
    for role, (port, flag) in ports.items():
        problem = port_problem(port)
        if problem:
            raise DemoError(f"port {port} ({role}) {problem}; pick another with {flag} N", EXIT_PORT_TAKEN)


# --- the reference servers -----------------------------------------------------------------------


#: Linux: runs the server with PR_SET_PDEATHSIG, so it gets SIGTERM if we die, even by SIGKILL
#: (no orphans). Done in the child's own Python rather than in a preexec_fn, which is unsafe
#: while this process has threads. argv: our pid, then the server's arguments.
_LAUNCHER = """\
import ctypes, os, runpy, signal, sys
try:
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
except Exception:
    pass
if os.getppid() != int(sys.argv[1]):  # the parent died before prctl took effect
    sys.exit(0)
sys.argv = ["python -m circle_ws_web.server", *sys.argv[2:]]
runpy.run_module("circle_ws_web.server", run_name="__main__", alter_sys=True)
"""


@dataclass
class ServerProcess:
    """One ``python -m circle_ws_web.server`` child on a fixed port."""

    name: str
    port: int
    require_auth: bool
    proc: subprocess.Popen[str] | None = None
    expected_exit: bool = False
    started_at: float = 0.0
    lines: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"ws://{HOST}:{self.port}"

    def command(self) -> list[str]:
        # --test-controls: the page's "drop" button uses test.drop to show a reconnection.
        args = ["--host", HOST, "--port", str(self.port), "--test-controls"]
        if self.require_auth:
            args.append("--require-auth")
        if sys.platform.startswith("linux"):
            return [sys.executable, "-c", _LAUNCHER, str(os.getpid()), *args]
        return [sys.executable, "-m", "circle_ws_web.server", *args]

    def start(self, timeout: float = SERVER_START_TIMEOUT, *, retry_busy: bool = True) -> None:
        """Start and wait for its ``listening on`` line; DemoError with its own words if not.
        ``retry_busy``: a port still in use right after a kill is tried again until the timeout."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        env = dict(os.environ)
        src = str(ROOT / "src")  # the checkout's server, even without `pip install -e .`
        env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env["PYTHONUNBUFFERED"] = "1"
        deadline = time.monotonic() + timeout
        while True:
            proc = subprocess.Popen(
                self.command(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                stdin=subprocess.DEVNULL,
            )
            try:
                first = self._first_line(proc, deadline)
            except BaseException:  # Ctrl-C while it starts: it must not outlive us
                proc.kill()
                raise
            if first.startswith("listening on"):
                break
            proc.kill()
            rest = proc.communicate(timeout=5)[0] or ""
            said = (first + rest).strip().splitlines()
            # Right after a kill the port can stay busy for a moment: try again until the deadline.
            if retry_busy and any("already in use" in line for line in said) and time.monotonic() < deadline:
                time.sleep(0.1)
                continue
            why = said[-1] if said else f"exit code {proc.returncode}"
            code = EXIT_PORT_TAKEN if "already in use" in why else EXIT_SETUP_FAILED
            raise DemoError(f"the {self.name} server on port {self.port} did not start: {why}", code)
        self.proc = proc
        self.expected_exit = False
        self.started_at = time.monotonic()
        threading.Thread(target=self._drain, args=(proc,), name=f"{self.name}-output", daemon=True).start()

    @staticmethod
    def _first_line(proc: subprocess.Popen[str], deadline: float) -> str:
        box: list[str] = []
        reader = threading.Thread(target=lambda: box.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(max(0.1, deadline - time.monotonic()))
        return box[0] if box else "no 'listening on' line in time"

    def _drain(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            self.lines.append(line)
            print(f"  [{self.name} server] {line}", file=sys.stderr, flush=True)

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def kill_command(self) -> str:
        """A shell command that stops this server and nothing else: its command line has
        ``--port N`` followed by another argument (the space keeps 8701 from matching 87010)."""
        return f'pkill -f -- "--port {self.port} "'

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash would: open sockets drop without a close frame."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            self.expected_exit = True
            proc.kill()
            proc.wait(10)

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM (the server exits 0 on it), SIGKILL after ``grace`` seconds."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        self.expected_exit = True
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def restart(self) -> None:
        self.kill()
        self.start()


# --- the static web server -----------------------------------------------------------------------


def make_handler(webroot: Path, config_json: bytes, demo_dir: Path = DEMO_DIR) -> type:
    """``/`` and the page files from demo/, ``/pyodide/`` and ``/wheels/`` from the web root,
    ``/config.json`` generated; everything else 404. Built on tools/webroot.py's StaticHandler
    (MIME types Pyodide needs, no caching, no access log)."""
    wr = load_webroot_module()

    class DemoHandler(wr.StaticHandler):  # type: ignore[misc,name-defined]
        def translate_path(self, path: str) -> str:
            rel = unquote(urlsplit(path).path).lstrip("/")
            first = rel.split("/", 1)[0]
            if first in ("pyodide", "wheels") or rel == "webroot.json":
                return wr.safe_path(webroot.resolve(), rel)
            if rel == "" or rel in PAGE_FILES:
                return wr.safe_path(demo_dir.resolve(), rel or "index.html")
            return str(demo_dir / "__not_served__")  # -> 404

        def do_GET(self) -> None:  # noqa: N802 - stdlib name
            if urlsplit(self.path).path == "/config.json":
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(config_json)))
                self.end_headers()
                self.wfile.write(config_json)
                return
            super().do_GET()

        def log_error(self, format: str, *args: Any) -> None:  # noqa: A002
            print(f"  [web] {self.address_string()} {format % args}", file=sys.stderr, flush=True)

    return DemoHandler


def page_config(webroot: Path, servers: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """What the page reads from /config.json: local Pyodide, lock, wheel and server list."""
    manifest = json.loads((webroot / "webroot.json").read_text())
    return {
        "source": "local",
        "indexURL": "/pyodide/",
        "lockFileURL": "/pyodide/pyodide-lock.json",
        "wheel": "/" + manifest["wheel"],
        "pyodideVersion": manifest["pyodide_version"],
        "servers": servers,
        **extra,
    }


class StaticServer:
    """The page's web server, in a thread of this process."""

    def __init__(self, webroot: Path, config: dict[str, Any], port: int, host: str = HOST,
                 demo_dir: Path = DEMO_DIR) -> None:
        handler = make_handler(Path(webroot), (json.dumps(config, indent=2) + "\n").encode(), Path(demo_dir))
        try:
            self.httpd = load_webroot_module().QuietHTTPServer((host, port), handler)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise DemoError(f"port {port} (web server) is already in use; pick another with --http-port N",
                                EXIT_PORT_TAKEN) from None
            raise DemoError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="demo-web", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


# --- web root ----------------------------------------------------------------------------------


def load_webroot_module() -> Any:
    """tools/webroot.py, imported by path once (tools/ is not a package)."""
    if "_circle_webroot" in sys.modules:
        return sys.modules["_circle_webroot"]
    spec = importlib.util.spec_from_file_location("_circle_webroot", ROOT / "tools" / "webroot.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def prepare_webroot(out: Path, wheel: Path | None) -> Path:
    mod = load_webroot_module()
    try:
        return mod.prepare_webroot(out, wheel)
    except mod.WebrootError as exc:
        raise DemoError(f"preparing the web root failed: {exc}") from None


# --- main --------------------------------------------------------------------------------------


class Stop(Exception):
    """SIGTERM / SIGHUP: leave like Ctrl-C does."""


def _raise_stop(signum: int, _frame: Any) -> None:
    raise Stop(signal.Signals(signum).name)


def timed(label: str, fn: Callable[[], Any]) -> Any:
    t0 = time.perf_counter()
    result = fn()
    log(f"{label} ({time.perf_counter() - t0:.2f} s)")
    return result


def _exit_words(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"was killed ({signal.Signals(-returncode).name})"
        except ValueError:
            return f"was killed (signal {-returncode})"
    return f"exited with code {returncode}"


class Supervisor:
    """Brings back a reference server that exits or is killed while the demo serves.

    Only the interactive demo runs one (:func:`serve_forever`): ``--check`` (demo/check.py)
    kills and starts servers itself and runs no supervisor, so the two never race for a port.
    A server stopped through :meth:`ServerProcess.kill` / :meth:`ServerProcess.stop` (its
    ``proc`` is then None) is left alone. A server is started again ``pause`` seconds after it
    went; after ``give_up`` failures in a row (it did not start, or it exited with an error
    within QUICK_EXIT seconds of starting) the supervisor stops trying and says so.
    """

    def __init__(self, servers: list[ServerProcess], *, pause: float = RESTART_PAUSE,
                 give_up: int = RESTART_GIVE_UP, say: Callable[[str], None] = log) -> None:
        self.servers = servers
        self.pause = pause
        self.give_up = give_up
        self.say = say
        self.due: dict[str, float] = {}  # name -> when to start it again
        self.failures: dict[str, int] = {}
        self.gave_up: set[str] = set()

    def tick(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for server in self.servers:
            if server.name in self.gave_up:
                continue
            if server.name in self.due:
                if now >= self.due[server.name]:
                    self._restart(server)
                continue
            proc = server.proc
            if proc is None or proc.poll() is None:
                continue
            code = proc.returncode
            quick_error = code > 0 and now - server.started_at < QUICK_EXIT
            self.failures[server.name] = self.failures.get(server.name, 0) + 1 if quick_error else 0
            server.proc = None
            if self._gives_up(server, f"it {_exit_words(code)} right after starting"):
                continue
            self.due[server.name] = now + self.pause
            self.say(f"the {server.name} server (port {server.port}, pid {proc.pid}) {_exit_words(code)}; "
                     f"the page shows it reconnecting; starting it again in {self.pause:g} s")

    def _restart(self, server: ServerProcess) -> None:
        del self.due[server.name]
        try:
            server.start(timeout=10.0, retry_busy=False)
        except DemoError as exc:
            self.failures[server.name] = self.failures.get(server.name, 0) + 1
            if not self._gives_up(server, str(exc)):
                self.due[server.name] = time.monotonic() + self.pause
                self.say(f"{exc}; trying again in {self.pause:g} s")
            return
        self.say(f"the {server.name} server is back on {server.url} (pid {server.pid})")

    def _gives_up(self, server: ServerProcess, why: str) -> bool:
        if self.failures.get(server.name, 0) < self.give_up:
            return False
        self.gave_up.add(server.name)
        self.say(f"error: giving up on the {server.name} server (port {server.port}) after "
                 f"{self.give_up} failed starts in a row (last: {why}); the page keeps retrying "
                 f"it: restart ./demo.sh to bring it back")
        return True


def serve_forever(servers: list[ServerProcess]) -> None:
    """Wait for Ctrl-C, starting again any server that exits or is killed meanwhile."""
    supervisor = Supervisor(servers)
    while True:
        time.sleep(0.5)
        supervisor.tick()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Explicitly: a shell starting us in the background may have left SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_stop)

    port_third = args.port_third or _env_port("DEMO_PORT_THIRD", 8703)
    if args.port_third is None and os.environ.get("DEMO_PORT_THIRD") is None and port_problem(port_third):
        port_third = _free_port()  # the third server is optional to the tour: never the reason it fails
    servers = [
        ServerProcess("open", args.port_open, require_auth=False),
        ServerProcess("auth", args.port_auth, require_auth=True),
        ServerProcess("third", port_third, require_auth=True),
    ]
    static: StaticServer | None = None
    stopped = False
    t_start = time.perf_counter()
    try:
        check_ports({
            "open server": (args.port_open, "--port-open"),
            "auth server": (args.port_auth, "--port-auth"),
            "third server": (port_third, "--port-third"),
            "web server": (args.http_port, "--http-port"),
        })
        webroot = timed(f"web root ready in {_shown(args.webroot)}",
                        lambda: prepare_webroot(args.webroot, args.wheel))
        for server in servers:
            t0 = time.perf_counter()
            server.start()
            log(f"{server.name} server listening on {server.url}"
                + (" (authentication required" if server.require_auth else " (no authentication")
                + f", pid {server.pid}) ({time.perf_counter() - t0:.2f} s)")
        config = page_config(webroot, [
            {"url": servers[0].url, "label": "open", "note": "no authentication"},
            {"url": servers[1].url, "label": "auth", "note": "authentication required", "requireAuth": True},
        ], testControls=True, extraServer=servers[2].url,  # the third: added from the page
           restartAfter=None if args.check else RESTART_PAUSE)
        static = timed(f"web server on http://{HOST}:{args.http_port}/",
                       lambda: StaticServer(webroot, config, args.http_port))
        manifest = json.loads((webroot / "webroot.json").read_text())
        if args.check:
            sys.path.insert(0, str(DEMO_DIR))
            from check import run_check  # demo/check.py: Playwright is needed only here

            ok = run_check(static.url, {s.name: s for s in servers}, args.screenshot,
                           started=t_start)
            return 0 if ok else 1
        print(
            "\n"
            f"  circle-ws-web demo is running (Pyodide {manifest['pyodide_version']}, offline)\n"
            f"\n"
            f"    open  {static.url}\n"
            f"\n"
            f"  servers: {servers[0].url} (open), {servers[1].url} (auth required)\n"
            f"  a third, to add while the page runs: {servers[2].url} (auth required)\n"
            f"  pids: " + ", ".join(f"{s.name} {s.pid}" for s in servers) + "\n"
            f"  stop one to see the page reconnect or fail over: {servers[0].kill_command}\n"
            f"  (a server that exits or is killed is started again {RESTART_PAUSE:g} s later)\n"
            f"  Press Ctrl-C to stop.\n",
            flush=True,
        )
        serve_forever(servers)
    except DemoError as exc:
        print(f"demo: error: {exc}", file=sys.stderr, flush=True)
        return exc.code
    except (KeyboardInterrupt, Stop) as exc:
        why = "Ctrl-C" if isinstance(exc, KeyboardInterrupt) else str(exc)
        print(f"\ndemo: {why}: stopping the servers", flush=True)
        stopped = True
        return 0
    finally:
        # A second Ctrl-C (or SIGTERM) must not skip the cleanup.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        if static is not None:
            static.close()
        for server in servers:
            server.stop()
        if stopped:
            print("demo: stopped", flush=True)
    return 0


def _shown(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


if __name__ == "__main__":
    sys.exit(main())
