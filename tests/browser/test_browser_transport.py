"""The browser transport's own promises, checked in Pyodide in headless Chromium: timers longer
than ``setTimeout`` can hold, a socket closed while its handshake is still pending (it must let
go of its JS proxy at once, without a console error, and report exactly one close), a close the
server never answers, and an error behind ``on_message``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any, Callable

import pytest
from playwright.sync_api import Page
from websockets.asyncio.server import serve

logger = logging.getLogger(__name__)

def test_a_30_day_timer_does_not_fire_at_once(pyodide_page: Page, run_py: Callable[..., Any]) -> None:
    """A raw setTimeout of more than 2**31-1 ms fires at once; call_later's does not, and its
    cancel leaves no timer behind."""
    out = run_py(
        pyodide_page,
        """
import asyncio, js
from pyodide.ffi import create_once_callable
from circle_ws_web.transports import browser as bt

DAY = 24 * 3600
raw = []
js.setTimeout(create_once_callable(lambda: raw.append(1)), 30 * DAY * 1000)  # what call_later avoids
baseline = bt.live_timer_count()
fired = []
cancel = bt.call_later(30 * DAY, lambda: fired.append(1))
during = bt.live_timer_count()
await asyncio.sleep(1.0)
still = bt.live_timer_count()
cancel()
cancel()  # idempotent
after = bt.live_timer_count()
await asyncio.sleep(0.1)
{"raw_fired": len(raw), "fired": len(fired), "baseline": baseline, "during": during, "still": still,
 "after": after, "max_ms": bt.MAX_TIMER_MS}
""",
    )
    assert out["max_ms"] == 2**31 - 1
    assert out["raw_fired"] == 1, out  # the browser's overflow is real: the test can fail
    assert out["fired"] == 0, out
    assert out["during"] == out["still"] == out["baseline"] + 1, out
    assert out["after"] == out["baseline"], out


LONG_TIMER = """
import asyncio, time
from circle_ws_web.transports import browser as bt

armed = []
real_set_timeout = bt.set_timeout

def counting_set_timeout(callback, ms):
    armed.append(ms)
    return real_set_timeout(callback, ms)

bt.MAX_TIMER_MS, bt.set_timeout = 50, counting_set_timeout
try:
    baseline = bt.live_timer_count()
    t0 = time.monotonic()
    fired = []
    bt.call_later(0.2, lambda: fired.append(time.monotonic() - t0))
    counted = bt.live_timer_count()
    await asyncio.sleep(0.6)
    armed_fired = list(armed)
    # The same, cancelled between two steps: nothing fires, nothing is left.
    armed.clear()
    cancelled = []
    cancel = bt.call_later(0.2, lambda: cancelled.append(1))
    await asyncio.sleep(0.12)
    steps_before_cancel = len(armed)
    cancel()
    left_after_cancel = bt.live_timer_count()
    await asyncio.sleep(0.3)
finally:
    bt.MAX_TIMER_MS, bt.set_timeout = 2**31 - 1, real_set_timeout
{"fired": fired, "armed": armed_fired, "baseline": baseline, "counted": counted,
 "after": bt.live_timer_count(), "cancelled": len(cancelled), "steps_before_cancel": steps_before_cancel,
 "left_after_cancel": left_after_cancel, "steps_after_cancel": len(armed) - steps_before_cancel}
"""


def test_a_long_timer_is_rearmed_until_its_full_delay_elapsed(
    shared_pyodide_page: Page, run_py: Callable[..., Any]
) -> None:
    """With the clamp shrunk to 50 ms, a 200 ms timer is served in several steps and fires once,
    no earlier than 200 ms; cancelled between steps, it never fires and leaves no timer."""
    out = run_py(shared_pyodide_page, LONG_TIMER)
    logger.info("long timer: %s", json.dumps(out))
    assert len(out["fired"]) == 1, out
    assert out["fired"][0] >= 0.2, out
    assert len(out["armed"]) >= 4 and all(ms <= 50 for ms in out["armed"]), out
    assert out["counted"] == out["baseline"] + 1, out  # one timer, however many steps
    assert out["after"] == out["baseline"], out
    assert out["cancelled"] == 0 and out["steps_before_cancel"] >= 2, out
    assert out["left_after_cancel"] == out["baseline"], out
    assert out["steps_after_cancel"] == 0, out  # the current step was really cleared


STALLED_CLOSE = """
import asyncio
from transport_sink import Sink, TransportOptions, bt
baseline = {"proxies": bt.live_proxy_count(), "sockets": bt.live_socket_count(), "timers": bt.live_timer_count()}
sink = Sink()
t = bt.BrowserTransport(URL, sink, TransportOptions())
await asyncio.sleep(0.3)  # the handshake is under way and stays so (the server never answers)
connecting = {"proxies": bt.live_proxy_count(), "sockets": bt.live_socket_count(), "events": list(sink.events)}
t.close(1000, "owner gave up")
at_once = {"proxies": bt.live_proxy_count(), "events": list(sink.events), "detached": bt.detached_socket_count(),
           "sockets": bt.live_socket_count()}
