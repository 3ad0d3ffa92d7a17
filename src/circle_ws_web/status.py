"""Where a client's connection stands, as users see it.

Which status may follow which, and on what event, is the lifecycle's business: see
:data:`circle_ws_web.lifecycle.TRANSITIONS`.
"""

from __future__ import annotations

import enum
from typing import Any

__all__ = ["ConnectionStatus"]


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
