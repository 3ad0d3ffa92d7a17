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
* A socket closed while still connecting is *detached* at once: JS-only handlers replace ours
  (closing the socket from JS while it connects makes Chromium log a console error, so it is
  closed when it opens), the transport's proxy is destroyed and the owner hears ``on_close`` on
  the next turn. A stalled handshake (Chromium waits minutes) no longer holds a proxy.
* :func:`live_proxy_count` exposes how many of these proxies are alive, so tests can show that
  connect/disconnect cycles leave none behind.
* At most :data:`MAX_OPENING` sockets connect at once and at most :data:`MAX_SOCKETS` exist at
  once; the rest wait their turn. Chromium throttles a renderer that opens many WebSockets at
  once (exponentially in the number still connecting), which made connecting to 50 servers
  take 5 s instead of a fraction of one; and beyond 255 sockets per renderer process
  ``new WebSocket`` fails at once with nothing but a 1006 (docs/browser-limits.md).
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from typing import Any, Callable

from js import WebSocket  # type: ignore[import-not-found]
from pyodide.code import run_js  # type: ignore[import-not-found]
from pyodide.ffi import JsException, create_proxy  # type: ignore[import-not-found]
from pyodide.ffi.wrappers import clear_timeout, set_timeout  # type: ignore[import-not-found]

from ..transport import TransportEvents, TransportOptions

