"""A circuit breaker per server: plain code, the time passed in, no asyncio.

Why: a server that is down, or up but failing, should cost a caller nothing. Its client keeps
trying to reconnect in the background (every client maintains itself), but a call sent its
way would wait for a timeout or fail late; with the breaker open it fails at once with
:class:`~circle_ws_web.errors.CircuitOpenError` and the manager moves on to another server.

States: ``closed`` (calls go through) -> ``open`` after ``failure_threshold`` consecutive
failures (calls refused) -> ``half-open`` once ``reset_timeout`` seconds have passed, when one
probe call is let through -> ``closed`` if it succeeds, ``open`` again if it fails. What
counts as a failure is the caller's choice (the manager: a failed connection attempt, a lost
connection, a call that timed out); an answer of any kind, even a script's error, is a
success: the server is there and working.

Like the lifecycle, the breaker never reads a clock: every method takes ``now``, so the same
code runs on asyncio, on the browser's loop and on a test's virtual clock.
"""

from __future__ import annotations

import enum
import logging
import math
from dataclasses import dataclass

from .errors import ConfigError

__all__ = [
    "DEFAULT_FAILURE_THRESHOLD",
    "DEFAULT_RESET_TIMEOUT",
    "BreakerSettings",
    "BreakerState",
    "CircuitBreaker",
]

logger = logging.getLogger("circle_ws_web")

#: Consecutive failures that open the breaker, by default.
DEFAULT_FAILURE_THRESHOLD = 5
#: Seconds an open breaker refuses calls before letting a probe through, by default.
DEFAULT_RESET_TIMEOUT = 30.0


class BreakerState(str, enum.Enum):
    """Where a server's breaker is; reads as its word (``str(state) == "half-open"``)."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    """``failure_threshold`` consecutive failures open the breaker; after ``reset_timeout``
    seconds one probe call may go through."""

    failure_threshold: int = DEFAULT_FAILURE_THRESHOLD
    reset_timeout: float = DEFAULT_RESET_TIMEOUT

    def __post_init__(self) -> None:
        n = self.failure_threshold
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"failure_threshold must be an int >= 1, got {n!r}")
        t = self.reset_timeout
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not (0 < t < math.inf):
            raise ConfigError(f"reset_timeout must be a finite number of seconds > 0, got {t!r}")


class CircuitBreaker:
    """One server's breaker. ``name`` (its URL) only labels the log lines.

    A call asks :meth:`allow` first; it answers a *ticket* (``0`` for a normal call, a
    positive number for the one probe of a half-open breaker) or ``None`` (refused). The call
    then reports :meth:`success` or :meth:`failure`, or, when it ended without telling anything
    about the server (never sent, cancelled), :meth:`release` with its ticket so that a probe
    that told nothing frees the way for the next one.
    """

    __slots__ = ("name", "settings", "state", "consecutive_failures", "opened_at", "last_failure",
                 "opens", "_probe", "_tickets")

    def __init__(self, settings: BreakerSettings | None = None, name: str = "") -> None:
        self.name = name
        self.settings = settings or BreakerSettings()
        self.state = BreakerState.CLOSED
        #: Failures since the last success (kept counting while open, for health reports).
        self.consecutive_failures = 0
        #: When the breaker last opened (None: never).
        self.opened_at: float | None = None
        #: What the last failure was, as reported.
        self.last_failure: str | None = None
        #: How many times it opened.
        self.opens = 0
        self._probe = 0  # ticket of the probe in flight (0: none)
        self._tickets = 0

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self.name or '?'} {self.state.value} failures={self.consecutive_failures}>"

    # -- time ----------------------------------------------------------------------------

    def poll(self, now: float) -> BreakerState | None:
        """Move ``open`` to ``half-open`` when ``reset_timeout`` has passed; returns the new
        state if it changed, else None."""
        if self.state is BreakerState.OPEN and self.opened_at is not None:
            if now >= self.opened_at + self.settings.reset_timeout:
                self.state = BreakerState.HALF_OPEN
                self._probe = 0
                logger.info("%s: circuit half-open: the next call is a probe", self.name)
                return BreakerState.HALF_OPEN
        return None

    def probe_now(self, now: float, why: str) -> BreakerState | None:
        """Something outside the calls says the server is back (its client reconnected):
        an open breaker goes half-open at once. Returns the new state if it changed."""
        if self.state is not BreakerState.OPEN:
            return None
        self.state = BreakerState.HALF_OPEN
        self._probe = 0
        logger.info("%s: circuit half-open (%s): the next call is a probe", self.name, why)
        return BreakerState.HALF_OPEN

    def retry_in(self, now: float) -> float:
        """Seconds until an open breaker lets a probe through (0 when it would now)."""
        if self.state is not BreakerState.OPEN or self.opened_at is None:
            return 0.0
        return max(0.0, self.opened_at + self.settings.reset_timeout - now)

    def would_allow(self, now: float) -> bool:
        """Whether :meth:`allow` would let a call through now (nothing is taken)."""
        self.poll(now)
        if self.state is BreakerState.CLOSED:
            return True
        return self.state is BreakerState.HALF_OPEN and not self._probe

    # -- calls ---------------------------------------------------------------------------

    def allow(self, now: float) -> int | None:
        """A ticket for one call, or None when the breaker refuses it. In ``half-open`` the
        first caller gets the probe (a positive ticket); the others are refused until it ends."""
        self.poll(now)
        state = self.state
        if state is BreakerState.CLOSED:
            return 0
        if state is BreakerState.HALF_OPEN and not self._probe:
            self._tickets += 1
            self._probe = self._tickets
            return self._probe
        return None

    def release(self, ticket: int | None) -> None:
        """The call with ``ticket`` ended telling nothing about the server: if it was the
        probe, the next call may probe instead."""
        if ticket and ticket == self._probe:
            self._probe = 0

    def success(self, now: float) -> BreakerState | None:
        """An answer came back: the failure count starts over; a half-open breaker closes.
        Returns the new state if it changed."""
        self.consecutive_failures = 0
        if self.state is BreakerState.CLOSED:
            return None
        if self.state is BreakerState.HALF_OPEN:
            self.state = BreakerState.CLOSED
            self._probe = 0
            logger.info("%s: circuit closed: the probe call succeeded", self.name)
            return BreakerState.CLOSED
        return None  # open: an answer to a call sent before it opened; wait for the probe

    def failure(self, now: float, why: str = "failure") -> BreakerState | None:
        """A failure of the server (not of a script). Opens a closed breaker at the threshold
        and a half-open one at once. Returns the new state if it changed."""
        self.consecutive_failures += 1
        self.last_failure = why
        state = self.state
        if state is BreakerState.HALF_OPEN:
            self._open(now, f"the probe failed ({why})")
            return BreakerState.OPEN
        if state is BreakerState.CLOSED and self.consecutive_failures >= self.settings.failure_threshold:
            self._open(now, f"{self.consecutive_failures} consecutive failures (last: {why})")
            return BreakerState.OPEN
        return None  # open already: the time to the probe does not move

    def _open(self, now: float, why: str) -> None:
        self.state = BreakerState.OPEN
        self.opened_at = now
        self.opens += 1
        self._probe = 0
        logger.warning(
            "%s: circuit open after %s; calls to it fail at once for %gs",
            self.name,
            why,
            self.settings.reset_timeout,
        )
