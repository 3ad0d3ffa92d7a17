"""The fleet (WsManager with several servers) on the test kit: fake servers, virtual time.

Why virtual time: the breaker's reset timeout, the backoff, hedging after 200 ms and a
failover that must not wait for anything are all statements about time; on the VirtualClock
they are checked at exact moments, with nothing left to a loaded machine. The same behaviours
run against real servers on both platforms in tests/scenarios/fleet_scenarios.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict
from typing import Any

import pytest

from circle_ws_web import (
    CircuitOpenError,
    ClientClosedError,
    ConfigError,
    ConnectionLostError,
    ConnectionStatus,
    JsonRpcError,
    Metrics,
    NotConnectedError,
    PlayResult,
    RequestTimeoutError,
    WsManager,
    ws_manager,
)
from circle_ws_web.breaker import BreakerSettings, BreakerState
from circle_ws_web.manager import RTT_WINDOW
from circle_ws_web.routing import ServerSettings
from circle_ws_web.testing import NO_ANSWER, FakeNetwork, FakeServer, FakeSocket, VirtualClock
from circle_ws_web.transport import TransportEvents, TransportOptions

KEY = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
A, B, C = "ws://a.test", "ws://b.test", "ws://c.test"
S = ConnectionStatus
BS = BreakerState


class Taps:
    """The network, recording each socket it hands out per URL (to drop one of them)."""

    def __init__(self, network: FakeNetwork) -> None:
        self.network = network
        self.sockets: dict[str, list[FakeSocket]] = defaultdict(list)

    def __call__(self, url: str, events: TransportEvents, options: TransportOptions) -> FakeSocket:
        sock = self.network(url, events, options)
        self.sockets[url].append(sock)
        return sock


class Fleet:
    def __init__(self, *specs: tuple[str, dict[str, Any]], threshold: int = 3, reset: float = 10.0,
                 latency: dict[str, float] | None = None, **tuning: Any) -> None:
        self.clock = VirtualClock()
        latency = latency or {}
        self.servers = {url: FakeServer(require_auth=True, clock=self.clock, latency=latency.get(url, 0.0))
                        for url, _ in specs}
        self.taps = Taps(FakeNetwork(self.servers))
        builder = (
            ws_manager().private_key(KEY).clock(self.clock).transport_factory(self.taps)
            .reconnect(initial_delay=1.0, max_delay=4.0, factor=2.0, jitter=False, min_uptime=5.0)
            .circuit_breaker(failure_threshold=threshold, reset_timeout=reset)
        )
        for name, value in tuning.items():
            getattr(builder, name)(value)
        for url, options in specs:
            builder.add_server_url(url, **options)
        self.manager = builder.build()
        self.breaker_log: list[tuple[float, str, BreakerState]] = []
        self.manager.on_breaker_change(lambda url, state: self.breaker_log.append((self.clock.now(), url, state)))

    async def run(self, awaitable: Any) -> Any:
        return await self.clock.run_until_complete(awaitable)

    async def start(self) -> Fleet:
        await self.run(self.manager.connect())
        return self

    async def close(self) -> None:
        await self.run(self.manager.disconnect_all())

    def plays(self, url: str) -> list[str]:
        """Every play the server received (run, delayed or never answered)."""
        return [r.params["script"] for r in self.servers[url].requests_for("play")]


async def outcome(fleet: Fleet, awaitable: Any) -> Any:
    """The result or the exception of ``awaitable``, run on the fleet's clock."""
    try:
        return await fleet.run(awaitable)
    except Exception as exc:  # noqa: BLE001 - the test inspects it
        return exc


# -- the builder and the constructor ------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"priority": -1}, "priority must be an int >= 0, got -1"),
        ({"weight": 0}, "weight must be an int >= 1, got 0"),
        ({"connections": 0}, "connections must be an int from 1 to 255, got 0"),
        ({"connections": 1.0}, "connections must be an int from 1 to 255, got 1.0"),
    ],
)
def test_add_server_url_validates_its_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        ws_manager().add_server_url(A, **options)
    assert str(info.value) == message


