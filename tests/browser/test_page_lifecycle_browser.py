"""The browser's own lifecycle in real Chromium 156: what Chromium does on each event, and what
the clients make of it (tests/unit/test_page_lifecycle.py has the same behaviour on virtual
time; docs/browser-lifecycle.md the findings and the figures).

Two browsers, and why:

* Playwright's own (``pyodide_page``, ``worker_page``): good for ``set_offline``. But Playwright
  launches Chromium with ``--disable-back-forward-cache`` and the background-throttling
  switches, and turns on focus emulation for each page, which keeps every page visible: a
  second page brought to front leaves the first "visible", and ``Page.setWebLifecycleState``
  cannot freeze it. ``test_playwright_pages_stay_visible_and_bfcache_is_off`` shows it.
* A Chromium this module starts itself (same executable and switches as the tests) and that
  Playwright joins over CDP with ``no_defaults=True`` (``tab_browser``): its pages are real
  tabs of one window. Bringing another tab to front hides a page (its timers run about once a
  second), ``Page.setWebLifecycleState`` freezes and resumes it, and the back-forward cache works.

Attempts are counted with a wrapped transport factory (every socket the client opens) and the
pings with a wrapped ``send``; times come from the page's ``performance.now()``, so the JS
events and the client's status changes share one clock. Figures are printed as JSON, never
asserted against tight bounds: only where the promise itself is about time (a ping "at once",
the 3 s liveness deadline instead of keep-alive's 60 + 10 s) is there a bound, a generous one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page

from support.servers import TEST_KEY, ServerProcess, free_port

HERE = Path(__file__).resolve().parent
#: The client's liveness deadline after a wake (lifecycle.LIVENESS_TIMEOUT).
LIVENESS = 3.0
#: Keep-alive settings that keep keep-alive out of the way: a dead connection it would find
#: only after 70 s, so anything found sooner was found by the lifecycle.
KEEPALIVE = {"keepalive_interval": 60.0, "keepalive_timeout": 10.0}
#: Chromium's console line for a socket it could not open while offline.
OFFLINE_REFUSED = r"WebSocket connection to 'ws://127\.0\.0\.1:\d+/' failed: .*ERR_INTERNET_DISCONNECTED"

# -- what runs in the page --------------------------------------------------------------------------

#: Uploaded into Pyodide as ``lifeprobe``: a client whose sockets, sends and status changes are
#: recorded with the page's clock.
PROBE = r'''
import asyncio, json
import js
from circle_ws_web import CircleWsClient
from circle_ws_web.transports import default_factory


def now():
    return js.performance.now()


def epoch():
    return js.performance.timeOrigin + js.performance.now()


class Probe:
    def __init__(self, url, key=None, **options):
        self.statuses = []  # [ms, status, paused]
        self.opened = []    # ms at which each socket was made: one per attempt
        self.sent = []      # [ms, method] of every frame sent
        base = default_factory()
        probe = self

        class Spy:
            def __init__(self, transport):
                self.transport = transport

            def send(self, text):
                probe.sent.append([now(), json.loads(text).get("method")])
                self.transport.send(text)

            def close(self, code=1000, reason=""):
                self.transport.close(code, reason)

        def factory(url, events, options):
            probe.opened.append(now())
            return Spy(base(url, events, options))

        self.client = CircleWsClient(url, key, transport_factory=factory, **options)
        self.client.on_status_change(lambda s: self.statuses.append([now(), s.value, self.client.paused]))

    def pings(self, after=0.0):
        return [t for t, m in self.sent if m == "ping" and t >= after]

    def first(self, status, after=0.0):
        return next((t for t, s, _ in self.statuses if s == status and t >= after), None)

    async def wait_for(self, status, after=0.0, timeout=20.0):
        """When the client first reached ``status`` at or after ``after`` (ms), waiting up to
        ``timeout`` s for it; None if it did not."""
        deadline = now() + timeout * 1000
        while self.first(status, after) is None and now() < deadline:
            await asyncio.sleep(0.01)
        return self.first(status, after)

    def report(self):
        c = self.client
        return {"status": c.status.value, "paused": c.paused, "statuses": self.statuses,
                "opened": self.opened, "sent": self.sent, "reconnects": c.metrics.reconnects,
                "attempts_counted": c._engine.machine.backoff.attempts}
'''

#: Page-side recorder of the lifecycle events themselves: window.lifelog = [[ms, event, detail]].
RECORD_EVENTS = """() => {
  window.lifelog = [];
  const log = (type, detail) => window.lifelog.push([performance.now(), type, detail]);
  for (const t of ["online", "offline"]) addEventListener(t, () => log(t, navigator.onLine));
  for (const t of ["pagehide", "pageshow"]) addEventListener(t, (e) => log(t, e.persisted));
  for (const t of ["visibilitychange", "freeze", "resume"]) {
    document.addEventListener(t, () => log(t, document.visibilityState));
  }
}"""


def events_of(page: Page, kind: str) -> list[list[Any]]:
    return [e for e in page.evaluate("window.lifelog") if e[1] == kind]


# -- fixtures ---------------------------------------------------------------------------------------


def _harness_helpers(request: pytest.FixtureRequest) -> Any:
    """tests/browser/conftest.py as a module (pytest registers conftests under their path)."""
    module = request.config.pluginmanager.get_plugin(str(HERE / "conftest.py"))
    assert module is not None
    return module


@pytest.fixture(scope="module")
def tab_browser(playwright: Any, request: pytest.FixtureRequest) -> Iterator[Browser]:
    """Chromium with real tabs: started here, joined by Playwright over CDP without its defaults."""
    helpers = _harness_helpers(request)
    profile = tempfile.mkdtemp(prefix="circle-tabs-")
    proc = subprocess.Popen(
        [helpers.CHROMIUM, *helpers.CHROMIUM_ARGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
         "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        port_file = Path(profile) / "DevToolsActivePort"  # Chromium writes "<port>\n<path>" here
        deadline = time.monotonic() + 30
        while not (port_file.exists() and len(port_file.read_text().split()) >= 2):
            assert proc.poll() is None, f"chromium exited with {proc.returncode}"
            assert time.monotonic() < deadline, "chromium wrote no DevToolsActivePort within 30 s"
            time.sleep(0.05)
        port, path = port_file.read_text().split()[:2]
        browser = playwright.chromium.connect_over_cdp(f"ws://127.0.0.1:{port}{path}", no_defaults=True)
        try:
            yield browser
        finally:
            browser.close()
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def tab(tab_browser: Browser, static_server: str, request: pytest.FixtureRequest) -> Iterator[tuple[Page, Page]]:
    """(harness page booted in a real tab, the cover tab that hides it when brought to front),
    watched like the conftest's pages: any page error, console error, failed or foreign request
    fails the test."""
    helpers = _harness_helpers(request)
    context = tab_browser.contexts[0]
    cover = context.pages[0]
    events = helpers.PageEvents(label="tab", base_url=static_server)
    page = context.new_page()

    def route(r: Any) -> None:
        if events.is_local(r.request.url):
            r.continue_()
        else:
            events.blocked.append(r.request.url)
            r.abort("blockedbyclient")

    page.route("**/*", route)
    events.attach(page)
    page.goto(f"{static_server}/browser/harness.html")
    page.wait_for_function("() => window.harness && (window.harness.info || window.harness.error)",
                           timeout=helpers.BOOT_TIMEOUT_MS)
    assert not page.evaluate("() => window.harness.error"), events.report()
    assert not events.problems, events.report()
    watch = helpers._watch(request, page, events)
    page.bring_to_front()
    try:
        yield page, cover
        helpers._check_late_problems(request, watch)
    finally:
        page.close()


class LoggedServer(ServerProcess):
    """A reference server (auth required) that logs every connection and its close code."""

    def __init__(self) -> None:
        super().__init__(free_port(), require_auth=True, extra=("--log-level", "INFO"))

    def close_codes(self) -> dict[int, int]:
        """{connection id: close code the server saw}."""
        found = re.findall(r"connection (\d+) from \S+ closed \(code (\S+)\)", "".join(self.output))
        return {int(conn): int(code) if code.isdigit() else -1 for conn, code in found}

    def wait_closed(self, conn: int, timeout: float = 10.0) -> int:
        deadline = time.monotonic() + timeout
        while conn not in self.close_codes():
            assert time.monotonic() < deadline, f"the server saw no close of connection {conn}:\n{''.join(self.output)}"
            time.sleep(0.02)
        return self.close_codes()[conn]


@pytest.fixture
def logged_server() -> Iterator[LoggedServer]:
    server = LoggedServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def start_probe(page: Page, run_py: Callable[..., Any], url: str, name: str = "probe", **options: Any) -> dict[str, Any]:
    """Upload the probe, make ``name = Probe(url, TEST_KEY, **options)`` in the page, connect it;
    returns the connect time (ms) and whoami."""
    from conftest import upload_module  # tests/browser/conftest.py helpers

    upload_module(page, "lifeprobe", PROBE)
    args = ", ".join(f"{k}={v!r}" for k, v in {**KEEPALIVE, **options}.items())
    return run_py(page, f"""
