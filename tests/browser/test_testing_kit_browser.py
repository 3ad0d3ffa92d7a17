"""circle_ws_web.testing runs in Pyodide: a client against a FakeServer inside the page, on
the virtual clock (where the WebLoop has no ready queue to inspect, so the clock's settling
falls back on its activity counter) and on the page's real clock."""

from __future__ import annotations

from typing import Any, Callable

from playwright.sync_api import Page

VIRTUAL_DROP = """
import asyncio, sys
from circle_ws_web import CircleWsClient, ConnectionLostError
from circle_ws_web.auth import generate_private_key
from circle_ws_web.testing import FakeServer, VirtualClock
from circle_ws_web.transports import browser as bt

timers_before = bt.live_timer_count()
clock = VirtualClock()
server = FakeServer(require_auth=True, clock=clock)
client = CircleWsClient("ws://fake.test", generate_private_key(), transport_factory=server, clock=clock,
                        reconnect_initial_delay=0.5, reconnect_jitter=False)
await clock.run_until_complete(client.connect())
first = (await clock.run_until_complete(client.play("40 + 2"))).output
server.faults.delay(60, "play")
in_flight = asyncio.ensure_future(client.play("1 + 1"))
await clock.advance_async(1)
server.faults.drop()
try:
    await clock.run_until_complete(in_flight)
    lost = "no error"
except ConnectionLostError:
    lost = "ConnectionLostError"
lost_at = clock.now()
await clock.run_until(lambda: client.is_connected)
back_at = clock.now()
await clock.run_until_complete(client.disconnect())
{"first": first, "lost": lost, "lost_at": lost_at, "back_at": back_at,
 "nonce_conns": [r.conn for r in server.requests_for("fetch_nonce")],
 "distinct_nonces": len({n for _, n in server.issued_nonces}),
 "executed": server.executed_scripts, "pending": len(clock.pending()),
 "sockets": server.sockets, "violations": server.violations,
 "browser_timers_added": bt.live_timer_count() - timers_before,
 "websockets_imported": "websockets" in sys.modules}
"""


def test_a_dropped_connection_on_the_virtual_clock_in_pyodide(
    shared_pyodide_page: Page, run_py: Callable[..., Any]
) -> None:
    out = run_py(shared_pyodide_page, VIRTUAL_DROP, timeout=60)
    assert out["first"] == "42"
    assert out["lost"] == "ConnectionLostError" and out["lost_at"] == 1.0
    assert out["back_at"] == 1.5  # reconnect_initial_delay after the drop, exactly
    assert out["nonce_conns"] == [1, 2] and out["distinct_nonces"] == 2
    assert out["executed"] == ["40 + 2", "1 + 1"]  # the lost call was never re-sent
    assert out["pending"] == 0 and out["sockets"] == 0 and out["violations"] == []
    assert out["browser_timers_added"] == 0  # everything ran on virtual time
    assert out["websockets_imported"] is False


REAL_GARBAGE = """
import asyncio
from circle_ws_web import CircleWsClient
from circle_ws_web.testing import FakeServer

server = FakeServer()
client = CircleWsClient("ws://fake.test", transport_factory=server)
await client.connect()
server.faults.garbage()
for _ in range(200):  # bounded: the frames arrive within a few loop turns
    if client.metrics.bad_frames + client.metrics.unknown_ids >= 6:
        break
    await asyncio.sleep(0.01)
answer = (await client.play("6 * 7")).output
metrics = client.metrics
await client.disconnect()
{"bad_frames": metrics.bad_frames, "unknown_ids": metrics.unknown_ids, "answer": answer,
 "connections": server.connections, "sockets": server.sockets}
"""


def test_garbage_on_the_pages_real_clock(shared_pyodide_page: Page, run_py: Callable[..., Any]) -> None:
    out = run_py(shared_pyodide_page, REAL_GARBAGE, timeout=60)
    assert out["bad_frames"] == 5 and out["unknown_ids"] == 1
    assert out["answer"] == "42"
    assert out["connections"] == 0 and out["sockets"] == 0
