"""Chromium's 255 WebSockets per page (renderer process): the browser transport never asks for
more, tells the owner why a socket waits, and opens it as soon as a slot frees. Beyond the cap
``new WebSocket`` would fail at once with a bare 1006 and an "Insufficient resources" console
error (which the page fixtures turn into a failure). Background: docs/browser-limits.md."""

from __future__ import annotations

import json
import logging
from typing import Any, Callable

from playwright.sync_api import Page

logger = logging.getLogger(__name__)

SMALL_CAP = """
import asyncio
from transport_sink import Sink, TransportOptions, bt

async def until(check, what):
    for _ in range(200):
        if check():
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"never happened: {what}")

base = {"sockets": bt.live_socket_count(), "proxies": bt.live_proxy_count(), "timers": bt.live_timer_count()}
real_cap = bt.MAX_SOCKETS
bt.MAX_SOCKETS = base["sockets"] + 3
try:
    sinks = [Sink() for _ in range(5)]
    ts = [bt.BrowserTransport(f"{URL}/t{i}", s, TransportOptions()) for i, s in enumerate(sinks)]
    at_once = {"events": [list(s.events) for s in sinks], "waiting": bt.waiting_socket_count(),
               "sockets": bt.live_socket_count()}
    await until(lambda: all(s.events[-1:] == [["open"]] for s in sinks[:3]), "the first 3 open")
    full = {"events": [list(s.events) for s in sinks[3:]], "sockets": bt.live_socket_count()}
    ts[0].close()
    await until(lambda: ["open"] in sinks[3].events, "the 4th opens once a slot is free")
    freed = {"events": [list(s.events) for s in sinks], "sockets": bt.live_socket_count(), "waiting": bt.waiting_socket_count()}
    ts[4].close()  # still waiting: gives up its place, reports one close on a later turn
    after_close_waiting = list(sinks[4].events)
    await asyncio.sleep(0.1)
    closed_waiting = {"events": list(sinks[4].events), "waiting": bt.waiting_socket_count()}
    for t in ts:
        t.close()
    await until(lambda: bt.live_socket_count() == base["sockets"], "every socket closed")
    await asyncio.sleep(0.05)
finally:
    bt.MAX_SOCKETS = real_cap
{"base": base, "at_once": at_once, "full": full, "freed": freed, "after_close_waiting": after_close_waiting,
 "closed_waiting": closed_waiting, "end": {"sockets": bt.live_socket_count(), "proxies": bt.live_proxy_count(),
 "timers": bt.live_timer_count(), "events": [s.events for s in sinks]}, "cap": real_cap}
"""


def test_transport_waits_for_a_free_slot_and_says_why(
    shared_pyodide_page: Page, run_py: Callable[..., Any], transport_sink: Callable[[Page], None], servers: Any
) -> None:
    """With the cap shrunk to 3: the 4th and 5th transports hear at once why they wait, the 4th
    opens when a slot frees, the 5th closed while waiting reports one close; nothing is left."""
    transport_sink(shared_pyodide_page)
    out = run_py(shared_pyodide_page, f"URL = {servers.url('open')!r}\n" + SMALL_CAP, timeout=60)
    assert out["cap"] == 255
    base = out["base"]
    first = out["at_once"]["events"]
    assert first[:3] == [[], [], []], out
    for events in first[3:]:
        assert len(events) == 1 and events[0][0] == "error", out
        assert "Chromium allows" in events[0][1] and "WebSockets per page" in events[0][1], out
        assert "waiting for a free slot" in events[0][1], out
    assert out["at_once"]["waiting"] == 2 and out["at_once"]["sockets"] == base["sockets"] + 3, out
    assert [e[-1][0] for e in out["full"]["events"]] == ["error", "error"], out  # still waiting
    assert out["full"]["sockets"] == base["sockets"] + 3, out
    freed = out["freed"]
    assert [e[:2] for e in freed["events"][0]] == [["open"], ["close", 1000]], out
    assert freed["events"][3][-1] == ["open"] and freed["events"][4][-1][0] == "error", out
    assert freed["sockets"] == base["sockets"] + 3 and freed["waiting"] == 1, out
    assert out["after_close_waiting"][-1][0] == "error", out  # on_close not inside close()
    assert out["closed_waiting"]["events"][-1][:2] == ["close", 1006], out
    assert out["closed_waiting"]["waiting"] == 0, out
    end = out["end"]
    assert end["sockets"] == base["sockets"] and end["proxies"] == base["proxies"], out
    assert end["timers"] == base["timers"], out
    for events in end["events"]:
        assert [e[0] for e in events].count("close") == 1 and events[-1][0] == "close", out


