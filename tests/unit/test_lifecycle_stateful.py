"""Random event sequences against the lifecycle machine (hypothesis stateful testing).

The driver model (tests/unit/lifecycle_driver.py) executes the machine's actions as data on a
virtual clock; a scripted, sometimes hostile server answers. After every step these must hold:
no call pending past its deadline, no call ever sent twice, only legal status changes, at most
one live socket, keep-alive armed whenever connected, every waiter ended at most once, and
calls only ever pending while connected or authenticating."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from circle_ws_web.errors import CircleWsClientError, ClientClosedError, NotConnectedError
from circle_ws_web.lifecycle import SLACK, TRANSITIONS, StatusChanged, Timer
from circle_ws_web.status import ConnectionStatus as S

from lifecycle_driver import Driver, Waiter

LEGAL = {old: set().union(*row.values()) | {old} for old, row in TRANSITIONS.items()}
JUNK = [
    "not json",
    "[1,2]",
    b"\x00\x01",
    '{"jsonrpc":"2.0","result":1,"id":"999999"}',
    '{"jsonrpc":"2.0","result":NaN,"id":"1"}',
    '{"jsonrpc":"2.0","method":"news","params":{}}',
    '{"jsonrpc":"2.0","error":{"code":"x"},"id":"2"}',
    "[" * 300 + "]" * 300,
]


class LifecycleMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.d = Driver(key=True, reconnect_max_attempts=6, keepalive_interval=5.0, keepalive_timeout=2.0, connect_timeout=3.0)
        self.calls: list[tuple[Waiter, str, float]] = []  # user calls: waiter, id, deadline
        self.connects: list[Waiter] = []
        self.checked = 0  # how much of the action log the invariants have seen
        self.status = S.DISCONNECTED
        self.made = 0  # calls made so far: each gets a script of its own

    @property
    def m(self):  # type: ignore[no-untyped-def]
        return self.d.m

    # -- the user --------------------------------------------------------------------------------

    @rule(keep_trying=st.booleans())
    def connect(self, keep_trying: bool) -> None:
        try:
            self.connects.append(self.d.connect(keep_trying=keep_trying))
        except ClientClosedError:
            assert self.m.status is S.CLOSED

    @rule(data=st.data())
    def cancel_connect(self, data: st.DataObject) -> None:
        waiting = [w for w in self.connects if not w.outcomes and w in self.m._waiters]
        if waiting:
            waiter = data.draw(st.sampled_from(waiting))
            self.m.connect_cancelled(self.d.now, waiter)
            self.d.run()
            self.connects.remove(waiter)

    @precondition(lambda self: self.m.status is not S.CLOSED)
    @rule(timeout=st.floats(0.1, 60.0))
    def call(self, timeout: float) -> None:
        try:
            self.made += 1
            waiter, call_id = self.d.call(params={"script": f"s{self.made}"}, timeout=timeout)
        except NotConnectedError:
            assert self.m.status is not S.CONNECTED
            return
        self.calls.append((waiter, call_id, self.d.now + timeout))

    @rule(data=st.data())
    def cancel_call(self, data: st.DataObject) -> None:
        live = [c for c in self.calls if not c[0].outcomes and c[1] in self.m.pending]
        if live:
            waiter, call_id, _ = data.draw(st.sampled_from(live))
            self.m.cancel_call(call_id)
            self.calls.remove((waiter, call_id, _))

    @rule()
    def disconnect(self) -> None:
        self.m.disconnect(self.d.now)
        self.d.run()

    # -- the socket and the server ----------------------------------------------------------

    @precondition(lambda self: self.m.sid is not None and self.m.status is S.CONNECTING)
    @rule()
    def socket_opens(self) -> None:
        self.d.open()

    @rule(code=st.sampled_from([1000, 1001, 1006, 1011, 4000]), stale=st.booleans())
    def socket_closes(self, code: int, stale: bool) -> None:
        if stale and self.d.opened:
            self.d.peer_close(sid=self.d.opened[0], code=code)  # maybe a socket long let go
        elif self.m.sid is not None:
            self.d.peer_close(code=code)

    @precondition(lambda self: self.m.sid is not None and self.m.sid in self.d.sent and self.d.sent[self.m.sid])
    @rule(data=st.data(), how=st.sampled_from(["ok", "error", "bad", "silent"]))
    def server_answers(self, data: st.DataObject, how: str) -> None:
        request = data.draw(st.sampled_from(self.d.sent[self.m.sid]))
        if how == "silent":
            return
        if how == "bad":
            self.d.frame('{"jsonrpc":"2.0","id":%s}' % json.dumps(request["id"]))
        elif how == "error":
            self.d.answer(request, error={"code": -32002 if request["method"] == "authenticate" else -32010, "message": "no"})
        elif request["method"] == "fetch_nonce":
            self.d.answer(request, {"nonce": "n" + request["id"]})
        elif request["method"] == "authenticate":
            self.d.answer(request, {"authenticated": True})
        else:
            self.d.answer(request, {"output": "ok"})

    @precondition(lambda self: self.m.sid is not None)
    @rule(junk=st.sampled_from(JUNK))
    def server_sends_junk(self, junk: str | bytes) -> None:
        self.d.frame(junk)

    # -- the browser: network and page ---------------------------------------------------------

    @rule(event=st.sampled_from(["offline", "online", "wake", "pagehide", "pageshow"]))
    def browser_event(self, event: str) -> None:
        {
            "offline": self.m.network_offline,
            "online": self.m.network_online,
            "wake": self.m.wake,
            "pagehide": self.m.page_hide,
            "pageshow": self.m.page_show,
        }[event](self.d.now)
        self.d.run()

    # -- time ----------------------------------------------------------------------------------

    @rule(seconds=st.floats(0.0, 40.0), late=st.sampled_from([0.0, 0.0, 0.5, 30.0]))
    def time_passes(self, seconds: float, late: float) -> None:
        self.d.advance(seconds, late=late)

    @rule(timer=st.sampled_from(list(Timer)), early=st.floats(0.0, 5.0))
    def timer_fires_early(self, timer: Timer, early: float) -> None:
        if timer in self.d.timers:
            self.d.fire(timer, at=max(self.d.now, self.d.timers[timer] - early))
            self.d.timers[timer] = self.m._timers.get(timer, self.d.now)  # re-armed for the rest
            if timer not in self.m._timers:
                self.d.timers.pop(timer, None)

    # -- invariants ------------------------------------------------------------------------------

    @invariant()
    def only_legal_status_changes(self) -> None:
        for action in self.d.log[self.checked :]:
            if isinstance(action, StatusChanged):
                assert action.status in LEGAL[self.status], f"{self.status} -> {action.status}"
                assert action.status is not self.status
                self.status = action.status
        self.checked = len(self.d.log)
        assert self.status is self.m.status

    @invariant()
    def at_most_one_live_socket(self) -> None:
        assert len(self.d.live) <= 1, self.d.live
        if self.d.live:
            assert self.d.live == {self.m.sid}

    @invariant()
    def no_call_sent_twice(self) -> None:
        ids = [r["id"] for requests in self.d.sent.values() for r in requests]
        assert len(ids) == len(set(ids))
        scripts = [r["params"]["script"] for requests in self.d.sent.values() for r in requests if r["method"] == "play"]
        assert len(scripts) == len(set(scripts))

    @invariant()
    def no_call_pending_past_its_deadline(self) -> None:
        # Timers due by now have fired (the driver fires them as time passes, maybe late).
        late_allowed = 30.0 + SLACK
        for waiter, call_id, deadline in self.calls:
            if call_id in self.m.pending:
                assert self.d.now <= deadline + late_allowed, (call_id, deadline, self.d.now)
                assert Timer.CALLS in self.m._timers  # something will end it
        if self.m.pending:
            assert self.m.status in (S.CONNECTED, S.AUTHENTICATING)

    @invariant()
    def every_waiter_ends_at_most_once(self) -> None:
        for waiter, _, _ in self.calls:
            assert len(waiter.outcomes) <= 1
            for kind, value in waiter.outcomes:
                assert kind == "result" or isinstance(value, CircleWsClientError)
        for waiter in self.connects:
            assert len(waiter.outcomes) <= 1

    @invariant()
    def keepalive_armed_whenever_connected(self) -> None:
        if self.m.status is S.CONNECTED:
            assert Timer.KEEPALIVE in self.m._timers
        if self.m.status is S.CLOSED:
            assert not self.m._timers and not self.d.timers and not self.d.live and not self.m.pending
        if self.m.status is S.RECONNECTING:
            # waiting for the backoff delay, or paused (offline / page hidden) with no timer
            assert (Timer.BACKOFF in self.m._timers) != (self.m.paused is not None)
            assert self.m.sid is None
        if self.m.status in (S.CONNECTING, S.AUTHENTICATING):
            assert Timer.CONNECT in self.m._timers and self.m.sid is not None

    @invariant()
    def driver_timers_match_the_machine(self) -> None:
        assert set(self.d.timers) == set(self.m._timers)


LifecycleMachine.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestLifecycle = LifecycleMachine.TestCase
