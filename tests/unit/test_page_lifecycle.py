"""The browser's lifecycle through a real client (driver + machine), on virtual time with the
test kit: offline pauses, online resumes at once, wake checks the connection, pagehide closes
cleanly (1000, "page hidden") and pageshow reconnects, lifecycle=False opts out, and nothing is left listening.
tests/browser/test_page_lifecycle_browser.py does the same with Chromium's real events."""

from __future__ import annotations

import asyncio

from circle_ws_web import CircleWsClient, ConnectionLostError, ConnectionStatus as S, ws_manager
from circle_ws_web.testing import FakePageEvents, FakeServer, VirtualClock

KEY = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
TUNING = dict(keepalive_interval=20.0, keepalive_timeout=10.0, reconnect_initial_delay=1.0,
              reconnect_max_delay=30.0, reconnect_jitter=False)


def setup(**options):
    clock = VirtualClock()
    server = FakeServer(require_auth=True, clock=clock)
    page = FakePageEvents()
    client = CircleWsClient("ws://fake", KEY, transport_factory=server, clock=clock, page_events=page,
                            **{**TUNING, **options})
    return clock, server, page, client


async def test_offline_pauses_and_online_reconnects_at_once() -> None:
    clock, server, page, client = setup()
    await clock.run_until_complete(client.connect())
    assert page.listeners == 1
    page.offline()
    server.faults.drop()  # Chromium closes open sockets when it goes offline
    await clock.advance_async(0)
    assert client.status is S.RECONNECTING and client.paused == "offline"
    await clock.advance_async(3600)  # an hour offline: not one attempt
    assert server.attempts == 1 and client._engine.machine.backoff.attempts == 0
    page.online()
    went_online = clock.now()
    await clock.run_until(lambda: client.is_connected)
    assert clock.now() == went_online  # at once, no backoff delay (virtual time did not move)
    assert server.attempts == 2 and len(server.requests_for("fetch_nonce")) == 2
    await client.disconnect()
    assert page.listeners == 0 and not clock.pending()


async def test_wake_replaces_a_dead_connection_within_the_short_deadline() -> None:
    clock, server, page, client = setup()
    seen = []
    client.on_status_change(lambda status: seen.append((clock.now(), status)))
    await clock.run_until_complete(client.connect())
    server.faults.silence()  # the connection died while the tab slept
    await clock.advance_async(5)
    page.wake()
    woke = clock.now()
    await clock.run_until(lambda: server.attempts == 2 and client.is_connected)
    lost = [t for t, status in seen if status is S.RECONNECTING]
    assert lost == [woke + 3.0]  # the liveness deadline, not interval + timeout (30 s)
    assert clock.now() == woke + 3.0  # and replaced at once: no backoff delay
    await client.disconnect()


async def test_wake_keeps_a_live_connection() -> None:
    clock, server, page, client = setup()
    await clock.run_until_complete(client.connect())
    page.wake()
    await clock.advance_async(10)
    assert client.is_connected and server.attempts == 1 and len(server.requests_for("ping")) == 1
    await client.disconnect()


async def test_pagehide_closes_cleanly_and_pageshow_reconnects_and_reauthenticates() -> None:
    clock, server, page, client = setup()
    await clock.run_until_complete(client.connect())
    page.pagehide()
    await clock.advance_async(0)
    assert [c.code for c in server.closes] == [1000] and "page hidden" in server.closes[0].reason and server.closes[0].by == "client"
    assert client.status is S.RECONNECTING and client.paused == "page hidden"
    await clock.advance_async(600)
    assert server.attempts == 1  # nothing attempted while in the back-forward cache
    page.pageshow()
    await clock.run_until(lambda: client.is_connected)
    assert server.attempts == 2 and len(server.authentications) == 2
    assert (await clock.run_until_complete(client.play("40 + 2"))).output == "42"
    await client.disconnect()


async def test_pagehide_fails_calls_in_flight() -> None:
    clock, server, page, client = setup()
    await clock.run_until_complete(client.connect())
    server.faults.delay(5.0, "play")
    call = asyncio.ensure_future(client.play("1"))
    await clock.advance_async(1)
    page.pagehide()
    await clock.advance_async(0)
    assert isinstance(call.exception(), ConnectionLostError)
    await client.disconnect()


async def test_lifecycle_false_ignores_the_page() -> None:
    clock, server, page, client = setup(lifecycle=False)
    await clock.run_until_complete(client.connect())
    assert page.listeners == 0
    page.pagehide()
    page.offline()
    await clock.advance_async(1)
    assert client.is_connected and not server.closes and client.paused is None
    await client.disconnect()


async def test_already_offline_at_first_use() -> None:
    clock = VirtualClock()
    server = FakeServer(clock=clock)
    page = FakePageEvents(online=False)
    manager = (ws_manager().add_server_url("ws://fake").transport_factory(server).clock(clock)
               .page_events(page).reconnect(initial_delay=1.0, jitter=False).build())
    server.faults.refuse(None)  # really no network
    try:
        await clock.run_until_complete(manager.connect())
    except Exception:
        pass
    client = manager.get_client("ws://fake")
    assert client.status is S.RECONNECTING and client.paused == "offline"
    await clock.advance_async(100)
    assert server.attempts == 1  # the explicit connect() tried once; nothing since
    server.faults.reset()
    page.online()
    await clock.run_until(lambda: client.is_connected)
    await manager.disconnect_all()
    assert page.listeners == 0


async def test_waiting_and_unsubscribing_leaves_nothing_behind() -> None:
    """Found by the chaos soak: each wait_connected() kept its unsubscribe function until
    disconnect(), about 1 KiB per call for the life of the client."""
    clock, server, page, client = setup()
    await clock.run_until_complete(client.connect())
    server.faults.drop()
    await clock.advance_async(0)
    for _ in range(50):
        await clock.run_until_complete(client.wait_connected(timeout=60))
        server.faults.drop()
        await clock.advance_async(0)
    undo = client.on_status_change(lambda status: None)
    undo()
    assert client._unsubscribers == [] and len(client._engine.status_listeners) == 0
    await client.disconnect()


async def test_disconnect_that_times_out_leaves_no_unretrieved_exception() -> None:
    """Found by the chaos soak (browser): a socket that never confirms its close made
    disconnect() leave a '_GatheringFuture exception was never retrieved'."""
    import gc

    clock, server, page, client = setup()
    await clock.run_until_complete(client.connect())
    server.faults.silence()  # nothing answers, the close handshake included
    loop = asyncio.get_running_loop()
    reported = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    sock = next(iter(client._engine.sockets.values()))
    sock.transport.close = lambda code=1000, reason="": None  # a close event that never comes
    await clock.run_until_complete(client.disconnect())
    gc.collect()
    await asyncio.sleep(0)
    assert reported == []
