"""The demo: demo/index.html driven in headless Chromium the way a person uses it (type, click,
read), and ./demo.sh itself (ports, MIME types, Ctrl-C, and `--check` end to end).

The page tests serve demo/ with demo/serve.py's own web server, pointed at this session's web
root (fresh wheel) and at the test server pool. Any page error, console error, Python traceback
or failed/foreign request fails a test, except Chromium's own "WebSocket connection to ...
failed" lines, and only while a test has a server down on purpose.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, expect

from support.servers import TEST_KEY, free_port

ROOT = Path(__file__).resolve().parents[2]
DEMO_SH = ROOT / "demo.sh"
SOCKET_REFUSED = re.compile(r"WebSocket connection to 'ws://127\.0\.0\.1:\d+/' failed")
PY_ERRORS = ("Traceback (most recent call last)", "Unhandled exception", "Task exception was never retrieved",
             "Exception in callback", "Task was destroyed but it is pending")
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
BOOT_TIMEOUT_MS = 90_000
RUNS = "[data-testid=output] .entry.run"


def _load_serve() -> Any:
    spec = importlib.util.spec_from_file_location("_demo_serve", ROOT / "demo" / "serve.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


serve = _load_serve()


# --- fixtures ------------------------------------------------------------------------------------


@dataclass
class Watch:
    """Problems the page reported; `servers_down` excuses Chromium's refused-socket lines."""

    servers_down: bool = False
    problems: list[str] = field(default_factory=list)
    excused: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)

    def attach(self, context: Any, page: Page) -> None:
        def on_console(msg: Any) -> None:
            self.console.append(f"[{msg.type}] {msg.text}")
            if msg.type == "error":
                if self.servers_down and SOCKET_REFUSED.search(msg.text):
                    self.excused.append(msg.text)
                else:
                    self.problems.append(f"console error: {msg.text}")
            elif msg.text.startswith("[py stderr]") and any(m in msg.text for m in PY_ERRORS):
                self.problems.append(f"python: {msg.text}")

        def route(r: Any) -> None:
            parts = urlsplit(r.request.url)
            if parts.scheme in ("data", "blob") or parts.hostname in LOOPBACK:
                r.continue_()
            else:
                self.problems.append(f"request left the machine: {r.request.url}")
                r.abort("blockedbyclient")

        page.on("console", on_console)
        page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))
        page.on("requestfailed", lambda req: self.problems.append(f"request failed: {req.failure} {req.url}"))
        page.on("response", lambda resp: resp.status >= 400 and self.problems.append(
            f"HTTP {resp.status}: {resp.url}"))
        context.route("**/*", route)

    def assert_clean(self, page: Page) -> None:
        page.wait_for_timeout(50)  # let queued browser events arrive
        assert not self.problems, "\n".join(
            ["browser problems:", *self.problems, "--- last console lines ---", *self.console[-20:]])


@pytest.fixture(scope="module")
def demo_site(webroot: Path, server_pool: Any) -> Iterator[str]:
    """demo/ served by demo/serve.py's web server: this session's wheel, the pool's servers."""
    config = serve.page_config(webroot, [
        {"url": server_pool.url("open"), "label": "open", "note": "no authentication"},
        {"url": server_pool.url("auth"), "label": "auth", "note": "authentication required"},
    ], testControls=True)
    site = serve.StaticServer(webroot, config, port=0)
    try:
        yield site.url
    finally:
        site.close()


