"""Behaviour scenarios that run unchanged in CPython and in the browser (Pyodide).

Each ``scenario_*`` coroutine takes an ``env`` and asserts what a user relies on (SPEC section
4). This file imports nothing but the library and the standard library, so the browser tests
can copy it into Pyodide's file system and run the very same functions there.

``env`` provides:
    env.key                 a private key (hex) the servers accept
    env.url(name)           "auth": requires authentication; "open": does not (both have
                            the server's test controls enabled)
    env.dead_url()          a ws:// URL where nothing listens
    env.stalled_url()       a ws:// URL that accepts TCP and never completes the handshake
    await env.stop(name) / await env.start(name) / await env.restart(name, down=0.0)
    env.platform            "cpython" or "pyodide"
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import time

from circle_ws_web import (
    AuthError,
    CircleWsClient,
    ClientClosedError,
    ConfigError,
    ConnectError,
    ConnectionLostError,
    ConnectionStatus,
    JsonRpcError,
    NotConnectedError,
    ProtocolError,
    RequestTimeoutError,
    ws_manager,
)
from circle_ws_web.auth import PrivateKey, generate_private_key, sign_message
from circle_ws_web.transports import default_factory

S = ConnectionStatus

#: Short timings so the suite is quick; behaviour is the same with the defaults.
FAST = dict(
    keepalive_interval=5.0,
    keepalive_timeout=2.0,
    request_timeout=10.0,
    connect_timeout=5.0,
    reconnect_initial_delay=0.05,
    reconnect_max_delay=0.5,
    reconnect_min_uptime=0.5,
)


def client(env, name="auth", key=True, **overrides):
    options = {**FAST, **overrides}
    return CircleWsClient(env.url(name), env.key if key else None, **options)


async def eventually(predicate, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


class Recorder:
    """Wraps the platform transport to record every frame sent (to check what goes on the wire)."""

    def __init__(self):
        self.sent = []
        self.inner = default_factory()

    def __call__(self, url, events, options):
        transport = self.inner(url, events, options)
        recorder = self

        class Tap:
            def send(self, text):
                recorder.sent.append(text)
                transport.send(text)

            def close(self, code=1000, reason=""):
                transport.close(code, reason)

        return Tap()


class LogCapture(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines = []

    def emit(self, record):
        self.lines.append(self.format(record))

    def __enter__(self):
        self.logger = logging.getLogger("circle_ws_web")
        self.old_level = self.logger.level
        self.logger.setLevel(logging.DEBUG)
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc):
        self.logger.removeHandler(self)
        self.logger.setLevel(self.old_level)


# -- the basics ------------------------------------------------------------------------------


async def scenario_connect_authenticate_play(env):
    c = client(env)
    seen = []
    c.on_status_change(seen.append)
    await c.connect()
    assert c.status is S.CONNECTED and c.is_connected
    assert seen == [S.CONNECTING, S.AUTHENTICATING, S.CONNECTED], seen
    assert (await c.play("40 + 2")).output == "42"
    assert (await c.play('"ab" * 2')).output == "abab"
    who = await c.whoami()
    assert who == {"authenticated": True, "pubkey": c.public_key}, who
    assert await c.ping() == "pong"
    m = c.metrics
    assert m.calls >= 6 and m.errors == 0 and m.rtt_samples >= 6 and m.last_rtt > 0
    await c.disconnect()
    assert c.status is S.CLOSED and seen[-1] is S.CLOSED


async def scenario_manager_two_servers(env):
    manager = (
        ws_manager()
        .private_key(env.key)
        .add_server_url(env.url("auth"))
        .add_server_url(env.url("open"))
        .keepalive(5, 2)
        .reconnect(initial_delay=0.05, max_delay=0.5)
        .build()
    )
    report = await manager.connect()
    assert report == {env.url("auth"): None, env.url("open"): None}
    assert sorted(manager.connected_urls()) == sorted([env.url("auth"), env.url("open")])
    for url in manager.urls:
        assert (await manager.execute_script(url, "40 + 2")).output == "42"
        assert manager.is_connected(url)
    everywhere = await manager.execute_script_all("6 * 7")
    assert {u: r.output for u, r in everywhere.items()} == {env.url("auth"): "42", env.url("open"): "42"}
    assert set(manager.connection_statuses().values()) == {S.CONNECTED}
    try:
        await manager.execute_script("ws://127.0.0.1:1", "1")
        raise AssertionError("unknown URL must raise")
    except ConfigError as exc:
        assert "not a configured server" in str(exc)
    await manager.disconnect_all()
    assert set(manager.connection_statuses().values()) == {S.CLOSED}
    await manager.disconnect_all()  # idempotent


async def scenario_connect_failure_raises_connect_error(env):
    c = CircleWsClient(env.dead_url(), env.key, **FAST)
    started = time.monotonic()
    try:
        await c.connect()
        raise AssertionError("connect to a dead port must raise")
    except ConnectError as exc:
        assert env.dead_url() in str(exc)
    assert time.monotonic() - started < 4.0
    assert c.status is S.DISCONNECTED
    try:
        await c.play("1")
        raise AssertionError("call while disconnected must raise")
    except NotConnectedError:
        pass
    await c.disconnect()


async def scenario_connect_timeout_on_a_stalled_server(env):
    c = CircleWsClient(env.stalled_url(), env.key, **{**FAST, "connect_timeout": 0.5})
    started = time.monotonic()
    try:
        await c.connect()
        raise AssertionError("a handshake that never completes must time out")
    except ConnectError as exc:
        assert "within 0.5s" in str(exc), exc
    assert time.monotonic() - started < 3.0
    assert c.status is S.DISCONNECTED
    await c.disconnect()


async def scenario_disconnect_while_connecting_ends_connect_at_once(env):
    c = CircleWsClient(env.stalled_url(), env.key, **{**FAST, "connect_timeout": 10.0})
    started = time.monotonic()

    async def disconnect_soon():
        await asyncio.sleep(0.2)
        await c.disconnect()

    outcome, _ = await asyncio.gather(c.connect(), disconnect_soon(), return_exceptions=True)
    assert isinstance(outcome, ClientClosedError), outcome
    assert time.monotonic() - started < 2.0  # not the 10 s connect timeout
    assert c.status is S.CLOSED


async def scenario_async_with_closes(env):
    async with client(env) as c:
        assert (await c.play("1 + 1")).output == "2"
    assert c.status is S.CLOSED
    try:
        await c.play("1")
        raise AssertionError("a closed client must refuse calls")
    except ClientClosedError:
        pass


# -- authentication --------------------------------------------------------------------------


async def scenario_play_before_auth_is_refused(env):
    c = client(env, key=False)
    await c.connect()
    try:
        await c.play("1 + 1")
        raise AssertionError("play without auth must fail on a server that requires it")
    except JsonRpcError as exc:
        assert exc.code == -32001, exc
    assert (await c.whoami())["authenticated"] is False
    assert c.is_connected  # the connection survives the refusal
    await c.disconnect()


async def scenario_wrong_signature_and_replayed_nonce_rejected(env):
    c = client(env, key=False)
    await c.connect()
    mine = PrivateKey(env.key)
    other = generate_private_key()
    nonce = (await c.call("fetch_nonce", {"pubkey": mine.public_key_hex}))["nonce"]
    try:
        await c.call("authenticate", {"pubkey": mine.public_key_hex, "signature": sign_message(other, nonce)})
        raise AssertionError("a signature by another key must be rejected")
    except JsonRpcError as exc:
        assert exc.code == -32002, exc
    # A fresh nonce, correctly signed, works once; replaying it fails.
    nonce = (await c.call("fetch_nonce", {"pubkey": mine.public_key_hex}))["nonce"]
    params = {"pubkey": mine.public_key_hex, "signature": mine.sign_message(nonce)}
    assert await c.call("authenticate", params) == {"authenticated": True}
    try:
        await c.call("authenticate", params)
        raise AssertionError("a replayed nonce must be rejected")
    except JsonRpcError as exc:
        assert exc.code == -32002, exc
    await c.disconnect()


async def scenario_auth_failure_backs_off(env):
    c = client(env, reconnect_initial_delay=0.2, reconnect_max_delay=5.0, reconnect_jitter=False)
    c._engine.machine._sign = lambda message: "00" * 65  # white-box: a signer the server rejects
    attempts = []
    c.on_status_change(lambda s: attempts.append(s) if s is S.AUTHENTICATING else None)
    try:
        await c.connect(keep_trying=True)
        raise AssertionError("a bad signature must fail authentication")
    except AuthError as exc:
        assert "authenticate failed" in str(exc) and "-32002" in str(exc)
    await asyncio.sleep(1.5)
    # Delays 0.2, 0.4, 0.8 s: about 3 retries in 1.5 s, not a tight loop.
    assert 2 <= len(attempts) <= 5, attempts
    assert c.status in (S.RECONNECTING, S.CONNECTING, S.AUTHENTICATING)
    await c.disconnect()
    assert c.status is S.CLOSED


async def scenario_authenticate_again_and_fetch_nonce(env):
    c = client(env)
    await c.connect()
    n1, n2 = await c.fetch_nonce(), await c.fetch_nonce()
    assert isinstance(n1, str) and n1 != n2 and len(n1) >= 16
    await c.authenticate()
    assert (await c.whoami())["authenticated"] is True
    await c.disconnect()
    plain = client(env, key=False)
    try:
        await plain.fetch_nonce()
        raise AssertionError("fetch_nonce without a key must raise")
    except AuthError:
        pass
    await plain.disconnect()


# -- errors and bad input --------------------------------------------------------------------


async def scenario_script_error_keeps_connection(env):
    c = client(env)
    await c.connect()
    try:
        await c.play("1/0")
        raise AssertionError("1/0 must fail")
    except JsonRpcError as exc:
        assert exc.code == -32010 and "division" in exc.message.lower(), exc
    try:
        await c.play(42)  # type: ignore[arg-type]
        raise AssertionError("a non-str script must be refused locally")
    except TypeError as exc:
        assert "script must be a str" in str(exc)
    try:
        await c.call("no_such_method")
        raise AssertionError("unknown method must fail")
    except JsonRpcError as exc:
        assert exc.code == -32601
    assert (await c.play("2 ** 10")).output == "1024"
    assert c.metrics.errors == 2
    await c.disconnect()


async def scenario_garbage_frames_are_survived_and_counted(env):
    c = client(env)
    await c.connect()
    with LogCapture() as logs:
        assert await c.call("test.garbage", {}) == {"ok": True}
    m = c.metrics
    assert m.bad_frames >= 5, m
    assert m.unknown_ids >= 1, m
    assert any("bad frame" in line for line in logs.lines), logs.lines
    assert c.is_connected
    assert (await c.play("3 * 3")).output == "9"
    await c.disconnect()


async def scenario_oversized_frame_fails_only_its_call(env):
    c = client(env, max_message_size=64 * 1024)
    await c.connect()
    ok = await c.call("test.big", {"size": 30_000})
    assert len(ok["data"]) == 30_000
    started = time.monotonic()
    try:
        await c.call("test.big", {"size": 200_000})
        raise AssertionError("an oversized answer must fail")
    except ProtocolError as exc:
        assert "max_message_size" in str(exc)
    assert time.monotonic() - started < 5.0  # failed at once, not by timeout
    assert c.is_connected and c.metrics.bad_frames == 1
    assert (await c.play("1 + 1")).output == "2"
    await c.disconnect()


async def scenario_request_timeout_then_late_answer_ignored(env):
    c = client(env)
    await c.connect()
    started = time.monotonic()
    try:
        await c.call("test.delay", {"seconds": 1.0, "result": "late"}, timeout=0.3)
        raise AssertionError("must time out")
    except RequestTimeoutError as exc:
        assert isinstance(exc, TimeoutError) and "test.delay" in str(exc)
    assert time.monotonic() - started < 1.0
    assert c.metrics.timeouts == 1
    await eventually(lambda: c.metrics.unknown_ids == 1, what="the late answer to arrive")
    assert (await c.play("5 - 3")).output == "2"
    await c.disconnect()


async def scenario_notifications_reach_callbacks(env):
    c = client(env)
    await c.connect()
    got = []
    undo = c.on_notification(lambda method, params: got.append((method, params)))
    await c.call("test.notify", {"method": "news", "params": {"n": 1}})
    await eventually(lambda: got, what="the notification")
    assert got == [("news", {"n": 1})]
    undo()
    await c.call("test.notify", {"method": "news", "params": {"n": 2}})
    await c.ping()
    assert got == [("news", {"n": 1})] and c.metrics.notifications == 2
    await c.disconnect()


async def scenario_500_concurrent_calls_matched_by_id(env):
    c = client(env)
    await c.connect()
    results = await asyncio.gather(*(c.play(f"{i} * 2") for i in range(500)))
    assert [r.output for r in results] == [str(i * 2) for i in range(500)]
    delayed = await asyncio.gather(
        *(c.call("test.delay", {"seconds": 0.01 * (9 - i), "result": i}) for i in range(10))
    )
    assert delayed == list(range(10))  # answered out of order, matched by id
    await c.disconnect()


# -- losing and regaining the connection ----------------------------------------------------


async def scenario_in_flight_calls_fail_at_once_on_drop(env):
    c = client(env)
    await c.connect()
    started = time.monotonic()

    async def drop_soon():
        await asyncio.sleep(0.05)
        await c.call("test.drop", {})

    # gather, not a bare task: Pyodide's WebLoop reports a task that fails while nobody awaits it.
    slow, drop = await asyncio.gather(
        c.call("test.delay", {"seconds": 5.0, "result": 1}), drop_soon(), return_exceptions=True
    )
    assert isinstance(drop, ConnectionLostError), drop
    assert isinstance(slow, ConnectionLostError) and "not re-sent" in str(slow), slow
    assert time.monotonic() - started < 2.0
    await c.wait_connected(10)
    assert (await c.play("7 * 6")).output == "42"
    assert c.metrics.reconnects == 1
    await c.disconnect()


async def scenario_server_restart_reconnects_and_reauthenticates(env):
    c = client(env)
    seen = []
    c.on_status_change(seen.append)
    await c.connect()
    assert (await c.whoami())["authenticated"] is True
    await env.restart("auth", down=0.3)
    await c.wait_connected(15)
    assert (await c.play("40 + 2")).output == "42"  # play needs auth: re-authenticated
    assert (await c.whoami()) == {"authenticated": True, "pubkey": c.public_key}
    assert c.metrics.reconnects >= 1
    tail = seen[3:]
    assert S.RECONNECTING in tail and tail[-1] is S.CONNECTED and S.AUTHENTICATING in tail, seen
    await c.disconnect()


async def scenario_calls_while_reconnecting_fail_fast(env):
    c = client(env, "open", key=False)
    await c.connect()
    await env.stop("open")
    await eventually(lambda: c.status in (S.RECONNECTING, S.CONNECTING), what="reconnecting")
    started = time.monotonic()
    try:
        await c.play("1")
        raise AssertionError("a call while reconnecting must raise")
    except NotConnectedError as exc:
        assert "not ready" in str(exc)
    assert time.monotonic() - started < 0.5
    await env.start("open")
    await c.wait_connected(15)
    assert (await c.play("1 + 2")).output == "3"
    await c.disconnect()


async def scenario_silent_server_detected_by_keepalive(env):
    c = client(env, keepalive_interval=0.5, keepalive_timeout=0.5)
    await c.connect()
    assert await c.call("test.silence", {"seconds": 30}) == {"ok": True}
    started = time.monotonic()
    try:
        await c.play("1 + 1", timeout=20)
        raise AssertionError("a call to a silent server must not succeed")
    except ConnectionLostError as exc:
        assert "keep-alive" in str(exc)
    detected = time.monotonic() - started
    assert detected < 3.0, detected  # interval + timeout = 1 s, generous bound for a busy machine
    await c.wait_connected(15)  # a new connection, which the server answers again
    assert (await c.play("2 + 2")).output == "4"
    await c.disconnect()


async def scenario_keepalive_pings_a_quiet_connection(env):
    c = client(env, keepalive_interval=0.2, keepalive_timeout=1.0)
    await c.connect()
    before = c.metrics.calls
    await asyncio.sleep(1.0)
    assert c.metrics.calls - before >= 3  # pings sent while idle
    assert c.is_connected and c.metrics.timeouts == 0
    await c.disconnect()


async def scenario_late_server_joins_manager(env):
    await env.stop("open")
    manager = (
        ws_manager()
        .private_key(env.key)
        .add_server_url(env.url("auth"))
        .add_server_url(env.url("open"))
        .reconnect(initial_delay=0.05, max_delay=0.3)
        .build()
    )
    report = await manager.connect()
    assert report[env.url("auth")] is None and isinstance(report[env.url("open")], ConnectError)
    assert manager.connected_urls() == [env.url("auth")]
    try:
        await manager.execute_script(env.url("open"), "1")
        raise AssertionError("a server that is not up must raise at once")
    except NotConnectedError:
        pass
    await env.start("open")
    await manager.get_client(env.url("open")).wait_connected(15)
    assert (await manager.execute_script(env.url("open"), "40 + 2")).output == "42"
    await manager.disconnect_all()


async def scenario_manager_with_no_server_up_raises(env):
    manager = ws_manager().add_server_url(env.dead_url()).reconnect(initial_delay=0.05).build()
    try:
        await manager.connect()
        raise AssertionError("no server up must raise")
    except NotConnectedError as exc:
        assert "none of the 1 servers" in str(exc)
    await manager.disconnect_all()
    assert manager.connection_statuses()[env.dead_url()] is S.CLOSED


async def scenario_max_attempts_ends_disconnected(env):
    c = client(env, "open", key=False, reconnect_max_attempts=2, reconnect_initial_delay=0.05)
    await c.connect()
    await env.stop("open")
    await eventually(lambda: c.status is S.DISCONNECTED, what="giving up")
    await env.start("open")
    await c.disconnect()


async def scenario_backoff_resets_after_stable_connection(env):
    c = client(env, "open", key=False, reconnect_min_uptime=0.3, reconnect_jitter=False)
    await c.connect()
    for _ in range(2):
        await asyncio.sleep(0.4)  # longer than min_uptime: stable
        try:
            await c.call("test.drop", {})
        except ConnectionLostError:
            pass
        await c.wait_connected(10)
        assert c._engine.machine.backoff.attempts == 1  # counter started from zero again
    await c.disconnect()


# -- cleanup and secrecy ---------------------------------------------------------------------


async def scenario_disconnect_cleans_up(env):
    baseline = {t for t in asyncio.all_tasks() if not t.done()}
    c = client(env)
    await c.connect()

    async def disconnect_soon():
        await asyncio.sleep(0.05)
        await c.disconnect()

    in_flight, _ = await asyncio.gather(
        c.call("test.delay", {"seconds": 5.0, "result": 1}), disconnect_soon(), return_exceptions=True
    )
    assert isinstance(in_flight, ClientClosedError), in_flight
    await c.disconnect()  # idempotent
    assert c.status is S.CLOSED
    await asyncio.sleep(0.05)
    leftover = {t for t in asyncio.all_tasks() if not t.done()} - baseline - {asyncio.current_task()}
    assert not leftover, leftover
    try:
        await c.connect()
        raise AssertionError("a closed client cannot reconnect")
    except ClientClosedError:
        pass


async def scenario_garbage_collection_closes_client(env):
    c = client(env)
    await c.connect()
    engine = c._engine
    del c
    gc.collect()
    assert engine.machine.status is S.CLOSED
    assert not engine.timers  # every timer cancelled
    await eventually(lambda: not engine.sockets, what="the socket to close")


async def scenario_private_key_never_leaks(env):
    key = env.key
    secrets = {key.lower(), key.upper(), key[:16].lower(), key[-16:].lower()}
    recorder = Recorder()
    with LogCapture() as logs:
        c = CircleWsClient(env.url("auth"), "0x" + key, transport_factory=recorder, **FAST)
        await c.connect()
        await c.play("1")
        try:
            await c.play("1/0")
        except JsonRpcError as exc:
            texts = [str(exc), repr(exc)]
        await env.restart("auth")
        await c.wait_connected(15)
        await c.play("2")
        texts += [repr(c), str(c), repr(c._engine.key), str(c.metrics)]
        await c.disconnect()
        bad = CircleWsClient(env.dead_url(), key, **FAST)
        try:
            await bad.connect()
        except ConnectError as exc:
            texts += [str(exc), repr(exc)]
        await bad.disconnect()
    frames = "\n".join(recorder.sent)
    assert '"authenticate"' in frames and len(recorder.sent) >= 6
    everything = "\n".join([frames, *logs.lines, *texts]).lower()
    for secret in secrets:
        assert secret.lower() not in everything




# -- the lifecycle under concurrency (fault-proof issue) -------------------------------------


def observed(task):
    """Mark a task's failure as seen: Pyodide reports a task that fails while nobody awaits it
    yet, even if the scenario gathers it later."""
    task.add_done_callback(lambda t: t.cancelled() or t.exception())
    return task


def open_sockets(c):
    """Sockets the client's driver holds (opened or opening, not yet closed)."""
    return len(c._engine.sockets)


