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
import threading
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
SOCKET_REFUSED = re.compile(r"WebSocket connection to 'wss?://127\.0\.0\.1:\d+/' failed")
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
        {"url": server_pool.url("auth"), "label": "auth", "note": "authentication required", "requireAuth": True},
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


def connect_step(page: Page) -> Any:
    """The Connect step's detail line in the start-up steps."""
    return page.locator('.steps [data-step="connect"] .detail')


def _port_of(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None, url
    return port


def _pgrep(pattern: str) -> set[int]:
    """pids whose command line contains `pattern` (what the page's kill command would stop)."""
    proc = subprocess.run(["pgrep", "-f", "--", pattern], capture_output=True, text=True)
    return {int(pid) for pid in proc.stdout.split()}


# --- the page ------------------------------------------------------------------------------------


def test_demo_connect_run_restart_disconnect(demo: tuple[Page, Watch], servers: Any) -> None:
    page, watch = demo
    open_url, auth_url = servers.url("open"), servers.url("auth")
    expect(status(page, open_url)).to_have_text("disconnected")
    expect(status(page, auth_url)).to_have_text("disconnected")

    # The tip's kill command names the first server's real port and stops that server alone.
    kill = page.locator("#kill-command").text_content() or ""
    assert kill == f'pkill -f -- "--port {_port_of(open_url)} "', kill
    pattern = kill.split("-- ", 1)[1].strip('"')
    assert _pgrep(pattern) == {servers.servers["open"].proc.pid}, pattern
    tip = page.locator(".fleet-tip").inner_text()
    assert "Add the third server while connected" in tip, tip  # no URL known: no "Add the ws://…"

    # The key's show/hide button is a toggle with a name that says what it shows.
    toggle = page.get_by_role("button", name="Show private key")
    expect(toggle).to_have_attribute("aria-pressed", "false")
    expect(toggle).to_have_attribute("aria-controls", "private-key")
    toggle.click()
    expect(toggle).to_have_attribute("aria-pressed", "true")
    expect(page.get_by_test_id("private-key")).to_have_attribute("type", "text")
    toggle.click()
    expect(toggle).to_have_attribute("aria-pressed", "false")
    expect(page.get_by_test_id("private-key")).to_have_attribute("type", "password")
    # Metrics refresh every second: not in a live region; status changes have their own.
    assert page.locator("#servers").get_attribute("aria-live") in (None, "off")
    assert page.locator(".servers .metrics").evaluate_all("ms => ms.map(m => m.getAttribute('aria-live'))") == ["off", "off"]

    # A generated key: 64 hex characters in the field, its public key shown.
    page.get_by_test_id("generate-key").click()
    key = page.get_by_test_id("private-key").input_value()
    assert re.fullmatch(r"[0-9a-f]{64}", key)
    public = page.get_by_test_id("public-key").text_content() or ""
    assert re.fullmatch(r"04[0-9a-f]{128}", public)

    connect(page, open_url, auth_url)
    expect(page.get_by_test_id("connect")).to_be_disabled()
    assert "Connected to all 2 servers" in output_text(page)
    expect(connect_step(page)).to_have_text(re.compile(r"^2 of 2 connected"))
    expect(page.locator("#status-live")).to_contain_text(f"{auth_url}: connected")
    expect(status(page, auth_url)).to_have_attribute("title", "ready for scripts")  # with a key

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
    expect(connect_step(page)).to_have_text("1 of 2 connected · others retrying")  # follows the lights
    expect(page.locator("#status-live")).to_contain_text(f"{auth_url}: reconnecting")
    [line] = run(page, "40 + 2", auth_url)
    assert "not ready" in line and "wait for its light to turn green" in line, line
    servers.servers["auth"].start()
    expect(status(page, auth_url)).to_have_text("connected", timeout=30_000)
    expect(connect_step(page)).to_have_text("2 of 2 connected")
    watch.servers_down = False
    history = [h["status"] for h in page.evaluate("window.demo.statusHistory") if h["url"] == auth_url]
    tail = history[history.index("reconnecting"):]
    assert "authenticating" in tail and tail[-1] == "connected", history  # re-authenticated
    [line] = run(page, "40 + 2", auth_url)
    assert "→ 42" in line, line
    expect(page.locator(f'.server[data-url="{auth_url}"] [data-metric="reconnects"] dd')).to_have_text("1", timeout=3000)

    # "Run on any" that fails says which server it failed on, as Run and Run on all do.
    before = page.locator(RUNS).count()
    page.get_by_test_id("script").fill("1 / 0")
    page.get_by_test_id("run-any").click()
    expect(page.locator(RUNS)).to_have_count(before + 1, timeout=15_000)
    entry = page.locator(RUNS).nth(before)
    assert entry.get_attribute("data-url") == open_url, entry.inner_text()
    assert "script error: ZeroDivisionError" in entry.inner_text()
    assert entry.locator(".who").inner_text() == open_url.removeprefix("ws://")

    # A script over the server's 1 MiB frame limit: the server closes (1009); the page says
    # why in plain words, and the connection comes back.
    before = page.locator(RUNS).count()
    page.get_by_test_id("script").evaluate("(e, n) => { e.value = '\"' + 'x'.repeat(n) + '\"'; }", 1_100_000)
    page.get_by_test_id("run-target").select_option(open_url)
    page.get_by_test_id("run").click()
    expect(page.locator(RUNS)).to_have_count(before + 1, timeout=15_000)
    line = page.locator(RUNS).nth(before).inner_text()
    assert "the script is larger than the server accepts in one message (1 MiB)" in line, line
    assert "1048576" not in line and "not re-sent" not in line, line
    expect(status(page, open_url)).to_have_text("connected", timeout=15_000)
    assert "→ 42" in run(page, "40 + 2", open_url)[0]

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
    # Another spelling of the same server: scheme and host case, a bare trailing "/".
    for spelling in (open_url + "/", "WS" + open_url[2:], "WS" + auth_url[2:] + "/"):
        url_box.fill(spelling)
        page.get_by_test_id("add-server").click()
        expect(page.locator("#url-error")).to_contain_text("already in the list")
    expect(page.locator(".servers .server")).to_have_count(2)
    # A server that is down: added, and Connect still brings the others up.
    url_box.fill(dead_url)
    page.get_by_test_id("add-server").click()
    expect(status(page, dead_url)).to_have_text("disconnected")
    # The same host and port with wss://: another server; the log keeps them apart.
    dead_wss = "wss" + dead_url[2:]
    url_box.fill(dead_wss)
    page.get_by_test_id("add-server").click()
    expect(status(page, dead_wss)).to_have_text("disconnected")

    # No key at all: the open server runs scripts, the auth server says why it will not.
    key_box.fill("")
    expect(page.locator("#pubkey")).to_contain_text("No key")
    watch.servers_down = True  # dead_url refuses every attempt from here on
    connect(page, open_url, auth_url)
    expect(status(page, dead_url)).to_have_text(re.compile("reconnecting|connecting"), timeout=10_000)
    expect(status(page, dead_wss)).to_have_text(re.compile("reconnecting|connecting"), timeout=10_000)
    who = page.locator("[data-testid=output] .entry.status").evaluate_all(
        "es => es.map(e => [e.dataset.url, e.querySelector('.who').textContent])")
    assert [dead_url, dead_url.removeprefix("ws://")] in who and [dead_wss, dead_wss] in who, who
    # No key: the auth server's green light does not promise scripts.
    title = status(page, auth_url).get_attribute("title") or ""
    assert "requires authentication" in title and "ready for scripts" not in title, title
    assert "needs no authentication" in (status(page, open_url).get_attribute("title") or "")
    assert "→ 42" in run(page, "40 + 2", open_url)[0]
    [line] = run(page, "40 + 2", auth_url)
    assert "authentication required" in line, line
    [line] = run(page, "40 + 2", dead_url)
    assert "not ready" in line, line
    page.get_by_test_id("disconnect").click()
    expect(status(page, dead_url)).to_have_text("closed")
    page.locator(f'.server[data-url="{dead_wss}"] [data-testid="remove-server"]').click()

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

    # Phone width (and a narrow desktop's two columns): in every server row, no metric's label
    # or value runs into the next one or out of the row, under its buttons.
    expect(page.locator(f'.server[data-url="{open_url}"] [data-metric="p50"] dd')).not_to_have_text("–")
    for width in (375, 1100):
        page.set_viewport_size({"width": width, "height": 800})
        assert _metric_clashes(page) == [], width
    page.set_viewport_size({"width": 1280, "height": 900})

    page.get_by_test_id("disconnect").click()
    expect(status(page, open_url)).to_have_text("closed")


def _metric_clashes(page: Page) -> list[str]:
    return page.evaluate("""() => {
        const out = [];
        for (const row of document.querySelectorAll('.servers .server')) {
          const cells = [...row.querySelectorAll('.metric')];
          for (const e of row.querySelectorAll('.metric dt, .metric dd'))
            if (e.scrollWidth > e.clientWidth + 1) out.push(`${row.dataset.url} ${e.textContent}: overflows`);
          const boxes = cells.map(c => [c, c.getBoundingClientRect()]);
          for (const [a, ra] of boxes) for (const [b, rb] of boxes)
            if (a !== b && ra.left < rb.right - 1 && rb.left < ra.right - 1 && ra.top < rb.bottom - 1 && rb.top < ra.bottom - 1)
              out.push(`${row.dataset.url} ${a.dataset.metric} overlaps ${b.dataset.metric}`);
          const main = row.querySelector('.server-main').getBoundingClientRect();
          for (const [c, r] of boxes) if (r.right > main.right + 1) out.push(`${c.dataset.metric} sticks out`);
        }
        return out;
    }""")


def test_demo_connect_step_follows_the_lights_after_an_offline_connect(demo: tuple[Page, Watch], servers: Any) -> None:
    """Connect pressed while offline answers "0 of 2"; when the network is back and both
    lights are green, the Connect step says so too (it used to stay at "0 of 2 connected")."""
    page, watch = demo
    open_url, auth_url = servers.url("open"), servers.url("auth")
    page.get_by_test_id("generate-key").click()
    watch.servers_down = True  # Connect's own first attempt fails offline: Chromium says so
    try:
        page.context.set_offline(True)
        page.get_by_test_id("connect").click()
        expect(connect_step(page)).to_have_text(re.compile(r"^0 of 2 connected"), timeout=20_000)
    finally:
        page.context.set_offline(False)
    for url in (open_url, auth_url):
        expect(status(page, url)).to_have_text("connected", timeout=20_000)
    watch.servers_down = False
    expect(connect_step(page)).to_have_text("2 of 2 connected")
    expect(page.locator('.steps [data-step="connect"]')).to_have_attribute("data-state", "done")
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


class _Lines:
    """A process's output lines, read in a thread: wait for one without blocking forever."""

    def __init__(self, proc: subprocess.Popen[str], first: list[str]) -> None:
        self.lines = list(first)
        self.thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.thread.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            self.lines.append(line)

    def wait_for(self, pattern: str, timeout: float = 30.0, start: int = 0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            for line in self.lines[start:]:
                found = re.search(pattern, line)
                if found:
                    return found
            if time.monotonic() > deadline:
                pytest.fail(f"no line matching {pattern!r}:\n" + "".join(self.lines))
            time.sleep(0.05)


def test_demo_sh_brings_back_a_killed_server_with_its_pid(circle_wheel: Path, webroot: Path) -> None:
    """The page's tip says to kill the first server and watch its breaker close once it is back:
    ./demo.sh prints each server's pid and the command that stops just that one, and starts a
    server that was killed again on the same port, saying so."""
    ports = _ports()
    proc, out = _start_demo_sh(circle_wheel, webroot, ports)
    lines = _Lines(proc, out)
    try:
        port = ports["--port-open"]
        pid = int(lines.wait_for(rf"open server listening on ws://127\.0\.0\.1:{port} \(no authentication, pid (\d+)\)").group(1))
        command = f'pkill -f -- "--port {port} "'
        assert any(command in line for line in lines.lines), "".join(lines.lines)
        assert _pgrep(f"--port {port} ") == {pid}  # the printed command matches that server alone
        base = f"http://127.0.0.1:{ports['--http-port']}/"
        with urllib.request.urlopen(base + "config.json", timeout=10) as resp:
            assert json.loads(resp.read())["restartAfter"] == 3  # the page's tip says it comes back

        mark = len(lines.lines)
        subprocess.run(["pkill", "-f", "--", f"--port {port} "], check=True)
        lines.wait_for(rf"the open server \(port {port}, pid {pid}\) exited with code 0; .*starting it again in 3 s",
                       start=mark)
        new_pid = int(lines.wait_for(rf"the open server is back on ws://127\.0\.0\.1:{port} \(pid (\d+)\)",
                                     start=mark).group(1))
        assert new_pid != pid and _accepts(port)
        assert _pgrep(f"--port {port} ") == {new_pid}

        mark = len(lines.lines)
        os.kill(new_pid, signal.SIGKILL)  # a crash: the same
        lines.wait_for(rf"the open server \(port {port}, pid {new_pid}\) was killed \(SIGKILL\)", start=mark)
        lines.wait_for(r"the open server is back on", start=mark)
        assert _accepts(port)
        assert "Traceback" not in "".join(lines.lines)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_demo_supervisor_gives_up_on_a_server_that_cannot_start() -> None:
    """A server that keeps failing to start is not retried in a loop: after 3 failed starts the
    supervisor says it gives up. A server the --check tour stops itself is left alone."""
    said: list[str] = []
    server = serve.ServerProcess("open", free_port(), require_auth=False)
    other = serve.ServerProcess("auth", free_port(), require_auth=True)
    server.start()
    other.start()
    supervisor = serve.Supervisor([server, other], pause=0.05, say=said.append)
    try:
        other.kill()  # what check.py does: proc is None, not for the supervisor to bring back
        with socket.socket() as squatter:
            pid = server.pid
            server.proc.kill()  # type: ignore[union-attr]
            server.proc.wait(10)  # type: ignore[union-attr]
            squatter.bind(("127.0.0.1", server.port))  # someone else takes the port meanwhile
            squatter.listen()
            deadline = time.monotonic() + 60
            while "open" not in supervisor.gave_up:
                assert time.monotonic() < deadline, said
                supervisor.tick()
                time.sleep(0.02)
            for _ in range(20):  # and then it stops trying
                supervisor.tick()
        assert said[0] == (f"the open server (port {server.port}, pid {pid}) was killed (SIGKILL); "
                           "the page shows it reconnecting; starting it again in 0.05 s"), said
        attempts = [line for line in said if "trying again" in line]
        assert len(attempts) == 2 and all("already in use" in line for line in attempts), said
        assert said[-1].startswith(f"error: giving up on the open server (port {server.port}) after 3 failed starts"), said
        assert "restart ./demo.sh" in said[-1] and "already in use" in said[-1], said
        assert len(said) == 4, said
        assert server.proc is None and other.proc is None
    finally:
        server.stop()
        other.stop()


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