t.close()  # idempotent
await asyncio.sleep(0.2)
later = {"events": list(sink.events), "timers": bt.live_timer_count()}
t.send("ignored")  # a closed transport never raises
await asyncio.sleep(0.5)
{"baseline": baseline, "connecting": connecting, "at_once": at_once, "later": later, "final": list(sink.events)}
"""


def test_closing_a_stalled_handshake_frees_its_proxy_at_once(
    pyodide_page: Page, run_py: Callable[..., Any], transport_sink: Callable[[Page], None], servers: Any
) -> None:
    transport_sink(pyodide_page)
    code = STALLED_CLOSE.replace("URL", repr(servers.stalled_url()))
    out = run_py(pyodide_page, code)
    base = out["baseline"]
    assert out["connecting"]["proxies"] == base["proxies"] + 1, out  # the counter does count
    assert out["connecting"]["events"] == [], out
    assert out["at_once"]["proxies"] == base["proxies"], out
    assert out["at_once"]["events"] == [], out  # on_close comes on a later turn, never inside close()
    # The socket itself still counts against Chromium's cap until Chromium lets it go.
    assert out["at_once"]["detached"] == 1 and out["at_once"]["sockets"] == base["sockets"] + 1, out
    assert out["later"]["events"] == [["close", 1006, "closed before the connection opened"]], out
    assert out["later"]["timers"] == base["timers"], out
    assert out["final"] == out["later"]["events"], out  # exactly one on_close, and nothing after


@contextlib.contextmanager
def _server_thread(handler: Any, **options: Any) -> Iterator[tuple[str, asyncio.AbstractEventLoop]]:
    """A websockets server on its own loop in a thread (the page's tests drive Playwright
    synchronously from the main thread): yields its URL and its loop, stops it at the end."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop = asyncio.Event()
    where: dict[str, str] = {}

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0, **options) as server:
            where["url"] = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield where["url"], loop
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()


@pytest.fixture
def slow_handshake_server() -> Iterator[dict[str, Any]]:
    """A websockets server that answers each handshake after 0.6 s, then records how the
    client ended the connection: a detached socket must be closed cleanly once it opens."""
    record: dict[str, Any] = {"opened": 0, "closes": []}

    async def delay(connection: Any, request: Any) -> None:
        await asyncio.sleep(0.6)

    async def handler(ws: Any) -> None:
        record["opened"] += 1
        try:
            async for _ in ws:
                pass
        finally:
            record["closes"].append(ws.close_code)

    with _server_thread(handler, process_request=delay) as (url, _loop):
        record["url"] = url
        yield record


SLOW_CLOSE = """
import asyncio
from transport_sink import Sink, TransportOptions, bt
baseline = {"proxies": bt.live_proxy_count(), "sockets": bt.live_socket_count(), "detached": bt.detached_socket_count()}
sinks = [Sink() for _ in range(3)]
ts = [bt.BrowserTransport(URL, s, TransportOptions()) for s in sinks]
await asyncio.sleep(0.1)
for t in ts:
    t.close()
at_once = {"proxies": bt.live_proxy_count(), "detached": bt.detached_socket_count(), "sockets": bt.live_socket_count()}
for _ in range(60):  # the server answers after 0.6 s; the JS handlers then close each socket
    await asyncio.sleep(0.05)
    if bt.detached_socket_count() == 0:
        break
{"baseline": baseline, "at_once": at_once, "detached": bt.detached_socket_count(), "sockets": bt.live_socket_count(),
 "proxies": bt.live_proxy_count(), "events": [s.events for s in sinks], "shared_proxy": bt._freed_proxy is not None}
"""


def test_a_detached_socket_is_closed_when_it_opens_and_gives_its_slot_back(
    pyodide_page: Page, run_py: Callable[..., Any], transport_sink: Callable[[Page], None],
    slow_handshake_server: dict[str, Any],
) -> None:
    transport_sink(pyodide_page)
    code = SLOW_CLOSE.replace("URL", repr(slow_handshake_server["url"]))
    out = run_py(pyodide_page, code)
    base = out["baseline"]
    assert out["at_once"]["proxies"] == base["proxies"], out
    assert out["at_once"]["detached"] == base["detached"] + 3, out
    assert out["at_once"]["sockets"] == base["sockets"] + 3, out
    assert out["detached"] == base["detached"] and out["sockets"] == base["sockets"], out
    assert out["proxies"] == base["proxies"] and out["shared_proxy"] is False, out
    assert out["events"] == [[["close", 1006, "closed before the connection opened"]]] * 3, out
    pyodide_page.wait_for_timeout(300)  # let the server see the close frames
    assert slow_handshake_server["opened"] == 3, slow_handshake_server
    assert slow_handshake_server["closes"] == [1000, 1000, 1000], slow_handshake_server