async def scenario_concurrent_connects_share_one_attempt(env):
    c = client(env, connect_timeout=2.0)
    seen = []
    c.on_status_change(seen.append)
    started = time.monotonic()
    first, second = await asyncio.gather(c.connect(), c.connect(), return_exceptions=True)
    assert first is None and second is None, (first, second)
    assert time.monotonic() - started < 2.0  # not a timeout: one attempt, shared
    assert c.status is S.CONNECTED and open_sockets(c) == 1
    assert seen == [S.CONNECTING, S.AUTHENTICATING, S.CONNECTED], seen
    assert (await c.whoami())["authenticated"] is True
    # A connect() while authenticating joins that attempt too.
    await c.disconnect()
    c = client(env, connect_timeout=2.0)
    joined = []

    def on_status(status):
        if status is S.AUTHENTICATING:
            joined.append(asyncio.ensure_future(c.connect()))

    c.on_status_change(on_status)
    await c.connect()
    assert len(joined) == 1
    await joined[0]  # no RuntimeError, no second socket
    assert c.status is S.CONNECTED and open_sockets(c) == 1
    await c.disconnect()


async def scenario_concurrent_manager_connects(env):
    manager = (
        ws_manager().private_key(env.key).add_server_url(env.url("auth")).add_server_url(env.url("open"))
        .connect_timeout(2.0).reconnect(initial_delay=0.05, max_delay=0.5).build()
    )
    one, two = await asyncio.gather(manager.connect(), manager.connect())
    assert one == two == {env.url("auth"): None, env.url("open"): None}
    assert set(manager.connection_statuses().values()) == {S.CONNECTED}
    for url in manager.urls:
        assert open_sockets(manager.get_client(url)) == 1
    await manager.disconnect_all()


