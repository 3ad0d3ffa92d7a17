"""circle_ws_web.sync: the blocking manager and client, against real reference servers.

Why: scripts and the command line use the sync API from plain threads, so what matters is
that it keeps the async API's guarantees across threads (typed errors, bounded calls, a
reconnect that is invisible to the next call), that any thread may call it at the same time,
and that it never leaves a thread behind: not after close(), `with`, garbage collection or
interpreter exit.
"""

from __future__ import annotations

import gc
import importlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any, Callable

import pytest

from circle_ws_web import ClientClosedError, ConfigError, ConnectionStatus, JsonRpcError, NotConnectedError
from circle_ws_web import ConnectError, ConnectionLostError, PlayResult, RequestTimeoutError
from circle_ws_web.breaker import BreakerState
from circle_ws_web.sync import CircleWsClient, WsManager, ws_manager
from support.servers import SRC, TEST_KEY

pytestmark = pytest.mark.timeout(120)


def build(servers: Any, *names: str) -> WsManager:
    builder = ws_manager().private_key(TEST_KEY).reconnect(initial_delay=0.05, max_delay=0.5)
    for name in names or ("auth", "open"):
        builder.add_server_url(servers.url(name))
    return builder.build()


def eventually(check: Callable[[], bool], what: str, limit: float = 30.0) -> None:
    """Wait for ``check()`` (a state the test drives towards, never a duration it measures)."""
    deadline = time.monotonic() + limit
    while not check():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        threading.Event().wait(0.02)


def sync_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("circle-ws")}


def test_the_same_names_block_and_return_the_same_results(servers: Any) -> None:
    auth, open_ = servers.url("auth"), servers.url("open")
    with build(servers) as manager:
        assert manager.connection_statuses() == {auth: "connected", open_: "connected"}
        assert manager.connected_urls() == [auth, open_] and manager.is_connected(auth)
        assert manager.execute_script(auth, "40 + 2") == PlayResult("42")
        assert manager.execute_script_all("6 * 7") == {auth: PlayResult("42"), open_: PlayResult("42")}
        assert manager.call(open_, "ping") == "pong"
        assert manager.call(auth, "whoami")["authenticated"] is True
        client = manager.get_client(auth)
        assert client is manager.get_client(f"  {auth} ")
        assert client.play("1 + 1").output == "2" and client.status is ConnectionStatus.CONNECTED
        assert client.public_key is not None and client.public_key.startswith("04")
        assert manager.metrics()[auth].calls >= 5 and client.metrics.calls >= 5
        assert "WsManager 2 servers" in repr(manager) and TEST_KEY not in repr(manager) + repr(client)
        table = manager._repr_html_()  # the notebook view works on the sync manager too
        assert table.count('<tr class="cws-row cws-status-connected"') == 2 and auth in table
        assert client._repr_html_().count('<tr class="cws-row') == 1
    assert manager.connection_statuses() == {auth: "closed", open_: "closed"}
    assert manager.closed


def test_typed_errors_as_in_the_async_api(servers: Any) -> None:
    auth, dead = servers.url("auth"), servers.dead_url()
    with pytest.raises(ConfigError, match="no server URL"):
        ws_manager().build()
    with pytest.raises(ConfigError, match="scheme"):
        ws_manager().add_server_url("http://127.0.0.1:1")
    manager = ws_manager().private_key(TEST_KEY).add_server_url(auth).add_server_url(dead).connect_timeout(2).build()
    try:
        report = manager.connect()  # one is enough; the dead one keeps retrying in the background
        assert report[auth] is None and report[dead] is not None
        with pytest.raises(JsonRpcError) as script_error:
            manager.execute_script(auth, "1 / 0")
        assert script_error.value.code == -32010
        with pytest.raises(NotConnectedError):
            manager.execute_script(dead, "1")
        with pytest.raises(ConfigError, match="not a configured server"):
            manager.execute_script("ws://127.0.0.1:9/", "1")
        with pytest.raises(RequestTimeoutError):
            manager.call(auth, "test.delay", {"seconds": 10}, timeout=0.2)
        assert manager.execute_script(auth, "40 + 2").output == "42"  # the timeout left it working
    finally:
        manager.close()
    with pytest.raises(ClientClosedError):
        manager.execute_script(auth, "1")
    only_dead = ws_manager().add_server_url(dead).build()
    with pytest.raises(NotConnectedError, match="none of the 1 servers"):
        only_dead.connect()
    only_dead.close()