import lifeprobe
{name} = lifeprobe.Probe({url!r}, {TEST_KEY!r}, {args})
t0 = lifeprobe.now()
await {name}.client.connect()
{{"connect_ms": lifeprobe.now() - t0, "whoami": await {name}.client.whoami()}}
""")


def finish(page: Page, run_py: Callable[..., Any], *names: str) -> dict[str, Any]:
    """Disconnect the probes; what is left listening and alive afterwards."""
    return run_py(page, f"""
from circle_ws_web.transports import browser as bt, page_events
for p in [{", ".join(names)}]:
    await p.client.disconnect()
{{"listening": page_events.PAGE_EVENTS.listening, "proxies": bt.live_proxy_count(), "timers": bt.live_timer_count()}}
""")


def show(name: str, figures: dict[str, Any]) -> None:
    print(json.dumps({"figure": name, **figures}))


def wait_event(page: Page, kind: str, detail: Any = None, after: float = 0.0, timeout_ms: int = 15_000) -> float:
    """The page-clock time (ms) of the first ``kind`` event recorded at or after ``after``."""
    page.wait_for_function(
        "([k, d, t]) => window.lifelog.some(e => e[1] === k && (d === null || e[2] === d) && e[0] >= t)",
        arg=[kind, detail, after], timeout=timeout_ms, polling=20,
    )
    return next(e[0] for e in page.evaluate("window.lifelog")
                if e[1] == kind and (detail is None or e[2] == detail) and e[0] >= after)


# -- offline and online -------------------------------------------------------------------------------


@pytest.mark.allow_console_errors(OFFLINE_REFUSED)
def test_chromium_offline_keeps_an_open_socket_and_holds_its_frames(
    shared_pyodide_page: Page, logged_server: LoggedServer
) -> None:
    """What Chromium 156 does under ``set_offline`` (DevTools' network emulation), with plain
    JavaScript: the open socket is not closed, frames wait both ways until the network is back,
    and a new socket fails at once."""
    page, context = shared_pyodide_page, shared_pyodide_page.context
    page.evaluate(RECORD_EVENTS)
    assert page.evaluate("""(url) => new Promise((resolve) => {
      const ws = new WebSocket(url); window.factsWs = ws; window.factsIn = [];
      ws.onmessage = (e) => window.factsIn.push([performance.now(), JSON.parse(e.data).id]);
      ws.onopen = () => resolve(true); ws.onerror = () => resolve(false);
    })""", logged_server.url)
    ping = "(id) => window.factsWs.send(JSON.stringify({jsonrpc: '2.0', method: 'ping', params: {}, id}))"
    page.evaluate(ping, 1)
    page.wait_for_function("window.factsIn.length === 1")
    try:
        context.set_offline(True)
        wait_event(page, "offline", False)
        page.wait_for_timeout(1000)
        assert page.evaluate("[navigator.onLine, window.factsWs.readyState]") == [False, 1]  # still OPEN
        page.evaluate(ping, 2)
        page.wait_for_timeout(1000)
        assert page.evaluate("window.factsIn.length") == 1  # the answer to 2 is held
        fresh = page.evaluate("""(url) => new Promise((resolve) => {
          const t0 = performance.now(), seen = [];
          const ws = new WebSocket(url);
          ws.onopen = () => seen.push("open");
          ws.onerror = () => seen.push("error");
          ws.onclose = (e) => resolve({seen: [...seen, "close " + e.code], ms: performance.now() - t0});
        })""", logged_server.url)
        assert fresh["seen"] == ["error", "close 1006"], fresh
    finally:
        context.set_offline(False)
    online = wait_event(page, "online", True)
    page.wait_for_function("window.factsIn.length === 2")
    answered = page.evaluate("window.factsIn[1]")
    assert answered[1] == 2 and page.evaluate("window.factsWs.readyState") == 1
    page.evaluate("window.factsWs.close(1000)")
    assert logged_server.wait_closed(1) == 1000  # the first socket lived through it all
    assert 2 not in logged_server.close_codes()  # the one opened offline never reached the server
    show("chromium offline facts", {"refused_socket_ms": round(fresh["ms"], 1),
                                    "held_answer_after_online_ms": round(answered[0] - online, 1)})


def test_offline_pauses_a_connected_client_and_online_reconnects_it(
    pyodide_page: Page, run_py: Callable[..., Any], logged_server: LoggedServer
) -> None:
    """The brief: offline -> ``reconnecting`` with ``paused == "offline"``, no attempt while
    offline, connected (and authenticated again) as soon as the network is back.

    Chromium does not close the open socket when it goes offline (see the test above), so the
    client has to notice by itself; with keep-alive at 60 + 10 s, only the liveness check that
    ``offline`` starts finds it within the bound below."""
    page, context = pyodide_page, pyodide_page.context
    page.evaluate(RECORD_EVENTS)  # before the client subscribes: its listeners run first
    first = start_probe(page, run_py, logged_server.url, reconnect_initial_delay=0.25)
    assert first["whoami"]["authenticated"] is True
    try:
        context.set_offline(True)
        off = wait_event(page, "offline", False)
        lost = run_py(page, f"await probe.wait_for('reconnecting', after={off}, timeout={LIVENESS + 7})")
        state = run_py(page, "probe.report()")
        assert lost is not None, (
            f"{LIVENESS + 7:g} s after going offline the client is still {state['status']!r} "
            f"(paused={state['paused']!r}) on the socket Chromium keeps open; statuses: {state['statuses']}")
        assert state["paused"] == "offline"
        attempts = len(state["opened"])
        page.wait_for_timeout(4000)  # offline for a while: no attempt, none counted
        state = run_py(page, "probe.report()")
        assert len(state["opened"]) == attempts == 1 and state["attempts_counted"] == 0, state
        assert state["status"] == "reconnecting" and state["paused"] == "offline"
    finally:
        context.set_offline(False)
    on = wait_event(page, "online", True)
    connected = run_py(page, f"await probe.wait_for('connected', after={on})")
    assert connected is not None
    state = run_py(page, "[probe.report(), await probe.client.whoami()]")
    assert state[1]["authenticated"] is True and len(state[0]["opened"]) == 2 and state[0]["reconnects"] == 1
    show("online -> connected (socket dropped by the client while offline)",
         {"offline_to_reconnecting_ms": round(lost - off, 1), "online_to_connected_ms": round(connected - on, 1),
          "baseline_connect_ms": round(first["connect_ms"], 1)})
    assert finish(page, run_py, "probe") == {"listening": False, "proxies": 0, "timers": 0}


def test_a_connection_lost_while_offline_waits_for_online(
    pyodide_page: Page, run_py: Callable[..., Any], logged_server: LoggedServer
) -> None:
    """The server goes away while the browser is offline: the client waits (no attempt, none
    counted, so no "connection failed" line in the console either) and reconnects, authenticated
    again, the moment the network is back, without waiting out a backoff delay."""
    page, context = pyodide_page, pyodide_page.context
    page.evaluate(RECORD_EVENTS)  # before the client subscribes: its listeners run first
    first = start_probe(page, run_py, logged_server.url, reconnect_initial_delay=5.0, reconnect_jitter=False)
    try:
        context.set_offline(True)
        off = wait_event(page, "offline", False)
        assert run_py(page, "[probe.client.status.value, probe.client.paused]") == ["connected", "offline"]
        logged_server.stop()  # SIGKILL: Chromium sees the connection go even while offline
        lost = run_py(page, f"await probe.wait_for('reconnecting', after={off})")
        assert lost is not None
        assert run_py(page, "probe.client.paused") == "offline"
        page.wait_for_timeout(3000)
        logged_server.start()
        page.wait_for_timeout(1000)
        state = run_py(page, "probe.report()")
        assert len(state["opened"]) == 1 and state["attempts_counted"] == 0, state
        assert [s[1] for s in state["statuses"]][-1] == "reconnecting"
    finally:
        context.set_offline(False)
    on = wait_event(page, "online", True)
    connected = run_py(page, f"await probe.wait_for('connected', after={on})")
    state, who = run_py(page, "[probe.report(), await probe.client.whoami()]")
    assert connected is not None and who["authenticated"] is True
    assert len(state["opened"]) == 2 and state["reconnects"] == 1
    assert state["opened"][1] - on < 1000  # at once: not after the 5 s backoff delay
    show("online -> connected (connection lost while offline)",
         {"online_to_connected_ms": round(connected - on, 1), "baseline_connect_ms": round(first["connect_ms"], 1),
          "ratio": round((connected - on) / first["connect_ms"], 2)})
    assert finish(page, run_py, "probe") == {"listening": False, "proxies": 0, "timers": 0}


#: In the Worker: record online/offline events on its global scope, and count the intervals set
#: (the adapter polls navigator.onLine with one; the wrapper sees it because it is installed
#: before the first client subscribes).
WORKER_SPY = """
from pyodide.code import run_js
run_js('''
globalThis.workerlog = [];
for (const t of ["online", "offline"]) addEventListener(t, () => workerlog.push(t));
globalThis.liveIntervals = new Map();
const setI = setInterval, clearI = clearInterval;
globalThis.setInterval = (fn, ms, ...rest) => { const id = setI(fn, ms, ...rest); liveIntervals.set(id, ms); return id; };
globalThis.clearInterval = (id) => { liveIntervals.delete(id); return clearI(id); };
1''')
import js
{"document": hasattr(js, "document"), "onLine": js.navigator.onLine}
"""


def test_offline_and_online_in_a_dedicated_worker(
    worker_page: Page, run_py: Callable[..., Any], logged_server: LoggedServer
) -> None:
    """JupyterLite's kernel runs in a Worker: there is no document (no page events), and under
    Chromium's emulated offline ``navigator.onLine`` changes there but no ``online``/``offline``
    event fires. The adapter reads ``navigator.onLine`` (one interval, removed with the last
    client), so a client in a Worker pauses while offline and reconnects when it is back."""
    page, context = worker_page, worker_page.context
    assert run_py(page, WORKER_SPY) == {"document": False, "onLine": True}
    first = start_probe(page, run_py, logged_server.url, reconnect_initial_delay=5.0, reconnect_jitter=False)
    assert run_py(page, "run_js('[...liveIntervals.values()]').to_py()") == [250]  # the poll
    page.evaluate(RECORD_EVENTS)  # the page's own events, for the times
    try:
        context.set_offline(True)
        off = page.evaluate("performance.timeOrigin") + wait_event(page, "offline", False)
        noticed = run_py(page, """
import asyncio
while probe.client.paused is None and lifeprobe.epoch() - OFF < 5000:
    await asyncio.sleep(0.01)
[probe.client.paused, lifeprobe.epoch() - OFF, js.navigator.onLine, list(js.workerlog)]
""".replace("OFF", repr(off)))
        assert noticed[0] == "offline" and noticed[2] is False
        assert noticed[3] == []  # Chromium fired no offline event in the Worker
        logged_server.stop()
        assert run_py(page, "await probe.wait_for('reconnecting')") is not None
        page.wait_for_timeout(2000)
        logged_server.start()
        state = run_py(page, "probe.report()")
        assert state["paused"] == "offline" and len(state["opened"]) == 1 and state["attempts_counted"] == 0, state
    finally:
        context.set_offline(False)
    on = page.evaluate("performance.timeOrigin") + wait_event(page, "online", True)
    out = run_py(page, f"""
t = await probe.wait_for('connected', after=lifeprobe.now() - (lifeprobe.epoch() - {on}))
[t and js.performance.timeOrigin + t, probe.report(), await probe.client.whoami(), list(js.workerlog)]
""")
    connected, state, who, log = out
    assert connected is not None and who["authenticated"] is True
    assert len(state["opened"]) == 2 and state["reconnects"] == 1
    assert log == []  # nor an online event
    show("worker: online -> connected", {"offline_noticed_ms": round(noticed[1], 1),
                                         "online_to_connected_ms": round(connected - on, 1),
                                         "baseline_connect_ms": round(first["connect_ms"], 1)})
    assert finish(page, run_py, "probe") == {"listening": False, "proxies": 0, "timers": 0}
    assert run_py(page, "js.liveIntervals.size") == 0  # the poll went with the last client


# -- hidden, visible, frozen, resumed (real tabs) ---------------------------------------------------


def hide(page: Page, cover: Page) -> None:
    cover.bring_to_front()
    page.wait_for_function("document.visibilityState === 'hidden'", polling=20)


def hidden_timer_rate(page: Page, ms: int = 2500) -> int:
    """How often a 10 ms interval really ran in ``ms`` (about ms/10 in a visible tab)."""
    page.evaluate("window.ticks = 0; window.tickTimer = setInterval(() => window.ticks++, 10)")
    page.wait_for_timeout(ms)
    return page.evaluate("clearInterval(window.tickTimer); window.ticks")


def test_visible_again_pings_at_once_and_keeps_a_live_connection(
    tab: tuple[Page, Page], run_py: Callable[..., Any], logged_server: LoggedServer
) -> None:
    page, cover = tab
    page.evaluate(RECORD_EVENTS)  # before the client subscribes: its listeners run first
    start_probe(page, run_py, logged_server.url)
    hide(page, cover)
    ticks = hidden_timer_rate(page)
    assert ticks < 50, ticks  # a hidden tab's timers are throttled (about one run a second)
    page.bring_to_front()
    visible = wait_event(page, "visibilitychange", "visible")
    page.wait_for_timeout(1500)
    state = run_py(page, "probe.report()")
    pings = [t for t, m in state["sent"] if m == "ping" and t >= visible]
    assert len(pings) == 1, state["sent"]  # one liveness ping, answered: nothing more
    assert pings[0] - visible < 1000  # "at once" (generous bound; keep-alive would wait 60 s)
    assert state["status"] == "connected" and len(state["opened"]) == 1 and state["reconnects"] == 0
    show("visible -> liveness ping", {"ping_after_visible_ms": round(pings[0] - visible, 1),
                                      "hidden_10ms_interval_runs_in_2_5s": ticks})
    assert finish(page, run_py, "probe") == {"listening": False, "proxies": 0, "timers": 0}


def test_visible_again_finds_a_silent_server_within_the_liveness_deadline(
    tab: tuple[Page, Page], run_py: Callable[..., Any], logged_server: LoggedServer
) -> None:
    """The connection died while the tab was hidden (the server went silent): becoming visible
    finds it within the 3 s liveness deadline, not keep-alive's 60 + 10 s, and replaces it."""
    page, cover = tab
    page.evaluate(RECORD_EVENTS)  # before the client subscribes: its listeners run first
    first = start_probe(page, run_py, logged_server.url)
    assert run_py(page, "await probe.client.call('test.silence', {'seconds': 60})") == {"ok": True}
    hide(page, cover)
    page.wait_for_timeout(1000)
    page.bring_to_front()
    visible = wait_event(page, "visibilitychange", "visible")
    detected = run_py(page, f"await probe.wait_for('reconnecting', after={visible})")
    assert detected is not None
    connected = run_py(page, f"await probe.wait_for('connected', after={detected})")
    state, who = run_py(page, "[probe.report(), await probe.client.whoami()]")
    ping = [t for t, m in state["sent"] if m == "ping" and t >= visible][0]
    assert ping - visible < 1000  # sent at once
    # Judged by the clock: not before the deadline, and long before keep-alive would have.
    assert LIVENESS * 1000 - 10 <= detected - ping <= 10_000, (detected - ping, state["statuses"])
    assert connected is not None and who["authenticated"] is True and len(state["opened"]) == 2
    assert logged_server.wait_closed(1) == 4000  # the client dropped the dead connection itself
    show("visible -> dead connection detected", {
        "visible_to_ping_ms": round(ping - visible, 1), "visible_to_detected_ms": round(detected - visible, 1),
        "visible_to_connected_ms": round(connected - visible, 1), "liveness_deadline_ms": LIVENESS * 1000,
        "keepalive_would_take_ms": (KEEPALIVE["keepalive_interval"] + KEEPALIVE["keepalive_timeout"]) * 1000,
        "baseline_connect_ms": round(first["connect_ms"], 1)})
    assert finish(page, run_py, "probe") == {"listening": False, "proxies": 0, "timers": 0}


def test_a_frozen_tab_closes_its_sockets_itself_and_reconnects_on_resume(
    tab: tuple[Page, Page], run_py: Callable[..., Any], logged_server: LoggedServer
) -> None:
    """Chromium closes a frozen page's open sockets when it resumes it (1001 to the server, 1006
    and a console error in the page: see the docs). The adapter treats ``freeze`` like
    ``pagehide``: the client closes cleanly itself (1000, before the freeze) and waits, and
    ``resume`` reconnects it at once. The fixture fails the test on any console error."""
    page, cover = tab
    page.evaluate(RECORD_EVENTS)  # before the client subscribes: its listeners run first
    start_probe(page, run_py, logged_server.url)
    hide(page, cover)
    cdp = page.context.new_cdp_session(page)
    try:
        cdp.send("Page.setWebLifecycleState", {"state": "frozen"})
        assert logged_server.wait_closed(1) == 1000  # closed by the client while it froze
        cover.wait_for_timeout(1000)  # frozen for a second
        cdp.send("Page.setWebLifecycleState", {"state": "active"})
    finally:
        cdp.detach()
    resumed = wait_event(page, "resume", "hidden")
    frozen = wait_event(page, "freeze", "hidden")
    connected = run_py(page, f"await probe.wait_for('connected', after={resumed})")
    state, who = run_py(page, "[probe.report(), await probe.client.whoami()]")
    assert connected is not None and who["authenticated"] is True and len(state["opened"]) == 2
    waits = [s for s in state["statuses"] if frozen <= s[0] < resumed]
    assert [s[1:] for s in waits] == [["reconnecting", "page hidden"]], state["statuses"]
    assert state["opened"][1] - resumed < 1000  # at once (while still hidden)
    page.bring_to_front()
    visible = wait_event(page, "visibilitychange", "visible")
    page.wait_for_timeout(500)
    state = run_py(page, "probe.report()")
    assert len([t for t, m in state["sent"] if m == "ping" and t >= visible]) == 1
    assert state["status"] == "connected" and len(state["opened"]) == 2
    show("resume -> connected", {"resume_to_connected_ms": round(connected - resumed, 1)})
    assert finish(page, run_py, "probe") == {"listening": False, "proxies": 0, "timers": 0}


def test_back_forward_cache_round_trip_reconnects_and_reauthenticates(
    tab: tuple[Page, Page], run_py: Callable[..., Any], logged_server: LoggedServer, static_server: str
) -> None:
    """Navigating away and back restores the page from the back-forward cache (``pageshow`` with
    ``persisted``, nothing in ``notRestoredReasons``): Python, the client and its callbacks are
    all still there, and the client connects and authenticates again."""
    page, _cover = tab
    page.evaluate(RECORD_EVENTS)  # before the client subscribes: its listeners run first
    start_probe(page, run_py, logged_server.url)
    cdp = page.context.new_cdp_session(page)
    not_used: list[Any] = []
    cdp.on("Page.backForwardCacheNotUsed", lambda event: not_used.append(event))
    cdp.send("Page.enable")
    try:
        page.goto(f"{static_server}/webroot.json")
        assert logged_server.wait_closed(1) == 1000  # pagehide: closed by the client (1001 is not for pages)
        page.go_back(wait_until="commit")  # a restored page fires no load event
        try:
            wait_event(page, "pageshow", True)
        except Exception:
            pytest.fail(f"not restored from the back-forward cache: {json.dumps(not_used)[:2000]}")
    finally:
        cdp.detach()
    assert not_used == []
    assert page.evaluate("performance.getEntriesByType('navigation')[0].notRestoredReasons") is None
    hidden, shown = wait_event(page, "pagehide", True), wait_event(page, "pageshow", True)
    # A restored page fires resume, visibilitychange (visible), then pageshow; the client starts
    # on the first of them (``resume`` counts as ``pageshow``).
    restored = wait_event(page, "resume", "hidden", after=hidden)
    assert restored <= shown
    connected = run_py(page, f"await probe.wait_for('connected', after={restored})")
    state, who = run_py(page, "[probe.report(), await probe.client.whoami()]")
    assert connected is not None and who["authenticated"] is True
    away = [s[1:] for s in state["statuses"] if hidden <= s[0] < restored]
    assert away == [["reconnecting", "page hidden"]], state["statuses"]
    assert len(state["opened"]) == 2 and [m for _, m in state["sent"]].count("fetch_nonce") == 2
    assert state["opened"][1] - restored < 1000  # at once
    show("back-forward cache: restored -> connected", {
        "restored_to_connected_ms": round(connected - restored, 1), "pageshow_to_connected_ms": round(connected - shown, 1),
        "in_cache_ms": round(restored - hidden, 1)})
    assert finish(page, run_py, "probe") == {"listening": False, "proxies": 0, "timers": 0}


def test_playwright_pages_stay_visible_and_bfcache_is_off(watched_page: Callable[..., Any]) -> None:
    """Why the tests above run in ``tab_browser``: in Playwright's own browser a page brought
    behind another stays visible, a freeze does nothing, and the back-forward cache is off by
    command line (Playwright launches Chromium with ``--disable-back-forward-cache``)."""
    page, _events = watched_page("playwright facts")
    other = page.context.new_page()
    for p in (page, other):  # two tiny pages that never touch the network
        p.route("http://127.0.0.1:9/**", lambda r: r.fulfill(
            content_type="text/html", body="<!doctype html><link rel=icon href='data:,'><p>page</p>"))
    page.goto("http://127.0.0.1:9/one.html")
    page.evaluate(RECORD_EVENTS)
    other.goto("http://127.0.0.1:9/other.html")
    other.bring_to_front()
    other.wait_for_timeout(300)
    assert page.evaluate("document.visibilityState") == "visible"  # behind another page, still visible
    cdp = page.context.new_cdp_session(page)
    not_used: list[Any] = []
    cdp.on("Page.backForwardCacheNotUsed", lambda event: not_used.append(event))
    cdp.send("Page.enable")
    cdp.send("Page.setWebLifecycleState", {"state": "frozen"})
    ticks = hidden_timer_rate(page, 500)  # runs: not frozen
    cdp.send("Page.setWebLifecycleState", {"state": "active"})
    assert ticks > 10 and events_of(page, "freeze") == [] and events_of(page, "visibilitychange") == []
    page.goto("http://127.0.0.1:9/two.html")
    page.go_back()  # a full load: the page was not kept
    page.wait_for_function("performance.getEntriesByType('navigation')[0].type === 'back_forward'")
    reasons = {r["reason"] for event in not_used for r in event["notRestoredExplanations"]}
    assert "BackForwardCacheDisabledByCommandLine" in reasons, not_used
    cdp.detach()
    show("playwright's browser", {"not_restored": sorted(reasons), "frozen_10ms_interval_runs_in_0_5s": ticks})


# -- listeners and proxies ------------------------------------------------------------------------

LIFECYCLE_TYPES = {"window": ("online", "offline", "pagehide", "pageshow"),
                   "document": ("visibilitychange", "freeze", "resume")}


def listener_counts(page: Page) -> dict[str, int]:
    """The page's real JS listeners of the lifecycle types, from DevTools (DOMDebugger)."""
    cdp = page.context.new_cdp_session(page)
    try:
        counts: dict[str, int] = {}
        for target, types in LIFECYCLE_TYPES.items():
            obj = cdp.send("Runtime.evaluate", {"expression": target})["result"]["objectId"]
            found = cdp.send("DOMDebugger.getEventListeners", {"objectId": obj})["listeners"]
            for kind in types:
                counts[f"{target}.{kind}"] = sum(1 for entry in found if entry["type"] == kind)
        return counts
    finally:
        cdp.detach()


CLIENTS = """
import asyncio, gc, weakref, pyodide_js
from circle_ws_web import CircleWsClient, ws_manager
from circle_ws_web.transports import browser as bt, page_events
api = pyodide_js._module
api.enable_pyproxy_allocation_tracing()
gc.collect()
baseline = {"proxies": bt.live_proxy_count(), "timers": bt.live_timer_count(), "traced": api.pyproxy_alloc_map.size}
clients = [CircleWsClient(url, KEY, pool=False) for url in URLS]
manager = ws_manager().private_key(KEY).add_server_url(URLS[0]).add_server_url(URLS[1]).build()
for c in clients:
    await c.connect()
await manager.connect()
page_events.PAGE_EVENTS.listening
"""

SETTLE = """
gc.collect()
for _ in range(40):  # a reference held by a loop callback that has not run yet is no leak
    if bt.live_proxy_count() == 0:
        break
    await asyncio.sleep(0.05)
    gc.collect()
"""


def test_one_adapter_for_every_client_and_nothing_left_after_disconnect(
    shared_pyodide_page: Page, run_py: Callable[..., Any], servers: Any, logged_server: LoggedServer
) -> None:
    page = shared_pyodide_page
    baseline = listener_counts(page)
    urls = [logged_server.url, servers.url("auth"), servers.url("open")]
    assert run_py(page, f"URLS = {urls!r}\nKEY = {TEST_KEY!r}\n" + CLIENTS) is True
    during = listener_counts(page)
    assert {k: during[k] - baseline[k] for k in during} == {k: 1 for k in during}  # one of each, for 5 clients
    assert run_py(page, "await manager.disconnect_all()\npage_events.PAGE_EVENTS.listening") is True
    assert run_py(page, "await clients.pop(0).disconnect()\npage_events.PAGE_EVENTS.listening") is True
    assert listener_counts(page) == during
    # A client dropped without disconnect(): garbage collection closes it and unsubscribes it,
    # and the last one still hears the page.
    out = run_py(page, "dropped = weakref.ref(clients.pop(0))\n" + SETTLE + """
{"listening": page_events.PAGE_EVENTS.listening, "collected": dropped() is None, "left": len(clients),
 "status": clients[0].status.value}
""")
    assert out == {"listening": True, "collected": True, "left": 1, "status": "connected"}
    assert listener_counts(page) == during
    out = run_py(page, "await clients.pop().disconnect()\n" + SETTLE + """
api.disable_pyproxy_allocation_tracing()
after = {"proxies": bt.live_proxy_count(), "timers": bt.live_timer_count(), "traced": api.pyproxy_alloc_map.size}
{"listening": page_events.PAGE_EVENTS.listening, "baseline": baseline, "after": after}
""")
    assert out["listening"] is False
    assert listener_counts(page) == baseline
    assert out["after"] == out["baseline"] == {**out["baseline"], "proxies": 0, "timers": 0}, out


def test_lifecycle_false_attaches_nothing_and_ignores_the_network(
    shared_pyodide_page: Page, run_py: Callable[..., Any], logged_server: LoggedServer
) -> None:
    page, context = shared_pyodide_page, shared_pyodide_page.context
    baseline = listener_counts(page)
    assert run_py(page, f"""
from circle_ws_web import CircleWsClient, ws_manager
from circle_ws_web.transports import page_events
optout = CircleWsClient({logged_server.url!r}, {TEST_KEY!r}, lifecycle=False)
optout_manager = ws_manager().private_key({TEST_KEY!r}).add_server_url({logged_server.url!r}).lifecycle(False).build()
await optout.connect()
await optout_manager.connect()
page_events.PAGE_EVENTS.listening
""") is False
    assert listener_counts(page) == baseline
    page.evaluate(RECORD_EVENTS)
    try:
        context.set_offline(True)
        wait_event(page, "offline", False)
        page.wait_for_timeout(300)
        paused = run_py(page, f"[optout.paused, optout_manager.get_client({logged_server.url!r}).paused]")
    finally:
        context.set_offline(False)
    wait_event(page, "online", True)
    assert paused == [None, None]  # nobody told them
    assert run_py(page, f"""
r = [(await optout.play("40 + 2")).output, (await optout_manager.execute_script({logged_server.url!r}, "40 + 2")).output]
await optout.disconnect()
await optout_manager.disconnect_all()
r + [page_events.PAGE_EVENTS.listening]
""") == ["42", "42", False]
