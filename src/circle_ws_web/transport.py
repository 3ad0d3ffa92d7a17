"""The one small interface every transport implements, shaped like the browser's WebSocket.

A transport is created already connecting (like ``new WebSocket(url)``) and reports to a
:class:`TransportEvents` sink. Guarantees a transport must keep, on every platform:

* ``on_open`` at most once, before any ``on_message``;
* ``on_close`` exactly once, always last (also when opening failed: then without ``on_open``);
* ``on_error`` is informational: it says why the socket is failing (followed by ``on_close``)
  or why it waits (the browser's socket cap: then ``on_open`` or ``on_close`` follows); it may
  come during the factory call, before the transport is returned;
* ``send`` and ``close`` never block and never raise for a closed socket (the close event
  tells the owner instead); ``close`` is idempotent.

This module is core: transports import it, it imports no transport.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

__all__ = [
    "CallLater",
    "Clock",
    "PAGE_EVENTS",
    "PageEvents",
    "Platform",
    "Transport",
    "TransportEvents",
    "TransportFactory",
    "TransportOptions",
]


class TransportEvents(Protocol):
    def on_open(self) -> None: ...

    def on_message(self, data: str | bytes) -> None: ...

    def on_error(self, message: str) -> None: ...

    def on_close(self, code: int, reason: str) -> None: ...


class Transport(Protocol):
    def send(self, text: str) -> None: ...

    def close(self, code: int = 1000, reason: str = "") -> None: ...


@dataclass(frozen=True, slots=True)
class TransportOptions:
    #: Frames larger than this are still delivered (the core rejects them with a typed error);
    #: transports that can enforce a hard limit use a multiple of it against memory exhaustion.
    max_message_size: int = 16 * 2**20


TransportFactory = Callable[[str, TransportEvents, TransportOptions], Transport]

#: ``call_later(delay_seconds, callback) -> cancel``: one timer on the platform's clock.
#: Cancelling must really clear it (the browser's WebLoop only marks cancelled timers, which
#: then linger until their deadline), so the client takes its timers from the platform.
CallLater = Callable[[float, Callable[[], None]], Callable[[], None]]


class Clock(Protocol):
    """Time as a client sees it: a monotonic ``now()`` in seconds and one-shot timers.

    The lifecycle judges every deadline by ``now()`` (elapsed time), never by counting timer
    ticks, so a timer that fires late (a throttled browser tab) cannot kill a healthy
    connection or keep a dead one. :class:`circle_ws_web.testing.VirtualClock` implements it
    for tests; the platforms' own clock is ``time.monotonic`` plus their ``call_later``.
    """

    def now(self) -> float: ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> Callable[[], None]: ...


#: What a page-events source reports: ``offline``/``online`` (the network), ``wake`` (the page
#: became visible again), ``pagehide`` (also a freeze), ``pageshow`` (also a resume).
PAGE_EVENTS = ("offline", "online", "wake", "pagehide", "pageshow")


class PageEvents(Protocol):
    """Where the browser's lifecycle events come from (one source for every client).

    ``subscribe(callback)`` calls ``callback(name)`` with a name of :data:`PAGE_EVENTS` on each
    event, at once with ``"offline"`` if the network is already gone, and returns the function
    that unsubscribes. CPython has no such source; :class:`circle_ws_web.testing.FakePageEvents`
    plays one in tests.
    """

    def subscribe(self, callback: Callable[[str], None]) -> Callable[[], None]: ...


@dataclass(frozen=True, slots=True)
class Platform:
    """What a client needs from where it runs: sockets, timers and (in a browser) page events."""

    name: str
    transport_factory: TransportFactory
    call_later: CallLater
    page_events: PageEvents | None = None