def test_eight_threads_call_at_once(servers: Any) -> None:
    auth, open_ = servers.url("auth"), servers.url("open")
    results: dict[int, list[tuple[str, str]]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def work(n: int) -> None:
        try:
            start.wait()
            got = []
            for i in range(25):
                url = auth if (n + i) % 2 else open_
                got.append((manager.execute_script(url, f"{n} * 1000 + {i}").output, f"{n * 1000 + i}"))
                manager.connection_statuses()
                manager.metrics()
            results[n] = got
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    with build(servers) as manager:
        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        assert sorted(results) == list(range(8))
        for got in results.values():
            assert all(output == expected for output, expected in got)
        calls = manager.metrics()
        assert calls[auth].errors == 0 and calls[open_].errors == 0


def test_calls_work_again_after_a_server_restart(servers: Any) -> None:
    auth, open_ = servers.url("auth"), servers.url("open")
    seen: list[tuple[str, ConnectionStatus, str]] = []
    lost = threading.Event()

    def watch(url: str, status: ConnectionStatus) -> None:
        seen.append((url, status, threading.current_thread().name))
        if url == auth and status is ConnectionStatus.RECONNECTING:
            lost.set()

    with build(servers) as manager:
        manager.on_status_change(watch)
        assert manager.execute_script(auth, "40 + 2").output == "42"
        servers.servers["auth"].restart()  # a real kill: no close frame
        assert lost.wait(30), "the client did not notice the restart"
        manager.get_client(auth).wait_connected(timeout=30)
        output = manager.execute_script(auth, "40 + 2").output
        assert output == "42"  # the auth server runs play only after a fresh authentication
        assert manager.metrics()[auth].reconnects == 1 and manager.metrics()[open_].reconnects == 0
        assert manager.execute_script(open_, "1 + 1").output == "2"
    statuses = [s for url, s, _ in seen if url == auth]
    assert ConnectionStatus.RECONNECTING in statuses
    assert statuses[statuses.index(ConnectionStatus.RECONNECTING):].count(ConnectionStatus.CONNECTED) >= 1
    assert {name for _, _, name in seen} == {manager.thread.name}  # callbacks run on the loop thread


def test_ctrl_c_cancels_the_waiting_call_and_the_manager_goes_on(servers: Any) -> None:
    auth = servers.url("auth")
    with build(servers, "auth") as manager:
        before = manager.metrics()[auth].calls
        main = threading.main_thread().ident
        assert main == threading.get_ident()

        def press_ctrl_c() -> None:
            while manager.metrics()[auth].calls == before:  # until the call is on the wire
                threading.Event().wait(0.01)
            signal.pthread_kill(main, signal.SIGINT)

        helper = threading.Thread(target=press_ctrl_c)
        helper.start()
        with pytest.raises(KeyboardInterrupt):
            manager.call(auth, "test.delay", {"seconds": 30, "result": "late"})
        helper.join(10)
        assert manager.execute_script(auth, "40 + 2").output == "42"
        assert manager.connection_statuses()[auth] is ConnectionStatus.CONNECTED


def test_a_blocking_call_from_a_callback_raises_instead_of_deadlocking(servers: Any) -> None:
    auth = servers.url("auth")
    problems: list[BaseException] = []
    manager = build(servers, "auth")

    def callback(url: str, status: ConnectionStatus) -> None:
        try:
            manager.execute_script(url, "1")
        except RuntimeError as exc:
            problems.append(exc)

    unsubscribe = manager.on_status_change(callback)
    manager.connect()
    unsubscribe()
    manager.close()
    assert problems and all("would wait for itself" in str(p) for p in problems)
    assert manager.connection_statuses() == {auth: "closed"}


def test_close_with_and_gc_leave_no_thread(servers: Any) -> None:
    before = set(threading.enumerate())
    manager = build(servers)
    manager.connect()
    assert manager.thread.is_alive() and manager.thread.daemon
    manager.close()
    manager.close()  # idempotent
    manager.disconnect_all()
    assert set(threading.enumerate()) == before
    with build(servers) as other:
        assert other.execute_script_all("1")
    assert set(threading.enumerate()) == before
    dropped = build(servers)
    dropped.connect()
    thread = dropped.thread
    del dropped
    gc.collect()
    thread.join(10)
    assert not thread.is_alive() and set(threading.enumerate()) == before
    with CircleWsClient(servers.url("auth"), TEST_KEY) as client:
        assert client.play("40 + 2").output == "42"
        assert client.whoami()["authenticated"] is True and client.ping() == "pong"
    assert client.status is ConnectionStatus.CLOSED
    assert set(threading.enumerate()) == before and not sync_threads()


def test_one_client_of_a_manager_disconnects_alone(servers: Any) -> None:
    auth, open_ = servers.url("auth"), servers.url("open")
    with build(servers) as manager:
        manager.disconnect(open_)
        assert manager.connection_statuses() == {auth: "connected", open_: "closed"}
        assert manager.execute_script(auth, "1").output == "1" and manager.thread.is_alive()


def test_interpreter_exit_closes_the_connections_and_the_thread(servers: Any) -> None:
    # The user's atexit hook is registered before the manager's finalizer, so it runs after.
    code = textwrap.dedent(
        f"""
        import atexit, threading
        def after():
            print("statuses", sorted(set(manager.connection_statuses().values())))
            print("threads", sorted(t.name for t in threading.enumerate()))
        atexit.register(after)
        from circle_ws_web.sync import ws_manager
        manager = ws_manager().private_key("{TEST_KEY}").add_server_url("{servers.url('auth')}").build()
        manager.connect()
        print("ran", manager.execute_script("{servers.url('auth')}", "40 + 2").output)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["ran 42", "statuses ['closed']", "threads ['MainThread']"]
    assert done.stderr == ""


def test_importing_it_in_the_browser_raises_a_clear_import_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "emscripten")
    monkeypatch.delitem(sys.modules, "circle_ws_web.sync")
    with pytest.raises(ImportError, match="nothing may block") as info:
        importlib.import_module("circle_ws_web.sync")
    assert "await manager.connect()" in str(info.value)


def test_the_live_view_follows_a_sync_manager_without_keeping_it_alive(
    servers: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import IPython.display

    shown: list[str] = []

    class Handle:
        def update(self, obj: Any) -> None:
            shown.append(obj.data)

    def display(obj: Any, display_id: bool = False) -> Handle:
        shown.append(obj.data)
        return Handle()

    monkeypatch.setattr(IPython.display, "display", display)
    manager = build(servers, "open")
    manager.display()  # before connecting: the view shows every step
    manager.connect()
    assert "cws-status-disconnected" in shown[0] and "cws-status-connected" in shown[-1]
    manager.close()
    assert "cws-status-closed" in shown[-1]  # the view shows the close, then stops following
    dropped = build(servers, "open")
    dropped.display()
    dropped.connect()
    thread = dropped.thread
    del dropped
    gc.collect()
    thread.join(10)
    assert not thread.is_alive()  # collected, so closed: the view held it only weakly


# --- the fleet: the async manager's methods, blocking ----------------------------------------


def test_priorities_breakers_health_and_servers_added_and_removed(servers: Any) -> None:
    auth, open_, dead = servers.url("auth"), servers.url("open"), servers.dead_url()
    opened = threading.Event()
    seen: list[tuple[str, ConnectionStatus]] = []
    manager = (ws_manager().private_key(TEST_KEY).reconnect(initial_delay=0.05, max_delay=0.5)
               .add_server_url(dead, priority=0).add_server_url(auth, priority=1)
               .circuit_breaker(failure_threshold=2, reset_timeout=60).build())
    try:
        manager.on_breaker_change(lambda url, state: opened.set() if (url, state) == (dead, "open") else None)
        manager.on_status_change(lambda url, status: seen.append((url, status)))
        report = manager.connect()
        assert isinstance(report[dead], ConnectError) and report[auth] is None
        # The preferred server is down: nothing was sent to it, so the call moved on.
        assert manager.execute_script_any("40 + 2") == PlayResult("42", auth)
        assert manager.execute_script_any("40 + 2").url == auth
        assert opened.wait(30), "the dead server's breaker never opened"
        assert manager.breaker_state(dead) is BreakerState.OPEN
        health = manager.health()
        assert health[dead].breaker == "open" and health[dead].consecutive_failures >= 2
        assert health[dead].retry_in > 0 and health[dead].last_error and health[dead].connected == 0
        assert health[auth].breaker == "closed" and health[auth].samples == 2 and health[auth].rtt_p50 is not None
        assert (health[auth].priority, health[auth].connections, health[auth].connected) == (1, 1, 1)

        manager.add_server(open_, priority=0, connections=2)  # returns while it connects
        assert manager.urls == [dead, auth, open_]
        for client in manager.get_clients(open_):
            client.wait_connected(timeout=15)
        assert len(manager.get_clients(open_)) == 2 and manager.get_client(open_) is manager.get_clients(open_)[0]
        assert manager.health()[open_].connected == 2 and (open_, ConnectionStatus.CONNECTED) in seen
        assert manager.execute_script_any("6 * 7") == PlayResult("42", open_)  # priority 0, up
        with pytest.raises(ConfigError, match="already"):
            manager.add_server(open_)
        with pytest.raises(ConfigError, match="weight"):
            manager.add_server("ws://127.0.0.1:9", weight=0)

        everyone = manager.execute_script_all("6 * 7")
        assert list(everyone) == [dead, auth, open_] and isinstance(everyone[dead], NotConnectedError)
        first = manager.execute_script_all("6 * 7", quorum=1)
        answers = [r for r in first.values() if isinstance(r, PlayResult)]
        assert answers and all(r == PlayResult("42") for r in answers)
        with pytest.raises(ConfigError, match="quorum"):
            manager.execute_script_all("1", quorum=4)

        manager.remove_server(open_)
        assert manager.urls == [dead, auth] and seen[-1] == (open_, ConnectionStatus.CLOSED)
        with pytest.raises(ConfigError, match="not a configured server"):
            manager.get_client(open_)
        with pytest.raises(ConfigError):
            manager.remove_server(open_)
        assert manager.execute_script_any("1 + 1").url == auth
        manager.add_server(open_)  # back, with new clients: the sync ones wrap those
        manager.get_client(open_).wait_connected(timeout=15)
        assert manager.get_client(open_).play("1 + 2").output == "3"
        assert manager.execute_script_any("1 + 1").url == open_
    finally:
        manager.close()
    with pytest.raises(ClientClosedError):
        manager.execute_script_any("1")


def test_a_sent_call_is_not_sent_again_unless_idempotent_and_a_hedge_answers(servers: Any) -> None:
    open_, auth = servers.url("open"), servers.url("auth")
    manager = (ws_manager().private_key(TEST_KEY).reconnect(initial_delay=0.05, max_delay=0.5)
               .add_server_url(open_, priority=0).add_server_url(auth, priority=1).build())
    outcome: list[Any] = []

    def in_a_thread(**options: Any) -> threading.Thread:
        def run() -> None:
            try:
                outcome.append(manager.execute_script_any("40 + 2", **options))
            except BaseException as exc:  # noqa: BLE001 - asserted below
                outcome.append(exc)

        thread = threading.Thread(target=run)
        thread.start()
        return thread

    with manager:
        with pytest.raises(ConfigError, match="idempotent"):
            manager.execute_script_any("1", hedge_after=0.2)
        # open's connection takes requests and never answers: the play is sent, then open dies.
        for idempotent in (False, True):
            manager.get_client(open_).wait_connected(timeout=15)
            assert manager.call(open_, "test.silence", {"seconds": 30}) == {"ok": True}
            before = manager.metrics()[auth].calls
            thread = in_a_thread(idempotent=idempotent)
            eventually(lambda: manager.health()[open_].in_flight == 1, "the play in flight on open")
            servers.servers["open"].restart()
            thread.join(60)
            if idempotent:
                assert outcome.pop() == PlayResult("42", auth)
                assert manager.metrics()[auth].calls == before + 1
            else:
                lost = outcome.pop()
                assert isinstance(lost, ConnectionLostError) and "not re-sent" in str(lost)
                assert manager.metrics()[auth].calls == before  # never sent to the fallback
        manager.get_client(open_).wait_connected(timeout=15)
        assert manager.call(open_, "test.silence", {"seconds": 30}) == {"ok": True}
        hedged = manager.execute_script_any("6 * 7", idempotent=True, hedge_after=0.2)
        assert hedged == PlayResult("42", auth) and manager.health()[open_].in_flight == 0
