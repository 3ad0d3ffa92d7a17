"""The circuit breaker (circle_ws_web.breaker): plain code, time passed in, so every rule is
checked at exact moments."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from circle_ws_web.breaker import (
    DEFAULT_FAILURE_THRESHOLD,
    DEFAULT_RESET_TIMEOUT,
    BreakerSettings,
    BreakerState,
    CircuitBreaker,
)
from circle_ws_web.errors import ConfigError

B = BreakerState


def opened(threshold: int = 3, reset: float = 10.0, at: float = 0.0) -> CircuitBreaker:
    breaker = CircuitBreaker(BreakerSettings(threshold, reset), name="ws://a")
    for _ in range(threshold):
        breaker.failure(at, "lost")
    assert breaker.state is B.OPEN
    return breaker


def test_defaults_are_documented_ones() -> None:
    settings = BreakerSettings()
    assert (settings.failure_threshold, settings.reset_timeout) == (5, 30.0)
    assert (DEFAULT_FAILURE_THRESHOLD, DEFAULT_RESET_TIMEOUT) == (5, 30.0)
    assert str(B.HALF_OPEN) == "half-open" and B.OPEN == "open"


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"failure_threshold": 0}, "failure_threshold must be an int >= 1, got 0"),
        ({"failure_threshold": True}, "failure_threshold must be an int >= 1, got True"),
        ({"failure_threshold": 2.5}, "failure_threshold must be an int >= 1, got 2.5"),
        ({"reset_timeout": 0}, "reset_timeout must be a finite number of seconds > 0, got 0"),
        ({"reset_timeout": float("inf")}, "got inf"),
        ({"reset_timeout": "30"}, "got '30'"),
    ],
)
def test_settings_are_validated(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        BreakerSettings(**kwargs)  # type: ignore[arg-type]


def test_opens_at_the_threshold_not_before(caplog: pytest.LogCaptureFixture) -> None:
    breaker = CircuitBreaker(BreakerSettings(3, 10.0), name="ws://a")
    caplog.set_level(logging.INFO, logger="circle_ws_web")
    assert breaker.failure(1.0, "lost") is None
    assert breaker.failure(2.0, "lost") is None
    assert breaker.allow(2.0) == 0  # still closed: calls go
    assert breaker.failure(3.0, "timed out") is B.OPEN
    assert breaker.opened_at == 3.0 and breaker.opens == 1
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "ws://a: circuit open after 3 consecutive failures (last: timed out)" in warnings[0].getMessage()


def test_a_success_starts_the_count_over() -> None:
    breaker = CircuitBreaker(BreakerSettings(3, 10.0))
    breaker.failure(0.0)
    breaker.failure(0.0)
    assert breaker.success(0.0) is None and breaker.consecutive_failures == 0
    breaker.failure(0.0)
    breaker.failure(0.0)
    assert breaker.state is B.CLOSED


def test_open_refuses_until_reset_timeout_then_lets_one_probe_through() -> None:
    breaker = opened(reset=10.0, at=5.0)
    assert breaker.allow(5.0) is None
    assert breaker.retry_in(7.5) == 7.5  # opened at 5, probe at 15
    assert breaker.allow(14.999) is None and breaker.state is B.OPEN
    assert breaker.poll(15.0) is B.HALF_OPEN  # exactly opened_at + reset_timeout
    probe = breaker.allow(15.0)
    assert probe is not None and probe > 0
    assert breaker.allow(15.0) is None  # one probe at a time
    assert not breaker.would_allow(15.0)
    assert breaker.success(15.1) is B.CLOSED
    assert breaker.allow(15.1) == 0 and breaker.consecutive_failures == 0


def test_a_failed_probe_opens_again_from_that_moment() -> None:
    breaker = opened(reset=10.0, at=0.0)
    assert breaker.allow(10.0)
    assert breaker.failure(11.0, "the probe timed out") is B.OPEN
    assert breaker.opened_at == 11.0 and breaker.opens == 2
    assert breaker.allow(20.9) is None
    assert breaker.poll(21.0) is B.HALF_OPEN


def test_failures_while_open_do_not_move_the_probe_time() -> None:
    breaker = opened(reset=10.0, at=0.0)
    assert breaker.failure(4.0, "attempt failed") is None
    assert breaker.opened_at == 0.0 and breaker.consecutive_failures == 4
    assert breaker.poll(10.0) is B.HALF_OPEN


def test_a_probe_that_told_nothing_frees_the_way() -> None:
    breaker = opened(reset=1.0)
    probe = breaker.allow(1.0)
    assert breaker.allow(1.0) is None
    breaker.release(0)  # a normal call's ticket frees nothing
    assert breaker.allow(1.0) is None
    breaker.release(probe)
    assert breaker.allow(1.0) is not None


def test_a_stale_probe_ticket_does_not_free_a_new_probe() -> None:
    breaker = opened(reset=1.0)
    old = breaker.allow(1.0)
    breaker.failure(1.0)  # open again
    breaker.poll(2.0)
    new = breaker.allow(2.0)
    assert new is not None and new != old
    breaker.release(old)
    assert breaker.allow(2.0) is None  # the new probe is still out


def test_probe_now_half_opens_an_open_breaker_only() -> None:
    breaker = opened(reset=30.0)
    assert breaker.probe_now(1.0, "reconnected") is B.HALF_OPEN
    assert breaker.allow(1.0)
    closed = CircuitBreaker()
    assert closed.probe_now(1.0, "reconnected") is None and closed.state is B.CLOSED


def test_an_answer_while_open_does_not_close_it() -> None:
    breaker = opened()
    assert breaker.success(1.0) is None and breaker.state is B.OPEN


EVENTS = st.lists(
    st.tuples(st.sampled_from(["allow", "success", "failure", "release", "poll"]), st.floats(0, 5)), max_size=60
)


@given(EVENTS)
def test_random_sequences_keep_the_rules(events: list[tuple[str, float]]) -> None:
    """Whatever happens: a closed breaker always lets calls through, an open one never does
    before its time, and at most one probe is out."""
    breaker = CircuitBreaker(BreakerSettings(3, 2.0))
    now = 0.0
    probes_out: set[int] = set()
    for kind, step in events:
        now += step
        before = breaker.state
        if kind == "allow":
            ticket = breaker.allow(now)
            if before is B.CLOSED:
                assert ticket == 0
            if before is B.OPEN and breaker.opened_at is not None and now < breaker.opened_at + 2.0:
                assert ticket is None
            if ticket:
                assert not probes_out, "two probes out at once"
                probes_out.add(ticket)
        elif kind == "success":
            breaker.success(now)
            probes_out.clear()
            assert breaker.state is not B.HALF_OPEN
        elif kind == "failure":
            breaker.failure(now)
            probes_out.clear()
            if before is B.HALF_OPEN:
                assert breaker.state is B.OPEN and breaker.opened_at == now
        elif kind == "release":
            for ticket in list(probes_out):
                breaker.release(ticket)
            probes_out.clear()
        else:
            breaker.poll(now)
        if breaker.state is B.CLOSED:
            assert breaker.consecutive_failures < 3
