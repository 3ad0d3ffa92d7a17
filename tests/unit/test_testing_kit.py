"""circle_ws_web.testing: the virtual clock, the fake server and its faults.

Three layers: the clock alone; the fake server driven by hand through a raw event sink that
checks the transport contract; and each fault seen through a real ``CircleWsClient``
(``transport_factory=server, clock=clock``), with exact virtual times. A last group runs the
server on the loop's real clock (what a user without ``clock=`` gets), with short timings.
"""

from __future__ import annotations

import ast
import asyncio
import json
import logging
from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from circle_ws_web import (
    AuthError,
    CircleWsClient,
    ConnectError,
    ConnectionLostError,
    ConnectionStatus,
    JsonRpcError,
    ProtocolError,
    RequestTimeoutError,
    ws_manager,
)
from circle_ws_web.auth import PrivateKey, generate_private_key
from circle_ws_web.testing import (
    GARBAGE,
    NO_ANSWER,
    Close,
    FakeNetwork,
    FakeServer,
    LoopClock,
    PendingTimer,
    Request,
    ScriptError,
    VirtualClock,
    safe_eval,
)
from circle_ws_web.transport import TransportOptions

S = ConnectionStatus
KEY = generate_private_key()
PUB = PrivateKey(KEY).public_key_hex
URL = "ws://fake.test"
KIT = Path(__file__).resolve().parents[2] / "src" / "circle_ws_web" / "testing"


# =============================================================================================
# VirtualClock
# =============================================================================================


def test_clock_starts_at_zero_or_the_given_start_and_moves_only_when_advanced() -> None:
    assert VirtualClock().now() == 0.0
    clock = VirtualClock(start=100.0)
    assert clock.now() == 100.0
    assert clock.advance(2.5) == 0
    assert clock.now() == 102.5
    with pytest.raises(ValueError):
        VirtualClock(start=float("nan"))


def test_timers_fire_in_time_order_each_at_its_own_time_ties_in_setting_order() -> None:
    clock = VirtualClock()
    fired: list[tuple[str, float]] = []
    for name, delay in [("c", 3.0), ("a", 1.0), ("b1", 2.0), ("b2", 2.0), ("late", 10.0)]:
        clock.call_later(delay, lambda name=name: fired.append((name, clock.now())))
    assert clock.advance(5) == 4
    assert fired == [("a", 1.0), ("b1", 2.0), ("b2", 2.0), ("c", 3.0)]
    assert clock.now() == 5.0
    assert clock.pending() == [PendingTimer(10.0, "test_timers_fire_in_time_order_each_at_its_own_time_ties_in_setting_order.<locals>.<lambda>")]
    assert clock.next_deadline() == 10.0


def test_timers_set_by_a_firing_callback_fire_in_the_same_advance_when_due() -> None:
    clock = VirtualClock()
    fired: list[tuple[str, float]] = []

    def first() -> None:
        fired.append(("first", clock.now()))
        clock.call_later(0, lambda: fired.append(("zero", clock.now())))
        clock.call_later(1, lambda: fired.append(("inside", clock.now())))
        clock.call_later(5, lambda: fired.append(("outside", clock.now())))

    clock.call_later(1, first)
    clock.call_later(1, lambda: fired.append(("sibling", clock.now())))
    clock.advance(2)
    assert fired == [("first", 1.0), ("sibling", 1.0), ("zero", 1.0), ("inside", 2.0)]
    assert clock.pending_count() == 1
    clock.advance(4)
    assert fired[-1] == ("outside", 6.0)


def test_cancelled_timers_are_removed_and_cancel_is_idempotent() -> None:
    clock = VirtualClock()
    fired: list[int] = []
    cancels = [clock.call_later(i + 1, lambda i=i: fired.append(i)) for i in range(200)]
    for i, cancel in enumerate(cancels):
        if i % 2:
            cancel()
            cancel()  # idempotent
    assert clock.pending_count() == 100
    assert [t.when for t in clock.pending()] == [float(i + 1) for i in range(0, 200, 2)]
    clock.advance(1000)
    assert fired == list(range(0, 200, 2))
    assert clock.pending() == []
    cancels[0]()  # after it fired: a no-op
    assert clock.pending_count() == 0


def test_negative_delay_is_due_now_and_bad_arguments_are_refused() -> None:
    clock = VirtualClock(start=5.0)
    fired: list[float] = []
    clock.call_later(-3, lambda: fired.append(clock.now()))
    assert clock.advance(0) == 1 and fired == [5.0]
    with pytest.raises(ValueError):
        clock.call_later(float("nan"), lambda: None)
    for bad in (-1, float("inf"), float("nan")):
        with pytest.raises(ValueError):
            clock.advance(bad)


def test_advance_from_a_timer_callback_is_refused_and_errors_propagate() -> None:
    clock = VirtualClock()
    errors: list[BaseException] = []

    def nested() -> None:
        try:
            clock.advance(1)
        except RuntimeError as exc:
            errors.append(exc)

    def boom() -> None:
        raise KeyError("boom")

    fired: list[float] = []
    clock.call_later(1, nested)
    clock.call_later(2, boom)
    clock.call_later(3, lambda: fired.append(clock.now()))
    with pytest.raises(KeyError):
        clock.advance(5)
    assert len(errors) == 1 and clock.now() == 2.0  # stopped at the failing timer
    clock.advance(5)  # the clock is still usable: the rest fires
    assert fired == [3.0] and clock.now() == 7.0


def test_timers_that_re_arm_each_other_forever_are_reported() -> None:
    clock = VirtualClock()
    clock.max_timers_per_advance = 50

    def again() -> None:
        clock.call_later(0, again)

    clock.call_later(0, again)
    with pytest.raises(RuntimeError, match="re-arming"):
        clock.advance(1)


