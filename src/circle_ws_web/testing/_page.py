"""A stand-in for the browser's lifecycle events, so page behaviour is testable anywhere."""

from __future__ import annotations

from typing import Callable

__all__ = ["FakePageEvents"]


class FakePageEvents:
    """Plays the browser's page events (:class:`circle_ws_web.transport.PageEvents`) on demand.

    Pass it as ``page_events=`` to a client (or ``.page_events()`` to the builder), then call
    :meth:`offline`, :meth:`online`, :meth:`wake`, :meth:`pagehide`, :meth:`pageshow` where the
    browser would fire them::

        page = FakePageEvents()
        client = CircleWsClient("ws://fake", transport_factory=server, clock=clock, page_events=page)
        await clock.run_until_complete(client.connect())
        page.offline()      # no attempt is made while offline, and none is counted
        page.online()       # every waiting client tries at once
    """

    def __init__(self, *, online: bool = True) -> None:
        self.is_online = online
        self._subscribers: list[Callable[[str], None]] = []

    @property
    def listeners(self) -> int:
        """Clients subscribed now (0 once they are all closed: nothing left listening)."""
        return len(self._subscribers)

    def subscribe(self, callback: Callable[[str], None]) -> Callable[[], None]:
        self._subscribers.append(callback)
        if not self.is_online:
            callback("offline")

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    def emit(self, name: str) -> None:
        for callback in list(self._subscribers):
            callback(name)

    def offline(self) -> None:
        self.is_online = False
        self.emit("offline")

    def online(self) -> None:
        self.is_online = True
        self.emit("online")

    def wake(self) -> None:
        """The page became visible again, or resumed from a freeze."""
        self.emit("wake")

    def pagehide(self) -> None:
        self.emit("pagehide")

    def pageshow(self) -> None:
        """Shown again (from the back-forward cache, after :meth:`pagehide`)."""
        self.emit("pageshow")