def test_circuit_breaker_settings_validated_and_kept_between_calls() -> None:
    with pytest.raises(ConfigError, match="failure_threshold must be an int >= 1, got 0"):
        ws_manager().circuit_breaker(failure_threshold=0)
    with pytest.raises(ConfigError, match="reset_timeout must be a finite number of seconds > 0"):
        ws_manager().circuit_breaker(reset_timeout=-1)
    builder = ws_manager().add_server_url(A).circuit_breaker(failure_threshold=2).circuit_breaker(reset_timeout=7)
    assert builder._breaker == BreakerSettings(2, 7)
    assert ws_manager()._breaker == BreakerSettings(5, 30.0)


def test_constructor_checks_server_settings() -> None:
    with pytest.raises(ConfigError, match="settings given for 'ws://b.test', which is not among the server URLs"):
        WsManager([A], servers={B: ServerSettings()})
    with pytest.raises(ConfigError, match="settings of 'ws://a.test' must be a ServerSettings, got dict"):
        WsManager([A], servers={A: {"priority": 1}})  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match="breaker must be a BreakerSettings, got int"):
        WsManager([A], breaker=5)  # type: ignore[arg-type]


# -- failover and priorities --------------------------------------------------------------------


async def test_lowest_priority_number_takes_the_calls() -> None:
    fleet = await Fleet((A, {"priority": 1}), (B, {"priority": 0})).start()
    results = [await fleet.run(fleet.manager.execute_script_any(f"{i} + 1")) for i in range(4)]
    assert [r.url for r in results] == [B] * 4 and results[0] == PlayResult("1")
    assert fleet.plays(A) == []
    await fleet.close()


async def test_a_server_known_down_costs_no_time_only_the_next_round_trip() -> None:
    fleet = await Fleet((A, {"priority": 0}), (B, {"priority": 1}), latency={A: 0.05, B: 0.05}).start()
    fleet.servers[A].faults.refuse(None).drop()
    await fleet.clock.run_until(lambda: fleet.manager.connection_statuses()[A] is S.RECONNECTING)
    t0 = fleet.clock.now()
    result = await fleet.run(fleet.manager.execute_script_any("6 * 7"))
    assert result == PlayResult("42") and result.url == B
    assert fleet.clock.now() - t0 == pytest.approx(0.05)  # one round trip of B, no timeout waited
    assert fleet.plays(A) == []
    await fleet.close()


async def test_an_open_breaker_is_passed_over_at_once() -> None:
    fleet = await Fleet((A, {}), (B, {"priority": 1}), threshold=1, reset=60.0).start()
    fleet.servers[A].faults.answer_with("play", NO_ANSWER, times=1)
    error = await outcome(fleet, fleet.manager.execute_script(A, "1", timeout=2.0))
    assert isinstance(error, RequestTimeoutError)
    assert fleet.manager.breaker_state(A) is BS.OPEN and fleet.manager.is_connected(A)
    t0 = fleet.clock.now()
    result = await fleet.run(fleet.manager.execute_script_any("2 + 2"))
    assert result.url == B and fleet.clock.now() == t0
    assert fleet.plays(A) == ["1"]  # only the call that timed out
    refused = await outcome(fleet, fleet.manager.execute_script(A, "3"))
    assert isinstance(refused, CircuitOpenError) and isinstance(refused, NotConnectedError)
    opened_at = fleet.breaker_log[0][0]
    assert refused.url == A and refused.retry_in == pytest.approx(60.0 - (fleet.clock.now() - opened_at))
    assert "nothing was sent" in str(refused) and "last: a call timed out" in str(refused)
    await fleet.close()


async def test_a_sent_call_whose_connection_dies_is_never_sent_again() -> None:
    fleet = await Fleet((A, {}), (B, {"priority": 1})).start()
    fleet.servers[A].faults.delay(1.0, "play")
    call = asyncio.ensure_future(fleet.manager.execute_script_any("101"))
    await fleet.clock.advance_async(0.5)
    assert fleet.plays(A) == ["101"]  # sent and running
    fleet.servers[A].faults.drop()
    error = await outcome(fleet, call)
    assert isinstance(error, ConnectionLostError), error
    assert fleet.plays(A) == ["101"] and fleet.plays(B) == []  # ran (maybe) once, never again
    await fleet.close()


