"""An in-memory circle server that is a transport factory, with scriptable faults.

Why in memory: a user's code must be tested against a server that drops, stalls, lies and
answers late, in CPython and in Pyodide alike, without sockets (a browser page cannot open a
listening socket) and on a virtual clock. :class:`FakeServer` is a
:data:`~circle_ws_web.transport.TransportFactory`: every connection attempt of a client gets a
:class:`FakeSocket`, the client end of an in-memory WebSocket, that keeps the transport
contract of :mod:`circle_ws_web.transport` exactly.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import math
import re
import secrets
from collections import deque
from typing import Any, Awaitable, Callable, Iterable, NamedTuple, Union

from ..auth import verify_signature
from ..errors import JsonRpcError
from ..rpc import (
    AUTH_FAILED,
    AUTH_REQUIRED,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    SCRIPT_ERROR,
)
from ..transport import Clock, TransportEvents, TransportOptions
from ._clock import LoopClock, note_activity
from ._eval import ScriptError, safe_eval

__all__ = [
    "Close",
    "FakeNetwork",
    "FakeServer",
    "FakeSocket",
    "Faults",
    "GARBAGE",
    "NO_ANSWER",
    "Request",
]

logger = logging.getLogger("circle_ws_web.testing")

PUBKEY_RE = re.compile(r"04[0-9a-f]{128}")
SIGNATURE_RE = re.compile(r"[0-9a-f]{130}")
CLOSE_ABNORMAL = 1006
#: Slack when comparing a frame's due time with the clock (timers are set by delay, and
#: ``now + (due - now)`` may round below ``due``).
_EPSILON = 1e-9

#: What :meth:`Faults.garbage` sends by default: frames a client must survive. The first five
#: are bad frames (counted in ``metrics.bad_frames``), the sixth answers an id nobody asked
#: for (``metrics.unknown_ids``).
GARBAGE: tuple[str | bytes, ...] = (
    "not json",
    '{"jsonrpc":"2.0","id":"1"}',
    "[1,2,3]",
    '{"jsonrpc":"1.0","result":1,"id":"1"}',
    b"\x00\x01binary",
    '{"jsonrpc":"2.0","result":1,"id":"no-such-id"}',
)


class _NoAnswer:
    def __repr__(self) -> str:
        return "NO_ANSWER"


#: For :meth:`Faults.answer_with`: receive the request, never answer it.
NO_ANSWER: Any = _NoAnswer()


class Request(NamedTuple):
    """A well-formed request the server received (answered or not)."""

    conn: int
    method: str
    params: Any
    id: Any


class Close(NamedTuple):
    """How a connection ended: ``by`` is ``"client"`` or ``"server"``."""

    conn: int
    code: int
    reason: str
    by: str


#: ``play`` handler: script -> output (or an awaitable of it). Raise ``JsonRpcError`` for a
#: specific error; any other exception becomes a -32010 script error.
PlayHandler = Callable[[str], Union[str, Awaitable[str]]]
#: Extra method: params -> result (or an awaitable of it); may raise ``JsonRpcError``.
MethodHandler = Callable[[dict[str, Any]], Any]

_CONNECTING, _OPEN, _CLOSED = "connecting", "open", "closed"
_EV_OPEN, _EV_MESSAGE, _EV_ERROR, _EV_CLOSE = range(4)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_decode = json.JSONDecoder(parse_constant=_reject_constant).decode
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def _error(rid: Any, code: int, message: str, data: Any = None) -> str:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return _encode({"jsonrpc": "2.0", "error": error, "id": rid})


def _times(times: int | None) -> float:
    if times is None:
        return math.inf
    if isinstance(times, bool) or not isinstance(times, int) or times < 0:
        raise ValueError(f"times must be an int >= 0 or None (forever), got {times!r}")
    return float(times)


class FakeSocket:
    """The client end of one in-memory WebSocket: the ``Transport`` a client gets.

    Events reach the client on a later loop turn (``loop.call_soon``), or ``latency`` seconds
    later on the server's clock, one per turn and in order: ``on_open`` at most once and before
    any ``on_message``, ``on_close`` exactly once and last. ``send`` and ``close`` never raise;
    ``close`` is idempotent.
    """

    def __init__(self, server: FakeServer, conn_id: int, url: str, events: TransportEvents) -> None:
        self.server = server
        self.id = conn_id
        self.url = url
        self.events = events
        self.loop = asyncio.get_running_loop()
        #: Server side: connecting (handshake not done), open, or closed.
        self.state = _CONNECTING
        #: Client side: True once ``on_open`` was delivered.
        self.opened = False
        #: Client side: True once ``on_close`` was delivered.
        self.finished = False
        self.pubkey: str | None = None
        self.nonces: dict[str, tuple[str, float]] = {}
        self.silent_until = -math.inf
        self._queue: deque[tuple[float, int, Any, Any]] = deque()
        self._last_due = -math.inf
        self._pump_cancel: Callable[[], None] | None = None
        self._ending = False  # an on_close is queued: nothing may be queued after it
        self._timers: dict[int, Callable[[], None]] = {}
        self._tasks: set[asyncio.Future[Any]] = set()
        self._next_timer = 0

    def __repr__(self) -> str:
        return f"<FakeSocket #{self.id} {self.state} {self.url}>"

    # -- the Transport interface (called by the client) -----------------------------------------

    def send(self, text: str) -> None:
        if self._ending or self.state == _CLOSED:
            return
        if not self.opened:
            self.server.violations.append(f"connection {self.id}: send() before on_open: {text[:80]!r}")
            return
        self.loop.call_soon(self._arrive, text)

    def close(self, code: int = 1000, reason: str = "") -> None:
        if self._ending or self.finished:
            return
        if not (code == 1000 or 3000 <= code <= 4999):
            self.server.violations.append(
                f"connection {self.id}: close code {code} (a browser refuses all but 1000 and 3000-4999)"
            )
        was_open = self.opened
        self._server_gone(Close(self.id, code, reason, "client"))
        self._discard_wire()
        if was_open:
            self._push(_EV_CLOSE, code, reason)  # the server echoes the close frame
        else:  # closing a socket that is still connecting fails it, as in a browser
            self._push(_EV_ERROR, "WebSocket closed before the connection was established")
            self._push(_EV_CLOSE, CLOSE_ABNORMAL, "")

    # -- delivery to the client -----------------------------------------------------------------

    def _discard_wire(self) -> None:
        """Forget every frame not yet delivered (and the pump that would deliver it)."""
        self._queue.clear()
        self._last_due = -math.inf
        if self._pump_cancel is not None:
            self._pump_cancel()
            self._pump_cancel = None

    def _push(self, kind: int, a: Any = None, b: Any = None) -> None:
        if self._ending or self.finished:
            return
        if kind == _EV_CLOSE:
            self._ending = True
        due = max(self.server.clock.now() + self.server.latency, self._last_due)
        self._last_due = due
        self._queue.append((due, kind, a, b))
        note_activity()
        if self._pump_cancel is None:
            self._schedule_pump()

    def _schedule_pump(self) -> None:
        due = self._queue[0][0]
        delay = due - self.server.clock.now()
        if delay <= _EPSILON:
            self._pump_cancel = self.loop.call_soon(self._pump).cancel
        else:
            self._pump_cancel = self.server.clock.call_later(delay, self._pump)

    def _pump(self) -> None:
        self._pump_cancel = None
        if not self._queue:
            return
        if self._queue[0][0] > self.server.clock.now() + _EPSILON:
            self._schedule_pump()  # woken early (a timer rounded down): wait for the head
            return
        _, kind, a, b = self._queue.popleft()
        if self._queue:
            self._schedule_pump()
        note_activity()
        events = self.events
        try:
            if kind == _EV_OPEN:
                self.opened = True
                events.on_open()
            elif kind == _EV_MESSAGE:
                events.on_message(a)
            elif kind == _EV_ERROR:
                events.on_error(a)
            else:
                self.finished = True
                self._queue.clear()
                if self._pump_cancel is not None:
                    self._pump_cancel()
                    self._pump_cancel = None
                self.server._forget(self)
                events.on_close(a, b)
        except Exception as exc:  # the client's bug must not break the socket's contract
            logger.exception("connection %d: the client's event callback raised", self.id)
            self.server.callback_errors.append(exc)

    # -- server side ----------------------------------------------------------------------------

    def accept(self) -> None:
        self.state = _OPEN
        self.server._count_open(+1)
        self._push(_EV_OPEN)

    def server_send(self, frame: str | bytes, *, loud: bool = False) -> None:
        """Put a frame on the wire now (dropped when closed, or while silent unless ``loud``)."""
        if self.state != _OPEN:
            return
        if not loud and self.server.clock.now() < self.silent_until:
            return
        self._push(_EV_MESSAGE, frame)

    def later(self, delay: float, action: Callable[[], None]) -> None:
        """Run ``action`` after ``delay`` on the server's clock, unless the connection ends."""
        self._next_timer += 1
        key = self._next_timer

        def fire() -> None:
            self._timers.pop(key, None)
            if self.state == _OPEN:
                action()

        self._timers[key] = self.server.clock.call_later(delay, fire)

    def track(self, future: asyncio.Future[Any]) -> None:
        self._tasks.add(future)
        future.add_done_callback(self._tasks.discard)

    def _arrive(self, text: str) -> None:
        if self.state == _OPEN:
            note_activity()
            self.server._receive(self, text)

    def _server_gone(self, close: Close) -> None:
        """The server stops serving this connection (timers and handlers cancelled)."""
        if self.state == _OPEN:
            self.server._count_open(-1)
        if self.state != _CLOSED:
            self.server.closes.append(close)
        self.state = _CLOSED
        self.nonces.clear()
        for cancel in list(self._timers.values()):
            cancel()
        self._timers.clear()
        for task in list(self._tasks):
            task.cancel()

    def server_close(self, code: int, reason: str) -> None:
        """A clean close from the server: frames already on the wire arrive first."""
        if self.state == _CLOSED:
            return
        self._server_gone(Close(self.id, code, reason, "server"))
        self._push(_EV_CLOSE, code, reason)

    def server_drop(self, why: str = "connection dropped") -> None:
        """An abrupt end (no close frame): frames still on the wire are lost."""
        if self._ending or self.finished:
            return
        self._server_gone(Close(self.id, CLOSE_ABNORMAL, why, "server"))
        self._discard_wire()
        self._push(_EV_ERROR, why)
        self._push(_EV_CLOSE, CLOSE_ABNORMAL, "")


