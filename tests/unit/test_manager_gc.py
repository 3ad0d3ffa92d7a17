"""A manager the user dropped is garbage-collected and closes its connections (the README's
promise); a manager still in use is not collected from under its user.

Against a real reference server on 127.0.0.1 of this module's own (so no other test's sockets
are counted), whose ``test.stats`` counts the connections it has open: a separate
``pool=False`` client asks it, so the count is what the server sees, the asker included.

Why these cases: the clients' engines outlive the user's references (their sockets and timers
hold them), so whatever they hold of the manager decides whether it can be collected. Each
test that drops a task also drops its own reference to it, as Pyodide does for top-level code:
then only what the library holds keeps a call or a connect alive.
"""

from __future__ import annotations

import asyncio
import gc
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from support.servers import ServerProcess, free_port

from circle_ws_web import CircleWsClient, ConnectionLostError, ConnectionStatus, WsManager, ws_manager
from circle_ws_web.breaker import BreakerState

S = ConnectionStatus
BASELINE = 1  # the probe's own connection


async def open_connections(probe: CircleWsClient) -> int:
    return int((await probe.call("test.stats", {}))["connections"])


async def until_connections(probe: CircleWsClient, count: int, what: str) -> None:
    """Wait until the server counts ``count`` connections (they close asynchronously after the
    collection); bounded, so a connection that never closes fails the test instead of hanging."""
    deadline = time.monotonic() + 10
    while (seen := await open_connections(probe)) != count:
        assert time.monotonic() < deadline, f"{what}: the server still has {seen} connections, not {count}"
        await asyncio.sleep(0.02)


def build(url: str, *, connections: int = 1, pool: bool = True, **breaker: Any) -> WsManager:
    builder = ws_manager().add_server_url(url, connections=connections).pool(pool).reconnect(initial_delay=0.05)
    if breaker:
        builder.circuit_breaker(**breaker)
    return builder.build()


