"""ws_manager(): a fluent builder that validates everything up front and builds a WsManager."""

from __future__ import annotations

import enum
from dataclasses import replace
from typing import Any, Final

from .auth import PrivateKey
from .breaker import BreakerSettings
from .config import ClientOptions, validate_url
from .errors import ConfigError
from .manager import WsManager
from .routing import ServerSettings
from .transport import Clock, PageEvents, TransportFactory

__all__ = ["WsManagerBuilder", "ws_manager"]


class _Keep(enum.Enum):
    """The type of :data:`_KEEP`, the default of every tuning argument: "not given, keep the
    current value". Not None, because None is a real value (``max_attempts=None``: for ever)."""

    KEEP = "keep"

    def __repr__(self) -> str:  # what help() and the signature show
        return "<unchanged>"


_KEEP: Final = _Keep.KEEP


class WsManagerBuilder:
    """Collects a private key, server URLs and tuning; every method validates at once, so a
    mistake is reported where it was made, before any connection is tried."""

    def __init__(self) -> None:
        self._key: PrivateKey | None = None
        self._urls: list[str] = []
        self._servers: dict[str, ServerSettings] = {}
        self._breaker = BreakerSettings()
        self._options = ClientOptions()
        self._factory: TransportFactory | None = None
        self._clock: Clock | None = None
        self._page_events: PageEvents | None = None

    def __repr__(self) -> str:
        key = "none" if self._key is None else f"{self._key.public_key_hex[:18]}…"
        return f"<WsManagerBuilder urls={self._urls!r} public_key={key}>"

    def private_key(self, key: str) -> WsManagerBuilder:
        """Authenticate with this secp256k1 key (64 hex chars, optional 0x). Without one, no
        authentication is attempted."""
        self._key = PrivateKey(key)
        return self

    def add_server_url(self, url: str, priority: int = 0, weight: int = 1, connections: int = 1) -> WsManagerBuilder:
        """Add a server. ``priority``: lower numbers first, higher ones are fallbacks for
        ``execute_script_any``; ``weight``: its share of the calls among servers of equal
        priority; ``connections``: authenticated sockets kept to it, calls going to the least
        loaded (docs/fleet.md). ``ConfigError`` naming the problem for a bad value."""
        url = validate_url(url)
        settings = ServerSettings(priority=priority, weight=weight, connections=connections)
        if url in self._urls:
            raise ConfigError(f"server URL {url!r} was added twice")
        self._urls.append(url)
        self._servers[url] = settings
        return self

    def add_server_urls(self, *urls: str) -> WsManagerBuilder:
        for url in urls:
            self.add_server_url(url)
        return self

    def _tune(self, **changes: Any) -> WsManagerBuilder:
        given = {name: value for name, value in changes.items() if value is not _KEEP}
        self._options = replace(self._options, **given)  # ClientOptions validates the whole set
        return self

    # Each tuning method changes only the arguments it is given: a later call never undoes an
    # earlier one (``.reconnect(initial_delay=2).reconnect(max_attempts=3)`` keeps both). The
    # defaults documented below are those of a fresh builder (ClientOptions' own).

    def keepalive(self, interval: float | _Keep = _KEEP, timeout: float | _Keep = _KEEP) -> WsManagerBuilder:
        """Send ``ping`` after ``interval`` s of silence (default 20.0); drop and rebuild the
        connection if nothing answers within ``timeout`` s (default 10.0)."""
        return self._tune(keepalive_interval=interval, keepalive_timeout=timeout)

    def reconnect(
        self,
        initial_delay: float | _Keep = _KEEP,
        max_delay: float | _Keep = _KEEP,
        factor: float | _Keep = _KEEP,
        jitter: bool | _Keep = _KEEP,
        max_attempts: int | None | _Keep = _KEEP,
        min_uptime: float | _Keep = _KEEP,
    ) -> WsManagerBuilder:
        """Backoff between reconnection attempts. Defaults: ``initial_delay=0.5``,
        ``max_delay=30.0``, ``factor=2.0``, ``jitter=True``, ``max_attempts=None`` (for ever;
        passing None sets that, it does not mean "leave as is"), ``min_uptime=5.0`` (seconds a
        connection must stay up for the attempt counter to start over)."""
        return self._tune(
            reconnect_initial_delay=initial_delay,
            reconnect_max_delay=max_delay,
            reconnect_factor=factor,
            reconnect_jitter=jitter,
            reconnect_max_attempts=max_attempts,
            reconnect_min_uptime=min_uptime,
        )

    def request_timeout(self, seconds: float | _Keep = _KEEP) -> WsManagerBuilder:
        """Seconds a call may take before ``RequestTimeoutError`` (default 30.0)."""
        return self._tune(request_timeout=seconds)

    def connect_timeout(self, seconds: float | _Keep = _KEEP) -> WsManagerBuilder:
        """Seconds a connection attempt, handshake and authentication included, may take
        (default 10.0)."""
        return self._tune(connect_timeout=seconds)

    def max_message_size(self, size: int | _Keep = _KEEP) -> WsManagerBuilder:
        """Largest frame accepted from a server, in bytes (default 16 MiB)."""
        return self._tune(max_message_size=size)

    def circuit_breaker(
        self, failure_threshold: int | _Keep = _KEEP, reset_timeout: float | _Keep = _KEEP
    ) -> WsManagerBuilder:
        """Every server's circuit breaker: open after ``failure_threshold`` consecutive
        failures (default 5: failed connection attempts, lost connections, timed-out calls),
        calls to it then failing at once with ``CircuitOpenError``; one probe call after
        ``reset_timeout`` seconds (default 30.0), or as soon as its client reconnects."""
        old = self._breaker
        self._breaker = BreakerSettings(  # validates, ConfigError naming the problem
            old.failure_threshold if isinstance(failure_threshold, _Keep) else failure_threshold,
            old.reset_timeout if isinstance(reset_timeout, _Keep) else reset_timeout,
        )
        return self

    def transport_factory(self, factory: TransportFactory) -> WsManagerBuilder:
        """Use another transport (advanced; the platform's own is picked by default)."""
        self._factory = factory
        return self

    def lifecycle(self, enabled: bool = True) -> WsManagerBuilder:
        """In a browser, follow the page's lifecycle: wait while offline and reconnect at once on
        ``online``; check connections when the page becomes visible or resumes; close on
        ``pagehide`` (for the back-forward cache) and reconnect on ``pageshow``. On by default;
        ``lifecycle(False)`` turns all of it off. No effect in CPython."""
        return self._tune(lifecycle=enabled)

    def pool(self, enabled: bool = True) -> WsManagerBuilder:
        """Share connections with other managers and clients of the same URL, key and settings
        on the same event loop (on by default); ``pool(False)``: connections of its own."""
        return self._tune(pool=enabled)

    def page_events(self, source: PageEvents) -> WsManagerBuilder:
        """Take the page's lifecycle events from ``source`` (for tests:
        :class:`circle_ws_web.testing.FakePageEvents`); the browser's own by default."""
        self._page_events = source
        return self

    def clock(self, clock: Clock) -> WsManagerBuilder:
        """Run every client on this clock (``now()`` and ``call_later()``): for tests, a
        :class:`circle_ws_web.testing.VirtualClock`. The platform's own clock by default."""
        self._clock = clock
        return self

    def build(self) -> WsManager:
        if not self._urls:
            raise ConfigError("no server URL: call add_server_url() at least once before build()")
        return WsManager(
            self._urls, self._key, self._options, self._factory, self._clock, self._page_events,
            servers=self._servers, breaker=self._breaker,
        )


def ws_manager() -> WsManagerBuilder:
    """Start building a :class:`WsManager`."""
    return WsManagerBuilder()