async def vsleep(clock: VirtualClock, seconds: float) -> None:
    """asyncio.sleep on the virtual clock."""
    future = asyncio.get_running_loop().create_future()
    clock.call_later(seconds, lambda: future.done() or future.set_result(None))
    await future


async def test_advance_async_lets_a_woken_task_act_before_the_next_timer() -> None:
    clock = VirtualClock()
    order: list[tuple[str, float]] = []

    async def worker() -> None:
        await vsleep(clock, 1)
        order.append(("task woke", clock.now()))
        await vsleep(clock, 0.5)  # set by the task after waking: due before the 2 s timer
        order.append(("task again", clock.now()))

    task = asyncio.create_task(worker())
    clock.call_later(2, lambda: order.append(("timer", clock.now())))
    await clock.advance_async(3)
    assert order == [("task woke", 1.0), ("task again", 1.5), ("timer", 2.0)]
    assert task.done() and clock.now() == 3.0


async def test_sync_advance_runs_no_task_in_between() -> None:
    clock = VirtualClock()
    order: list[tuple[str, float]] = []

    async def worker() -> None:
        await vsleep(clock, 1)
        order.append(("task woke", clock.now()))

    task = asyncio.create_task(worker())
    await asyncio.sleep(0)  # the task sets its timer
    clock.call_later(2, lambda: order.append(("timer", clock.now())))
    clock.advance(3)
    assert order == [("timer", 2.0)]  # the task has not run yet
    await task
    assert order == [("timer", 2.0), ("task woke", 3.0)]


async def test_run_for_is_advance_async() -> None:
    clock = VirtualClock()
    stamps: list[float] = []

    async def ticker() -> None:
        for _ in range(3):
            await vsleep(clock, 2)
            stamps.append(clock.now())

    task = asyncio.create_task(ticker())
    assert await clock.run_for(5) == 2
    assert stamps == [2.0, 4.0] and not task.done()
    await clock.run_for(1)
    assert stamps == [2.0, 4.0, 6.0] and task.done()


async def test_run_until_stops_at_the_exact_time_the_condition_became_true() -> None:
    clock = VirtualClock()
    box: list[int] = []
    for t in (1.0, 2.5, 7.0):
        clock.call_later(t, lambda: box.append(1))
    await clock.run_until(lambda: len(box) == 2)
    assert clock.now() == 2.5
    with pytest.raises(TimeoutError, match="after 3 virtual seconds"):
        await clock.run_until(lambda: len(box) == 5, timeout=3)
    assert clock.now() == 5.5  # moved to the limit, the 7 s timer not fired
    await clock.run_until(lambda: len(box) == 3)
    assert clock.now() == 7.0
    with pytest.raises(TimeoutError, match="no timer is pending"):
        await clock.run_until(lambda: False)
    assert clock.now() == 7.0


async def test_run_until_complete_returns_the_result_or_cancels_on_timeout() -> None:
    clock = VirtualClock()

    async def slow(seconds: float) -> str:
        await vsleep(clock, seconds)
        return f"slept {seconds}"

    assert await clock.run_until_complete(slow(4)) == "slept 4"
    assert clock.now() == 4.0
    with pytest.raises(TimeoutError):
        await clock.run_until_complete(slow(100), timeout=10)
    assert clock.now() == 14.0


async def test_loop_clock_keeps_the_loops_real_time() -> None:
    clock = LoopClock()
    loop = asyncio.get_running_loop()
    before = loop.time()
    assert before <= clock.now() <= loop.time()
    fired = loop.create_future()
    clock.call_later(0, lambda: fired.set_result("fired"))
    cancel = clock.call_later(0, lambda: fired.set_result("cancelled one fired"))
    cancel()
    assert await fired == "fired"
    await asyncio.sleep(0)
    assert fired.result() == "fired"


# =============================================================================================
# The default play evaluator
# =============================================================================================


@pytest.mark.parametrize(
    "script, output",
    [
        ("40 + 2", "42"),
        ("7 / 2", "3.5"),
        ("7 // 2", "3"),
        ("-7 % 3", "2"),
        ("2 ** 10", "1024"),
        ("(1 + 2) * (3 - 4)", "-3"),
        ("+1.5 * -2", "-3.0"),
        ("  6 * 7\n", "42"),
        ("2 ** -1", "0.5"),
    ],
)
def test_safe_eval_does_arithmetic(script: str, output: str) -> None:
    assert safe_eval(script) == output


@pytest.mark.parametrize(
    "script, why",
    [
        ("1 / 0", "division by zero"),
        ("5 % 0", "division by zero"),
        ("__import__('os')", "Call is not allowed"),
        ("x + 1", "Name is not allowed"),
        ("'ab' * 2", "only int and float literals"),
        ("True + 1", "only int and float literals"),
        ("1j", "only int and float literals"),
        ("(1).real", "Attribute is not allowed"),
        ("1 < 2", "Compare is not allowed"),
        ("9 ** 9 ** 9", "too large"),
        ("(2 ** 5000) * (2 ** 5000) * 2", "too large"),
        ("1" * 4000, "literal too large"),
        ("(-8) ** 0.5", "complex result"),
        ("2.0 ** 5000", "OverflowError"),
        ("1 +", "syntax error"),
        ("1 + " * 300 + "1", "more than 500 syntax nodes"),
        ("1" + " " * 10_000, "longer than"),
    ],
)
def test_safe_eval_refuses_everything_else(script: str, why: str) -> None:
    with pytest.raises(ScriptError, match=why):
        safe_eval(script)


# =============================================================================================
# The fake server by hand: a raw event sink that checks the transport contract
# =============================================================================================