def unowned(coro: Any) -> asyncio.Future[Any]:
    """Run ``coro`` in a task nobody references (the returned future does not hold it)."""
    loop = asyncio.get_running_loop()
    out: asyncio.Future[Any] = loop.create_future()

    def done(task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            out.cancel()
        elif task.exception() is not None:
            out.set_exception(task.exception())  # type: ignore[arg-type]
        else:
            out.set_result(task.result())

    loop.create_task(coro).add_done_callback(done)
    return out


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    process = ServerProcess(free_port(), require_auth=False)
    process.start()
    yield process
    process.stop()


@pytest.fixture
async def probe(server: ServerProcess) -> AsyncIterator[CircleWsClient]:
    """Connected once the server counts only it: a previous test's sockets have closed."""
    client = CircleWsClient(server.url, pool=False)
    await client.connect()
    await until_connections(client, BASELINE, "before the test")
    yield client
    await client.disconnect()


async def test_a_dropped_manager_is_collected_and_the_server_sees_its_connections_close(
    server: ServerProcess, probe: CircleWsClient
) -> None:
    url, baseline = server.url, BASELINE
    manager = build(url, connections=2)
    await manager.connect()
    assert await open_connections(probe) == baseline + 2
    ref = weakref.ref(manager)
    del manager
    gc.collect()
    assert ref() is None
    await until_connections(probe, baseline, "after the manager was collected")


async def test_a_pooled_connection_another_live_manager_shares_stays_open(server: ServerProcess, probe: CircleWsClient) -> None:
    url, baseline = server.url, BASELINE
    keeper, dropped = build(url), build(url, connections=2)  # slot 0 pooled: one socket for both
    await asyncio.gather(keeper.connect(), dropped.connect())
    assert await open_connections(probe) == baseline + 2
    ref = weakref.ref(dropped)
    del dropped
    gc.collect()
    assert ref() is None
    await until_connections(probe, baseline + 1, "the dropped manager's own socket")
    assert keeper.connection_statuses() == {url: S.CONNECTED}
    assert (await keeper.execute_script_any("6 * 7")).output == "42"  # on the shared socket
    assert keeper.health()[url].samples == 1
    await keeper.disconnect_all()
    await until_connections(probe, baseline, "after the keeper disconnected")


async def test_a_manager_awaiting_connect_is_not_collected(server: ServerProcess, probe: CircleWsClient) -> None:
    url, baseline = server.url, BASELINE
    manager = build(url)
    ref = weakref.ref(manager)
    statuses: list[dict[str, ConnectionStatus]] = []

    async def connect_and_look(me: WsManager) -> dict[str, Any]:
        report = await me.connect()
        statuses.append(me.connection_statuses())
        return report

    connecting = unowned(connect_and_look(manager))
    del manager
    await asyncio.sleep(0)  # the attempt has begun: nothing of ours holds the manager now
    gc.collect()
    assert ref() is not None
    assert await asyncio.wait_for(connecting, 10) == {url: None}
    assert statuses == [{url: S.CONNECTED}]  # it connected: not closed from under connect()
    gc.collect()
    assert ref() is None  # connect() returned and nobody kept it: collected
    await until_connections(probe, baseline, "after the connected manager was collected")


async def test_a_manager_with_a_call_in_flight_is_not_collected(server: ServerProcess, probe: CircleWsClient) -> None:
    url, baseline = server.url, BASELINE
    manager = build(url)
    await manager.connect()
    ref = weakref.ref(manager)
    call = unowned(manager.call(url, "test.delay", {"seconds": 0.3, "result": "late"}))
    del manager
    await asyncio.sleep(0)
    gc.collect()
    assert ref() is not None  # the call in flight holds it
    assert await asyncio.wait_for(call, 10) == "late"
    gc.collect()
    assert ref() is None  # nothing holds it any more: collected, and its socket closes
    await until_connections(probe, baseline, "after the call ended")


async def test_a_status_callback_keeps_a_manager_alive_and_working_until_disconnect_all(
    server: ServerProcess, probe: CircleWsClient
) -> None:
    url, baseline = server.url, BASELINE
    built = build(url)
    seen: list[tuple[str, ConnectionStatus]] = []
    built.on_status_change(lambda u, s: seen.append((u, s)))  # the unsubscribe function dropped
    await built.connect()
    ref = weakref.ref(built)
    del built
    gc.collect()
    manager = ref()
    assert manager is not None  # someone listens to it: not collected from under them
    client = manager.get_client(url)
    del manager
    try:
        await client.call("test.drop", {}, timeout=5)
    except ConnectionLostError:  # the connection drops under the call
        pass
    await client.wait_connected(10)
    del client
    assert (url, S.RECONNECTING) in seen and seen[-1] == (url, S.CONNECTED)  # the callbacks still work
    manager = ref()
    assert manager is not None and manager.health()[url].reconnects >= 1
    await manager.disconnect_all()
    assert seen[-1] == (url, S.CLOSED)
    del manager
    gc.collect()
    assert ref() is None  # closed: nothing holds it, its callback registered or not
    await until_connections(probe, baseline, "after disconnect_all")


async def test_unsubscribing_the_last_callback_lets_a_dropped_manager_go(
    server: ServerProcess, probe: CircleWsClient
) -> None:
    url, baseline = server.url, BASELINE
    manager = build(url)
    unsubscribe = manager.on_status_change(lambda u, s: None)
    stop_breaker = manager.on_breaker_change(lambda u, s: None)
    await manager.connect()
    ref = weakref.ref(manager)
    del manager
    unsubscribe()
    gc.collect()
    assert ref() is not None  # the breaker callback still listens
    stop_breaker()
    gc.collect()
    assert ref() is None  # a spent unsubscribe function holds nothing
    await until_connections(probe, baseline, "after the last callback was unsubscribed")


async def test_a_client_the_user_kept_stays_connected_after_its_manager_is_collected(
    server: ServerProcess, probe: CircleWsClient
) -> None:
    url, baseline = server.url, BASELINE
    manager = build(url)
    await manager.connect()
    client, ref = manager.get_client(url), weakref.ref(manager)
    del manager
    gc.collect()
    assert ref() is None
    assert client.is_connected and (await client.play("40 + 2")).output == "42"
    assert await open_connections(probe) == baseline + 1
    del client
    gc.collect()
    await until_connections(probe, baseline, "after the kept client was dropped too")


async def test_an_open_breaker_does_not_keep_a_dropped_manager_alive(server: ServerProcess, probe: CircleWsClient) -> None:
    """The half-open timer (``reset_timeout`` away) must hold the manager weakly, and go with it."""
    url, dead, baseline = server.url, f"ws://127.0.0.1:{free_port()}", BASELINE
    manager = ws_manager().add_server_url(url).add_server_url(dead).circuit_breaker(
        failure_threshold=1, reset_timeout=300).build()
    await manager.connect()
    assert manager.breaker_state(dead) is BreakerState.OPEN
    timers: set[Callable[[], None]] = getattr(manager, "_timers", set())
    ref = weakref.ref(manager)
    del manager
    gc.collect()
    assert ref() is None
    assert not timers  # the finalizer cancelled the half-open timer
    await until_connections(probe, baseline, "after the manager with an open breaker was collected")
