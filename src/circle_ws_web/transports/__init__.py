"""Platform transports. Each is a thin adapter from a WebSocket API to the core's
:class:`~circle_ws_web.transport.TransportEvents`; :func:`default_factory` picks by platform."""

from __future__ import annotations

import sys

from ..transport import TransportFactory

__all__ = ["default_factory"]


def default_factory() -> TransportFactory:
    """The browser's WebSocket under Pyodide, the ``websockets`` library elsewhere."""
    if sys.platform == "emscripten":
        from .browser import BrowserTransport

        return BrowserTransport
    from .native import NativeTransport

    return NativeTransport