class Events:
    """A TransportEvents that records events and notes every breach of the transport contract."""

    def __init__(self) -> None:
        self.log: list[tuple[Any, ...]] = []
        self.breaches: list[str] = []
        self.opened = self.closed = False

    def on_open(self) -> None:
        if self.opened or self.closed:
            self.breaches.append("on_open twice or after on_close")
        self.opened = True
        self.log.append(("open",))

    def on_message(self, data: str | bytes) -> None:
        if not self.opened or self.closed:
            self.breaches.append(f"on_message {'before on_open' if not self.opened else 'after on_close'}")
        self.log.append(("message", data))

    def on_error(self, message: str) -> None:
        if self.closed:
            self.breaches.append("on_error after on_close")
        self.log.append(("error", message))

    def on_close(self, code: int, reason: str) -> None:
        if self.closed:
            self.breaches.append("on_close twice")
        self.closed = True
        self.log.append(("close", code, reason))

    @property
    def messages(self) -> list[Any]:
        return [json.loads(e[1]) if isinstance(e[1], str) else e[1] for e in self.log if e[0] == "message"]

    def kinds(self) -> list[str]:
        return [e[0] for e in self.log]


class Peer:
    """A hand-driven client end: send requests, read answers, on a virtual clock."""

    def __init__(self, server: FakeServer, clock: VirtualClock) -> None:
        self.server, self.clock = server, clock
        self.events = Events()
        self.sock = server(URL, self.events, TransportOptions())
        self.counter = 0

    @classmethod
    async def open(cls, server: FakeServer, clock: VirtualClock) -> Peer:
        """A peer whose socket has opened (sending earlier is a client bug the server notes)."""
        peer = cls(server, clock)
        await clock.run_until(lambda: peer.events.opened)
        return peer

    def send(self, method: str, params: Any = None, *, rid: Any = "auto") -> Any:
        if rid == "auto":
            self.counter += 1
            rid = f"r{self.counter}"
        msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params or {}}
        if rid is not None:
            msg["id"] = rid
        self.sock.send(json.dumps(msg))
        return rid

    def answer(self, rid: Any) -> dict[str, Any] | None:
        return next((m for m in self.events.messages if isinstance(m, dict) and m.get("id") == rid), None)

    async def call(self, method: str, params: Any = None, *, timeout: float = 60) -> dict[str, Any]:
        rid = self.send(method, params)
        await self.clock.run_until(lambda: self.answer(rid) is not None, timeout=timeout)
        answer = self.answer(rid)
        assert answer is not None
        return answer

    async def login(self, key: str = KEY) -> dict[str, Any]:
        nonce = (await self.call("fetch_nonce", {"pubkey": PrivateKey(key).public_key_hex}))["result"]["nonce"]
        return await self.call("authenticate", {"pubkey": PrivateKey(key).public_key_hex, "signature": PrivateKey(key).sign_message(nonce)})


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def server(clock: VirtualClock) -> FakeServer:
    return FakeServer(require_auth=True, clock=clock)


async def test_a_socket_opens_on_a_later_turn_answers_and_closes_last(server: FakeServer, clock: VirtualClock) -> None:
    peer = Peer(server, clock)
    assert peer.events.log == []  # nothing is delivered inside the factory call
    await clock.settle()
    assert peer.events.kinds() == ["open"]
    assert server.connections == 1 and server.sockets == 1
    assert (await peer.call("ping"))["result"] == "pong"
    peer.sock.close(1000, "bye")
    peer.sock.close(1000, "again")  # idempotent
    peer.sock.send("after close")  # never raises, goes nowhere
    await clock.settle()
    assert peer.events.log[-1] == ("close", 1000, "bye")
    assert peer.events.kinds().count("close") == 1 and peer.events.breaches == []
    assert server.connections == 0 and server.sockets == 0
    assert server.closes == [Close(1, 1000, "bye", "client")]
    assert server.violations == [] and clock.pending() == []


async def test_whoami_fetch_nonce_and_authenticate_with_a_real_signature(server: FakeServer, clock: VirtualClock) -> None:
    peer = await Peer.open(server, clock)
    assert (await peer.call("whoami"))["result"] == {"authenticated": False, "pubkey": None}
    first = (await peer.call("fetch_nonce", {"pubkey": PUB}))["result"]["nonce"]
    second = (await peer.call("fetch_nonce", {"pubkey": PUB}))["result"]["nonce"]
    assert first != second and len(first) == 32 and int(first, 16) >= 0  # 128 random bits, hex
    signer = PrivateKey(KEY)
    stale = await peer.call("authenticate", {"pubkey": PUB, "signature": signer.sign_message(first)})
    assert stale["error"]["code"] == -32002  # the second fetch replaced the first nonce, and used it up
    assert (await peer.login())["result"] == {"authenticated": True}
    assert (await peer.call("whoami"))["result"] == {"authenticated": True, "pubkey": PUB}
    assert server.authentications == [(1, PUB)]
    assert [n for _, n in server.issued_nonces][:2] == [first, second]


async def test_nonces_are_single_use_bound_to_key_and_connection_and_expire(clock: VirtualClock) -> None:
    server = FakeServer(clock=clock, nonce_ttl=60)
    a, b = await Peer.open(server, clock), await Peer.open(server, clock)
    signer, other = PrivateKey(KEY), PrivateKey(generate_private_key())
    nonce = (await a.call("fetch_nonce", {"pubkey": PUB}))["result"]["nonce"]
    params = {"pubkey": PUB, "signature": signer.sign_message(nonce)}
    assert (await b.call("authenticate", params))["error"]["code"] == -32002  # other connection
    assert (await a.call("authenticate", params))["result"] == {"authenticated": True}
    assert (await a.call("authenticate", params))["error"]["code"] == -32002  # replayed
    nonce = (await a.call("fetch_nonce", {"pubkey": PUB}))["result"]["nonce"]
    wrong = {"pubkey": PUB, "signature": other.sign_message(nonce)}
    assert (await a.call("authenticate", wrong))["error"]["code"] == -32002  # another key signed it
    nonce = (await a.call("fetch_nonce", {"pubkey": PUB}))["result"]["nonce"]
    clock.advance(60)
    late = await a.call("authenticate", {"pubkey": PUB, "signature": signer.sign_message(nonce)})
    assert late["error"]["code"] == -32002  # expired