__all__ = [
    "MAX_OPENING",
    "MAX_SOCKETS",
    "MAX_TIMER_MS",
    "BrowserTransport",
    "call_later",
    "detached_socket_count",
    "live_proxy_count",
    "live_socket_count",
    "live_timer_count",
    "waiting_socket_count",
]

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
      return (text) => ws.send(text);
    }
    """
)

# Hands a connecting socket over to JS: closed as soon as it opens (closing it while it
# connects would log a console error), and `freed()` when its close event finally comes.
_detach = run_js(
    """
    (ws, freed) => {
      ws.onmessage = ws.onerror = null;
      ws.onopen = () => ws.close(1000);
      ws.onclose = () => {
        ws.onopen = ws.onclose = null;
        freed();
      };
    }
    """
)

_live = 0
_timers = 0

#: ``setTimeout`` keeps its delay in a signed 32-bit int: a longer one fires at once. Longer
#: timers are armed for at most this long and re-armed until the full delay has elapsed.
#: A module attribute (read at each arming) so tests can shrink it.
MAX_TIMER_MS = 2**31 - 1

#: Seconds a close may wait for the server's answer. A server that stopped reading never
#: answers, and Chromium then waits about a minute before it gives the socket up; after this
#: long the socket is handed to JS-only handlers (as a stalled handshake is), its proxy goes and
#: the owner hears the close. Its slot in Chromium's count stays taken until Chromium lets go.
CLOSE_TIMEOUT = 2.0


def live_proxy_count() -> int:
    """JS proxies created by browser transports and not destroyed yet."""
    return _live


def live_timer_count() -> int:
    """Browser timers set by :func:`call_later` that have neither fired nor been cleared."""
    return _timers


def call_later(delay: float, callback: Callable[[], None]) -> Callable[[], None]:
    """``setTimeout`` through ``pyodide.ffi.wrappers`` (which owns the once-callable proxy);
    the returned cancel function really calls ``clearTimeout`` and frees that proxy.

    A delay beyond :data:`MAX_TIMER_MS` is served in clamped steps, each re-armed from the
    clock (``time.monotonic``), so a late step never shortens or stretches the total. It
    counts as one timer in :func:`live_timer_count` throughout, and cancel clears whichever
    step is current.
    """
    global _timers
    delay = max(0.0, delay)
    deadline = time.monotonic() + delay
    pending = True
    clamped = False
    timer_id: Any = None

    def arm(ms: int) -> None:
        nonlocal timer_id, clamped
        limit = MAX_TIMER_MS
        clamped = ms > limit
        timer_id = set_timeout(fire, limit if clamped else ms)

    def fire() -> None:
        global _timers
        nonlocal pending
        if clamped:
            left = deadline - time.monotonic()
            if left > 0:  # only a step of a long timer: arm the next one
                arm(math.ceil(left * 1000))
                return
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

    arm(int(delay * 1000))
    _timers += 1
    return cancel


#: At most this many of the page's sockets are connecting at once; the others wait their turn.
#: Chromium delays every new WebSocket by rand(1-5 s) * 2**pending / 65536, ``pending``
#: being the sockets still connecting (its per-process throttle): 50 sockets opened at once
#: waited up to 5 s each. With 6 at a time the added delay stays under ~1.2 ms per socket.
MAX_OPENING = 6
#: Chromium allows this many WebSockets per renderer process (a page, its dedicated workers
#: and same-process frames together; connecting, open and closing ones all count): the next
#: ``new WebSocket`` fails at once ("Insufficient resources" on the console, a bare 1006 for
#: the script). The transport never asks for more; the others wait for a free slot.
MAX_SOCKETS = 255
_opening = 0
#: Sockets of this module that Chromium counts: created and not yet closed (its close event
#: has not come), detached ones included.
_sockets = 0
_waiting: deque[BrowserTransport] = deque()
# Detached sockets (closed by their owner while connecting) whose close event is still to
# come, and the one proxy their JS handlers call then: it exists only while there are some.
_detached = 0
_freed_proxy: Any = None


def live_socket_count() -> int:
    """The page's WebSockets opened by this module that Chromium still counts (created, close
    event not yet seen): at most :data:`MAX_SOCKETS`."""
    return _sockets


def waiting_socket_count() -> int:
    """Transports waiting for their turn to create a socket (connecting slots or the cap)."""
    return len(_waiting)


def detached_socket_count() -> int:
    """Sockets closed by their owner while connecting, whose close event is still to come."""
    return _detached


def _cap_message() -> str:
    return (
        f"Chromium allows {MAX_SOCKETS} WebSockets per page (renderer process): all in use here"
        f" ({_sockets} open or closing, {len(_waiting)} queued ahead); waiting for a free slot"
    )


def _socket_freed() -> None:
    """JS: a detached socket's close event came. Chromium has given its slot back."""
    global _detached, _freed_proxy, _sockets
    _detached -= 1
    _sockets -= 1
    if _detached == 0 and _freed_proxy is not None:
        proxy, _freed_proxy = _freed_proxy, None
        proxy.destroy()
    _pump()


def _pump() -> None:
    """Start waiting transports, in order, while a connecting slot and a socket slot are free."""
    while _waiting and _opening < MAX_OPENING and _sockets < MAX_SOCKETS:
        nxt = _waiting.popleft()
        try:
            nxt._start()
        except ConnectionError as exc:
            nxt._end_unstarted(str(exc))


