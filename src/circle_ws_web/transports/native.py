"""CPython transport: the ``websockets`` asyncio client behind the core's callback interface.

Frame sizes, the same as in a browser up to a memory-safety limit: every text frame up to
:data:`HARD_LIMIT_FACTOR` x ``max_message_size`` bytes (256 MiB at the default 16 MiB) is
delivered, and the core decides: a frame over ``max_message_size`` fails only the call whose id
it finds in the frame's head or tail (``ProtocolError``), counts in ``metrics.bad_frames``, and
the connection stays up. A frame over the hard limit is not read past it: ``websockets`` closes
the connection with 1009 (message too big) as soon as a frame header announces it, the calls in
flight fail with ``ConnectionLostError``, and the client reconnects as after any drop.

Works with ``websockets`` 13.0 and later (the first with the ``websockets.asyncio`` client).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from typing import Any, Callable

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State
from websockets.version import version as _websockets_version

OPEN = State.OPEN

#: Frames up to this multiple of ``max_message_size`` reach the core, which fails just the one
#: call (as a browser, which has no limit of its own, does); larger ones close the connection.
#: Why a limit at all: websockets buffers a whole frame before delivering it, and then decodes it
#: to str, so a runaway or hostile server could otherwise make the client hold any amount of
#: memory (a few times the frame: bytes, str, the text being decoded). 16x keeps every plausible
#: "answer somewhat too big" on the browser's behaviour, and bounds a connection's frame memory
#: to a few 256 MiB at the default. Beyond it, what is lost is what a drop costs: the calls in flight.
HARD_LIMIT_FACTOR = 16

#: Seconds a close may take before the socket is dropped: for websockets' closing handshake, and
#: for a peer that stopped reading, which leaves the writer (and websockets' own close) waiting on
#: a full socket buffer that never drains.
CLOSE_TIMEOUT = 2.0

# None ("never pause reading") is accepted from websockets 14.1; before, a high-water mark far
# above what the reader, which hands each frame to the core at once, ever lets pile up.
_MAJOR_MINOR = tuple(int(part) for part in _websockets_version.split(".")[:2] if part.isdigit())
_UNBOUNDED_QUEUE: int | None = None if _MAJOR_MINOR >= (14, 1) else 2**20

try:  # websockets >= 15 picks a proxy from the environment for every connection
    from websockets.proxy import get_proxy as _get_proxy
    from websockets.uri import parse_uri as _parse_uri
except ImportError:  # older: no proxy support, nothing to look up
    _get_proxy = None  # type: ignore[assignment]


@functools.lru_cache(maxsize=256)
def _proxy_for(url: str) -> str | None:
    """The proxy websockets would use for ``url``, looked up once per URL: the lookup scans the
    whole environment (urllib's getproxies), a third of the client's CPU per connection."""
    return _get_proxy(_parse_uri(url))  # type: ignore[misc]

from ..transport import TransportEvents, TransportOptions

__all__ = ["HARD_LIMIT_FACTOR", "NativeTransport", "call_later"]

logger = logging.getLogger("circle_ws_web")


class NativeTransport:
    """Connects at construction; one reader task, and one writer task for what cannot go at once.

    ``send`` is synchronous like the browser's: the frame goes straight to the socket's buffer
    (the transport's own, like the browser's ``bufferedAmount``); only while the socket's
    writing is paused (flow control) are frames queued for the writer task, in order. Keep-alive is the client's (application-level
    ``ping``), so the library's own ping frames are off, as they are in a browser.
    """

    def __init__(self, url: str, events: TransportEvents, options: TransportOptions) -> None:
        self._url = url
        self._events = events
        self._options = options
        self._ws: ClientConnection | None = None
        self._outbox: deque[str] = deque()
        self._wakeup: asyncio.Event = asyncio.Event()
        self._close_request: tuple[int, str] | None = None
        self._close_deadline: asyncio.TimerHandle | None = None
        self._task = asyncio.get_running_loop().create_task(self._run())

    def send(self, text: str) -> None:
        if self._close_request is not None:
            return
        ws = self._ws
        if ws is not None and ws.transport.is_closing():
            return  # reset or closing: writing now only makes asyncio warn per frame on stderr
        if ws is not None and not self._outbox and not ws.paused and ws.protocol.state is OPEN:
            # Straight onto the socket, as a browser does: no hop through the writer task,
            # which cost a loop iteration per call (~10 us of a ~70 us round trip).
            try:
                ws.protocol.send_text(text.encode())
                ws.send_data()
                return
            except Exception as exc:  # noqa: BLE001 - the socket is going: the close event tells
                logger.debug("direct send failed on %s: %s", self._url, _describe(exc))
                return
        self._outbox.append(text)
        self._wakeup.set()

    def close(self, code: int = 1000, reason: str = "") -> None:
        if self._close_request is not None:
            return
        self._close_request = (code, reason)
        self._outbox.clear()
        self._wakeup.set()
        ws = self._ws
        if ws is None:
            self._task.cancel()  # still opening: abandon the handshake
        elif not self._task.done():
            self._close_deadline = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, self._drop, ws)

    def _drop(self, ws: ClientConnection) -> None:
        """The close did not finish in time (a peer that reads nothing): drop the socket."""
        logger.debug("closing %s took over %g s: dropping the socket", self._url, CLOSE_TIMEOUT)
        ws.transport.abort()

    async def _run(self) -> None:
        events = self._events
        code, reason = 1006, ""
        try:
            try:
                self._ws = ws = await connect(
                    self._url,
                    **_proxy_option(self._url),
                    max_size=HARD_LIMIT_FACTOR * self._options.max_message_size,
                    ping_interval=None,
                    compression=None,
                    open_timeout=None,
                    close_timeout=2,
                    max_queue=_UNBOUNDED_QUEUE,
                )
            except asyncio.CancelledError:
                code, reason = 1006, "closed before the connection opened"
                return
            except Exception as exc:
                code, reason = 1006, _describe(exc)
                events.on_error(reason)
                return
            events.on_open()
            writer = asyncio.get_running_loop().create_task(self._write(ws))
            failure = None
            try:
                async for message in ws:
                    events.on_message(message)
            except ConnectionClosed:
                pass
            except Exception as exc:  # a bug behind on_message: never leave the socket open behind it
                logger.error("internal error handling a frame from %s; dropping the connection", self._url,
                             exc_info=True)
                failure = f"internal error: {_describe(exc)}"
                ws.transport.abort()
            finally:
                writer.cancel()
            # The protocol's own fields (the connection's close_code/close_reason need websockets
            # 14.1): the close frame received, else the one sent (1009 for a frame over the hard
            # limit, which the peer may never answer), else none: 1006.
            frame = ws.protocol.close_rcvd or ws.protocol.close_sent
            code = frame.code if frame is not None else 1006
            reason = failure or (frame.reason if frame is not None else "")
        except asyncio.CancelledError:
            pass
        finally:
            if self._close_deadline is not None:
                self._close_deadline.cancel()
            events.on_close(code, reason)

    async def _write(self, ws: ClientConnection) -> None:
        outbox, wakeup = self._outbox, self._wakeup
        try:
            while True:
                while outbox:
                    await ws.send(outbox.popleft())
                if self._close_request is not None:
                    await ws.close(*self._close_request)
                    return
                wakeup.clear()
                await wakeup.wait()
        except ConnectionClosed:
            pass
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # pragma: no cover - defensive: report, then drop the socket
            logger.warning("websocket write failed on %s: %s", self._url, _describe(exc))
            ws.transport.abort()


def _proxy_option(url: str) -> dict[str, Any]:
    if _get_proxy is None:
        return {}
    try:
        return {"proxy": _proxy_for(url)}
    except Exception:  # noqa: BLE001 - an odd URL or environment: let websockets decide
        return {}


def call_later(delay: float, callback: Callable[[], None]) -> Callable[[], None]:
    """A timer on the running asyncio loop; returns its cancel function."""
    return asyncio.get_running_loop().call_later(delay, callback).cancel


def _describe(exc: BaseException) -> str:
    text = str(exc) or exc.__class__.__name__
    return f"{exc.__class__.__name__}: {text}" if text != exc.__class__.__name__ else text
