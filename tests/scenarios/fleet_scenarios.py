"""Fleet scenarios (issue 10) that run unchanged in CPython and in the browser (Pyodide),
against three real reference servers with request journals.

Each ``scenario_*`` coroutine takes an ``env`` and asserts what a user of a fleet relies on:
failover, a sent call never sent again, the breaker's cycle, pooling, k connections sharing
the load, servers added and removed while calls are in flight. Like circle_scenarios.py, this
file imports nothing but the library and the standard library, so the browser test can copy
it into Pyodide's file system and run the very same functions there.

``env`` provides:
    env.key                 a private key (hex) the servers accept
    env.url(name)           "a", "b", "c": reference servers requiring authentication, with
                            test controls and a journal (one entry per play started)
    env.dead_url()          a ws:// URL where nothing listens
    await env.stop(name) / await env.start(name) / await env.restart(name, down=0.0)
    await env.journal(name) every play that server started: [{"conn", "id", "script"}, ...]
    env.platform            "cpython" or "pyodide"
"""

from __future__ import annotations

import asyncio
import gc
import random
import time
import weakref
from collections import Counter

from circle_ws_web import (
    CircuitOpenError,
    ClientClosedError,
    ConnectError,
    ConnectionLostError,
    ConnectionStatus,
    NotConnectedError,
    PlayResult,
    ws_manager,
)
from circle_ws_web.breaker import BreakerState

S = ConnectionStatus
BS = BreakerState


def fleet(env, *servers, threshold=5, reset=30.0, pool=True):
    """A manager of ``servers``: (name, {priority, weight, connections}) pairs, short timings."""
    builder = (
        ws_manager()
        .private_key(env.key)
        .keepalive(5, 2)
        .reconnect(initial_delay=0.05, max_delay=0.3, min_uptime=0.5)
        .request_timeout(10)
        .connect_timeout(5)
        .circuit_breaker(failure_threshold=threshold, reset_timeout=reset)
        .pool(pool)
    )
    for name, options in servers:
        builder.add_server_url(env.url(name), **options)
    return builder.build()