async def test_play_requires_auth_when_asked_and_evaluates_after(server: FakeServer, clock: VirtualClock) -> None:
    peer = await Peer.open(server, clock)
    refused = await peer.call("play", {"script": "1 + 1"})
    assert refused["error"]["code"] == -32001
    assert server.executed_scripts == []
    await peer.login()
    assert (await peer.call("play", {"script": "40 + 2"}))["result"] == {"output": "42"}
    error = (await peer.call("play", {"script": "1/0"}))["error"]
    assert error["code"] == -32010 and "division by zero" in error["message"]
    assert (await peer.call("play", {"script": 42}))["error"]["code"] == -32602
    assert server.executed_scripts == ["40 + 2", "1/0"]


async def test_protocol_errors_are_answered_like_the_reference_server(server: FakeServer, clock: VirtualClock) -> None:
    peer = await Peer.open(server, clock)
    for frame in ("not json", "[1]", '{"jsonrpc":"2.0","method":"ping","id":[1]}', '{"jsonrpc":"2.0","method":"ping","params":{},"id":NaN}'):
        peer.sock.send(frame)
    peer.sock.send('{"jsonrpc":"1.0","method":"ping","id":"v1"}')
    peer.send("no_such_method", rid="m")
    peer.send("ping", rid=None)  # a notification: no answer
    peer.sock.send('{"jsonrpc":"2.0","method":"ping","params":[1],"id":"p"}')
    await clock.advance_async(0)
    codes = [(m["id"], m["error"]["code"]) for m in peer.events.messages]
    assert codes == [(None, -32700), (None, -32600), (None, -32600), (None, -32700), ("v1", -32600), ("m", -32601), ("p", -32602)]
    assert [r.method for r in server.requests] == ["no_such_method", "ping", "ping"]
    assert server.requests[1] == Request(1, "ping", {}, None)


async def test_latency_delays_every_frame_to_the_client_in_order(clock: VirtualClock) -> None:
    server = FakeServer(clock=clock, latency=0.25)
    peer = Peer(server, clock)
    await clock.advance_async(0.2)
    assert peer.events.log == []
    await clock.advance_async(0.05)
    assert peer.events.kinds() == ["open"] and clock.now() == 0.25
    rid = peer.send("ping")
    await clock.settle()  # the answer is on the wire, due at 0.5
    server.latency = 0.0  # a faster frame may not overtake it: a socket is a queue
    rid2 = peer.send("whoami")
    await clock.settle()
    assert peer.events.messages == []
    await clock.run_until(lambda: peer.answer(rid2) is not None)
    assert [m["id"] for m in peer.events.messages] == [rid, rid2]
    assert clock.now() == 0.5


async def test_a_client_close_discards_frames_in_flight_and_takes_a_trip(clock: VirtualClock) -> None:
    server = FakeServer(clock=clock, latency=1.0)
    peer = Peer(server, clock)
    await clock.run_until(lambda: peer.events.opened)
    server.faults.garbage()  # due at 2.0
    await clock.advance_async(0.5)
    peer.sock.close(1000, "bye")  # at 1.5: the echo of the close frame arrives at 2.5
    await clock.run_until(lambda: peer.events.closed)
    assert clock.now() == 2.5
    assert peer.events.kinds() == ["open", "close"] and clock.pending() == []


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("send"), st.sampled_from(["ping", "whoami", "play", "nope"])),
        st.tuples(st.just("advance"), st.sampled_from([0.0, 0.1, 0.5, 1.0, 3.0])),
        st.tuples(st.just("latency"), st.sampled_from([0.0, 0.2, 1.0])),
        st.tuples(st.just("delay"), st.sampled_from([0.0, 0.7, 2.0])),
        st.tuples(st.sampled_from(["drop", "close", "silence", "garbage", "refuse", "stall", "client_close", "reconnect"]), st.none()),
    ),
    max_size=25,
)


@settings(max_examples=150, deadline=None)
@given(OPS)
def test_the_transport_contract_holds_under_any_sequence_of_faults(ops: list[tuple[str, Any]]) -> None:
    """on_open at most once and first, on_close exactly once and last, nothing after it;
    once every socket is closed no timer is left (a delayed answer dies with its connection),
    whatever the faults did."""

    async def scenario() -> tuple[list[Events], FakeServer, VirtualClock]:
        clock = VirtualClock()
        server = FakeServer(clock=clock)
        peers = [Peer(server, clock)]
        for op, arg in ops:
            peer = peers[-1]
            if op == "send" and peer.events.opened:
                peer.send(arg, {"script": "1 + 1"} if arg == "play" else {})
            elif op == "advance":
                await clock.advance_async(arg)
            elif op == "latency":
                server.latency = arg
            elif op == "delay":
                server.faults.delay(arg)
            elif op == "drop":
                server.faults.drop()
            elif op == "close":
                server.faults.close(4001, "fault")
            elif op == "silence":
                server.faults.silence(1.0)
            elif op == "garbage":
                server.faults.garbage()
            elif op == "refuse":
                server.faults.refuse(1)
            elif op == "stall":
                server.faults.stall_handshake(1)
            elif op == "client_close":
                peer.sock.close(1000, "done")
            elif op == "reconnect":
                peers.append(Peer(server, clock))
        for peer in peers:
            peer.sock.close(1000, "end")
        await clock.run_until(lambda: all(p.events.closed for p in peers))
        return [p.events for p in peers], server, clock

    all_events, server, clock = asyncio.run(scenario())
    for events in all_events:
        assert events.breaches == []
        kinds = events.kinds()
        assert kinds.count("close") == 1 and kinds[-1] == "close", kinds
        assert kinds.count("open") <= 1 and (not kinds.count("open") or kinds[0] == "open"), kinds
    assert server.sockets == 0 and server.connections == 0
    assert clock.pending() == [] and server.callback_errors == []