async def test_an_idempotent_call_is_retried_elsewhere_after_a_lost_connection() -> None:
    fleet = await Fleet((A, {}), (B, {"priority": 1})).start()
    fleet.servers[A].faults.delay(1.0, "play")
    call = asyncio.ensure_future(fleet.manager.execute_script_any("202", idempotent=True))
    await fleet.clock.advance_async(0.5)
    fleet.servers[A].faults.drop()
    result = await fleet.run(call)
    assert result.url == B and result.output == "202"
    assert fleet.plays(A) == ["202"] and fleet.plays(B) == ["202"]
    await fleet.close()


async def test_a_script_error_is_an_answer_not_a_failover() -> None:
    fleet = await Fleet((A, {}), (B, {"priority": 1}), threshold=1).start()
    error = await outcome(fleet, fleet.manager.execute_script_any("1 / 0", idempotent=True))
    assert isinstance(error, JsonRpcError) and error.code == -32010
    assert fleet.plays(B) == [] and fleet.manager.breaker_state(A) is BS.CLOSED
    await fleet.close()


async def test_when_no_server_can_take_the_call_the_error_names_each() -> None:
    fleet = await Fleet((A, {}), (B, {})).start()
    for server in fleet.servers.values():
        server.faults.refuse(None).drop()
    await fleet.clock.run_until(lambda: not fleet.manager.connected_urls())
    error = await outcome(fleet, fleet.manager.execute_script_any("1"))
    assert type(error) is NotConnectedError
    assert "none of the 2 servers could take the call, nothing was sent" in str(error)
    assert A in str(error) and B in str(error)
    await fleet.close()


async def test_every_breaker_open_gives_circuit_open_error() -> None:
    fleet = await Fleet((A, {}), (B, {}), threshold=1, reset=30.0).start()
    for server in fleet.servers.values():
        server.faults.refuse(None).drop()
    await fleet.clock.run_until(lambda: all(s is BS.OPEN for _, _, s in fleet.breaker_log[-2:]) and len(fleet.breaker_log) >= 2)
    error = await outcome(fleet, fleet.manager.execute_script_any("1"))
    assert isinstance(error, CircuitOpenError) and 0 < error.retry_in <= 30.0
    await fleet.close()


async def test_the_whole_call_is_bounded_by_its_timeout() -> None:
    fleet = await Fleet((A, {}), (B, {"priority": 1})).start()
    fleet.servers[A].faults.answer_with("play", NO_ANSWER)
    t0 = fleet.clock.now()
    error = await outcome(fleet, fleet.manager.execute_script_any("1", timeout=3.0, idempotent=True))
    assert isinstance(error, RequestTimeoutError) and fleet.clock.now() - t0 == pytest.approx(3.0)
    assert fleet.plays(B) == []  # a timeout ends the call: the budget is spent
    with pytest.raises(ConfigError, match="timeout must be a finite number of seconds > 0, got 0"):
        await fleet.manager.execute_script_any("1", timeout=0)
    with pytest.raises(TypeError, match="script must be a str"):
        await fleet.manager.execute_script_any(42)  # type: ignore[arg-type]
    await fleet.close()


# -- weights and connections ------------------------------------------------------------------


async def test_weights_split_traffic_among_equal_priorities() -> None:
    fleet = await Fleet((A, {"weight": 3}), (B, {"weight": 1}), (C, {"priority": 1, "weight": 50})).start()
    urls = [(await fleet.run(fleet.manager.execute_script_any("1"))).url for _ in range(8)]
    assert urls == [A, A, B, A] * 2
    await fleet.close()