@pytest.fixture
def demo(browser: Browser, demo_site: str, servers: Any) -> Iterator[tuple[Page, Watch]]:
    """The demo page, booted, not connected (autoconnect=0): the test drives it."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    watch = Watch()
    watch.attach(context, page)
    try:
        page.goto(demo_site + "?autoconnect=0")
        expect(page.get_by_test_id("boot-status")).to_have_text(re.compile("ready|error"), timeout=BOOT_TIMEOUT_MS)
        assert page.get_by_test_id("boot-status").text_content() == "ready", page.evaluate("window.demo.bootError")
        assert page.evaluate("window.demo.config.source") == "local"
        yield page, watch
        watch.assert_clean(page)
    finally:
        context.close()


# --- helpers: what a person does -------------------------------------------------------------------


def status(page: Page, url: str) -> Any:
    return page.locator(f'[data-testid="status"][data-url="{url}"]')


def run(page: Page, script: str, target: str | None) -> list[str]:
    """Type `script`, press Run on `target` (or Run on all with None); the new output lines,
    each starting with the URL it is about (from the entry's data-url)."""
    before = page.locator(RUNS).count()
    expected = 1 if target is not None else page.locator("[data-testid=status]").count()
    page.get_by_test_id("script").fill(script)
    if target is None:
        page.get_by_test_id("run-all").click()
    else:
        page.get_by_test_id("run-target").select_option(target)
        page.get_by_test_id("run").click()
    expect(page.locator(RUNS)).to_have_count(before + expected, timeout=15_000)
    entries = [page.locator(RUNS).nth(i) for i in range(before, before + expected)]
    return [f"{e.get_attribute('data-url')} | {e.inner_text()}" for e in entries]


def output_text(page: Page) -> str:
    return page.get_by_test_id("output").inner_text()


def connect(page: Page, *urls: str, to: str = "connected") -> None:
    page.get_by_test_id("connect").click()
    for url in urls:
        expect(status(page, url)).to_have_text(to, timeout=20_000)


# --- the page ------------------------------------------------------------------------------------


def test_demo_connect_run_restart_disconnect(demo: tuple[Page, Watch], servers: Any) -> None:
    page, watch = demo
    open_url, auth_url = servers.url("open"), servers.url("auth")
    expect(status(page, open_url)).to_have_text("disconnected")
    expect(status(page, auth_url)).to_have_text("disconnected")

    # A generated key: 64 hex characters in the field, its public key shown.
    page.get_by_test_id("generate-key").click()
    key = page.get_by_test_id("private-key").input_value()
    assert re.fullmatch(r"[0-9a-f]{64}", key)
    public = page.get_by_test_id("public-key").text_content() or ""
    assert re.fullmatch(r"04[0-9a-f]{128}", public)

    connect(page, open_url, auth_url)
    expect(page.get_by_test_id("connect")).to_be_disabled()
    assert "Connected to all 2 servers" in output_text(page)

    [line] = run(page, "40 + 2", open_url)
    assert line.startswith(f"{open_url} |") and "40 + 2 → 42" in line, line
    [line] = run(page, "40 + 2", auth_url)
    assert line.startswith(f"{auth_url} |") and "40 + 2 → 42" in line, line
    lines = run(page, "40 + 2", None)
    assert sorted(line.split(" |")[0] for line in lines) == sorted([open_url, auth_url]), lines
    assert all("→ 42" in line for line in lines), lines

    # A script error: a readable message, and the connection stays up.
    [line] = run(page, "1 / 0", auth_url)
    assert "script error: ZeroDivisionError: division by zero" in line, line
    expect(status(page, auth_url)).to_have_text("connected")

    # The server goes away and comes back on the same port: the light follows, Run works again.
    watch.servers_down = True
    servers.servers["auth"].stop()
    expect(status(page, auth_url)).to_have_text("reconnecting", timeout=10_000)
    [line] = run(page, "40 + 2", auth_url)
    assert "not ready" in line and "wait for its light to turn green" in line, line
    servers.servers["auth"].start()
    expect(status(page, auth_url)).to_have_text("connected", timeout=30_000)
    watch.servers_down = False
    history = [h["status"] for h in page.evaluate("window.demo.statusHistory") if h["url"] == auth_url]
    tail = history[history.index("reconnecting"):]
    assert "authenticating" in tail and tail[-1] == "connected", history  # re-authenticated
    [line] = run(page, "40 + 2", auth_url)
    assert "→ 42" in line, line
    expect(page.locator(f'.server[data-url="{auth_url}"] [data-metric="reconnects"] dd')).to_have_text("1", timeout=3000)

    # Disconnect: every light says closed; a script now gets a plain answer, not an exception.
    page.get_by_test_id("disconnect").click()
    expect(status(page, open_url)).to_have_text("closed")
    expect(status(page, auth_url)).to_have_text("closed")
    expect(page.get_by_test_id("connect")).to_be_enabled()
    [line] = run(page, "40 + 2", open_url)
    assert "not connected: press Connect first" in line, line


def test_demo_bad_input_keeps_the_page_working(demo: tuple[Page, Watch], servers: Any) -> None:
    page, watch = demo
    open_url, auth_url, dead_url = servers.url("open"), servers.url("auth"), servers.dead_url()
    key_box = page.get_by_test_id("private-key")

    # Malformed keys: said at once under the field, and again on Connect; nothing connects.
    key_box.fill("12345")
    expect(page.locator("#pubkey")).to_contain_text("wrong length: got 5 hex characters")
    key_box.fill("zz" * 32)
    expect(page.locator("#pubkey")).to_contain_text("not hex")
    page.get_by_test_id("connect").click()
    expect(page.get_by_test_id("output")).to_contain_text("Cannot connect: private key is not hex")
    expect(status(page, open_url)).to_have_text("disconnected")
    assert "zz" * 8 not in output_text(page)  # the key is never echoed

    # Malformed and duplicate URLs are refused with the library's own words.
    url_box = page.get_by_test_id("server-url")
    url_box.fill("http://127.0.0.1:1")
    page.get_by_test_id("add-server").click()
    expect(page.locator("#url-error")).to_contain_text("has scheme 'http'; expected 'ws' or 'wss'")
    url_box.fill(open_url)
    url_box.press("Enter")
    expect(page.locator("#url-error")).to_contain_text("already in the list")
    # A server that is down: added, and Connect still brings the others up.
    url_box.fill(dead_url)
    page.get_by_test_id("add-server").click()
    expect(status(page, dead_url)).to_have_text("disconnected")

    # No key at all: the open server runs scripts, the auth server says why it will not.
    key_box.fill("")
    expect(page.locator("#pubkey")).to_contain_text("No key")
    watch.servers_down = True  # dead_url refuses every attempt from here on
    connect(page, open_url, auth_url)
    expect(status(page, dead_url)).to_have_text(re.compile("reconnecting|connecting"), timeout=10_000)
    assert "→ 42" in run(page, "40 + 2", open_url)[0]
    [line] = run(page, "40 + 2", auth_url)
    assert "authentication required" in line, line
    [line] = run(page, "40 + 2", dead_url)
    assert "not ready" in line, line
    page.get_by_test_id("disconnect").click()
    expect(status(page, dead_url)).to_have_text("closed")

    # The right key: the known public key of SPEC vector 1; the auth server runs the script.
    from circle_ws_web.auth import public_key_hex

    key_box.fill(TEST_KEY)
    expect(page.get_by_test_id("public-key")).to_have_text(public_key_hex(TEST_KEY))
    page.locator(f'.server[data-url="{dead_url}"] [data-testid="remove-server"]').click()
    expect(status(page, dead_url)).to_have_count(0)
    watch.servers_down = False
    connect(page, open_url, auth_url)
    lines = run(page, "40 + 2", None)
    assert len(lines) == 2 and all("→ 42" in line for line in lines), lines

    # The drop button (test.drop): the connection goes and comes back by itself.
    history_len = len(page.evaluate("window.demo.statusHistory"))
    page.locator(f'.server[data-url="{open_url}"] [data-testid="drop"]').click()
    expect(status(page, open_url)).to_have_text("connected", timeout=15_000)
    page.wait_for_function(
        "([url, n]) => window.demo.statusHistory.slice(n).filter(h => h.url === url)"
        ".map(h => h.status).join(',').endsWith('reconnecting,connecting,authenticating,connected')",
        arg=[open_url, history_len], timeout=15_000)
    assert "→ 42" in run(page, "40 + 2", open_url)[0]
    page.get_by_test_id("disconnect").click()
    expect(status(page, open_url)).to_have_text("closed")



def test_demo_status_lights_wait_offline_and_reconnect_when_online(demo: tuple[Page, Watch], servers: Any) -> None:
    """Offline, each light says so (the client's ``paused``) and nothing is attempted (no status
    change, no "connection failed" console line); online, scripts run again at once."""
    page, watch = demo
    open_url, auth_url = servers.url("open"), servers.url("auth")
    page.get_by_test_id("generate-key").click()
    connect(page, open_url, auth_url)
    mark = len(page.evaluate("window.demo.statusHistory"))
    try:
        page.context.set_offline(True)
        for url in (open_url, auth_url):
            expect(status(page, url)).to_have_text("offline: waiting for the network")
            expect(page.locator(f'.server[data-url="{url}"]')).to_have_attribute("data-paused", "offline")
        page.wait_for_timeout(2000)
        # No attempt: a connected client may go reconnecting (its 3 s liveness ping unanswered),
        # but never connecting while offline.
        tried = [h for h in page.evaluate("window.demo.statusHistory")[mark:] if h["status"] == "connecting"]
        assert tried == [], tried
        paused = page.evaluate("window.demo.pausedHistory.map(h => [h.url, h.paused])")
        assert [open_url, "offline"] in paused and [auth_url, "offline"] in paused
        assert "The browser is offline." in output_text(page)
        assert "the browser is offline; waiting for the network" in output_text(page)  # the library's log line
    finally:
        page.context.set_offline(False)
    for url in (open_url, auth_url):
        expect(status(page, url)).to_have_text("connected", timeout=15_000)
        expect(page.locator(f'.server[data-url="{url}"]')).not_to_have_attribute("data-paused", "offline")
    lines = run(page, "40 + 2", None)
    assert len(lines) == 2 and all("→ 42" in line for line in lines), lines
    assert not watch.excused  # not one refused socket: nothing was tried while offline
    page.get_by_test_id("disconnect").click()
    expect(status(page, open_url)).to_have_text("closed")


# --- ./demo.sh -----------------------------------------------------------------------------------


def _demo_sh(circle_wheel: Path, webroot: Path, *args: str) -> list[str]:
    """./demo.sh with this session's wheel (no rebuild of dist/) and web root."""
    return [str(DEMO_SH), "--wheel", str(circle_wheel), "--webroot", str(webroot), *args]


def _ports() -> dict[str, int]:
    return {"--port-open": free_port(), "--port-auth": free_port(), "--http-port": free_port()}


def _flags(ports: dict[str, int]) -> list[str]:
    return [str(x) for flag, port in ports.items() for x in (flag, port)]


def test_demo_sh_refuses_a_taken_port(circle_wheel: Path, webroot: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ports = {**_ports(), "--port-auth": port}
        proc = subprocess.run(_demo_sh(circle_wheel, webroot, *_flags(ports)),
                              capture_output=True, text=True, timeout=180, cwd=ROOT)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert proc.stderr.strip().splitlines()[-1] == (
            f"demo: error: port {port} (auth server) is already in use; pick another with --port-auth N")
        # The same through the environment, for the web server's port.
        ports = _ports()
        del ports["--http-port"]
        env = {**os.environ, "DEMO_HTTP_PORT": str(port)}
        proc = subprocess.run(_demo_sh(circle_wheel, webroot, *_flags(ports)), env=env,
                              capture_output=True, text=True, timeout=180, cwd=ROOT)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert f"port {port} (web server) is already in use" in proc.stderr
        assert "Traceback" not in proc.stdout + proc.stderr


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _start_demo_sh(circle_wheel: Path, webroot: Path, ports: dict[str, int]) -> tuple[subprocess.Popen[str], list[str]]:
    """./demo.sh serving, once it said "Press Ctrl-C"; its output so far."""
    proc = subprocess.Popen(_demo_sh(circle_wheel, webroot, *_flags(ports)), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out: list[str] = []
    deadline = time.monotonic() + 120
    while not any("Press Ctrl-C" in line for line in out):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            pytest.fail("./demo.sh did not come up:\n" + "".join(out) + (proc.stdout.read() or ""))  # type: ignore[union-attr]
        out.append(proc.stdout.readline())  # type: ignore[union-attr]
    return proc, out


def test_demo_sh_serves_the_page_and_stops_on_ctrl_c(circle_wheel: Path, webroot: Path) -> None:
    ports = _ports()
    proc, out = _start_demo_sh(circle_wheel, webroot, ports)
    try:
        base = f"http://127.0.0.1:{ports['--http-port']}/"
        assert any(base in line for line in out), "".join(out)

        def get(path: str) -> tuple[int, str, bytes]:
            with urllib.request.urlopen(base + path, timeout=10) as resp:
                return resp.status, resp.headers["Content-Type"], resp.read()

        status, ctype, body = get("")
        assert status == 200 and ctype.startswith("text/html") and b'data-testid="boot-status"' in body
        config = json.loads(get("config.json")[2])
        assert config["source"] == "local"
        assert [s["url"] for s in config["servers"]] == [
            f"ws://127.0.0.1:{ports['--port-open']}", f"ws://127.0.0.1:{ports['--port-auth']}"]
        types = {
            "pyodide/pyodide.mjs": "text/javascript",
            "pyodide/pyodide.asm.wasm": "application/wasm",
            "pyodide/pyodide-lock.json": "application/json",
            config["wheel"].lstrip("/"): "application/zip",
            "app.py": "text/x-python",
            "app.js": "text/javascript",
        }
        for path, want in types.items():
            assert get(path)[1].split(";")[0] == want, path
        with pytest.raises(urllib.error.HTTPError):
            get("serve.py")  # only the page's own files are served from demo/
        assert _accepts(ports["--port-open"]) and _accepts(ports["--port-auth"])

        proc.send_signal(signal.SIGINT)  # what Ctrl-C does (to this process only: it must clean up)
        rest, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, "".join(out) + rest
        assert "demo: stopped" in rest, rest
        assert "Traceback" not in "".join(out) + rest
        for port in ports.values():
            assert not _accepts(port), f"port {port} still answers after Ctrl-C: an orphan process"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_demo_sh_check_end_to_end(circle_wheel: Path, webroot: Path, tmp_path: Path) -> None:
    shot = tmp_path / "shots" / "demo-check.png"
    t0 = time.perf_counter()
    proc = subprocess.run(_demo_sh(circle_wheel, webroot, "--check", "--screenshot", str(shot), *_flags(_ports())),
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    took = time.perf_counter() - t0
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "check: PASSED" in proc.stdout and f"screenshot: {shot}" in proc.stdout, out
    steps = [line for line in proc.stdout.splitlines() if re.match(r"check: \[\s*\d+\] .*: ok, [\d.]+ s", line)]
    assert len(steps) >= 10, out
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    assert width == 1280 and 700 <= height <= 4000, (width, height)
    assert 30_000 < len(data) < 5_000_000, len(data)
    print(f"./demo.sh --check took {took:.1f} s")


def test_demo_sh_killed_outright_leaves_no_server_behind(circle_wheel: Path, webroot: Path) -> None:
    ports = _ports()
    proc, out = _start_demo_sh(circle_wheel, webroot, ports)
    try:
        assert _accepts(ports["--port-open"]) and _accepts(ports["--port-auth"])
        proc.kill()  # SIGKILL: no cleanup code runs; the servers must still go (PR_SET_PDEATHSIG)
        proc.wait(10)
        deadline = time.monotonic() + 10
        while any(_accepts(ports[p]) for p in ("--port-open", "--port-auth")):
            assert time.monotonic() < deadline, "a server outlived a killed ./demo.sh"
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
