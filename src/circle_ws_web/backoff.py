"""Reconnection delays: exponential backoff with full jitter, a cap, and an attempt limit.

Plain code: it computes delays, it never sleeps. "Full jitter" (a uniform draw in
``[0, min(cap, initial * factor**n)]``) spreads reconnecting clients so a restarted server is
not hit by all of them at once.
"""

from __future__ import annotations

import random as _random
from typing import Callable

from .errors import ConfigError

__all__ = ["Backoff"]


class Backoff:
    """Yields the delay before each reconnection attempt; :meth:`reset` after a stable connection."""

    def __init__(
        self,
        initial_delay: float = 0.5,
        max_delay: float = 30.0,
        factor: float = 2.0,
        jitter: bool = True,
        max_attempts: int | None = None,
        *,
        random: Callable[[], float] = _random.random,
    ) -> None:
        if not initial_delay >= 0:
            raise ConfigError(f"reconnect initial_delay must be >= 0, got {initial_delay!r}")
        if not max_delay >= initial_delay:
            raise ConfigError(
                f"reconnect max_delay ({max_delay!r}) must be >= initial_delay ({initial_delay!r})"
            )
        if not factor >= 1:
            raise ConfigError(f"reconnect factor must be >= 1, got {factor!r}")
        if max_attempts is not None and (not isinstance(max_attempts, int) or max_attempts < 0):
            raise ConfigError(f"reconnect max_attempts must be None or an int >= 0, got {max_attempts!r}")
        self.initial_delay = float(initial_delay)
        self.max_delay = float(max_delay)
        self.factor = float(factor)
        self.jitter = bool(jitter)
        self.max_attempts = max_attempts
        self._random = random
        self.attempts = 0

    def ceiling(self, attempt: int) -> float:
        """The largest delay for the given 0-based attempt: ``min(max, initial * factor**n)``."""
        try:
            value = self.initial_delay * self.factor**attempt
        except OverflowError:
            return self.max_delay
        return min(self.max_delay, value)

    def next_delay(self) -> float | None:
        """The delay before the next attempt, or None when ``max_attempts`` are used up."""
        if self.max_attempts is not None and self.attempts >= self.max_attempts:
            return None
        ceiling = self.ceiling(self.attempts)
        self.attempts += 1
        return self._random() * ceiling if self.jitter else ceiling

    def reset(self) -> None:
        """Start again from the initial delay (the last connection stayed up)."""
        self.attempts = 0