async def test_k_connections_share_the_load_and_a_drop_fails_only_its_own_calls() -> None:
    fleet = await Fleet((A, {"connections": 4})).start()
    server = fleet.servers[A]
    assert server.connections == 4 and len(fleet.manager.get_clients(A)) == 4
    assert len({id(c._engine) for c in fleet.manager.get_clients(A)}) == 4
    for _ in range(8):  # one at a time: ties go round-robin
        await fleet.run(fleet.manager.execute_script(A, "1"))
    assert sorted(Counter(r.conn for r in server.requests_for("play")).values()) == [2, 2, 2, 2]
    server.faults.delay(1.0, "play")
    calls = [asyncio.ensure_future(fleet.manager.execute_script(A, f"{i}")) for i in range(100)]
    await fleet.clock.settle()
    assert fleet.manager.health()[A].in_flight == 100
    by_conn = Counter(r.conn for r in server.requests_for("play")[8:])
    assert sorted(by_conn.values()) == [25, 25, 25, 25]  # least loaded: an even split
    victim = fleet.taps.sockets[A][0]
    victim.server_drop()
    outcomes = await fleet.run(asyncio.gather(*calls, return_exceptions=True))
    lost = [o for o in outcomes if isinstance(o, ConnectionLostError)]
    assert len(lost) == 25 and sum(isinstance(o, PlayResult) for o in outcomes) == 75
    assert fleet.manager.is_connected(A)
    metrics = fleet.manager.metrics()
    assert set(metrics) == {A} and isinstance(metrics[A], Metrics)
    assert metrics[A].calls == sum(c.metrics.calls for c in fleet.manager.get_clients(A))
    await fleet.close()


async def test_pooled_managers_share_connections_slot_by_slot() -> None:
    fleet = await Fleet((A, {"connections": 2})).start()
    other = (ws_manager().private_key(KEY).clock(fleet.clock).transport_factory(fleet.taps)
             .reconnect(initial_delay=1.0, max_delay=4.0, factor=2.0, jitter=False, min_uptime=5.0)
             .circuit_breaker(failure_threshold=3, reset_timeout=10.0)
             .add_server_url(A, connections=2).build())
    await fleet.run(other.connect())
    assert fleet.servers[A].connections == 2  # two managers, two slots, two sockets
    assert [c._engine for c in other.get_clients(A)] == [c._engine for c in fleet.manager.get_clients(A)]
    await fleet.run(other.disconnect_all())
    assert fleet.servers[A].connections == 2 and fleet.manager.is_connected(A)
    await fleet.close()


# -- the breaker on the clock ---------------------------------------------------------------


async def test_breaker_opens_half_opens_and_closes_at_exact_times() -> None:
    fleet = await Fleet((A, {}), (B, {"priority": 1}), threshold=3, reset=10.0).start()
    await fleet.clock.advance_async(100.0)  # a stable connection: the backoff starts over
    server = fleet.servers[A]
    server.faults.refuse(None).drop()  # lost at 100; attempts at 101 and 103 are refused
    await fleet.clock.run_until(lambda: fleet.manager.breaker_state(A) is BS.OPEN)
    assert fleet.clock.now() == 103.0 and fleet.breaker_log == [(103.0, A, BS.OPEN)]
    assert fleet.manager.health()[A].consecutive_failures == 3
    await fleet.clock.run_until(lambda: fleet.manager.breaker_state(A) is BS.HALF_OPEN)
    assert fleet.clock.now() == 113.0  # opened + reset_timeout, told by a timer
    # Still down: the client's next attempt (107, 111, then 115) fails: open again at 115.
    await fleet.clock.run_until(lambda: fleet.manager.breaker_state(A) is BS.OPEN)
    assert fleet.clock.now() == 115.0
    server.faults.reset()
    await fleet.clock.run_until(lambda: fleet.manager.is_connected(A))
    assert fleet.clock.now() == 119.0 and fleet.manager.breaker_state(A) is BS.HALF_OPEN  # reconnected: probe now
    probe = await fleet.run(fleet.manager.execute_script_any("5"))
    assert probe.url == A and fleet.manager.breaker_state(A) is BS.CLOSED
    assert [(t, s) for t, _, s in fleet.breaker_log] == [
        (103.0, BS.OPEN), (113.0, BS.HALF_OPEN), (115.0, BS.OPEN), (119.0, BS.HALF_OPEN), (119.0, BS.CLOSED)
    ]
    assert fleet.manager.health()[A].consecutive_failures == 0
    await fleet.close()


