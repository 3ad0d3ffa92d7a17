"""The browser's lifecycle events, for every client of the page (or worker) at once.

One small JavaScript adapter listens to ``online``/``offline`` (on ``globalThis``: pages and
workers have them), and, where there is a document, ``visibilitychange`` (to visible) and
``resume`` (reported as ``wake``), ``pagehide`` and ``pageshow``. It calls ONE Python proxy,
created when the first client subscribes and destroyed (with every listener removed) when the
last one unsubscribes, so a page whose clients are all closed holds no listener and no proxy.

What Chromium does, and what the lifecycle makes of it: ``offline`` closes open sockets at once
(1006) and stops new ones; the clients wait without counting attempts, and ``online`` makes them
try at once. A hidden tab's timers are throttled (to once a second, then once a minute) and a
frozen page's not run at all; deadlines are judged by the clock, and ``wake`` checks every
connection with a short ping. ``pagehide`` closes every socket with 1001, so the page may enter
the back-forward cache (an open WebSocket keeps it out); ``pageshow`` afterwards reconnects.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import js  # type: ignore[import-not-found]
from pyodide.code import run_js  # type: ignore[import-not-found]
from pyodide.ffi import create_proxy  # type: ignore[import-not-found]

__all__ = ["PAGE_EVENTS", "BrowserPageEvents"]

logger = logging.getLogger("circle_ws_web")

_attach = run_js(
    """
    (report) => {
      const listeners = [];
      const on = (target, type, fn) => {
        target.addEventListener(type, fn);
        listeners.push([target, type, fn]);
      };
      on(globalThis, "online", () => report("online"));
      on(globalThis, "offline", () => report("offline"));
      if (typeof document !== "undefined") {
        on(document, "visibilitychange", () => {
          if (document.visibilityState === "visible") report("wake");
        });
        on(document, "resume", () => report("wake"));
        on(globalThis, "pagehide", () => report("pagehide"));
        on(globalThis, "pageshow", () => report("pageshow"));
      }
      return () => {
        for (const [target, type, fn] of listeners) target.removeEventListener(type, fn);
        listeners.length = 0;
      };
    }
    """
)


class BrowserPageEvents:
    """Implements :class:`circle_ws_web.transport.PageEvents` over the page's own events."""

    def __init__(self) -> None:
        self._subscribers: list[Callable[[str], None]] = []
        self._proxy: Any = None
        self._detach: Any = None

    @property
    def listening(self) -> bool:
        """True while the JS listeners (and their one proxy) exist."""
        return self._proxy is not None

    def subscribe(self, callback: Callable[[str], None]) -> Callable[[], None]:
        self._subscribers.append(callback)
        if self._proxy is None:
            self._proxy = create_proxy(self._report)
            self._detach = _attach(self._proxy)
        if not js.navigator.onLine:
            callback("offline")

        def unsubscribe() -> None:
            try:
                self._subscribers.remove(callback)
            except ValueError:
                return
            if not self._subscribers and self._proxy is not None:
                detach, self._detach = self._detach, None
                proxy, self._proxy = self._proxy, None
                detach()
                proxy.destroy()

        return unsubscribe

    def _report(self, name: str) -> None:
        for callback in list(self._subscribers):
            try:
                callback(name)
            except Exception:  # one client's trouble must not stop the others hearing it
                logger.exception("page event %r: a client failed to handle it", name)


#: The one source for the whole page (or worker).
PAGE_EVENTS = BrowserPageEvents()
