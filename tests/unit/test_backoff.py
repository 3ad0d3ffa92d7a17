"""Backoff policy: exponential growth, cap, full jitter, attempt limit, reset."""

import pytest

from circle_ws_web.backoff import Backoff
from circle_ws_web.errors import ConfigError


def test_exponential_without_jitter_is_capped():
    b = Backoff(0.5, 4.0, 2.0, jitter=False)
    assert [b.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert b.attempts == 6


def test_full_jitter_draws_uniformly_below_the_ceiling():
    draws = iter([0.0, 0.5, 1.0, 0.25])
    b = Backoff(1.0, 100.0, 3.0, jitter=True, random=lambda: next(draws))
    assert [b.next_delay() for _ in range(4)] == [0.0, 1.5, 9.0, 6.75]


def test_real_jitter_stays_in_range_and_varies():
    b = Backoff(1.0, 8.0, 2.0)
    delays = [b.next_delay() for _ in range(200)]
    assert all(0 <= d <= 8.0 for d in delays)
    assert len(set(delays)) > 150


def test_max_attempts_then_none_and_reset_starts_over():
    b = Backoff(1.0, 10.0, 2.0, jitter=False, max_attempts=2)
    assert b.next_delay() == 1.0 and b.next_delay() == 2.0
    assert b.next_delay() is None
    b.reset()
    assert b.next_delay() == 1.0


def test_huge_attempt_counts_do_not_overflow():
    b = Backoff(1.0, 30.0, 10.0, jitter=False)
    assert b.ceiling(10_000) == 30.0


@pytest.mark.parametrize(
    "kwargs",
    [dict(initial_delay=-1), dict(initial_delay=2, max_delay=1), dict(factor=0.5), dict(max_attempts=-1)],
)
def test_bad_settings_raise_config_error(kwargs):
    with pytest.raises(ConfigError):
        Backoff(**kwargs)