async def test_breaker_opening_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="circle_ws_web")
    fleet = await Fleet((A, {}), threshold=1).start()
    fleet.servers[A].faults.refuse(None).drop()
    await fleet.clock.run_until(lambda: fleet.manager.breaker_state(A) is BS.OPEN)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [f"{A}: circuit open after 1 consecutive failures (last: connection closed (code 1006, connection dropped)); "
                        "calls to it fail at once for 10s"]
    await fleet.close()


async def test_half_open_lets_exactly_one_probe_through() -> None:
    fleet = await Fleet((A, {}), threshold=1, reset=10.0).start()
    server = fleet.servers[A]
    server.faults.answer_with("play", NO_ANSWER, times=1)
    await outcome(fleet, fleet.manager.execute_script(A, "1", timeout=1.0))
    assert fleet.manager.breaker_state(A) is BS.OPEN
    await fleet.clock.advance_async(10.0)
    server.faults.delay(0.5, "play")
    probe = asyncio.ensure_future(fleet.manager.execute_script(A, "303"))
    await fleet.clock.settle()
    second = await outcome(fleet, fleet.manager.execute_script(A, "404"))
    assert isinstance(second, CircuitOpenError) and "a probe call is in flight" in str(second)
    assert (await fleet.run(probe)).output == "303"
    assert fleet.manager.breaker_state(A) is BS.CLOSED
    assert (await fleet.run(fleet.manager.execute_script(A, "505"))).output == "505"
    assert fleet.plays(A) == ["1", "303", "505"]
    await fleet.close()


async def test_script_errors_never_open_the_breaker_timeouts_do() -> None:
    fleet = await Fleet((A, {}), threshold=2).start()
    for _ in range(5):
        assert isinstance(await outcome(fleet, fleet.manager.execute_script(A, "1 / 0")), JsonRpcError)
    assert fleet.manager.breaker_state(A) is BS.CLOSED
    fleet.servers[A].faults.answer_with("play", NO_ANSWER, times=2)
    for _ in range(2):
        assert isinstance(await outcome(fleet, fleet.manager.execute_script(A, "1", timeout=1.0)), RequestTimeoutError)
    assert fleet.manager.breaker_state(A) is BS.OPEN
    assert fleet.manager.health()[A].last_error == "a call timed out"
    await fleet.close()


# -- hedging -----------------------------------------------------------------------------------


async def test_a_hedge_goes_out_after_hedge_after_and_the_first_answer_wins() -> None:
    fleet = await Fleet((A, {}), (B, {"priority": 1}), latency={B: 0.05}).start()
    fleet.servers[A].faults.delay(1.0, "play")
    t0 = fleet.clock.now()
    result = await fleet.run(fleet.manager.execute_script_any("606", idempotent=True, hedge_after=0.2))
    assert result.url == B and fleet.clock.now() - t0 == pytest.approx(0.25)  # 0.2 + B's round trip
    assert fleet.plays(A) == ["606"] and fleet.plays(B) == ["606"]
    assert fleet.manager.health()[A].in_flight == 0  # the copy on A was cancelled
    assert not fleet.manager.get_client(A)._engine.machine.pending
    await fleet.close()


async def test_no_hedge_when_the_answer_comes_in_time() -> None:
    fleet = await Fleet((A, {}), (B, {"priority": 1}), latency={A: 0.1}).start()
    t0 = fleet.clock.now()
    result = await fleet.run(fleet.manager.execute_script_any("1", idempotent=True, hedge_after=0.2))
    assert result.url == A and fleet.clock.now() - t0 == pytest.approx(0.1)
    assert fleet.plays(B) == []
    await fleet.clock.advance_async(1.0)
    assert fleet.plays(B) == []  # the hedge timer was cancelled
    await fleet.close()


