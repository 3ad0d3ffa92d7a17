"""The lifecycle machine, transition by transition, on a virtual clock (no I/O at all).

One test per (status, event) cell of TRANSITIONS (the cells a status does not list must be
ignored there), then the transitions that carry the product's promises, each with the exact
actions it must queue."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from circle_ws_web.errors import (
    AuthError,
    ClientClosedError,
    ConnectError,
    ConnectionLostError,
    JsonRpcError,
    NotConnectedError,
    ProtocolError,
    RequestTimeoutError,
)
from circle_ws_web.lifecycle import (
    CLOSE_DROPPED,
    TRANSITIONS,
    CancelTimer,
    CloseSocket,
    ConnectDone,
    Event,
    OpenSocket,
    SetTimer,
    StatusChanged,
    Timer,
    transitions_markdown,
)
from circle_ws_web.status import ConnectionStatus as S

from lifecycle_driver import Driver, Waiter, fake_sign, to_status

DOCS = Path(__file__).resolve().parents[2] / "docs" / "lifecycle.md"


# -- every cell of the table ----------------------------------------------------------------------


def fire(d: Driver, event: Event) -> None:
    """Make ``event`` happen to the machine the way its driver would report it."""
    m = d.m
    if event is Event.CONNECT:
        d.connect()
    elif event is Event.CONNECT_CANCELLED:
        waiter = Waiter()
        m._waiters.append(waiter)  # a caller that joined the attempt, then gave up
        m.connect_cancelled(d.now, waiter)
        d.run()
    elif event is Event.DISCONNECT:
        m.disconnect(d.now)
        d.run()
    elif event is Event.SOCKET_OPENED:
        d.open(m.sid if m.sid is not None else 99)
    elif event is Event.SOCKET_CLOSED:
        d.peer_close(m.sid if m.sid is not None else 99)
    elif event is Event.FRAME:
        sid = m.sid if m.sid is not None else 99
        if m.status is S.AUTHENTICATING:
            d.answer(d.last_request("fetch_nonce"), {"nonce": "n"})
        else:
            d.frame({"jsonrpc": "2.0", "method": "news", "params": {}}, sid=sid)
    elif event is Event.OFFLINE:
        m.network_offline(d.now)
        d.run()
    elif event is Event.ONLINE:
        m.offline = True  # it was offline (set directly: going offline is its own cell)
        m.network_online(d.now)
        d.run()
    elif event is Event.WAKE:
        m.wake(d.now)
        d.run()
    elif event is Event.PAGE_HIDE:
        m.page_hide(d.now)
        d.run()
    elif event is Event.PAGE_SHOW:
        m.suspended = True
        m.page_show(d.now)
        d.run()
    else:
        timer = {
            Event.CONNECT_TIMER: Timer.CONNECT,
            Event.BACKOFF_TIMER: Timer.BACKOFF,
            Event.KEEPALIVE_TIMER: Timer.KEEPALIVE,
            Event.CALLS_TIMER: Timer.CALLS,
        }[event]
        if event is Event.CALLS_TIMER and m.status is S.CONNECTED:
            d.call(timeout=1.0)
        at = m._timers.get(timer, d.now)
        d.fire(timer, at=max(d.now, at))


CELLS = [(status, event) for status in S for event in Event]


@pytest.mark.parametrize(("status", "event"), CELLS, ids=[f"{s.value}-{e.name.lower()}" for s, e in CELLS])
def test_every_cell(status: S, event: Event) -> None:
    d = to_status(status)
    before = len(d.log)
    if status is S.CLOSED and event is Event.CONNECT:
        with pytest.raises(ClientClosedError):
            d.connect()
        assert d.m.status is S.CLOSED and len(d.log) == before  # refused: nothing happens
        return
    fire(d, event)
    allowed = TRANSITIONS[status].get(event)
    if allowed is None:
        assert d.m.status is status, f"{event} must be ignored in {status}"
        changes = [a for a in d.log[before:] if isinstance(a, StatusChanged)]
        assert not changes
    else:
        assert d.m.status in allowed


def test_table_is_complete_and_closed_is_terminal() -> None:
    assert set(TRANSITIONS) == set(S)
    assert set().union(*TRANSITIONS[S.CLOSED].values()) == {S.CLOSED}
    for status, row in TRANSITIONS.items():
        assert row[Event.DISCONNECT] == {S.CLOSED}, status


def test_status_moves_users_can_see() -> None:
    """The status changes a status listener can observe, whatever the event."""
    moves = {(old, new) for old, row in TRANSITIONS.items() for targets in row.values() for new in targets if new is not old}
    assert moves == {
        (S.DISCONNECTED, S.CONNECTING), (S.DISCONNECTED, S.CLOSED),
        (S.CONNECTING, S.AUTHENTICATING), (S.CONNECTING, S.CONNECTED), (S.CONNECTING, S.DISCONNECTED),
        (S.CONNECTING, S.RECONNECTING), (S.CONNECTING, S.CLOSED),
        (S.AUTHENTICATING, S.CONNECTED), (S.AUTHENTICATING, S.DISCONNECTED),
        (S.AUTHENTICATING, S.RECONNECTING), (S.AUTHENTICATING, S.CLOSED),
        (S.CONNECTED, S.RECONNECTING), (S.CONNECTED, S.DISCONNECTED), (S.CONNECTED, S.CLOSED),
        (S.RECONNECTING, S.CONNECTING), (S.RECONNECTING, S.CLOSED),
    }


def test_docs_show_the_table_the_code_uses() -> None:
    assert transitions_markdown() in DOCS.read_text(), (
        "regenerate the table in docs/lifecycle.md: python -c "
        "'from circle_ws_web.lifecycle import transitions_markdown as t; print(t(), end=\"\")'"
    )


# -- connecting --------------------------------------------------------------------------------


def test_connect_opens_one_socket_with_a_deadline() -> None:
    d = Driver()
    d.connect()
    assert d.log == [StatusChanged(S.CONNECTING), OpenSocket(1), SetTimer(Timer.CONNECT, 10.0)]


def test_connect_is_single_flight() -> None:
    d = Driver()
    first, second = d.connect(), d.connect()
    assert [a for a in d.log if isinstance(a, OpenSocket)] == [OpenSocket(1)]
    d.open()
    third = d.connect()  # while authenticating: joins too
    d.authenticate()
    assert first.outcomes == second.outcomes == third.outcomes == [("connected", None)]
    done = [a for a in d.log if isinstance(a, ConnectDone)]
    assert len(done) == 1 and done[0].waiters == [first, second, third]


def test_concurrent_callers_share_the_failure() -> None:
    d = Driver()
    first, second = d.connect(), d.connect()
    d.advance(10.0)  # the connect deadline
    assert first.outcomes == second.outcomes
    (kind, error), = first.outcomes
    assert kind == "error" and isinstance(error, ConnectError) and "within 10s" in str(error)
    assert d.m.status is S.DISCONNECTED and not d.live


def test_authentication_signs_the_nonce_and_connects() -> None:
    d = Driver()
    d.connect()
    d.open()
    assert d.m.status is S.AUTHENTICATING
    nonce_request = d.last_request()
    assert nonce_request["method"] == "fetch_nonce" and nonce_request["params"] == {"pubkey": d.m.public_key}
    d.answer(nonce_request, {"nonce": "abc"})
    auth = d.last_request()
    assert auth["method"] == "authenticate" and auth["params"]["signature"] == fake_sign("abc")
    before = len(d.log)
    d.answer(auth, {"authenticated": True})
    tail = d.log[before:]
    assert tail[:3] == [CancelTimer(Timer.CONNECT), StatusChanged(S.CONNECTED), SetTimer(Timer.KEEPALIVE, 20.0)]


def test_without_a_key_the_socket_opening_is_enough() -> None:
    d = Driver(key=False)
    d.connect()
    d.open()
    assert d.m.status is S.CONNECTED and d.sent[1] == []


@pytest.mark.parametrize(
    "answer",
    [
        {"error": {"code": -32002, "message": "bad signature"}},
        {"result": {"authenticated": False}},
        {"result": "yes"},
    ],
)
def test_refused_authentication_fails_the_attempt(answer: dict) -> None:
    d = Driver()
    waiter = d.connect()
    d.open()
    d.answer(d.last_request("fetch_nonce"), {"nonce": "n"})
    d.answer(d.last_request("authenticate"), **answer)
    (kind, error), = waiter.outcomes
    assert isinstance(error, AuthError)
    assert d.m.status is S.DISCONNECTED and CloseSocket(1, CLOSE_DROPPED, "connection attempt failed") in d.log


def test_bad_nonce_is_an_auth_error_and_nothing_is_signed() -> None:
    d = Driver()
    waiter = d.connect()
    d.open()
    d.answer(d.last_request("fetch_nonce"), {"nonce": "x" * 5000})
    assert isinstance(waiter.outcomes[0][1], AuthError) and "5000-character nonce" in str(waiter.outcomes[0][1])
    assert [r["method"] for r in d.sent[1]] == ["fetch_nonce"]


def test_garbage_answer_to_an_auth_step_fails_only_that_attempt() -> None:
    d = Driver()
    waiter = d.connect(keep_trying=True)
    d.open()
    request = d.last_request("fetch_nonce")
    d.frame('{"jsonrpc":"2.0","id":"%s"}' % request["id"])  # neither result nor error
    assert isinstance(waiter.outcomes[0][1], AuthError)
    assert d.m.status is S.RECONNECTING and d.m.metrics.bad_frames == 1


def test_closed_during_authentication() -> None:
    d = Driver()
    waiter = d.connect()
    d.open()
    d.peer_close(code=1011, reason="boom")
    error = waiter.outcomes[0][1]
    assert isinstance(error, ConnectError) and "during authentication" in str(error) and "1011, boom" in str(error)


def test_refused_socket_names_the_transports_reason() -> None:
    d = Driver()
    waiter = d.connect()
    d.m.socket_error(1, "Insufficient resources: 255 sockets")
    d.peer_close()
    error = waiter.outcomes[0][1]
    assert isinstance(error, ConnectError) and "code 1006, Insufficient resources: 255 sockets" in str(error)


def test_timeout_names_the_transports_reason() -> None:
    d = Driver()
    waiter = d.connect()
    d.m.socket_error(1, "waiting for a free slot")
    d.advance(10)
    assert "within 10s; waiting for a free slot" in str(waiter.outcomes[0][1])


def test_connect_while_reconnecting_tries_at_once() -> None:
    d = to_status(S.RECONNECTING)
    assert Timer.BACKOFF in d.timers
    waiter = d.connect()
    assert d.m.status is S.CONNECTING and Timer.BACKOFF not in d.timers and OpenSocket(2) in d.log
    d.peer_close()  # that attempt fails: the caller hears it, the client keeps trying
    assert isinstance(waiter.outcomes[0][1], ConnectError)
    assert d.m.status is S.RECONNECTING


def test_cancelled_connect_abandons_the_attempt_unless_maintained() -> None:
    d = Driver()
    waiter = d.connect()
    d.m.connect_cancelled(d.now, waiter)
    d.run()
    assert d.m.status is S.DISCONNECTED and not d.live and Timer.CONNECT not in d.timers
    d = Driver()
    waiter = d.connect(keep_trying=True)
    d.m.connect_cancelled(d.now, waiter)
    d.run()
    assert d.m.status is S.CONNECTING  # the manager's background attempt goes on


def test_cancelling_one_of_two_callers_keeps_the_attempt() -> None:
    d = Driver()
    first, second = d.connect(), d.connect()
    d.m.connect_cancelled(d.now, first)
    d.run()
    assert d.m.status is S.CONNECTING
    d.open()
    d.authenticate()
    assert second.outcomes == [("connected", None)] and first.outcomes == []


def test_connect_when_connected_returns_at_once() -> None:
    d = to_status(S.CONNECTED)
    before = len(d.log)
    assert d.connect().outcomes == [("connected", None)] and len(d.log) == before


# -- calls -------------------------------------------------------------------------------------


def test_calls_are_refused_unless_connected() -> None:
    for status in (S.DISCONNECTED, S.CONNECTING, S.AUTHENTICATING, S.RECONNECTING):
        d = to_status(status)
        with pytest.raises(NotConnectedError, match=status.value):
            d.call()
    with pytest.raises(ClientClosedError):
        to_status(S.CLOSED).call()


def test_a_call_is_answered_by_id() -> None:
    d = to_status(S.CONNECTED)
    w1, _ = d.call(params={"script": "1"})
    w2, _ = d.call(params={"script": "2"})
    r1, r2 = d.sent[1][-2:]
    d.answer(r2, {"output": "2"})
    d.answer(r1, error={"code": -32010, "message": "no"})
    assert w2.outcomes == [("result", {"output": "2"})]
    assert isinstance(w1.outcomes[0][1], JsonRpcError) and w1.outcomes[0][1].code == -32010


def test_unencodable_params_raise_and_send_nothing() -> None:
    d = to_status(S.CONNECTED)
    sent = len(d.sent[1])
    with pytest.raises(TypeError, match="not JSON-serializable"):
        d.call(params={"x": object()})
    with pytest.raises(TypeError):
        d.call(params={"x": math.nan})  # NaN is not JSON: refused before sending
    assert len(d.sent[1]) == sent and not d.m.pending


def test_call_deadline_fails_it_and_a_late_answer_is_unknown() -> None:
    d = to_status(S.CONNECTED)
    waiter, _ = d.call(timeout=2.0)
    request = d.sent[1][-1]
    d.advance(2.0)
    assert isinstance(waiter.outcomes[0][1], RequestTimeoutError)
    d.answer(request, {"output": "late"})
    assert len(waiter.outcomes) == 1 and d.m.metrics.unknown_ids == 1 and d.m.metrics.timeouts == 1


def test_cancelled_call_leaves_the_table_at_once() -> None:
    d = to_status(S.CONNECTED)
    waiter, call_id = d.call()
    assert call_id in d.m.pending
    d.m.cancel_call(call_id)
    assert call_id not in d.m.pending and len(d.m.pending) == 0
    d.answer(d.sent[1][-1], {"output": "1"})
    assert waiter.outcomes == [] and d.m.metrics.unknown_ids == 1


def test_bad_frame_with_our_id_fails_only_that_call() -> None:
    d = to_status(S.CONNECTED)
    w1, _ = d.call()
    w2, _ = d.call()
    r1, r2 = d.sent[1][-2:]
    d.frame('{"jsonrpc":"2.0","result":NaN,"id":"%s"}' % r1["id"])
    d.answer(r2, {"output": "ok"})
    assert isinstance(w1.outcomes[0][1], ProtocolError)
    assert w2.outcomes == [("result", {"output": "ok"})] and d.m.status is S.CONNECTED


def test_garbage_is_counted_and_survived() -> None:
    d = to_status(S.CONNECTED)
    for junk in ("not json", "[1]", b"\x00", '{"jsonrpc":"1.0"}', '{"jsonrpc":"2.0","id":"nope"}'):
        d.frame(junk)
    assert d.m.metrics.bad_frames == 5 and d.m.status is S.CONNECTED


def test_notification_reaches_the_driver() -> None:
    d = to_status(S.CONNECTED)
    d.frame({"jsonrpc": "2.0", "method": "news", "params": [1]})
    assert d.log[-1] == ("news", [1]) and d.m.metrics.notifications == 1


# -- losing the connection ---------------------------------------------------------------------


def test_drop_fails_calls_at_once_and_backs_off() -> None:
    d = to_status(S.CONNECTED)
    waiter, _ = d.call()
    d.peer_close(code=1006)
    error = waiter.outcomes[0][1]
    assert isinstance(error, ConnectionLostError) and "not re-sent" in str(error)
    assert d.m.status is S.RECONNECTING and d.timers[Timer.BACKOFF] == d.now + 1.0
    assert not d.m.pending and Timer.KEEPALIVE not in d.timers and Timer.CALLS not in d.timers


def test_reconnect_reauthenticates_with_a_fresh_nonce_and_never_resends() -> None:
    d = to_status(S.CONNECTED)
    waiter, _ = d.call(params={"script": "once"})
    d.peer_close()
    d.advance(1.0)
    assert d.m.status is S.CONNECTING and d.m.sid == 2
    d.open()
    d.answer(d.last_request("fetch_nonce"), {"nonce": "fresh"})
    assert d.last_request("authenticate")["params"]["signature"] == fake_sign("fresh")
    d.answer(d.last_request("authenticate"), {"authenticated": True})
    assert d.m.status is S.CONNECTED and d.m.metrics.reconnects == 1
    plays = [r for sid in d.sent for r in d.sent[sid] if r["method"] == "play"]
    assert len(plays) == 1 and len(waiter.outcomes) == 1


def test_backoff_grows_then_resets_after_a_stable_connection() -> None:
    d = to_status(S.RECONNECTING)
    delays = []
    for _ in range(4):
        delays.append(d.timers[Timer.BACKOFF] - d.now)
        d.advance(delays[-1])
        d.peer_close()  # refused
    assert delays == [1.0, 2.0, 4.0, 8.0]
    d.advance(8.0)
    d.open()
    d.authenticate()
    d.advance(6.0)  # longer than min_uptime (5 s)
    d.peer_close()
    assert d.timers[Timer.BACKOFF] - d.now == 1.0


def test_a_connection_that_drops_at_once_does_not_reset_the_backoff() -> None:
    d = to_status(S.RECONNECTING)
    d.advance(1.0)
    d.open()
    d.authenticate()
    d.peer_close()  # up for 0 s
    assert d.timers[Timer.BACKOFF] - d.now == 2.0


def test_max_attempts_gives_up_to_disconnected() -> None:
    d = to_status(S.CONNECTED, reconnect_max_attempts=2)
    d.peer_close()
    d.advance(1.0)
    d.peer_close()
    d.advance(2.0)
    d.peer_close()
    assert d.m.status is S.DISCONNECTED and not d.timers and not d.live
    assert d.m.maintain is False
    d.connect()  # the user may try again
    assert d.m.status is S.CONNECTING


# -- keep-alive ----------------------------------------------------------------------------------


def test_keepalive_pings_an_idle_connection_and_any_answer_proves_life() -> None:
    d = to_status(S.CONNECTED)
    d.advance(20.0)
    ping = d.last_request()
    assert ping["method"] == "ping" and d.timers[Timer.KEEPALIVE] == d.now + 10.0
    d.frame('{"jsonrpc":"2.0","id":"%s"}' % ping["id"])  # malformed answer: still proof of life
    assert d.timers[Timer.KEEPALIVE] == d.now + 20.0
    d.advance(20.0)
    assert d.last_request()["method"] == "ping" and d.last_request()["id"] != ping["id"]
    assert d.m.status is S.CONNECTED


def test_keepalive_detects_silence_within_interval_plus_timeout() -> None:
    d = to_status(S.CONNECTED)
    waiter, _ = d.call(timeout=300.0)
    start = d.now
    d.advance(29.9)
    assert d.m.status is S.CONNECTED
    d.advance(0.2)
    assert d.m.status is S.RECONNECTING and d.now - start <= 30.1
    assert CloseSocket(1, CLOSE_DROPPED, "keep-alive: no answer to ping within 10s") in d.log
    assert "keep-alive" in str(waiter.outcomes[0][1])


def test_keepalive_survives_a_failed_ping_answer_then_detects_silence() -> None:
    """Hostile-testing item 3: one bad answer to a ping must not end keep-alive."""
    d = to_status(S.CONNECTED)
    d.advance(20.0)
    d.frame("x" * 10)  # garbage in answer to the ping
    d.advance(20.0 + 10.0)  # then silence
    assert d.m.status is S.RECONNECTING


def test_traffic_postpones_pings() -> None:
    d = to_status(S.CONNECTED)
    for _ in range(10):
        d.advance(15.0)
        d.frame({"jsonrpc": "2.0", "method": "tick"})
    assert not [r for r in d.sent[1] if r["method"] == "ping"] and d.m.status is S.CONNECTED


def test_a_late_timer_judges_by_the_clock() -> None:
    """A frozen tab: the keep-alive timer fires 100 s late. No ping was outstanding, so that is
    no proof of death: it pings instead of dropping a healthy connection."""
    d = to_status(S.CONNECTED)
    d.advance(120.0, late=100.0)
    assert d.m.status is S.CONNECTED and d.last_request()["method"] == "ping"


def test_an_early_timer_is_rearmed_for_the_rest() -> None:
    d = to_status(S.CONNECTED)
    waiter, _ = d.call(timeout=5.0)
    d.fire(Timer.CALLS, at=d.now + 1.0)  # fired 4 s early (a clamped timer)
    assert waiter.outcomes == [] and d.log[-1] == SetTimer(Timer.CALLS, 4.0)
    d.timers[Timer.CALLS] = d.now + 4.0
    d.advance(4.0)
    assert isinstance(waiter.outcomes[0][1], RequestTimeoutError)


# -- closing -----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", list(S), ids=lambda s: s.value)
def test_disconnect_from_every_status_releases_everything(status: S) -> None:
    d = to_status(status)
    calls = [d.call()[0]] if status is S.CONNECTED else []
    waiter = Waiter()
    if status in (S.CONNECTING, S.AUTHENTICATING):
        waiter = d.connect()
    d.m.disconnect(d.now)
    d.run()
    assert d.m.status is S.CLOSED and not d.timers and not d.live and not d.m.pending
    for w in calls + ([waiter] if waiter.outcomes else []):
        assert isinstance(w.outcomes[0][1], ClientClosedError)
    before = len(d.log)
    d.m.disconnect(d.now)
    assert not d.m.actions and len(d.log) == before  # idempotent


def test_events_of_a_socket_let_go_are_ignored() -> None:
    d = to_status(S.CONNECTED)
    d.advance(30.0)  # keep-alive drops socket 1
    d.advance(1.0)  # socket 2 opening
    assert d.m.sid == 2
    before = len(d.log)
    d.m.frame(d.now, 1, '{"jsonrpc":"2.0","result":1,"id":"1"}')
    d.m.socket_opened(d.now, 1)
    d.m.socket_closed(d.now, 1, 1000, "")
    d.run()
    assert len(d.log) == before and d.m.status is S.CONNECTING


# -- the browser's lifecycle: network and page -----------------------------------------------------


def test_offline_stops_attempts_and_counts_none() -> None:
    d = to_status(S.RECONNECTING)
    d.m.network_offline(d.now)
    d.run()
    assert Timer.BACKOFF not in d.timers and d.m.paused == "offline"
    attempts = d.m.backoff.attempts
    d.advance(3600.0)  # an hour offline: no attempt, no backoff growth
    assert d.opened == [1] and d.m.backoff.attempts == attempts and d.m.status is S.RECONNECTING


def test_a_connection_lost_while_offline_waits_for_the_network() -> None:
    d = to_status(S.CONNECTED)
    d.m.network_offline(d.now)
    d.run()
    assert d.m.status is S.CONNECTED  # offline alone does not drop a socket that still works
    waiter, _ = d.call(timeout=300.0)  # sent before the liveness check ends: lost with the socket
    assert d.last_request()["method"] == "play" and d.timers[Timer.KEEPALIVE] == d.now + 3.0
    d.advance(3.0)  # Chromium holds the frames of an open socket while offline: no answer
    assert d.m.status is S.RECONNECTING and not d.timers and d.m.backoff.attempts == 0
    # The lost call's error says what the user can do something about: the network.
    assert "no answer to ping within 3s (the browser is offline)" in str(waiter.outcomes[0][1])


def test_offline_that_was_wrong_keeps_the_connection() -> None:
    d = to_status(S.CONNECTED)
    d.m.network_offline(d.now)
    d.run()
    d.answer(d.last_request("ping"), "pong")
    d.advance(3.0)
    assert d.m.status is S.CONNECTED and d.m.paused == "offline"


def test_online_reconnects_at_once_with_the_backoff_reset() -> None:
    d = to_status(S.RECONNECTING)
    for _ in range(3):
        d.advance(d.timers[Timer.BACKOFF] - d.now)
        d.peer_close()
    assert d.m.backoff.attempts == 4
    d.m.network_offline(d.now)
    d.advance(100.0)
    d.m.network_online(d.now)
    d.run()
    assert d.m.status is S.CONNECTING and d.m.paused is None and d.m.backoff.attempts == 0
    d.peer_close()  # still failing: the backoff starts from its initial delay
    assert d.timers[Timer.BACKOFF] - d.now == 1.0


def test_online_checks_a_connected_client_with_a_short_ping() -> None:
    d = to_status(S.CONNECTED)
    d.m.network_offline(d.now)
    d.m.network_online(d.now)
    d.run()
    assert d.last_request()["method"] == "ping" and d.timers[Timer.KEEPALIVE] == d.now + 3.0


def test_wake_finds_a_dead_connection_within_the_short_deadline() -> None:
    d = to_status(S.CONNECTED)
    d.advance(15.0)
    d.m.wake(d.now)
    d.run()
    woke = d.now
    d.advance(2.9)
    assert d.m.status is S.CONNECTED
    d.advance(0.1)
    assert d.m.status is S.CONNECTING and d.now - woke <= 3.1  # replaced at once, no backoff wait
    assert d.opened == [1, 2]


def test_wake_keeps_a_live_connection() -> None:
    d = to_status(S.CONNECTED)
    d.m.wake(d.now)
    d.run()
    d.answer(d.last_request("ping"), "pong")
    d.advance(3.0)
    assert d.m.status is S.CONNECTED and d.timers[Timer.KEEPALIVE] == 20.0


def test_wake_while_reconnecting_tries_now() -> None:
    d = to_status(S.RECONNECTING)
    d.m.wake(d.now)
    d.run()
    assert d.m.status is S.CONNECTING and OpenSocket(2) in d.log


def test_pagehide_closes_cleanly_and_pageshow_reconnects_and_reauthenticates() -> None:
    d = to_status(S.CONNECTED)
    waiter, _ = d.call()
    d.m.page_hide(d.now)
    d.run()
    assert CloseSocket(1, 1000, "page hidden (pagehide); closed for the back-forward cache") in d.log
    assert isinstance(waiter.outcomes[0][1], ConnectionLostError)
    assert d.m.status is S.RECONNECTING and not d.timers and d.m.paused == "page hidden"
    d.advance(600.0)  # in the cache: nothing runs, nothing is attempted
    assert d.opened == [1]
    d.m.page_show(d.now)
    d.run()
    assert d.m.status is S.CONNECTING and d.opened == [1, 2]
    d.open()
    d.authenticate()
    assert d.m.status is S.CONNECTED and [r["method"] for r in d.sent[2]] == ["fetch_nonce", "authenticate"]


def test_pagehide_during_an_attempt_abandons_it() -> None:
    d = Driver()
    waiter = d.connect()
    d.open()
    d.m.page_hide(d.now)
    d.run()
    assert isinstance(waiter.outcomes[0][1], ConnectError) and "pagehide" in str(waiter.outcomes[0][1])
    assert d.m.status is S.DISCONNECTED and not d.live  # not maintained: nothing to resume


def test_pageshow_without_pagehide_changes_nothing() -> None:
    d = to_status(S.CONNECTED)
    before = len(d.log)
    d.m.page_show(d.now)
    d.run()
    assert len(d.log) == before


def test_offline_and_hidden_both_must_clear() -> None:
    d = to_status(S.CONNECTED)
    d.m.page_hide(d.now)
    d.m.network_offline(d.now)
    d.m.page_show(d.now)
    d.run()
    assert d.m.status is S.RECONNECTING and d.m.paused == "offline" and d.opened == [1]
    d.m.network_online(d.now)
    d.run()
    assert d.m.status is S.CONNECTING


def test_a_reason_said_twice_is_shown_once() -> None:
    d = Driver()
    waiter = d.connect()
    d.m.socket_error(1, "ConnectionRefusedError: [Errno 111] refused")
    d.peer_close(code=1006, reason="ConnectionRefusedError: [Errno 111] refused")
    assert str(waiter.outcomes[0][1]).count("ConnectionRefusedError") == 1


def test_last_error_says_what_ended_the_last_attempt_or_connection() -> None:
    d = Driver()
    assert d.m.last_error is None
    d.connect(keep_trying=True)
    d.peer_close(code=1006, reason="refused")
    assert d.m.last_error == "could not connect to ws://test: code 1006, refused"
    d.advance(1.0)
    d.open()
    d.authenticate()
    d.advance(30.0)
    assert d.m.last_error == "keep-alive: no answer to ping within 10s"