async def test_client_misuse_is_recorded_not_raised(server: FakeServer, clock: VirtualClock) -> None:
    events = Events()
    sock = server(URL, events, TransportOptions())
    sock.send('{"jsonrpc":"2.0","method":"ping","params":{},"id":"early"}')  # before on_open
    await clock.settle()
    sock.close(1006, "")  # a browser refuses this code
    await clock.settle()
    assert len(server.violations) == 2
    assert "before on_open" in server.violations[0] and "1006" in server.violations[1]
    assert server.requests == []


async def test_an_exception_in_a_client_callback_never_breaks_the_socket(server: FakeServer, clock: VirtualClock, caplog: pytest.LogCaptureFixture) -> None:
    class Fragile(Events):
        def on_message(self, data: str | bytes) -> None:
            super().on_message(data)
            raise ValueError("client bug")

    events = Fragile()
    sock = server(URL, events, TransportOptions())
    await clock.settle()
    sock.send('{"jsonrpc":"2.0","method":"ping","params":{},"id":"1"}')
    await clock.settle()
    with caplog.at_level(logging.ERROR, logger="circle_ws_web.testing"):
        server.faults.close(1001, "bye")
        await clock.settle()
    assert events.kinds() == ["open", "message", "close"] and events.breaches == []
    assert [type(e) for e in server.callback_errors] == [ValueError]


async def test_closing_a_socket_that_never_opened_fails_it_like_a_browser(server: FakeServer, clock: VirtualClock) -> None:
    events = Events()
    sock = server(URL, events, TransportOptions())
    sock.close()  # before the open event was delivered
    await clock.settle()
    assert events.kinds() == ["error", "close"] and events.log[-1][1] == 1006
    assert server.connections == 0 and server.sockets == 0


async def test_play_handler_sync_async_failing_and_extra_methods(clock: VirtualClock) -> None:
    async def slow_upper(script: str) -> str:
        await vsleep(clock, 2)
        return script.upper()

    def picky(script: str) -> str:
        if script == "bad":
            raise JsonRpcError(-32099, "picky", {"hint": 1})
        if script == "crash":
            raise RuntimeError("handler crashed")
        return script[::-1]

    sync = await Peer.open(FakeServer(clock=clock, play=picky, methods={"echo": lambda p: p}), clock)
    assert (await sync.call("play", {"script": "abc"}))["result"] == {"output": "cba"}
    assert (await sync.call("play", {"script": "bad"}))["error"] == {"code": -32099, "message": "picky", "data": {"hint": 1}}
    crash = (await sync.call("play", {"script": "crash"}))["error"]
    assert crash["code"] == -32010 and crash["message"] == "RuntimeError: handler crashed"
    assert (await sync.call("echo", {"x": [1, 2]}))["result"] == {"x": [1, 2]}
    slow = await Peer.open(FakeServer(clock=clock, play=slow_upper), clock)
    start = clock.now()
    assert (await slow.call("play", {"script": "hi"}))["result"] == {"output": "HI"}
    assert clock.now() - start == 2.0


# -- faults by hand --------------------------------------------------------------------------


async def test_refuse_n_then_forever_until_reset(server: FakeServer, clock: VirtualClock) -> None:
    server.faults.refuse(2)
    peers = [Peer(server, clock) for _ in range(3)]
    await clock.settle()
    assert [p.events.kinds() for p in peers] == [["error", "close"], ["error", "close"], ["open"]]
    assert peers[0].events.log[0] == ("error", "connection refused") and peers[0].events.log[1][1] == 1006
    server.faults.refuse(None)
    more = [Peer(server, clock) for _ in range(5)]
    await clock.settle()
    assert all(p.events.kinds() == ["error", "close"] for p in more)
    server.faults.reset()
    assert Peer(server, clock) and server.connections == 2
    assert server.attempts == 9 and server.sockets == 2


async def test_stall_handshake_never_opens_until_the_client_gives_up(server: FakeServer, clock: VirtualClock) -> None:
    server.faults.stall_handshake()
    stalled, fine = Peer(server, clock), Peer(server, clock)
    await clock.advance_async(3600)
    assert stalled.events.log == [] and fine.events.kinds() == ["open"]
    assert server.connections == 1 and server.sockets == 2
    stalled.sock.close(4000, "connect timeout")
    await clock.settle()
    assert stalled.events.kinds() == ["error", "close"] and stalled.events.log[-1][1] == 1006
    assert server.sockets == 1


async def test_silence_for_a_while_then_answers_again(server: FakeServer, clock: VirtualClock) -> None:
    peer = Peer(server, clock)
    await clock.settle()
    server.faults.silence(10)
    quiet = peer.send("ping")
    await clock.advance_async(9.9)
    assert peer.answer(quiet) is None and server.requests[-1].id == quiet  # received, unanswered
    newcomer = await Peer.open(server, clock)  # new connections are not silenced
    assert (await newcomer.call("ping"))["result"] == "pong"
    await clock.advance_async(0.1)
    assert (await peer.call("ping"))["result"] == "pong"
    assert peer.answer(quiet) is None  # what arrived during the silence is never answered
    server.faults.silence()
    forever = peer.send("ping")
    await clock.advance_async(10_000)
    assert peer.answer(forever) is None
    server.faults.silence(0)
    assert (await peer.call("ping"))["result"] == "pong"


