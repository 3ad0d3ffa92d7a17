"""Platform adapters. Each is a thin layer from a WebSocket API and a timer API to the core's
interfaces in :mod:`circle_ws_web.transport`; :func:`current_platform` picks by platform."""

from __future__ import annotations

import sys

from ..transport import Platform

__all__ = ["current_platform", "default_factory"]


def current_platform() -> Platform:
    """The browser's WebSocket and setTimeout under Pyodide, ``websockets`` and asyncio elsewhere."""
    if sys.platform == "emscripten":
        from . import browser, page_events

        return Platform("pyodide", browser.BrowserTransport, browser.call_later, page_events.PAGE_EVENTS)
    from . import native

    return Platform("cpython", native.NativeTransport, native.call_later)


def default_factory():  # type: ignore[no-untyped-def]
    """The platform's transport factory (for wrapping it, e.g. in tests)."""
    return current_platform().transport_factory