class BrowserTransport:
    """Implements the core's transport interface over ``new WebSocket(url)``."""

    __slots__ = (
        "_events", "_url", "_ws", "_send", "_proxy", "_open", "_close_requested", "_state", "_close_timer",
        "__weakref__",
    )

    def __init__(self, url: str, events: TransportEvents, options: TransportOptions) -> None:
        self._events = events
        self._url = url
        self._ws: Any = None
        #: ``(text) => ws.send(text)``, made by the adapter: calling it costs one FFI crossing,
        #: where ``self._ws.send(text)`` first makes (and frees) a proxy of the bound method.
        self._send: Any = None
        self._proxy: Any = None
        self._open = False
        self._close_requested = False
        self._state = WAITING
        self._close_timer: Callable[[], None] | None = None
        if _opening < MAX_OPENING and _sockets < MAX_SOCKETS and not _waiting:
            self._start()  # raises ConnectionError for a URL the browser refuses, as before
            return
        # Everything ahead of us in the queue will take a socket slot before our turn: if that
        # fills the cap, say so now (the owner's connect error names the limit, not a timeout).
        over_cap = _sockets + len(_waiting) >= MAX_SOCKETS
        _waiting.append(self)
        if over_cap:
            try:
                events.on_error(_cap_message())
            except BaseException:  # the owner never gets this transport: it must not wait on
                _waiting.remove(self)
                self._state = DONE
                raise

    def _start(self) -> None:
        global _live, _opening, _sockets
        try:
            self._ws = WebSocket.new(self._url)
        except JsException as exc:  # e.g. SyntaxError for a URL the browser refuses
            self._state = DONE
            raise ConnectionError(f"the browser refused to open {self._url}: {exc}") from None
        _sockets += 1
        self._proxy = create_proxy(self._report)
        _live += 1
        self._send = _attach(self._ws, self._proxy)
        self._state = CONNECTING
        _opening += 1

    def _connected_or_failed(self) -> None:
        """This socket no longer counts as connecting: let the next waiting one start."""
        global _opening
        if self._state == CONNECTING:
            self._state = STARTED
            _opening -= 1
        _pump()

    def _end_unstarted(self, why: str) -> None:
        """Report the close of a socket the owner no longer hears from (on a later turn of the
        loop: the contract wants ``on_close`` last, never inside the owner's own call)."""
        self._state = DONE

        def report() -> None:
            if why:
                self._events.on_error(why)
            self._events.on_close(1006, why or "closed before the connection opened")

        call_later(0, report)

    def _report(self, kind: int, text: str, number: int) -> None:
        global _sockets
        events = self._events
        if kind == MESSAGE:
            try:
                events.on_message(text)
            except Exception:  # a bug behind on_message: no page error, and no socket left behind it
                logger.error("internal error handling a frame from %s; closing the connection", self._url,
                             exc_info=True)
                self.close(4000, "internal error")
        elif kind == OPEN:
            self._open = True
            self._connected_or_failed()
            events.on_open()
        elif kind == BINARY:
            events.on_message(bytes(number))
        elif kind == ERROR:
            events.on_error("the browser reported a WebSocket error")
        else:
            if self._close_timer is not None:
                self._close_timer()
                self._close_timer = None
            self._open = False
            self._ws = self._send = None
            self._release()
            _sockets -= 1
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

    def _hand_to_js(self) -> None:
        """Give the socket to JS-only handlers (it counts as detached until Chromium frees it)
        and drop everything of ours: no handler of ours is called again."""
        global _detached, _freed_proxy
        if _freed_proxy is None:
            _freed_proxy = create_proxy(_socket_freed)
        _detached += 1
        ws, self._ws, self._send = self._ws, None, None
        self._open = False
        _detach(ws, _freed_proxy)
        self._release()

    def _detach_connecting(self) -> None:
        """Give a still-connecting socket to JS and report its close on the next turn."""
        self._hand_to_js()
        self._connected_or_failed()  # gives up the connecting slot; the socket slot stays taken
        self._end_unstarted("")

    def send(self, text: str) -> None:
        if self._open:
            try:
                self._send(text)
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
            # Still connecting. Closing it now would make the browser log an error, and waiting
            # for the handshake would hold our proxy for as long as Chromium tries (minutes for
            # a stalled server): hand the socket to JS and report the close now.
            self._detach_connecting()
            return
        try:
            self._ws.close(code, reason[:120])
        except JsException:
            self._ws.close(1000)
        self._close_timer = call_later(CLOSE_TIMEOUT, self._close_overdue)

    def _close_overdue(self) -> None:
        """The server has not answered our close (it stopped reading): stop waiting for it."""
        self._close_timer = None
        if self._state == DONE or self._ws is None:
            return
        self._hand_to_js()
        self._state = DONE
        self._events.on_close(1006, f"the server did not answer the close within {CLOSE_TIMEOUT:g} s")
