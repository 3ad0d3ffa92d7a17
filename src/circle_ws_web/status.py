"""Connection status and the state machine that says which changes are legal.

Plain code (no I/O): the client asks :class:`StatusMachine` to move, and an illegal move is a
bug that raises ``RuntimeError`` instead of silently confusing callers watching the status.
"""

from __future__ import annotations

import enum
from typing import Any, Callable

__all__ = ["ConnectionStatus", "StatusMachine", "TRANSITIONS"]


class ConnectionStatus(str, enum.Enum):
    """Where a client's connection stands. ``CONNECTED`` means ready for calls.

    A status is a ``str`` equal to its word (``ConnectionStatus.CONNECTED == "connected"``) and
    reads exactly like that string wherever a user sees it: ``str``, f-strings, ``format`` and
    ``%s`` give ``connected``; ``repr`` and notebook output (IPython's pretty printer) give
    ``'connected'``. So ``manager.connection_statuses()`` prints the same as a dict of the
    words, ``{'ws://…': 'connected'}``, rather than ``<ConnectionStatus.CONNECTED: …>``, and
    that repr is a Python literal equal to the status. ``type(status)`` still tells the two
    apart, and ``status is ConnectionStatus.CONNECTED`` remains the precise test.
    """

    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    AUTHENTICATING = "authenticating"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"

    def __str__(self) -> str:
        return self.value

    def __format__(self, format_spec: str) -> str:
        return format(self.value, format_spec)

    def __repr__(self) -> str:
        return repr(self.value)


def _repr_pretty_(self: ConnectionStatus, printer: Any, cycle: bool) -> None:
    """IPython / Jupyter output: the same as ``repr``, whatever printer IPython would pick for a
    ``str`` subclass."""
    printer.text(repr(self.value))


# Attached after the class: Enum reserves _sunder_ names inside a class body.
setattr(ConnectionStatus, "_repr_pretty_", _repr_pretty_)


S = ConnectionStatus

#: Every legal move. ``CLOSED`` is terminal; any other state may be closed.
TRANSITIONS: dict[ConnectionStatus, frozenset[ConnectionStatus]] = {
    S.DISCONNECTED: frozenset({S.CONNECTING, S.RECONNECTING, S.CLOSED}),
    S.CONNECTING: frozenset({S.AUTHENTICATING, S.CONNECTED, S.DISCONNECTED, S.RECONNECTING, S.CLOSED}),
    S.AUTHENTICATING: frozenset({S.CONNECTED, S.DISCONNECTED, S.RECONNECTING, S.CLOSED}),
    S.CONNECTED: frozenset({S.RECONNECTING, S.DISCONNECTED, S.CLOSED}),
    S.RECONNECTING: frozenset({S.CONNECTING, S.DISCONNECTED, S.CLOSED}),
    S.CLOSED: frozenset(),
}

Listener = Callable[[ConnectionStatus], None]


class StatusMachine:
    """Holds the current status, enforces :data:`TRANSITIONS`, and tells listeners."""

    def __init__(self, on_error: Callable[[BaseException], None] | None = None) -> None:
        self._status = S.DISCONNECTED
        self._listeners: list[Listener] = []
        self._on_error = on_error

    @property
    def status(self) -> ConnectionStatus:
        return self._status

    def move(self, new: ConnectionStatus) -> bool:
        """Change to ``new``; returns False when already there, raises on an illegal move."""
        old = self._status
        if new is old:
            return False
        if new not in TRANSITIONS[old]:
            raise RuntimeError(f"illegal status change {old.value} -> {new.value}")
        self._status = new
        for listener in list(self._listeners):
            try:
                listener(new)
            except Exception as exc:  # a user's callback must not break the client
                if self._on_error is not None:
                    self._on_error(exc)
        return True

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(status)`` on every change; returns a function that unsubscribes."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            try:
                self._listeners.remove(listener)
            except ValueError:
                pass

        return unsubscribe