async def scenario_connect_while_reconnecting_waits_for_that_attempt(env):
    c = client(env, "open", key=False, reconnect_initial_delay=5.0, reconnect_max_delay=5.0, reconnect_jitter=False,
               connect_timeout=2.0)
    await c.connect()
    await env.stop("open")
    await eventually(lambda: c.status is S.RECONNECTING, what="reconnecting")
    started = time.monotonic()
    try:
        await c.connect()  # the server is down: this attempt fails, with a ConnectError
        raise AssertionError("connect() to a server that is down must raise")
    except ConnectError:
        pass
    assert time.monotonic() - started < 4.0  # that one attempt, not the 5 s backoff
    assert c.status is S.RECONNECTING  # and the client keeps trying in the background
    await env.start("open")
    await c.connect()  # tries at once instead of waiting out the backoff
    assert c.status is S.CONNECTED
    assert (await c.play("1 + 1")).output == "2"
    await c.disconnect()


async def scenario_cancelled_call_leaves_the_table_at_once(env):
    c = client(env)
    await c.connect()
    try:
        await asyncio.wait_for(c.call("test.delay", {"seconds": 1.0, "result": 1}), 0.1)
        raise AssertionError("must time out")
    except asyncio.TimeoutError:
        pass
    assert len(c._engine.machine.pending) == 0  # forgotten now, not when the server answers
    await eventually(lambda: c.metrics.unknown_ids == 1, what="the late answer, counted as unknown")
    assert (await c.play("2 * 3")).output == "6"
    await c.disconnect()


