"""The browser's lifecycle events, for every client of the page (or worker) at once.

One small JavaScript adapter listens to ``online``/``offline`` (on ``globalThis``: pages and
workers have them) and, where there is a document, to ``visibilitychange`` (to visible:
reported as ``wake``), ``freeze`` and ``pagehide`` (reported as ``pagehide``), ``resume`` and
``pageshow`` (reported as ``pageshow``). It calls ONE Python proxy, created when the first client
subscribes and destroyed (with every listener and the poll below removed) when the last one
unsubscribes, so a page whose clients are all closed holds no listener and no proxy.

What Chromium 156 really does (tests/browser/test_page_lifecycle_browser.py shows each of these;
docs/browser-lifecycle.md has the evidence), and why the adapter reports what it reports:

* Offline (DevTools' network emulation, what Playwright's ``set_offline`` uses): an open
  WebSocket is NOT closed; its frames are held both ways and delivered when the network is back.
  New sockets fail at once (``net::ERR_INTERNET_DISCONNECTED``). ``offline``/``online`` fire on
  the page, and ``navigator.onLine`` follows.
* In a dedicated Worker (JupyterLite's kernel runs in one) ``navigator.onLine`` follows too, but
  no ``online``/``offline`` event fires. So in a Worker the adapter also reads
  ``navigator.onLine`` every :data:`ONLINE_POLL_MS` (in JavaScript: no Python runs unless it
  changed) and reports the change.
* A hidden tab's timers are throttled (about one run a second). Becoming visible again is
  reported as ``wake``: each connection is checked with a short ping.
* A frozen page (``freeze``, then ``resume``) loses its open sockets: Chromium closes them with
  1001 when the page resumes, and the page sees an error, a close (1006) and the console error
  "WebSocket connection to ... failed: Page entered Back-Forward Cache". So ``freeze`` is
  reported as ``pagehide`` (the clients close their sockets themselves, cleanly, and wait) and
  ``resume`` as ``pageshow`` (they reconnect at once).
* ``pagehide`` before the back-forward cache: the clients close their sockets (a page may close
  with 1000 or 3000-4999 only); ``pageshow`` after it reconnects them.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import js  # type: ignore[import-not-found]
from pyodide.code import run_js  # type: ignore[import-not-found]
from pyodide.ffi import create_proxy  # type: ignore[import-not-found]

__all__ = ["ONLINE_POLL_MS", "PAGE_EVENTS", "BrowserPageEvents"]

logger = logging.getLogger("circle_ws_web")

#: In a Worker (no ``online``/``offline`` events there), how often ``navigator.onLine`` is read.
ONLINE_POLL_MS = 250

_attach = run_js(
    """
    (report, pollMs) => {
      const listeners = [];
      const on = (target, type, fn) => {
        target.addEventListener(type, fn);
        listeners.push([target, type, fn]);
      };
      // What was last reported about the network: the poll reports only a change.
      let online = navigator.onLine;
      const network = (now) => {
        if (now !== online) {
          online = now;
          report(now ? "online" : "offline");
        }
      };
      on(globalThis, "online", () => network(true));
      on(globalThis, "offline", () => network(false));
      let poll = null;
      if (typeof document !== "undefined") {
        on(document, "visibilitychange", () => {
          if (document.visibilityState === "visible") report("wake");
        });
        on(document, "freeze", () => report("pagehide"));
        on(document, "resume", () => report("pageshow"));
        on(globalThis, "pagehide", () => report("pagehide"));
        on(globalThis, "pageshow", () => report("pageshow"));
      } else {
        poll = setInterval(() => network(navigator.onLine), pollMs);
      }
      return () => {
        for (const [target, type, fn] of listeners) target.removeEventListener(type, fn);
        listeners.length = 0;
        if (poll !== null) clearInterval(poll);
        poll = null;
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
            self._detach = _attach(self._proxy, ONLINE_POLL_MS)
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