class Faults:
    """What the server will do wrong. Every method returns ``self``, so faults chain.

    Connection faults (``refuse``, ``stall_handshake``) apply to the next ``times`` connection
    attempts (``None``: every attempt until :meth:`reset`). Faults on live connections
    (``silence``, ``drop``, ``close``, ``garbage``) act on the connections open right now.
    """

    def __init__(self, server: FakeServer) -> None:
        self._server = server
        self.reset()

    def reset(self) -> Faults:
        """Forget every fault: the server behaves again (silenced connections speak again)."""
        self.refusals = 0.0
        self.stalls = 0.0
        self.auth_failures = 0.0
        self.delays: dict[str | None, float] = {}
        self.overrides: dict[str, tuple[Any, float]] = {}
        for sock in self._server._sockets.values():
            sock.silent_until = -math.inf
        return self

    def refuse(self, times: int | None = 1) -> Faults:
        """Refuse the next ``times`` connection attempts: the client sees ``on_error`` and
        ``on_close(1006)``, like a port where nothing listens.

        ``server.faults.refuse(None)`` keeps the server "down" until ``faults.reset()``.
        """
        self.refusals = _times(times)
        return self

    def stall_handshake(self, times: int | None = 1) -> Faults:
        """Accept the next ``times`` connection attempts but never complete the handshake:
        the socket never opens (the client's ``connect_timeout`` must end the attempt)."""
        self.stalls = _times(times)
        return self

    def silence(self, seconds: float | None = None) -> Faults:
        """The connections open now stop answering, for ``seconds`` (None: for good; 0: speak
        again). Their sockets stay open and requests still arrive (``server.requests``); the
        answers are never sent. New connections are not affected: the half-dead connection
        keep-alive exists for."""
        now = self._server.clock.now()
        until = math.inf if seconds is None else now + max(0.0, seconds)
        for sock in self._server._open():
            sock.silent_until = until
        return self

    def drop(self) -> Faults:
        """Every open connection ends at once, abruptly (code 1006, no close frame); answers
        still on the wire are lost. What a crashed server or a lost network looks like."""
        for sock in self._server._open():
            sock.server_drop()
        return self

    def close(self, code: int = 1001, reason: str = "going away") -> Faults:
        """Every open connection is closed cleanly by the server with ``code`` and ``reason``,
        after the frames already on the wire."""
        for sock in self._server._open():
            sock.server_close(code, reason)
        return self

    def delay(self, seconds: float, method: str | None = None) -> Faults:
        """Answer ``method`` (None: every method) ``seconds`` late, until ``delay(0, method)``.
        Later requests may be answered first, as on a real server."""
        if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"seconds must be a finite number >= 0, got {seconds!r}")
        if seconds:
            self.delays[method] = float(seconds)
        else:
            self.delays.pop(method, None)
        return self

    def garbage(self, frames: Iterable[str | bytes] = GARBAGE) -> Faults:
        """Send raw ``frames`` (text or binary) to every open connection now, in order."""
        frames = list(frames)
        for sock in self._server._open():
            for frame in frames:
                sock.server_send(frame, loud=True)
        return self

    def fail_auth(self, times: int | None = 1) -> Faults:
        """The next ``times`` ``authenticate`` calls answer -32002, whatever the signature."""
        self.auth_failures = _times(times)
        return self

    def answer_with(self, method: str, answer: Any, *, times: int | None = None) -> Faults:
        """Answer ``method`` with ``answer`` instead of running it (``times`` times).

        ``answer`` is a result (any JSON value), a :class:`~circle_ws_web.errors.JsonRpcError`
        (sent as the error), :data:`NO_ANSWER` (never answered), or a callable
        ``params -> result`` (may be async, may raise ``JsonRpcError``).
        """
        self.overrides[method] = (answer, _times(times))
        return self


