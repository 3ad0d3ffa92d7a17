"""Browser transport: the page's (or worker's) own ``WebSocket``, reached through ``pyodide.ffi``.

Why it looks like this:

* One small JavaScript adapter (built once) attaches the socket's four handlers and calls a
  single Python proxy with plain values: ``(kind, text, number)``. A message therefore costs
  one FFI crossing with a string argument, instead of a ``MessageEvent`` proxy plus an
  attribute lookup.
* That one proxy is the only JS proxy a transport creates. The adapter detaches every handler
  before it reports the close event, so nothing can call the proxy afterwards; the proxy is
  destroyed right after that last event. This is what keeps the page free of "borrowed proxy
  was automatically destroyed" and "Object has already been destroyed" errors.
* :func:`live_proxy_count` exposes how many of these proxies are alive, so tests can show that
  connect/disconnect cycles leave none behind.
* At most :data:`MAX_OPENING` sockets connect at once; the rest wait their turn. Chromium
  throttles a page that opens many WebSockets at once (exponentially in the number still
  connecting), which made connecting to 50 servers take 5 s instead of a fraction of one.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any, Callable

from js import WebSocket  # type: ignore[import-not-found]
from pyodide.code import run_js  # type: ignore[import-not-found]
from pyodide.ffi import JsException, create_proxy  # type: ignore[import-not-found]
from pyodide.ffi.wrappers import clear_timeout, set_timeout  # type: ignore[import-not-found]

from ..transport import TransportEvents, TransportOptions

__all__ = ["BrowserTransport", "call_later", "live_proxy_count", "live_timer_count"]

logger = logging.getLogger("circle_ws_web")

OPEN, MESSAGE, ERROR, CLOSE, BINARY = 0, 1, 2, 3, 4
# Transport states: waiting for a turn to connect, connecting, opened or closing, closed.
WAITING, CONNECTING, STARTED, DONE = 0, 1, 2, 3

_attach = run_js(
    """
    (ws, report) => {
      ws.binaryType = "arraybuffer";
      ws.onopen = () => report(0, "", 0);
      ws.onmessage = (e) => typeof e.data === "string"
        ? report(1, e.data, 0)
        : report(4, "", e.data.byteLength);
      ws.onerror = () => report(2, "", 0);
      ws.onclose = (e) => {
        ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
        report(3, e.reason, e.code);
      };
    }
    """
)

_live = 0
_timers = 0


def live_proxy_count() -> int:
    """JS proxies created by browser transports and not destroyed yet."""
    return _live


def live_timer_count() -> int:
    """Browser timers set by :func:`call_later` that have neither fired nor been cleared."""
    return _timers


def call_later(delay: float, callback: Callable[[], None]) -> Callable[[], None]:
    """``setTimeout`` through ``pyodide.ffi.wrappers`` (which owns the once-callable proxy);
    the returned cancel function really calls ``clearTimeout`` and frees that proxy."""
    global _timers
    pending = True

    def fire() -> None:
        global _timers
        nonlocal pending
        pending = False
        _timers -= 1
        try:
            callback()
        except Exception:  # an exception escaping here would leak the wrapper's bookkeeping
            logger.exception("timer callback failed")

    def cancel() -> None:
        global _timers
        nonlocal pending
        if pending:
            pending = False
            _timers -= 1
            clear_timeout(timer_id)

    timer_id = set_timeout(fire, max(0, int(delay * 1000)))
    _timers += 1
    return cancel


#: At most this many of the page's sockets are connecting at once; the others wait their turn.
#: Chromium delays every new WebSocket by rand(1-5 s) * 2**pending / 65536, ``pending``
#: being the sockets still connecting (its per-process throttle): 50 sockets opened at once
#: waited up to 5 s each. With 6 at a time the added delay stays under ~1.2 ms per socket.
MAX_OPENING = 6
_opening = 0
_waiting: deque[BrowserTransport] = deque()


class BrowserTransport:
    """Implements the core's transport interface over ``new WebSocket(url)``."""

    __slots__ = (
        "_events", "_url", "_ws", "_proxy", "_open", "_close_requested", "_state", "__weakref__"
    )

    def __init__(self, url: str, events: TransportEvents, options: TransportOptions) -> None:
        self._events = events
        self._url = url
        self._ws: Any = None
        self._proxy: Any = None
        self._open = False
        self._close_requested = False
        self._state = WAITING
        if _opening < MAX_OPENING and not _waiting:
            self._start()  # raises ConnectionError for a URL the browser refuses, as before
        else:
            _waiting.append(self)

    def _start(self) -> None:
        global _live, _opening
        try:
            self._ws = WebSocket.new(self._url)
        except JsException as exc:  # e.g. SyntaxError for a URL the browser refuses
            self._state = DONE
            raise ConnectionError(f"the browser refused to open {self._url}: {exc}") from None
        self._proxy = create_proxy(self._report)
        _live += 1
        _attach(self._ws, self._proxy)
        self._state = CONNECTING
        _opening += 1

    def _connected_or_failed(self) -> None:
        """This socket no longer counts as connecting: let the next waiting one start."""
        global _opening
        if self._state == CONNECTING:
            self._state = STARTED
            _opening -= 1
        while _waiting and _opening < MAX_OPENING:
            nxt = _waiting.popleft()
            try:
                nxt._start()
            except ConnectionError as exc:
                nxt._end_unstarted(str(exc))

    def _end_unstarted(self, why: str) -> None:
        """Report the close of a socket that never started (on the next turn of the loop)."""
        self._state = DONE

        def report() -> None:
            if why:
                self._events.on_error(why)
            self._events.on_close(1006, why or "closed before the connection opened")

        call_later(0, report)

    def _report(self, kind: int, text: str, number: int) -> None:
        events = self._events
        if kind == MESSAGE:
            events.on_message(text)
        elif kind == OPEN:
            self._open = True
            self._connected_or_failed()
            if self._close_requested:  # close() was called while connecting
                self._ws.close(1000)
            else:
                events.on_open()
        elif kind == BINARY:
            events.on_message(bytes(number))
        elif kind == ERROR:
            events.on_error("the browser reported a WebSocket error")
        else:
            self._open = False
            self._ws = None
            self._release()
            self._connected_or_failed()
            self._state = DONE
            events.on_close(number, text)

    def _release(self) -> None:
        """Destroy our one proxy, after the adapter has detached every handler."""
        global _live
        proxy, self._proxy = self._proxy, None
        if proxy is not None:
            proxy.destroy()
            _live -= 1

    def send(self, text: str) -> None:
        if self._open:
            try:
                self._ws.send(text)
            except JsException as exc:
                logger.warning("WebSocket send failed: %s", exc)

    def close(self, code: int = 1000, reason: str = "") -> None:
        if self._close_requested or self._state == DONE:
            return
        self._close_requested = True
        if self._state == WAITING:  # never started: nothing to close but our turn
            _waiting.remove(self)
            self._end_unstarted("")
            return
        if not self._open:
            # Closing a socket that is still connecting makes the browser log an error; let it
            # open (or fail) and close it then. Our owner has already stopped listening, so it
            # gives up its turn now: a handshake that never completes must not hold a slot.
            self._connected_or_failed()
            return
        try:
            self._ws.close(code, reason[:120])
        except JsException:
            self._ws.close(1000)