async def test_hedging_needs_an_idempotent_call() -> None:
    fleet = await Fleet((A, {})).start()
    with pytest.raises(ConfigError, match="hedge_after needs idempotent=True"):
        await fleet.manager.execute_script_any("1", hedge_after=0.2)
    with pytest.raises(ConfigError, match="hedge_after must be a finite number of seconds > 0"):
        await fleet.manager.execute_script_any("1", idempotent=True, hedge_after=0)
    await fleet.close()


# -- quorum ------------------------------------------------------------------------------------


async def test_quorum_returns_when_k_servers_answered() -> None:
    fleet = await Fleet((A, {}), (B, {}), (C, {}), latency={A: 0.1, B: 0.2, C: 0.3}).start()
    t0 = fleet.clock.now()
    got = await fleet.run(fleet.manager.execute_script_all("6 * 7", quorum=2))
    assert fleet.clock.now() - t0 == pytest.approx(0.2)
    assert list(got) == [A, B] and all(r == PlayResult("42") for r in got.values())
    assert got[A].url == A  # type: ignore[union-attr]
    assert fleet.manager.health()[C].in_flight == 0  # cancelled
    t0 = fleet.clock.now()
    every = await fleet.run(fleet.manager.execute_script_all("1"))
    assert fleet.clock.now() - t0 == pytest.approx(0.3) and list(every) == [A, B, C]
    for bad in (0, 4, True, 1.0):
        with pytest.raises(ConfigError, match="quorum must be an int from 1 to the number of servers"):
            await fleet.manager.execute_script_all("1", quorum=bad)  # type: ignore[arg-type]
    await fleet.close()


async def test_quorum_that_cannot_be_met_returns_every_outcome() -> None:
    fleet = await Fleet((A, {}), (B, {})).start()
    fleet.servers[B].faults.refuse(None).drop()
    await fleet.clock.run_until(lambda: not fleet.manager.is_connected(B))
    got = await fleet.run(fleet.manager.execute_script_all("1", quorum=2))
    assert got[A] == PlayResult("1") and isinstance(got[B], NotConnectedError)
    await fleet.close()


# -- adding and removing servers -----------------------------------------------------------------


async def test_add_server_at_run_time_is_seen_by_earlier_callbacks() -> None:
    fleet = await Fleet((A, {})).start()
    seen: list[tuple[str, ConnectionStatus]] = []
    fleet.manager.on_status_change(lambda url, status: seen.append((url, status)))
    fleet.servers[B] = FakeServer(require_auth=True, clock=fleet.clock)
    fleet.taps.network.servers[B] = fleet.servers[B]
    await fleet.manager.add_server(B, priority=0, weight=1, connections=2)
    await fleet.clock.run_until(lambda: fleet.manager.is_connected(B))
    assert (B, S.CONNECTED) in seen and fleet.manager.urls == [A, B]
    assert fleet.servers[B].connections == 2
    results = [await fleet.run(fleet.manager.execute_script_any("1")) for _ in range(4)]
    assert [r.url for r in results] == [A, B, A, B]
    with pytest.raises(ConfigError, match="'ws://b.test' is already in the manager"):
        await fleet.manager.add_server(B)
    with pytest.raises(ConfigError, match="weight must be an int >= 1"):
        await fleet.manager.add_server(C, weight=0)
    assert fleet.manager.urls == [A, B]
    await fleet.close()


async def test_a_server_added_while_down_joins_when_it_comes_up() -> None:
    fleet = await Fleet((A, {})).start()
    late = FakeServer(require_auth=True, clock=fleet.clock)
    late.faults.refuse(2)
    fleet.taps.network.servers[B] = late
    await fleet.manager.add_server(B, priority=0)
    await fleet.clock.run_until(lambda: fleet.manager.is_connected(B))
    assert late.attempts == 3 and fleet.clock.now() == pytest.approx(3.0)  # backoff 1 + 2
    await fleet.close()