class FakeServer:
    """An in-memory circle server speaking the real protocol; a ``TransportFactory``.

    ``CircleWsClient(url, key, transport_factory=server)`` connects to it (any URL). Methods:
    ``fetch_nonce`` (a random 128-bit nonce bound to the pubkey and the connection, single
    use, expiring after ``nonce_ttl``), ``authenticate`` (real signature check, -32002 on
    failure), ``play`` (``play=`` handler; default :func:`safe_eval` arithmetic), ``whoami``,
    ``ping``; ``methods=`` adds more. ``require_auth=True``: ``play`` answers -32001 before
    authentication. Faults: :attr:`faults`.

    ``clock``: pass the client's :class:`VirtualClock`; without one the server keeps real time
    on the running loop. ``latency``: seconds each frame takes to reach the client.
    """

    def __init__(
        self,
        *,
        require_auth: bool = False,
        play: PlayHandler | None = None,
        methods: dict[str, MethodHandler] | None = None,
        clock: Clock | None = None,
        latency: float = 0.0,
        nonce_ttl: float = 300.0,
    ) -> None:
        if not (isinstance(latency, (int, float)) and math.isfinite(latency) and latency >= 0):
            raise ValueError(f"latency must be a finite number >= 0, got {latency!r}")
        self.require_auth = require_auth
        self.play_handler: PlayHandler = play or safe_eval
        self.extra_methods = dict(methods or {})
        self.clock: Clock = clock if clock is not None else LoopClock()
        self.latency = float(latency)
        self.nonce_ttl = float(nonce_ttl)
        self._sockets: dict[int, FakeSocket] = {}
        self._open_count = 0
        #: Connection attempts so far (refused ones included).
        self.attempts = 0
        #: Every well-formed request received, in order.
        self.requests: list[Request] = []
        #: Scripts ``play`` ran (after the authentication check), in order.
        self.executed_scripts: list[str] = []
        #: ``(connection id, nonce)`` for every nonce handed out.
        self.issued_nonces: list[tuple[int, str]] = []
        #: ``(connection id, pubkey)`` for every successful authentication.
        self.authentications: list[tuple[int, str]] = []
        #: How each connection ended, in order.
        self.closes: list[Close] = []
        #: Exceptions the client's transport callbacks raised (logged; the socket went on).
        self.callback_errors: list[BaseException] = []
        #: Things the client did that a browser's WebSocket would refuse (send before open...).
        self.violations: list[str] = []
        self.faults = Faults(self)

    def __repr__(self) -> str:
        return f"<FakeServer connections={self.connections} attempts={self.attempts}>"

    # -- the TransportFactory ---------------------------------------------------------------

    def __call__(self, url: str, events: TransportEvents, options: TransportOptions) -> FakeSocket:
        self.attempts += 1
        sock = FakeSocket(self, self.attempts, url, events)
        self._sockets[sock.id] = sock
        faults = self.faults
        if faults.refusals > 0:
            faults.refusals -= 1
            sock.state = _CLOSED
            sock._push(_EV_ERROR, "connection refused")
            sock._push(_EV_CLOSE, CLOSE_ABNORMAL, "")
        elif faults.stalls > 0:
            faults.stalls -= 1  # stays connecting until the client gives up and closes it
        else:
            sock.accept()
        return sock

    # -- inspection -------------------------------------------------------------------------

    @property
    def connections(self) -> int:
        """Connections open on the server side right now."""
        return self._open_count

    @property
    def sockets(self) -> int:
        """Sockets whose ``on_close`` the client has not received yet (stalled ones included):
        0 once every client let go of everything."""
        return len(self._sockets)

    def requests_for(self, method: str) -> list[Request]:
        """The requests received for one method."""
        return [r for r in self.requests if r.method == method]

    def notify(self, method: str, params: Any = None) -> None:
        """Send a notification (a message without id) to every open connection."""
        note: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            note["params"] = params
        for sock in self._open():
            sock.server_send(_encode(note))

    # -- internals --------------------------------------------------------------------------

    def _open(self) -> list[FakeSocket]:
        return [s for s in self._sockets.values() if s.state == _OPEN]

    def _count_open(self, step: int) -> None:
        self._open_count += step

    def _forget(self, sock: FakeSocket) -> None:
        self._sockets.pop(sock.id, None)

    def _receive(self, sock: FakeSocket, text: str | bytes) -> None:
        """One frame from the client: validate, record, dispatch (the reference server's rules)."""
        if type(text) is not str:
            sock.server_send(_error(None, INVALID_REQUEST, "binary frames are not supported"))
            return
        try:
            msg = _decode(text)
        except (ValueError, RecursionError) as exc:
            sock.server_send(_error(None, PARSE_ERROR, f"parse error: {exc}"))
            return
        if type(msg) is not dict:
            sock.server_send(_error(None, INVALID_REQUEST, "a request must be a JSON object"))
            return
        answer = "id" in msg
        rid = msg.get("id")
        if answer and rid is not None and type(rid) not in (str, int):
            sock.server_send(_error(None, INVALID_REQUEST, "id must be a string, an integer or null"))
            return
        method, params = msg.get("method"), msg.get("params")
        if msg.get("jsonrpc") != "2.0" or type(method) is not str:
            sock.server_send(_error(rid, INVALID_REQUEST, 'jsonrpc must be "2.0" and method a string'))
            return
        if params is None or params == []:
            params = {}
        self.requests.append(Request(sock.id, method, params, rid))
        if self.clock.now() < sock.silent_until:
            return  # received, never answered
        if type(params) is not dict:
            self._reply(sock, method, _error(rid, INVALID_PARAMS, "params must be an object"), answer)
            return
        try:
            result = self._dispatch(sock, method, params)
        except JsonRpcError as exc:
            self._reply(sock, method, _error(rid, exc.code, exc.message, exc.data), answer)
            return
        except Exception:
            logger.exception("connection %d: %s failed", sock.id, method)
            self._reply(sock, method, _error(rid, INTERNAL_ERROR, "internal error"), answer)
            return
        if result is NO_ANSWER:
            return
        if inspect.isawaitable(result):
            future = asyncio.ensure_future(result)
            sock.track(future)
            future.add_done_callback(lambda f: self._finish(sock, method, rid, f, answer))
            return
        self._reply(sock, method, self._result_frame(rid, result), answer)

    def _finish(self, sock: FakeSocket, method: str, rid: Any, future: asyncio.Future[Any], answer: bool) -> None:
        if future.cancelled():
            return
        exc = future.exception()
        if exc is None:
            frame = self._result_frame(rid, future.result())
        elif isinstance(exc, JsonRpcError):
            frame = _error(rid, exc.code, exc.message, exc.data)
        elif method == "play":
            frame = _error(rid, SCRIPT_ERROR, _script_message(exc))
        else:
            logger.error("connection %d: %s failed: %r", sock.id, method, exc)
            frame = _error(rid, INTERNAL_ERROR, "internal error")
        self._reply(sock, method, frame, answer)

    def _result_frame(self, rid: Any, result: Any) -> str:
        if result is NO_ANSWER:
            return ""
        try:
            return _encode({"jsonrpc": "2.0", "result": result, "id": rid})
        except (TypeError, ValueError) as exc:
            logger.error("result is not JSON: %s", exc)
            return _error(rid, INTERNAL_ERROR, "internal error: result is not JSON")

    def _reply(self, sock: FakeSocket, method: str, frame: str, answer: bool) -> None:
        if not answer or not frame:
            return
        delays = self.faults.delays
        delay = delays.get(method, delays.get(None, 0.0))
        if delay > 0:
            sock.later(delay, lambda: sock.server_send(frame))
        else:
            sock.server_send(frame)

    def _dispatch(self, sock: FakeSocket, method: str, params: dict[str, Any]) -> Any:
        """The result of one call (or an awaitable of it); raises JsonRpcError to answer an error."""
        overrides = self.faults.overrides
        if method in overrides:
            answer, times = overrides[method]
            if times <= 1:
                del overrides[method]
            else:
                overrides[method] = (answer, times - 1)
            if isinstance(answer, JsonRpcError):
                raise answer
            if callable(answer):
                return answer(params)
            return answer
        if method == "ping":
            return "pong"
        if method == "whoami":
            return {"authenticated": sock.pubkey is not None, "pubkey": sock.pubkey}
        if method == "fetch_nonce":
            pubkey = _pubkey(params)
            nonce = secrets.token_hex(16)
            sock.nonces[pubkey] = (nonce, self.clock.now() + self.nonce_ttl)
            self.issued_nonces.append((sock.id, nonce))
            return {"nonce": nonce}
        if method == "authenticate":
            return self._authenticate(sock, params)
        if method == "play":
            if self.require_auth and sock.pubkey is None:
                raise JsonRpcError(AUTH_REQUIRED, "authentication required: call fetch_nonce then authenticate")
            script = params.get("script")
            if type(script) is not str:
                raise JsonRpcError(INVALID_PARAMS, "script must be a string")
            self.executed_scripts.append(script)
            return self._play(script)
        handler = self.extra_methods.get(method)
        if handler is not None:
            return handler(params)
        raise JsonRpcError(METHOD_NOT_FOUND, f"method not found: {method[:100]!r}")

    def _authenticate(self, sock: FakeSocket, params: dict[str, Any]) -> dict[str, bool]:
        pubkey = _pubkey(params)
        signature = params.get("signature")
        if type(signature) is not str or not SIGNATURE_RE.fullmatch(signature):
            raise JsonRpcError(INVALID_PARAMS, "signature must be 130 lowercase hex chars (r || s || v)")
        entry = sock.nonces.pop(pubkey, None)  # consumed by any attempt
        if self.faults.auth_failures > 0:
            self.faults.auth_failures -= 1
            raise JsonRpcError(AUTH_FAILED, "authentication failed (FakeServer.faults.fail_auth)")
        if entry is None or self.clock.now() >= entry[1]:
            raise JsonRpcError(
                AUTH_FAILED, "authentication failed: no valid nonce for this pubkey on this connection"
            )
        if not verify_signature(pubkey, entry[0], signature):
            raise JsonRpcError(AUTH_FAILED, "authentication failed: signature does not match the nonce and pubkey")
        sock.pubkey = pubkey
        self.authentications.append((sock.id, pubkey))
        return {"authenticated": True}

    def _play(self, script: str) -> Any:
        try:
            output = self.play_handler(script)
        except JsonRpcError:
            raise
        except Exception as exc:
            raise JsonRpcError(SCRIPT_ERROR, _script_message(exc)) from None
        if inspect.isawaitable(output):

            async def finish(pending: Awaitable[Any]) -> dict[str, str]:
                return {"output": str(await pending)}

            return finish(output)
        return {"output": output if isinstance(output, str) else str(output)}


def _script_message(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, ScriptError) else f"{type(exc).__name__}: {exc}"


def _pubkey(params: dict[str, Any]) -> str:
    value = params.get("pubkey")
    if type(value) is not str or not PUBKEY_RE.fullmatch(value):
        raise JsonRpcError(
            INVALID_PARAMS, "pubkey must be an uncompressed SEC1 public key: 130 lowercase hex chars starting with 04"
        )
    return value


class FakeNetwork:
    """Several fake servers behind one transport factory, by URL (for a ``WsManager``).

    ``FakeNetwork({"ws://a": server_a, "ws://b": server_b})``; a URL without a server is
    refused, like a port where nothing listens.
    """

    def __init__(self, servers: dict[str, FakeServer] | None = None) -> None:
        self.servers: dict[str, FakeServer] = dict(servers or {})
        self._nobody = FakeServer()
        self._nobody.faults.refuse(None)

    def __call__(self, url: str, events: TransportEvents, options: TransportOptions) -> FakeSocket:
        server = self.servers.get(url)
        if server is None:
            return self._nobody(url, events, options)
        return server(url, events, options)