#: Generous: the 255 sockets open 6 at a time (MAX_OPENING) within one attempt's window, slower
#: in a page that Playwright instruments. The 5 extra wait this long before their error.
CONNECT_TIMEOUT = 20

OVER_CAP = """
import asyncio, time
from circle_ws_web import ConnectError, ConnectionStatus, ws_manager
from circle_ws_web.transports import browser as bt

async def until(check, limit=30.0):
    t0 = time.monotonic()
    while not check():
        if time.monotonic() - t0 > limit:
            return False
        await asyncio.sleep(0.05)
    return True

urls = [f"{BASE}/s{i}" for i in range(N)]
manager = (ws_manager().add_server_urls(*urls).connect_timeout(TIMEOUT)
           .reconnect(initial_delay=0.05, max_delay=0.5).build())
up = []
manager.on_status_change(lambda url, status: up.append(time.monotonic()) if status is ConnectionStatus.CONNECTED else None)
t0 = time.monotonic()
report = await manager.connect()
connect_s = time.monotonic() - t0
failed = [u for u, e in report.items() if e is not None]
errors = {u: f"{type(report[u]).__name__}: {report[u]}" for u in failed}
peak_sockets = bt.live_socket_count()
connected = [u for u, e in report.items() if e is None]
# Free 5 slots: the queued clients (retrying in the background) take them.
t1 = time.monotonic()
for u in connected[:len(failed)]:
    await manager.disconnect(u)
joined = await until(lambda: all(manager.is_connected(u) for u in failed))
join_s = time.monotonic() - t1
still_connected = len(manager.connected_urls())
play = await manager.execute_script(failed[0], "40 + 2") if joined else None
sockets_at_end = bt.live_socket_count()
await manager.disconnect_all()
settled = await until(lambda: bt.live_proxy_count() == 0 and bt.live_timer_count() == 0
                      and bt.live_socket_count() == 0 and bt.waiting_socket_count() == 0, 15)
{"connect_s": connect_s, "all_up_s": (up[254] - t0) if len(up) >= 255 else None, "join_s": join_s, "connected": len(connected), "failed": failed, "errors": errors,
 "types": sorted({type(report[u]).__name__ for u in failed}), "peak_sockets": peak_sockets, "joined": joined,
 "still_connected": still_connected, "play": play.output if play else None, "sockets_at_end": sockets_at_end,
 "settled": settled, "proxies": bt.live_proxy_count(), "timers": bt.live_timer_count(),
 "sockets": bt.live_socket_count(), "statuses": sorted({s.value for s in manager.connection_statuses().values()})}
"""


def test_more_servers_than_chromium_allows_in_one_page(
    pyodide_page: Page, run_py: Callable[..., Any], servers: Any
) -> None:
    """260 servers (distinct paths on one reference server) in one page: 255 connect, the other
    5 fail their first attempt with a ConnectError that names the limit; when 5 connected
    servers are disconnected, the 5 waiting ones connect; everything is released after."""
    n = 260
    out = run_py(pyodide_page, f"BASE = {servers.url('open')!r}\nN = {n}\nTIMEOUT = {CONNECT_TIMEOUT}\n" + OVER_CAP, timeout=180)
    logger.info(
        "%d servers: 255 connected after %s s, connect() returned after %.2f s (the 5 extra time out),"
        " the queued 5 joined %.2f s after 5 slots were freed",
        n, out["all_up_s"], out["connect_s"], out["join_s"],
    )
    logger.info("cap errors: %s", json.dumps(list(out["errors"].values())[:1]))
    assert out["connected"] == 255, out
    assert len(out["failed"]) == n - 255 and out["types"] == ["ConnectError"], out
    for message in out["errors"].values():
        assert "Chromium allows 255 WebSockets per page" in message and "all in use" in message, message
        assert "waiting for a free slot" in message, message
    assert out["peak_sockets"] == 255, out
    assert out["joined"] is True, out
    assert out["still_connected"] == 255 and out["play"] == "42", out
    assert out["sockets_at_end"] == 255, out
    assert out["settled"] is True, out
    assert out["proxies"] == 0 and out["timers"] == 0 and out["sockets"] == 0, out
    assert out["statuses"] == ["closed"], out