async def scenario_disconnect_never_raises_in_any_state(env):
    async def close_when(url, key, target, **options):
        c = CircleWsClient(url, key, **{**FAST, **options})
        reached = asyncio.get_running_loop().create_future()
        c.on_status_change(lambda s: reached.done() or s is not target or reached.set_result(None))
        attempt = observed(asyncio.ensure_future(c.connect(keep_trying=True)))
        await asyncio.wait_for(reached, 10)
        await c.disconnect()  # must not raise, whatever the attempt was doing
        outcome = (await asyncio.gather(attempt, return_exceptions=True))[0]
        assert outcome is None or isinstance(outcome, (ClientClosedError, ConnectError)), repr(outcome)
        assert c.status is S.CLOSED and not c._engine.timers
        await eventually(lambda: not c._engine.sockets, what="sockets released")
        await c.disconnect()  # idempotent

    await close_when(env.stalled_url(), env.key, S.CONNECTING)  # socket opening
    await close_when(env.url("auth"), env.key, S.AUTHENTICATING)  # authenticating
    await close_when(env.dead_url(), env.key, S.RECONNECTING, reconnect_initial_delay=5.0, reconnect_max_delay=5.0)  # refused, backing off
    manager = ws_manager().private_key(env.key).add_server_url(env.dead_url()).add_server_url(env.stalled_url()) \
        .add_server_url(env.url("auth")).connect_timeout(5.0).build()
    connecting = observed(asyncio.ensure_future(manager.connect()))
    await asyncio.sleep(0.05)
    await manager.disconnect_all()
    await asyncio.gather(connecting, return_exceptions=True)
    assert set(manager.connection_statuses().values()) == {S.CLOSED}