async def test_remove_server_fails_its_calls_in_flight_and_only_those() -> None:
    fleet = await Fleet((A, {}), (B, {})).start()
    seen: list[tuple[str, ConnectionStatus]] = []
    fleet.manager.on_status_change(lambda url, status: seen.append((url, status)))
    for server in fleet.servers.values():
        server.faults.delay(1.0, "play")
    on_a = asyncio.ensure_future(fleet.manager.execute_script(A, "707"))
    on_b = asyncio.ensure_future(fleet.manager.execute_script(B, "808"))
    await fleet.clock.settle()
    await fleet.run(fleet.manager.remove_server(A))
    assert isinstance(await outcome(fleet, on_a), ClientClosedError)
    assert (await fleet.run(on_b)).output == "808"
    assert fleet.manager.urls == [B] and (A, S.CLOSED) in seen
    with pytest.raises(ConfigError, match="is not a configured server"):
        await fleet.manager.execute_script(A, "1")
    fleet.servers[B].faults.delay(0, "play")
    assert (await fleet.run(fleet.manager.execute_script_any("1"))).url == B
    await fleet.run(fleet.manager.remove_server(B))
    error = await outcome(fleet, fleet.manager.execute_script_any("1"))
    assert isinstance(error, NotConnectedError) and "no server is configured" in str(error)
    await fleet.close()


async def test_removing_a_server_during_an_any_call_fails_it_unless_idempotent() -> None:
    fleet = await Fleet((A, {}), (B, {"priority": 1})).start()
    fleet.servers[A].faults.delay(1.0, "play")
    plain = asyncio.ensure_future(fleet.manager.execute_script_any("909"))
    again = asyncio.ensure_future(fleet.manager.execute_script_any("1001", idempotent=True))
    await fleet.clock.settle()
    await fleet.run(fleet.manager.remove_server(A))
    assert isinstance(await outcome(fleet, plain), ClientClosedError)
    assert (await fleet.run(again)).url == B
    assert fleet.plays(B) == ["1001"]
    await fleet.close()


# -- health ------------------------------------------------------------------------------------


async def test_health_reports_percentiles_in_flight_and_failures() -> None:
    fleet = await Fleet((A, {"priority": 2, "weight": 3, "connections": 2}), latency={A: 0.01}).start()
    server = fleet.servers[A]
    for i in range(1, 101):
        server.latency = i / 1000  # round trips of 1..100 ms
        await fleet.run(fleet.manager.execute_script(A, "1"))
    health = fleet.manager.health()[A]
    assert (health.priority, health.weight, health.connections, health.connected) == (2, 3, 2, 2)
    assert health.samples == 100 and health.breaker == "closed" and health.in_flight == 0
    assert health.rtt_p50 == pytest.approx(0.050) and health.rtt_p95 == pytest.approx(0.095)
    assert health.rtt_p99 == pytest.approx(0.099)
    assert health.last_error is None and health.reconnects == 0
    for _ in range(RTT_WINDOW):
        await fleet.run(fleet.manager.execute_script(A, "1"))
    assert fleet.manager.health()[A].samples == RTT_WINDOW  # a bounded window
    server.faults.drop()
    await fleet.clock.run_until(lambda: fleet.manager.health()[A].reconnects == 2)
    health = fleet.manager.health()[A]
    assert health.consecutive_failures == 2 and health.last_error == "connection closed (code 1006, connection dropped)"  # the transport's own words
    assert health.as_dict()["url"] == A
    await fleet.close()


async def test_statuses_of_a_server_with_several_connections_are_the_best_of_theirs() -> None:
    fleet = await Fleet((A, {"connections": 2})).start()
    seen: list[ConnectionStatus] = []
    fleet.manager.on_status_change(lambda url, status: seen.append(status))
    fleet.taps.sockets[A][0].server_drop()
    await fleet.clock.run_until(lambda: all(c.is_connected for c in fleet.manager.get_clients(A)))
    assert seen == []  # one connection reconnected; the server stayed connected throughout
    assert fleet.manager.connection_statuses() == {A: S.CONNECTED}
    await fleet.close()
    assert seen == [S.CLOSED]