async def test_drop_loses_frames_on_the_wire_and_closes_1006(clock: VirtualClock) -> None:
    server = FakeServer(clock=clock, latency=1.0)
    a, b = Peer(server, clock), Peer(server, clock)
    await clock.advance_async(1)
    rid = a.send("ping")
    await clock.advance_async(0.5)  # the answer is on the wire
    server.faults.drop()
    assert server.connections == 0
    await clock.advance_async(5)
    for peer in (a, b):
        assert peer.events.kinds() == ["open", "error", "close"] and peer.events.log[-1] == ("close", 1006, "")
        assert peer.events.breaches == []
    assert a.answer(rid) is None
    assert {c.code for c in server.closes} == {1006} and len(server.closes) == 2
    assert clock.pending() == []


async def test_close_delivers_what_is_on_the_wire_first(clock: VirtualClock) -> None:
    server = FakeServer(clock=clock, latency=1.0)
    peer = Peer(server, clock)
    await clock.advance_async(1)
    rid = peer.send("ping")
    await clock.advance_async(0)
    server.faults.close(4321, "maintenance")
    await clock.advance_async(5)
    assert peer.events.kinds() == ["open", "message", "close"]
    assert peer.answer(rid) is not None and peer.events.log[-1] == ("close", 4321, "maintenance")
    assert server.closes == [Close(1, 4321, "maintenance", "server")]


async def test_delay_answers_one_method_late_and_later_requests_overtake(server: FakeServer, clock: VirtualClock) -> None:
    peer = await Peer.open(server, clock)
    server.faults.delay(5, "whoami")
    slow = peer.send("whoami")
    fast = peer.send("ping")
    await clock.run_until(lambda: peer.answer(slow) is not None)
    assert clock.now() == 5.0
    assert [m["id"] for m in peer.events.messages] == [fast, slow]
    server.faults.delay(0, "whoami").delay(2)  # every method now
    start = clock.now()
    await peer.call("whoami")
    assert clock.now() - start == 2.0
    with pytest.raises(ValueError):
        server.faults.delay(-1)


async def test_garbage_sends_raw_frames_in_order(server: FakeServer, clock: VirtualClock) -> None:
    peer = Peer(server, clock)
    await clock.settle()
    server.faults.garbage()
    server.faults.garbage(["custom", b"\xff"])
    await clock.settle()
    assert [e[1] for e in peer.events.log if e[0] == "message"] == [*GARBAGE, "custom", b"\xff"]


async def test_fail_auth_n_times_even_with_a_good_signature(server: FakeServer, clock: VirtualClock) -> None:
    peer = await Peer.open(server, clock)
    server.faults.fail_auth(2)
    assert (await peer.login())["error"]["code"] == -32002
    assert (await peer.login())["error"]["code"] == -32002
    assert (await peer.login())["result"] == {"authenticated": True}


async def test_answer_with_result_error_no_answer_callable_and_times(server: FakeServer, clock: VirtualClock) -> None:
    peer = await Peer.open(server, clock)
    faults = server.faults
    faults.answer_with("ping", "not pong", times=2)
    assert [(await peer.call("ping"))["result"] for _ in range(3)] == ["not pong", "not pong", "pong"]
    faults.answer_with("whoami", JsonRpcError(-32000, "nope"))
    assert (await peer.call("whoami"))["error"] == {"code": -32000, "message": "nope"}
    faults.answer_with("fetch_nonce", lambda params: {"nonce": params["pubkey"][:8]})
    assert (await peer.call("fetch_nonce", {"pubkey": PUB}))["result"] == {"nonce": PUB[:8]}
    faults.answer_with("play", NO_ANSWER)
    rid = peer.send("play", {"script": "1"})
    await clock.advance_async(100)
    assert peer.answer(rid) is None and server.executed_scripts == []
    faults.reset()
    assert (await peer.call("whoami"))["result"]["authenticated"] is False


async def test_fake_network_routes_by_url_and_refuses_the_rest(clock: VirtualClock) -> None:
    a, b = FakeServer(clock=clock), FakeServer(clock=clock)
    network = FakeNetwork({"ws://a": a, "ws://b": b})
    ea, eb, en = Events(), Events(), Events()
    network("ws://a", ea, TransportOptions())
    network("ws://b", eb, TransportOptions())
    network("ws://nobody", en, TransportOptions())
    await clock.settle()
    assert (a.attempts, b.attempts) == (1, 1)
    assert ea.kinds() == eb.kinds() == ["open"] and en.kinds() == ["error", "close"]


def test_the_kit_imports_only_the_standard_library_and_the_core() -> None:
    """It must run in Pyodide: no threads, sockets, websockets, pytest or client imports."""
    allowed_stdlib = {"__future__", "ast", "asyncio", "collections", "functools", "heapq", "inspect", "json", "logging", "math", "operator", "re", "secrets", "typing"}
    allowed_core = {"auth", "errors", "rpc", "transport"}
    for path in sorted(KIT.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name.split(".")[0] for alias in node.names]
                assert set(names) <= allowed_stdlib, (path.name, names)
            elif isinstance(node, ast.ImportFrom):
                if node.level == 1:
                    continue  # inside the kit
                if node.level == 2:
                    assert node.module in allowed_core, (path.name, node.module)
                else:
                    assert node.module and node.module.split(".")[0] in allowed_stdlib, (path.name, node.module)


# =============================================================================================
# Faults seen through a real CircleWsClient on the virtual clock (needs the client's clock=)
# =============================================================================================

#: Short, deterministic tuning: no jitter, so every reconnection time is exact.
TUNING: dict[str, Any] = dict(
    keepalive_interval=5.0,
    keepalive_timeout=2.0,
    request_timeout=10.0,
    connect_timeout=3.0,
    reconnect_initial_delay=0.5,
    reconnect_max_delay=8.0,
    reconnect_jitter=False,
    reconnect_min_uptime=1.0,
)