async def scenario_keepalive_survives_a_malformed_ping_answer(env):
    """Hostile-testing item 3, on virtual time with the test kit: one malformed answer to a
    ping must not end keep-alive; a later silence is still found within interval + timeout."""
    from circle_ws_web.testing import NO_ANSWER, FakeServer, VirtualClock

    clock = VirtualClock()
    server = FakeServer(require_auth=True, clock=clock)
    c = CircleWsClient("ws://fake", env.key, transport_factory=server, clock=clock,
                       **{**FAST, "keepalive_interval": 5.0, "keepalive_timeout": 2.0})
    await clock.run_until_complete(c.connect())
    server.faults.answer_with("ping", NO_ANSWER, times=1)
    await clock.run_until(lambda: server.requests_for("ping"))
    assert clock.now() == 5.0
    ping = server.requests_for("ping")[0]
    server.faults.garbage(['{"jsonrpc":"2.0","id":%s}' % json.dumps(ping.id)])  # neither result nor error
    await clock.advance_async(1.0)
    assert c.status is S.CONNECTED and c.metrics.bad_frames == 1
    server.faults.silence()
    lost_at = clock.now()
    await clock.run_until(lambda: c.status is S.RECONNECTING)
    assert clock.now() - lost_at <= 5.0 + 2.0  # found within interval + timeout
    await clock.run_until(lambda: c.status is S.CONNECTED)
    assert len(server.requests_for("fetch_nonce")) == 2  # re-authenticated on the new socket
    await c.disconnect()
    assert not clock.pending()