ON_MESSAGE_BUG = """
import asyncio, json, logging
from transport_sink import Sink, TransportOptions, bt

class Buggy(Sink):
    def on_message(self, data):
        super().on_message(data)
        raise RuntimeError("a bug behind on_message")

records = []
handler = logging.Handler()
handler.emit = lambda record: records.append(record.getMessage())
logging.getLogger("circle_ws_web").addHandler(handler)
try:
    baseline = {"proxies": bt.live_proxy_count(), "sockets": bt.live_socket_count()}
    sink = Buggy()
    t = bt.BrowserTransport(URL, sink, TransportOptions())
    for _ in range(200):
        if sink.events:
            break
        await asyncio.sleep(0.02)
    t.send(json.dumps({"jsonrpc": "2.0", "method": "fetch_nonce", "params": {"pubkey": "04" + "ab" * 64}, "id": "1"}))
    for _ in range(250):
        if sink.events and sink.events[-1][0] == "close":
            break
        await asyncio.sleep(0.02)
    after = {"proxies": bt.live_proxy_count(), "sockets": bt.live_socket_count()}
finally:
    logging.getLogger("circle_ws_web").removeHandler(handler)
{"baseline": baseline, "after": after, "kinds": [e[0] for e in sink.events], "close": sink.events[-1], "log": records}
"""


def test_an_error_behind_on_message_closes_the_socket_without_a_page_error(
    shared_pyodide_page: Page, run_py: Callable[..., Any], transport_sink: Callable[[Page], None], servers: Any
) -> None:
    """The watched page fails the test on any uncaught page error; the socket must close and
    give back its proxy."""
    transport_sink(shared_pyodide_page)
    out = run_py(shared_pyodide_page, ON_MESSAGE_BUG.replace("URL", repr(servers.url("auth"))))
    assert out["kinds"] == ["open", "message", "close"], out
    assert out["close"][1:] == [4000, "internal error"], out
    assert any("internal error handling a frame" in line for line in out["log"]), out
    assert out["after"] == out["baseline"], out


@pytest.fixture
def deaf_server() -> Iterator[dict[str, Any]]:
    """A websockets server that stops reading each connection at once (so it never sees the
    client's close frame) until the test calls ``record["hear"]()``; then records the close."""
    record: dict[str, Any] = {"closes": []}
    hear = asyncio.Event()

    async def handler(ws: Any) -> None:
        ws.transport.pause_reading()
        try:
            await asyncio.wait_for(hear.wait(), 30)
        except TimeoutError:
            pass
        ws.transport.resume_reading()
        try:
            async for _ in ws:
                pass
        finally:
            record["closes"].append(ws.close_code)

    with _server_thread(handler) as (url, loop):
        record["url"] = url
        record["hear"] = lambda: loop.call_soon_threadsafe(hear.set)
        try:
            yield record
        finally:
            loop.call_soon_threadsafe(hear.set)


DEAF_CLOSE = """
import asyncio
from transport_sink import Sink, TransportOptions, bt
baseline = {"proxies": bt.live_proxy_count(), "sockets": bt.live_socket_count(),
            "detached": bt.detached_socket_count(), "timers": bt.live_timer_count()}
sink = Sink()
t = bt.BrowserTransport(URL, sink, TransportOptions())
for _ in range(250):
    if sink.events:
        break
    await asyncio.sleep(0.02)
t.close(1000, "done")
for _ in range(500):  # bounded: Chromium alone would wait about a minute
    if sink.events[-1][0] == "close":
        break
    await asyncio.sleep(0.02)
closed = {"events": list(sink.events), "proxies": bt.live_proxy_count(), "sockets": bt.live_socket_count(),
          "detached": bt.detached_socket_count(), "timers": bt.live_timer_count()}
{"baseline": baseline, "closed": closed}
"""

DEAF_HEARS = """
import asyncio
from circle_ws_web.transports import browser as bt
for _ in range(250):
    if bt.detached_socket_count() == BASE:
        break
    await asyncio.sleep(0.02)
{"detached": bt.detached_socket_count(), "sockets": bt.live_socket_count(), "shared_proxy": bt._freed_proxy is not None}
"""


def test_a_close_the_server_never_answers_lets_go_of_the_proxy_and_reports_the_close(
    shared_pyodide_page: Page, run_py: Callable[..., Any], transport_sink: Callable[[Page], None],
    deaf_server: dict[str, Any],
) -> None:
    """A server that stopped reading never answers the close frame, and Chromium waits about a
    minute: the transport stops waiting after CLOSE_TIMEOUT (JS handlers take the socket over)."""
    transport_sink(shared_pyodide_page)
    out = run_py(shared_pyodide_page, DEAF_CLOSE.replace("URL", repr(deaf_server["url"])), timeout=60)
    base, closed = out["baseline"], out["closed"]
    assert closed["events"] == [["open"], ["close", 1006, "the server did not answer the close within 2 s"]], out
    assert closed["proxies"] == base["proxies"] and closed["timers"] == base["timers"], out
    # Chromium still counts the socket until its own close handshake ends: held by JS alone.
    assert closed["detached"] == base["detached"] + 1 and closed["sockets"] == base["sockets"] + 1, out
    deaf_server["hear"]()  # the server reads again: the close completes and the slot comes back
    later = run_py(shared_pyodide_page, DEAF_HEARS.replace("BASE", str(base["detached"])))
    assert later["detached"] == base["detached"] and later["sockets"] == base["sockets"], later
    assert deaf_server["closes"] == [1000], deaf_server