async def eventually(predicate, timeout=15.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


def spawn(awaitable):
    """A task the scenario awaits later. Observed from the start: Pyodide's loop reports a task
    that fails while nothing watches it as an unhandled exception."""
    task = asyncio.ensure_future(awaitable)
    task.add_done_callback(lambda t: t.cancelled() or t.exception())
    return task


def unique(tag):
    """A script nobody else runs (an integer expression), to find it in the journals."""
    return f"{random.randrange(10**12, 10**13)} + {tag}"


async def ran(env, script, *names):
    """How often each server started ``script``, by its journal."""
    return {name: sum(entry["script"] == script for entry in await env.journal(name)) for name in names}


async def connections_on(manager, url):
    return (await manager.call(url, "test.stats", {}))["connections"]


# -- failover --------------------------------------------------------------------------------


async def scenario_failover_past_a_server_that_is_down(env):
    await env.stop("a")
    manager = fleet(env, ("a", {"priority": 0}), ("b", {"priority": 1}))
    report = await manager.connect()
    assert isinstance(report[env.url("a")], ConnectError) and report[env.url("b")] is None
    script = unique(1)
    result = await manager.execute_script_any(script)
    assert result.url == env.url("b") and result == PlayResult(str(int(script.split()[0]) + 1))
    assert await ran(env, script, "b") == {"b": 1}
    await env.start("a")
    await manager.get_client(env.url("a")).wait_connected(15)
    back = await manager.execute_script_any(unique(2))
    assert back.url == env.url("a")  # the preferred server takes the calls again
    await manager.disconnect_all()


async def scenario_failover_when_a_server_dies_mid_run(env):
    manager = fleet(env, ("a", {"priority": 0}), ("b", {"priority": 1}))
    await manager.connect()
    scripts, where = [], []
    for i in range(12):
        if i == 4:
            await env.stop("a")
            await eventually(lambda: not manager.is_connected(env.url("a")), what="a to be seen down")
        script = unique(i)
        scripts.append(script)
        where.append((await manager.execute_script_any(script)).url)
    assert where == [env.url("a")] * 4 + [env.url("b")] * 8, where
    journal_b = Counter(e["script"] for e in await env.journal("b"))
    assert all(journal_b[s] == 1 for s in scripts[4:]) and not any(journal_b[s] for s in scripts[:4])
    await manager.disconnect_all()


async def scenario_a_sent_call_is_never_sent_again(env):
    manager = fleet(env, ("a", {"priority": 0}), ("b", {"priority": 1}))
    await manager.connect()
    url_a = env.url("a")
    # a's connection takes requests and never answers: the play is sent, then a dies.
    assert await manager.call(url_a, "test.silence", {"seconds": 30}) == {"ok": True}
    script = unique(7)
    call = spawn(manager.execute_script_any(script))
    await eventually(lambda: manager.health()[url_a].in_flight == 1, what="the play in flight on a")
    await env.stop("a")
    try:
        await call
        raise AssertionError("a sent, non-idempotent call must not be retried elsewhere")
    except ConnectionLostError as exc:
        assert "not re-sent" in str(exc)
    await env.start("a")
    assert await ran(env, script, "a", "b") == {"a": 0, "b": 0}  # never run anywhere else
    # The same with idempotent=True: retried on b, and run there exactly once.
    await manager.get_client(url_a).wait_connected(15)
    assert await manager.call(url_a, "test.silence", {"seconds": 30}) == {"ok": True}
    again = unique(8)
    call = spawn(manager.execute_script_any(again, idempotent=True))
    await eventually(lambda: manager.health()[url_a].in_flight == 1, what="the idempotent play in flight on a")
    await env.stop("a")
    result = await call
    assert result.url == env.url("b")
    assert await ran(env, again, "a", "b") == {"a": 0, "b": 1}
    await manager.disconnect_all()


async def scenario_a_hedge_answers_when_the_first_server_is_silent(env):
    manager = fleet(env, ("a", {"priority": 0}), ("b", {"priority": 1}))
    await manager.connect()
    assert await manager.call(env.url("a"), "test.silence", {"seconds": 30}) == {"ok": True}
    script = unique(9)
    result = await manager.execute_script_any(script, idempotent=True, hedge_after=0.2)
    assert result.url == env.url("b")
    assert manager.health()[env.url("a")].in_flight == 0  # the copy on a was cancelled
    assert await ran(env, script, "b") == {"b": 1}
    await manager.disconnect_all()


async def scenario_quorum_returns_without_the_slow_server(env):
    manager = fleet(env, ("a", {}), ("b", {}), ("c", {}))
    await manager.connect()
    assert await manager.call(env.url("c"), "test.silence", {"seconds": 30}) == {"ok": True}
    got = await manager.execute_script_all("6 * 7", quorum=2)
    assert set(got) == {env.url("a"), env.url("b")} and all(r == PlayResult("42") for r in got.values())
    assert manager.health()[env.url("c")].in_flight == 0
    await manager.disconnect_all()


# -- the breaker -------------------------------------------------------------------------------


async def scenario_breaker_opens_half_opens_and_closes(env):
    manager = fleet(env, ("a", {}), ("b", {"priority": 1}), threshold=3, reset=1.0)
    changes = []
    manager.on_breaker_change(lambda url, state: changes.append((url, state)))
    await manager.connect()
    url_a = env.url("a")
    await env.stop("a")
    await eventually(lambda: manager.breaker_state(url_a) is BS.OPEN, what="the breaker to open")
    health = manager.health()[url_a]
    assert health.consecutive_failures >= 3 and health.breaker == "open"
    try:
        await manager.execute_script(url_a, "1")
        raise AssertionError("an open breaker must refuse at once")
    except CircuitOpenError as exc:
        assert isinstance(exc, NotConnectedError) and exc.url == url_a
    assert (await manager.execute_script_any(unique(3))).url == env.url("b")
    # Still down after reset_timeout: half-open, and the next failed attempt opens it again.
    await eventually(lambda: (url_a, BS.HALF_OPEN) in changes, what="half-open after reset_timeout")
    await env.start("a")
    await manager.get_client(url_a).wait_connected(15)
    await eventually(lambda: manager.breaker_state(url_a) is BS.HALF_OPEN, what="half-open on reconnect")
    probe = await manager.execute_script_any(unique(4))
    assert probe.url == url_a and manager.breaker_state(url_a) is BS.CLOSED
    states = [state for url, state in changes if url == url_a]
    assert states[0] is BS.OPEN and states[-1] is BS.CLOSED and BS.HALF_OPEN in states, states
    await manager.disconnect_all()


# -- pooling and connections ------------------------------------------------------------------


async def scenario_pooling_shares_one_socket(env):
    probe = fleet(env, ("a", {}), pool=False)  # its own socket, to ask the server
    await probe.connect()
    url = env.url("a")
    baseline = await connections_on(probe, url)
    one, two = fleet(env, ("a", {})), fleet(env, ("a", {}))
    await asyncio.gather(one.connect(), two.connect())
    assert await connections_on(probe, url) == baseline + 1  # two managers, one socket
    wide_one, wide_two = fleet(env, ("a", {"connections": 3})), fleet(env, ("a", {"connections": 3}))
    await asyncio.gather(wide_one.connect(), wide_two.connect())
    # Slot 0 of the wide ones is the pooled socket of one and two: 1 + 2 more.
    assert await connections_on(probe, url) == baseline + 3
    own = fleet(env, ("a", {}), pool=False)
    await own.connect()
    assert await connections_on(probe, url) == baseline + 4
    for manager in (one, two, wide_one, wide_two, own):
        await manager.disconnect_all()
    deadline = time.monotonic() + 10
    while await connections_on(probe, url) != baseline:  # the last user of a socket closed it
        assert time.monotonic() < deadline, "pooled sockets still open after every manager left"
        await asyncio.sleep(0.05)
    await probe.disconnect_all()


async def scenario_k_connections_share_the_load(env):
    manager = fleet(env, ("a", {"connections": 4}), pool=False)
    await manager.connect()
    url = env.url("a")
    assert len(manager.get_clients(url)) == 4 and manager.health()[url].connected == 4
    tag = random.randrange(10**6)
    scripts = [f"{tag} * 1000 + {i}" for i in range(200)]
    queue = list(scripts)

    async def worker():
        while queue:
            await manager.execute_script(url, queue.pop())

    await asyncio.gather(*(worker() for _ in range(16)))
    mine = [e for e in await env.journal("a") if e["script"] in set(scripts)]
    per_conn = Counter(e["conn"] for e in mine)
    assert len(mine) == 200 and len(per_conn) == 4, per_conn
    assert all(40 <= n <= 60 for n in per_conn.values()), per_conn  # 50 each, +/- 20 %
    await manager.disconnect_all()


async def scenario_one_socket_dropping_fails_only_its_own_calls(env):
    manager = fleet(env, ("a", {"connections": 4}), pool=False)
    await manager.connect()
    url = env.url("a")
    slow = [spawn(manager.call(url, "test.delay", {"seconds": 1.0, "result": i})) for i in range(8)]
    await eventually(lambda: manager.health()[url].in_flight == 8, what="8 calls in flight")
    try:
        await manager.get_clients(url)[0].call("test.drop", {}, timeout=5)
    except ConnectionLostError:
        pass
    outcomes = await asyncio.gather(*slow, return_exceptions=True)
    lost = [o for o in outcomes if isinstance(o, ConnectionLostError)]
    answered = sorted(o for o in outcomes if isinstance(o, int))
    assert len(lost) == 2 and len(answered) == 6, outcomes  # 2 per socket: only the dropped one's failed
    await eventually(lambda: manager.health()[url].connected == 4, what="the dropped socket back")
    await manager.disconnect_all()


# -- servers added and removed at run time --------------------------------------------------------


async def scenario_add_and_remove_servers_with_calls_in_flight(env):
    manager = fleet(env, ("a", {}))
    seen = []
    manager.on_status_change(lambda url, status: seen.append((url, status)))
    await manager.connect()
    url_a, url_c = env.url("a"), env.url("c")
    on_a = spawn(manager.call(url_a, "test.delay", {"seconds": 0.5, "result": "a"}))
    await manager.add_server(url_c, priority=0, connections=2)
    await manager.get_client(url_c).wait_connected(15)
    assert (url_c, S.CONNECTED) in seen and manager.urls == [url_a, url_c]
    assert await on_a == "a"  # adding a server touches no call in flight
    where = Counter([(await manager.execute_script_any(unique(i))).url for i in range(6)])
    assert where == {url_a: 3, url_c: 3}, where
    doomed = spawn(manager.call(url_a, "test.delay", {"seconds": 2.0, "result": "x"}))
    kept = spawn(manager.call(url_c, "test.delay", {"seconds": 0.3, "result": "c"}))
    await eventually(lambda: manager.health()[url_a].in_flight == 1, what="the call in flight on a")
    await manager.remove_server(url_a)
    try:
        await doomed
        raise AssertionError("a call in flight on a removed server must fail")
    except ClientClosedError:
        pass
    assert await kept == "c"
    assert (url_a, S.CLOSED) in seen and manager.urls == [url_c]
    assert (await manager.execute_script_any(unique(9))).url == url_c
    await manager.disconnect_all()


async def scenario_health_reports_what_the_manager_measured(env):
    manager = fleet(env, ("a", {"priority": 1, "weight": 2}), ("b", {}))
    await manager.connect()
    for i in range(20):
        await manager.execute_script(env.url("a"), f"{i} + 1")
    health = manager.health()[env.url("a")]
    assert (health.priority, health.weight, health.samples, health.in_flight) == (1, 2, 20, 0)
    assert 0 < health.rtt_p50 <= health.rtt_p95 <= health.rtt_p99
    assert health.breaker == "closed" and health.last_error is None
    assert manager.health()[env.url("b")].rtt_p50 is None
    assert set(manager.metrics()) == {env.url("a"), env.url("b")}
    await manager.disconnect_all()


# -- garbage collection ---------------------------------------------------------------------------


def unowned(awaitable):
    """Run ``awaitable`` in a task nobody references (the returned future does not hold it), as
    Pyodide runs top-level code: only what the library holds keeps it going."""
    loop = asyncio.get_running_loop()
    out = loop.create_future()

    def done(task):
        if task.cancelled():
            out.cancel()
        elif task.exception() is not None:
            out.set_exception(task.exception())
        else:
            out.set_result(task.result())

    loop.create_task(awaitable).add_done_callback(done)
    return out


async def until_connections(probe, url, count, what):
    deadline = time.monotonic() + 10
    while (seen := await connections_on(probe, url)) != count:
        assert time.monotonic() < deadline, f"{what}: {url} still has {seen} connections, not {count}"
        await asyncio.sleep(0.05)


async def scenario_unreferenced_managers_are_collected_and_close_their_sockets(env):
    url_a, url_b = env.url("a"), env.url("b")
    probe = fleet(env, ("a", {}), ("b", {}), pool=False)  # sockets of its own, to ask the servers
    await probe.connect()
    base_a, base_b = await connections_on(probe, url_a), await connections_on(probe, url_b)
    # Dropped: collected, its own socket closes, the pooled one a live manager shares stays.
    keeper, dropped = fleet(env, ("a", {})), fleet(env, ("a", {"connections": 2}))
    await asyncio.gather(keeper.connect(), dropped.connect())
    assert await connections_on(probe, url_a) == base_a + 2
    gone = weakref.ref(dropped)
    del dropped
    gc.collect()
    assert gone() is None
    await until_connections(probe, url_a, base_a + 1, "the dropped manager's own socket")
    assert (await keeper.execute_script_any(unique(1))).url == url_a  # on the shared socket
    # In use: a call in flight keeps an unreferenced manager alive until it ends.
    busy = fleet(env, ("b", {}))
    await busy.connect()
    kept = weakref.ref(busy)
    call = unowned(busy.call(url_b, "test.delay", {"seconds": 0.3, "result": "kept"}))
    del busy
    await asyncio.sleep(0)
    gc.collect()
    assert kept() is not None
    assert await call == "kept"
    gc.collect()
    assert kept() is None
    await until_connections(probe, url_b, base_b, "after the busy manager's call ended")
    # Listened to: a registered status callback keeps it alive and told, until disconnect_all().
    seen = []
    listened = fleet(env, ("b", {}))
    listened.on_status_change(lambda url, status: seen.append(status))
    await listened.connect()
    heard = weakref.ref(listened)
    del listened
    gc.collect()
    assert heard() is not None and heard().health()[url_b].connected == 1
    await heard().disconnect_all()
    assert seen[-1] is S.CLOSED
    gc.collect()
    assert heard() is None
    await keeper.disconnect_all()
    await until_connections(probe, url_a, base_a, "after the keeper left")
    await probe.disconnect_all()


SCENARIOS = {name[len("scenario_"):]: fn for name, fn in sorted(globals().items()) if name.startswith("scenario_")}