# -- pooling (fleet issue) -----------------------------------------------------------------------


async def scenario_pooled_managers_share_one_connection(env):
    async def server_connections(client):
        return (await client.call("test.stats", {}))["connections"]

    def build(**extra):
        builder = ws_manager().private_key(env.key).add_server_url(env.url("auth")).reconnect(initial_delay=0.05, max_delay=0.5)
        for name, value in extra.items():
            getattr(builder, name)(value)
        return builder.build()

    probe = client(env, "auth", pool=False)  # its own connection, to ask the server
    await probe.connect()
    baseline = await server_connections(probe)
    one, two = build(), build()
    await asyncio.gather(one.connect(), two.connect())
    a, b = one.get_client(env.url("auth")), two.get_client(env.url("auth"))
    assert a._engine is b._engine
    assert await server_connections(probe) == baseline + 1  # two managers, one socket
    assert (await one.execute_script(env.url("auth"), "40 + 2")).output == "42"
    seen_by_two = []
    b.on_status_change(seen_by_two.append)
    await one.disconnect_all()  # the other manager keeps the connection
    assert a.status is S.CLOSED and b.status is S.CONNECTED and seen_by_two == []
    try:
        await one.execute_script(env.url("auth"), "1")
        raise AssertionError("a closed client must refuse calls")
    except ClientClosedError:
        pass
    assert (await two.execute_script(env.url("auth"), "6 * 7")).output == "42"
    assert await server_connections(probe) == baseline + 1
    own = build(pool=False)
    await own.connect()
    assert await server_connections(probe) == baseline + 2  # pool(False): a socket of its own
    await own.disconnect_all()
    await two.disconnect_all()  # the last user closes it
    assert seen_by_two[-1] is S.CLOSED
    await eventually(lambda: not b._engine.sockets, what="the pooled socket to close")
    await probe.disconnect()


async def scenario_leaving_a_pool_fails_only_your_own_calls(env):
    a, b = client(env), client(env)
    assert a._engine is b._engine
    await asyncio.gather(a.connect(), b.connect())

    async def leave_soon():
        await asyncio.sleep(0.05)
        await a.disconnect()

    mine, theirs, _ = await asyncio.gather(
        a.call("test.delay", {"seconds": 0.5, "result": "a"}),
        b.call("test.delay", {"seconds": 0.5, "result": "b"}),
        leave_soon(),
        return_exceptions=True,
    )
    assert isinstance(mine, ClientClosedError), mine
    assert theirs == "b" and b.is_connected
    await b.disconnect()


SCENARIOS = {name[len("scenario_"):]: fn for name, fn in sorted(globals().items()) if name.startswith("scenario_")}