class Watched:
    """A client on the virtual clock with its status changes stamped with virtual time."""

    def __init__(self, server: FakeServer, clock: VirtualClock, key: str | None = KEY, **tuning: Any) -> None:
        self.clock = clock
        self.client = CircleWsClient(URL, key, transport_factory=server, clock=clock, **{**TUNING, **tuning})
        self.seen: list[tuple[float, str]] = []
        self.client.on_status_change(lambda s: self.seen.append((clock.now(), s.value)))

    async def run(self, awaitable: Any, timeout: float = 300) -> Any:
        return await self.clock.run_until_complete(awaitable, timeout=timeout)

    def times(self, status: str) -> list[float]:
        return [t for t, s in self.seen if s == status]

    async def close(self, server: FakeServer) -> None:
        await self.run(self.client.disconnect())
        assert self.client.status is S.CLOSED
        assert server.connections == 0 and server.sockets == 0, "a socket outlived the client"
        assert self.clock.pending() == [], "a timer outlived the client"
        assert server.violations == [] and server.callback_errors == []


async def test_client_connects_authenticates_and_calls_in_zero_virtual_time(server: FakeServer, clock: VirtualClock) -> None:
    w = Watched(server, clock)
    await w.run(w.client.connect())
    assert w.seen == [(0.0, "connecting"), (0.0, "authenticating"), (0.0, "connected")]
    assert (await w.run(w.client.play("40 + 2"))).output == "42"
    assert await w.run(w.client.whoami()) == {"authenticated": True, "pubkey": PUB}
    assert await w.run(w.client.ping()) == "pong"
    assert [r.method for r in server.requests] == ["fetch_nonce", "authenticate", "play", "whoami", "ping"]
    assert server.executed_scripts == ["40 + 2"] and clock.now() == 0.0
    await w.close(server)


async def test_silence_is_caught_by_keep_alive_and_the_client_reconnects(server: FakeServer, clock: VirtualClock) -> None:
    w = Watched(server, clock)
    await w.run(w.client.connect())
    server.faults.silence()
    await clock.run_until(lambda: w.client.status is S.RECONNECTING)
    # Silent since 0: a ping after `interval`, given up `timeout` later (SPEC: within interval + timeout).
    assert clock.now() == TUNING["keepalive_interval"] + TUNING["keepalive_timeout"] == 7.0
    assert [(r.conn, r.method) for r in server.requests[2:]] == [(1, "ping")]
    await clock.run_until(lambda: w.client.is_connected)
    assert clock.now() == 7.5  # reconnect_initial_delay later
    assert server.closes[0] == Close(1, 4000, server.closes[0].reason, "client")
    assert [c for c, _ in server.authentications] == [1, 2]
    assert (await w.run(w.client.play("6 * 7"))).output == "42"
    await w.close(server)


async def test_drop_fails_calls_in_flight_and_re_authenticates_with_a_fresh_nonce(server: FakeServer, clock: VirtualClock) -> None:
    w = Watched(server, clock)
    await w.run(w.client.connect())
    server.faults.delay(60, "play")
    in_flight = asyncio.ensure_future(w.client.play("1 + 1"))
    await clock.advance_async(1)
    server.faults.drop()
    with pytest.raises(ConnectionLostError):
        await w.run(in_flight)
    assert clock.now() == 1.0  # at once, not at the request timeout
    await clock.run_until(lambda: w.client.is_connected)
    assert clock.now() == 1.5
    nonce_requests = server.requests_for("fetch_nonce")
    assert [r.conn for r in nonce_requests] == [1, 2]
    nonces = [n for _, n in server.issued_nonces]
    assert len(nonces) == 2 and nonces[0] != nonces[1]
    assert [c for c, _ in server.authentications] == [1, 2]
    assert server.executed_scripts == ["1 + 1"]  # never re-sent on the new connection
    assert w.client.metrics.reconnects == 1
    await w.close(server)


async def test_fail_auth_raises_auth_error_then_backs_off_and_recovers(server: FakeServer, clock: VirtualClock) -> None:
    w = Watched(server, clock)
    server.faults.fail_auth(1)
    with pytest.raises(AuthError, match="-32002"):
        await w.run(w.client.connect())
    assert w.client.status is S.DISCONNECTED
    server.faults.fail_auth(2)
    with pytest.raises(AuthError):
        await w.run(w.client.connect(keep_trying=True))
    await clock.run_until(lambda: w.client.is_connected)
    assert w.times("authenticating") == [0.0, 0.0, 0.5, 1.5]  # backoff 0.5 s, then 1 s
    await w.close(server)


async def test_garbage_is_counted_in_metrics_and_survived(server: FakeServer, clock: VirtualClock) -> None:
    w = Watched(server, clock)
    await w.run(w.client.connect())
    server.faults.garbage()
    await clock.settle()
    metrics = w.client.metrics
    assert metrics.bad_frames == 5 and metrics.unknown_ids == 1
    assert w.client.is_connected and (await w.run(w.client.play("2 ** 8"))).output == "256"
    await w.close(server)


async def test_a_server_that_refuses_is_retried_with_backoff_until_it_accepts(server: FakeServer, clock: VirtualClock) -> None:
    w = Watched(server, clock)
    server.faults.refuse(None)
    with pytest.raises(ConnectError):
        await w.run(w.client.connect(keep_trying=True))
    await clock.advance_async(10)
    assert w.times("connecting") == [0.0, 0.5, 1.5, 3.5, 7.5]
    server.faults.reset()
    await clock.run_until(lambda: w.client.is_connected)
    assert clock.now() == 15.5  # the next attempt, capped at reconnect_max_delay = 8
    await w.close(server)


async def test_a_stalled_handshake_ends_at_the_connect_timeout(server: FakeServer, clock: VirtualClock) -> None:
    w = Watched(server, clock)
    server.faults.stall_handshake()
    with pytest.raises(ConnectError, match="within 3s"):
        await w.run(w.client.connect())
    assert clock.now() == TUNING["connect_timeout"]
    assert server.sockets == 0  # the client closed the stalled socket
    await w.close(server)


async def test_a_late_answer_times_out_and_is_then_counted_as_unknown(server: FakeServer, clock: VirtualClock) -> None:
    w = Watched(server, clock)
    await w.run(w.client.connect())
    server.faults.delay(15, "play")
    with pytest.raises(RequestTimeoutError):
        await w.run(w.client.play("1"))
    assert clock.now() == TUNING["request_timeout"]
    await clock.advance_async(5)
    assert w.client.metrics.unknown_ids == 1 and w.client.is_connected
    await w.close(server)


async def test_a_clean_server_close_is_followed_by_a_reconnect(server: FakeServer, clock: VirtualClock) -> None:
    w = Watched(server, clock)
    await w.run(w.client.connect())
    await clock.advance_async(2)  # up longer than reconnect_min_uptime: backoff starts over
    server.faults.close(1001, "restarting")
    await clock.run_until(lambda: w.client.is_connected and server.attempts == 2)
    assert clock.now() == 2.5
    await w.close(server)


async def test_wrong_answers_surface_as_typed_errors(server: FakeServer, clock: VirtualClock) -> None:
    w = Watched(server, clock)
    server.faults.answer_with("fetch_nonce", {"nonce": "x" * 5000}, times=1)
    with pytest.raises(AuthError, match="5000-character nonce"):
        await w.run(w.client.connect())
    await w.run(w.client.connect())
    server.faults.answer_with("play", {"no": "output"})
    with pytest.raises(ProtocolError):
        await w.run(w.client.play("1"))
    server.faults.answer_with("play", JsonRpcError(-32010, "boom"))
    with pytest.raises(JsonRpcError) as info:
        await w.run(w.client.play("1"))
    assert info.value.code == -32010 and info.value.message == "boom"
    await w.close(server)


async def test_play_without_a_key_is_refused_where_auth_is_required(server: FakeServer, clock: VirtualClock) -> None:
    w = Watched(server, clock, key=None)
    await w.run(w.client.connect())
    with pytest.raises(JsonRpcError) as info:
        await w.run(w.client.play("1 + 1"))
    assert info.value.code == -32001 and w.client.is_connected
    await w.close(server)


async def test_notifications_reach_the_client(server: FakeServer, clock: VirtualClock) -> None:
    w = Watched(server, clock)
    got: list[tuple[str, Any]] = []
    w.client.on_notification(lambda method, params: got.append((method, params)))
    await w.run(w.client.connect())
    server.notify("progress", {"done": 3})
    await clock.settle()
    assert got == [("progress", {"done": 3})]
    await w.close(server)


async def test_latency_is_the_round_trip_the_client_measures(clock: VirtualClock) -> None:
    server = FakeServer(clock=clock, latency=0.25)
    w = Watched(server, clock)
    await w.run(w.client.connect())
    assert clock.now() == 0.75  # open, then fetch_nonce and authenticate: three trips
    assert await w.run(w.client.ping()) == "pong"
    assert w.client.metrics.last_rtt == 0.25
    await w.close(server)


# =============================================================================================
# The same server on the loop's real clock (no clock= anywhere), short timings
# =============================================================================================

REAL_TUNING: dict[str, Any] = dict(
    keepalive_interval=0.2,
    keepalive_timeout=0.2,
    request_timeout=5.0,
    connect_timeout=5.0,
    reconnect_initial_delay=0.02,
    reconnect_max_delay=0.1,
)


async def eventually(predicate: Callable[[], bool], what: str, bound: float = 10.0) -> None:
    """Poll until ``predicate()``; ``bound`` (real seconds) only stops a hang, asserts no time."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + bound
    while not predicate():
        assert loop.time() < deadline, f"never happened: {what}"
        await asyncio.sleep(0.01)


async def test_real_clock_drop_and_silence_are_recovered_from() -> None:
    server = FakeServer(require_auth=True)
    client = CircleWsClient(URL, KEY, transport_factory=server, **REAL_TUNING)
    await client.connect()
    assert (await client.play("40 + 2")).output == "42"
    server.faults.drop()
    await eventually(lambda: client.is_connected and server.attempts == 2, "reconnect after drop")
    server.faults.silence()
    await eventually(lambda: client.is_connected and server.attempts == 3, "reconnect after silence")
    assert [c for c, _ in server.authentications] == [1, 2, 3]
    assert server.closes[0].code == 1006 and server.closes[1].by == "client"
    await client.disconnect()
    assert server.connections == 0 and server.sockets == 0 and server.violations == []


async def test_a_manager_on_a_fake_network() -> None:
    up = FakeServer(require_auth=True)
    network = FakeNetwork({"ws://up.test": up})
    manager = (
        ws_manager()
        .private_key(KEY)
        .add_server_url("ws://up.test")
        .add_server_url("ws://down.test")
        .reconnect(initial_delay=0.02, max_delay=0.1)
        .transport_factory(network)
        .build()
    )
    report = await manager.connect()
    assert report["ws://up.test"] is None and isinstance(report["ws://down.test"], ConnectError)
    assert (await manager.execute_script("ws://up.test", "6 * 7")).output == "42"
    network.servers["ws://down.test"] = FakeServer()
    await eventually(lambda: manager.is_connected("ws://down.test"), "the second server joins")
    await manager.disconnect_all()
    assert up.connections == 0 and network.servers["ws://down.test"].connections == 0


# =============================================================================================
# The example in docs/testing.md runs as written
# =============================================================================================

DOCS = Path(__file__).resolve().parents[2] / "docs" / "testing.md"


def test_the_documented_example_passes_as_a_users_test_file(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    text = DOCS.read_text()
    marker = text.index("<!-- example: test_my_app.py")
    start = text.index("```python\n", marker) + len("```python\n")
    source = text[start : text.index("```\n", start)]
    (tmp_path / "test_my_app.py").write_text(source)
    env = {**os.environ, "PYTHONPATH": str(KIT.parents[1])}  # this checkout's src/, first
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_my_app.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout, done.stdout
