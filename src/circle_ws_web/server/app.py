"""The reference circle server: JSON-RPC 2.0 over WebSocket text frames (SPEC section 2).

One :class:`CircleServer` listens on one or more ports; each port is an independent
``websockets`` server with its own connections (the nonce store and the script worker pool are
shared). Messages of one connection are read in order; cheap methods (``ping``, ``whoami``,
``fetch_nonce``, ``authenticate`` and most ``test.*`` controls) are answered inline, in order,
while slow ones (``play``, ``test.delay``) run in their own task so a connection keeps being
served while they work. Responses are matched by id, never by order. Scripts run in worker
processes (:mod:`.workers`), never on the event loop.

Every resource a peer can make the server hold is bounded (docs/server.md has the table): frame
size, script size, calls in flight per connection and in all, connections, queued output (a
reply is written only as fast as the peer reads; while it waits, the connection is not read
either), nonces per connection, and the log lines a peer can cause.

Batch requests (JSON arrays) are not supported: they are answered with -32600 and id null. The
SPEC's clients never batch, and refusing them keeps one frame = one request = at most one reply.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import inspect
import itertools
import json
import logging
import math
import os
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import IO, Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from ..auth import verify_signature
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
from .evaluator import ScriptError
from .nonces import NonceStore, NonceStoreFull
from .workers import DEFAULT_MEMORY_LIMIT, PoolBusy, ScriptPool

__all__ = ["SERVER_BUSY", "CircleServer", "PortInUseError", "RpcError"]

logger = logging.getLogger("circle_ws_web.server")

PUBKEY_RE = re.compile(r"04[0-9a-f]{128}")
SIGNATURE_RE = re.compile(r"[0-9a-f]{130}")
MAX_TEST_SECONDS = 3600.0
MAX_TEST_BIG = 256 * 2**20

SERVER_BUSY = -32005
"""A limit on concurrent work was hit (calls in flight, script workers, nonces): retry later."""

DEFAULT_MAX_MESSAGE_SIZE = 2**20
DEFAULT_MAX_SCRIPT_SIZE = 64 * 2**10
DEFAULT_MAX_IN_FLIGHT = 32
DEFAULT_MAX_IN_FLIGHT_TOTAL = 1024
DEFAULT_MAX_CONNECTIONS = 256
MAX_QUEUED_FRAMES = 4
"""Frames ``websockets`` buffers per connection before it stops reading the socket."""
LARGE_FRAME = 64 * 2**10
MAX_COMMAS = 20_000
"""A frame over ``LARGE_FRAME`` with more commas (so ~2x more JSON values) is refused unparsed:
parsing 1 MiB of ``[1.5e300,...]`` or ``[{"a":[0]},...]`` held the loop for 40-100 ms; 20,000
commas cost a few ms. (A request is a handful of values; only a script of 64 KiB that is one
third commas, e.g. a huge list literal, comes near this.)"""

GARBAGE_FRAMES: tuple[str | bytes, ...] = (
    "not json",
    "[1,2,3]",
    '{"jsonrpc":"2.0","result":1,"id":"no-such-id"}',
    '{"jsonrpc":"1.0","id":null}',
    '{"foo":"bar"}',
    b"\x00\x01",
)
"""What ``test.garbage`` sends, in order, each as its own frame, before its real answer."""

_ABSENT: Any = object()
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def _reject_constant(name: str) -> Any:
    """``json.loads`` accepts NaN/Infinity by default; they are not JSON, so refuse them."""
    raise ValueError(f"{name} is not valid JSON")


_decode = json.JSONDecoder(parse_constant=_reject_constant).decode


class _TooComplex(Exception):
    """A large frame with too many JSON values to parse without stalling other connections."""


def _decode_frame(message: str) -> Any:
    """Parse one request frame; a large one is bounded first.

    Parsing holds the GIL (a thread would not help), so the cost itself is bounded: a frame over
    ``LARGE_FRAME`` may hold at most ``MAX_COMMAS`` commas (values are at most ~2 per comma, the
    rest is bounded by the parser's nesting limit), checked with one C-speed ``count`` (~2 ms per
    MiB). The cyclic GC is paused meanwhile: hundreds of thousands of fresh containers would
    otherwise trigger repeated full collections, tripling the time.
    """
    if len(message) <= LARGE_FRAME:
        return _decode(message)
    if message.count(",") > MAX_COMMAS:
        raise _TooComplex
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _decode(message)
    finally:
        if enabled:
            gc.enable()


class PortInUseError(OSError):
    """A port given to :class:`CircleServer` is already taken by another listener."""

    def __init__(self, port: int) -> None:
        super().__init__(errno.EADDRINUSE, f"port {port} is already in use")
        self.port = port


class RpcError(Exception):
    """Raised by a method handler; becomes a JSON-RPC error response."""

    def __init__(self, code: int, message: str, data: Any = _ABSENT) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


class _NoReply(Exception):
    """Raised by a handler that has already answered (or must never answer)."""


class _LogLimit:
    """Per-connection rate limit for the warnings a peer can trigger at will.

    The first ``first`` are logged; after that they are counted and one summary line per
    ``interval`` seconds (and one when the connection closes) says how many were suppressed,
    so 10,000 garbage frames cost six log lines, not 10,000.
    """

    __slots__ = ("what", "first", "interval", "seen", "suppressed", "last_summary")

    def __init__(self, what: str, first: int, interval: float) -> None:
        self.what = what
        self.first = first
        self.interval = interval
        self.seen = 0
        self.suppressed = 0
        self.last_summary = 0.0

    def warn(self, conn_id: int, message: str, *args: Any) -> None:
        self.seen += 1
        if self.seen <= self.first:
            logger.warning(message, *args)
            self.last_summary = time.monotonic()
            return
        self.suppressed += 1
        if time.monotonic() - self.last_summary >= self.interval:
            self.flush(conn_id)

    def flush(self, conn_id: int) -> None:
        if self.suppressed:
            logger.warning("connection %d: %d more %s suppressed", conn_id, self.suppressed, self.what)
            self.suppressed = 0
        self.last_summary = time.monotonic()


class _Connection:
    """Per-connection state: authentication, the silence window, in-flight tasks, log limits."""

    __slots__ = ("ws", "id", "port", "pubkey", "silent_until", "tasks", "in_flight", "bad_frames", "auth_failures")

    def __init__(self, ws: ServerConnection, conn_id: int, port: int, first: int, interval: float) -> None:
        self.ws = ws
        self.id = conn_id
        self.port = port
        self.pubkey: str | None = None
        self.silent_until = 0.0
        self.tasks: set[asyncio.Task[None]] = set()
        self.in_flight = 0
        self.bad_frames = _LogLimit("bad frames", first, interval)
        self.auth_failures = _LogLimit("failed authentications", first, interval)


class _Request:
    """One call: its connection, its id, and whether it is answered (False: notification)."""

    __slots__ = ("conn", "id", "answer")

    def __init__(self, conn: _Connection, rid: Any, answer: bool) -> None:
        self.conn = conn
        self.id = rid
        self.answer = answer


Handler = Callable[[_Request, dict[str, Any]], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class _Method:
    handler: Handler
    in_task: bool = False  # slow: run concurrently instead of inline in the read loop
    needs_auth: bool = False  # refused with -32001 before authentication when auth is required


# --- params validation -------------------------------------------------------------------


def _only(params: dict[str, Any], required: Iterable[str] = (), optional: Iterable[str] = ()) -> None:
    """Check params names: every required one present, nothing unknown."""
    required = tuple(required)
    for name in required:
        if name not in params:
            raise RpcError(INVALID_PARAMS, f"missing param {name!r}")
    allowed = set(required) | set(optional)
    unexpected = sorted(k for k in params if k not in allowed)
    if unexpected:
        names = ", ".join(repr(k[:40]) for k in unexpected[:5])
        raise RpcError(INVALID_PARAMS, f"unexpected param(s): {names}")


def _pubkey(value: Any) -> str:
    if type(value) is not str or not PUBKEY_RE.fullmatch(value):
        raise RpcError(
            INVALID_PARAMS,
            "pubkey must be an uncompressed SEC1 public key: 130 lowercase hex chars starting with 04",
        )
    return value


def _number(params: dict[str, Any], name: str, low: float, high: float) -> float:
    value = params[name]
    if type(value) not in (int, float) or not math.isfinite(value) or not low <= value <= high:
        raise RpcError(INVALID_PARAMS, f"{name} must be a number between {low:g} and {high:g}")
    return float(value)


def _integer(params: dict[str, Any], name: str, low: int, high: int) -> int:
    value = params[name]
    if type(value) is not int or not low <= value <= high:
        raise RpcError(INVALID_PARAMS, f"{name} must be an integer between {low} and {high}")
    return value


def _error_text(rid: Any, code: int, message: str, data: Any = _ABSENT) -> str:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not _ABSENT:
        error["data"] = data
    return _encode({"jsonrpc": "2.0", "error": error, "id": rid})


def _utf8(text: str) -> bytes:
    """Encode an outgoing frame. A lone surrogate (e.g. echoed from a peer's ``"\\ud800"``) has
    no UTF-8 form and made ``websockets`` drop the connection; it can only sit inside a JSON
    string, where ``backslashreplace`` writes exactly its JSON escape."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace")


# websockets >= 14 sends UTF-8 bytes as a text frame (no second encoding); 13 only takes str.
_SEND_TAKES_TEXT = "text" in inspect.signature(ServerConnection.send).parameters


def _peer(ws: ServerConnection) -> str:
    try:
        address = ws.remote_address
        return f"{address[0]}:{address[1]}"
    except Exception:  # closed transport, unix socket...
        return "?"


def _preview(message: str | bytes) -> str:
    return repr(message[:60]) + ("..." if len(message) > 60 else "")


class CircleServer:
    """A circle server on one or more ports.

    ``ports``: port 0 picks a free port; see :attr:`bound_ports`. ``require_auth``: ``play`` is
    refused with -32001 until the connection authenticated. ``nonce_ttl``: seconds a nonce
    stays valid. ``test_controls``: enables the ``test.*`` methods used by client tests.
    ``journal``: a file that gets one JSON line ``{"conn": <connection id>, "id": <request
    id>, "script": <script>}`` per ``play`` the server starts executing (append mode, flushed
    per line), so a test can prove that no request ran twice.

    Limits (docs/server.md: what a client sees for each): ``max_message_size`` bytes per
    incoming frame (bigger ones close the connection with 1009); ``max_script_size`` UTF-8
    bytes per script (-32602, checked before parsing); ``script_timeout`` seconds and
    ``memory_limit`` bytes per script, ``max_output`` characters of output (-32010);
    ``script_workers`` worker processes; ``max_in_flight`` slow calls (``play``,
    ``test.delay``) per connection and ``max_in_flight_total`` in all: beyond them the server
    stops reading that connection, and a call that finds no free slot within
    ``in_flight_wait`` seconds is answered -32005; ``queue_timeout`` seconds a script may wait
    for a free worker (-32005); ``max_connections`` (more are closed with 1013).
    """

    bad_frame_log_first = 5
    """Bad frames (and failed authentications) logged per connection before counting starts."""
    bad_frame_log_interval = 10.0
    """Seconds between two "N more bad frames suppressed" lines of one connection."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        ports: Iterable[int] = (8701,),
        *,
        require_auth: bool = False,
        nonce_ttl: float = 300.0,
        test_controls: bool = False,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        script_timeout: float = 2.0,
        max_output: int = 65536,
        script_workers: int = 4,
        journal: str | os.PathLike[str] | None = None,
        max_script_size: int = DEFAULT_MAX_SCRIPT_SIZE,
        memory_limit: int | None = DEFAULT_MEMORY_LIMIT,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        max_in_flight_total: int = DEFAULT_MAX_IN_FLIGHT_TOTAL,
        in_flight_wait: float = 5.0,
        queue_timeout: float = 10.0,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        ports = tuple(ports)
        if not ports:
            raise ValueError("at least one port is required")
        for port in ports:
            if type(port) is not int or not 0 <= port <= 65535:
                raise ValueError(f"invalid port: {port!r}")
        if not script_timeout > 0:
            raise ValueError("script_timeout must be > 0")
        counts = (max_output, max_message_size, script_workers, max_script_size, max_in_flight,
                  max_in_flight_total, max_connections)  # fmt: skip
        if min(counts) < 1:
            raise ValueError(
                "max_output, max_message_size, script_workers, max_script_size, max_in_flight, "
                "max_in_flight_total and max_connections must be >= 1"
            )
        if memory_limit is not None and memory_limit < 1:
            raise ValueError("memory_limit must be >= 1 (or None: unlimited)")
        if not (in_flight_wait >= 0 and queue_timeout > 0):
            raise ValueError("in_flight_wait must be >= 0 and queue_timeout > 0")
        self.host = host
        self.ports = ports
        self.require_auth = require_auth
        self.test_controls = test_controls
        self.max_message_size = max_message_size
        self.script_timeout = float(script_timeout)
        self.max_output = max_output
        self.script_workers = script_workers
        self.max_script_size = max_script_size
        self.memory_limit = memory_limit
        self.max_in_flight = max_in_flight
        self.max_in_flight_total = max_in_flight_total
        self.in_flight_wait = float(in_flight_wait)
        self.queue_timeout = float(queue_timeout)
        self.max_connections = max_connections
        self.nonces = NonceStore(nonce_ttl)
        self.journal_path = None if journal is None else os.fspath(journal)
        self._journal: IO[str] | None = None
        self._servers: list[Server] = []
        self._bound_ports: list[int] = []
        self._pool: ScriptPool | None = None
        self._conn_ids = itertools.count(1)
        self._connections: set[_Connection] = set()
        self._in_flight_total = 0
        self._peak_in_flight = 0
        self._slot_freed: asyncio.Future[None] | None = None
        self._stopping = False
        self._methods: dict[str, _Method] = {
            "ping": _Method(self._ping),
            "whoami": _Method(self._whoami),
            "fetch_nonce": _Method(self._fetch_nonce),
            # Inline although it awaits a thread: requests pipelined after it see its outcome.
            "authenticate": _Method(self._authenticate),
            "play": _Method(self._play, in_task=True, needs_auth=True),
        }
        if test_controls:
            self._methods.update(
                {
                    "test.silence": _Method(self._test_silence),
                    "test.garbage": _Method(self._test_garbage),
                    "test.notify": _Method(self._test_notify),
                    "test.drop": _Method(self._test_drop),
                    "test.big": _Method(self._test_big),
                    "test.delay": _Method(self._test_delay, in_task=True),
                    "test.stats": _Method(self._test_stats),
                }
            )

    # --- lifecycle ----------------------------------------------------------------------

    @property
    def bound_ports(self) -> list[int]:
        """The ports actually listened on, in the order of ``ports`` (real numbers for 0)."""
        return list(self._bound_ports)

    @property
    def urls(self) -> list[str]:
        """``ws://host:port`` for every bound port."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return [f"ws://{host}:{port}" for port in self._bound_ports]

    def stats(self) -> dict[str, Any]:
        """Counters for tests and operators: connections, calls in flight (and the peak on one
        connection), the worker pool's state."""
        return {
            "connections": len(self._connections),
            "in_flight": self._in_flight_total,
            "peak_in_flight_per_connection": self._peak_in_flight,
            "pool": self._pool.stats() if self._pool is not None else None,
            "worker_pids": self._pool.pids() if self._pool is not None else [],
        }

    async def start(self) -> None:
        """Start the script workers, then listen on every port; on any failure nothing stays
        open. Returns once workers are warm, so the first ``play`` is as fast as the next.

        Raises :class:`PortInUseError` for a taken port, ``OSError`` for other bind errors.
        """
        if self._servers or self._pool is not None:
            raise RuntimeError("server already started")
        self._stopping = False
        self._slot_freed = asyncio.get_running_loop().create_future()
        try:
            if self.journal_path is not None:
                # Line-buffered append: every line is on disk (in the OS) before its script runs,
                # even if this process is killed a moment later.
                self._journal = open(self.journal_path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
            self._pool = ScriptPool(
                self.script_workers,
                timeout=self.script_timeout,
                max_output=self.max_output,
                memory_limit=self.memory_limit,
                queue_timeout=self.queue_timeout,
            )
            await self._pool.start()
            for port in self.ports:
                try:
                    server = await serve(
                        self._serve_connection,
                        self.host,
                        port,
                        compression=None,  # JSON frames are small; deflate costs more than it saves
                        max_size=self.max_message_size,
                        max_queue=MAX_QUEUED_FRAMES,
                        ping_interval=20,
                        ping_timeout=20,
                        close_timeout=1,  # bounds stop() when a peer ignores the close frame
                    )
                except OSError as exc:
                    if exc.errno == errno.EADDRINUSE:
                        raise PortInUseError(port) from exc
                    raise
                self._servers.append(server)
                self._bound_ports.append(server.sockets[0].getsockname()[1])
        except BaseException:
            await self.stop()
            raise
        logger.debug(
            "listening on %s (auth %s, test controls %s)",
            ", ".join(self.urls),
            "required" if self.require_auth else "optional",
            "on" if self.test_controls else "off",
        )

    async def stop(self) -> None:
        """Stop listening, close every connection (1001), kill the script workers. Idempotent.

        Bounded (~1 s: the close handshake's timeout) even with a peer that stopped reading and
        a worker stuck in C code.
        """
        self._stopping = True
        self._wake_slot_waiters()
        servers, self._servers = self._servers, []
        self._bound_ports = []
        for server in servers:
            server.close()
        if servers:
            await asyncio.gather(*(server.wait_closed() for server in servers))
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()
        if self._journal is not None:
            self._journal.close()
            self._journal = None

    def kill_workers(self) -> None:
        """Last resort for a stop that overran its bound: SIGKILL every script worker now."""
        if self._pool is not None:
            self._pool.kill_now()

    async def __aenter__(self) -> CircleServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # --- connection and dispatch -----------------------------------------------------------

    async def _serve_connection(self, ws: ServerConnection) -> None:
        conn = _Connection(
            ws, next(self._conn_ids), ws.local_address[1], self.bad_frame_log_first, self.bad_frame_log_interval
        )
        if len(self._connections) >= self.max_connections:
            logger.info("connection %d from %s refused: %d connections open", conn.id, _peer(ws), len(self._connections))
            await ws.close(1013, f"too many connections (limit {self.max_connections})")
            return
        self._connections.add(conn)
        logger.info("connection %d open from %s on port %d", conn.id, _peer(ws), conn.port)
        loop = asyncio.get_running_loop()
        try:
            async for message in ws:
                if conn.silent_until and loop.time() < conn.silent_until:
                    continue  # test.silence: drop, never answer
                await self._on_message(conn, message)
        except ConnectionClosed:
            pass
        finally:
            self._connections.discard(conn)
            for task in conn.tasks:
                task.cancel()
            if conn.tasks:
                await asyncio.gather(*conn.tasks, return_exceptions=True)
            self.nonces.discard_scope(conn.id)
            conn.bad_frames.flush(conn.id)
            conn.auth_failures.flush(conn.id)
            # The protocol's own field: the connection's close_code property needs websockets
            # 14.1, and the tests run this server on 13.0 too (.venv-oldest).
            logger.info("connection %d from %s closed (code %s)", conn.id, _peer(ws), ws.protocol.close_code)

    async def _send(self, conn: _Connection, text: str | bytes) -> None:
        """Send unless the connection is silenced or gone (a vanished peer is not an error).

        Waits while the peer is not reading (the socket's buffer is above ``websockets``'
        write limit), which is what bounds the output queued for one connection.
        """
        if conn.silent_until and asyncio.get_running_loop().time() < conn.silent_until:
            return
        try:
            if type(text) is str:
                if _SEND_TAKES_TEXT:
                    data = _utf8(text)
                    # Only the bytes from here on: a reply waiting on a peer that reads nothing is
                    # held twice (these bytes, the socket's buffer), not three times with the str.
                    del text
                    await conn.ws.send(data, text=True)
                else:  # pragma: no cover - websockets 13
                    await conn.ws.send(_utf8(text).decode("utf-8"))
            else:
                await conn.ws.send(text)
        except ConnectionClosed:
            pass

    async def _bad_frame(self, conn: _Connection, rid: Any, code: int, why: str, frame: str | bytes) -> None:
        conn.bad_frames.warn(conn.id, "connection %d: bad frame %s: %s", conn.id, _preview(frame), why)
        await self._send(conn, _error_text(rid, code, why))

    # --- calls in flight ---------------------------------------------------------------------

    def _has_slot(self, conn: _Connection) -> bool:
        return conn.in_flight < self.max_in_flight and self._in_flight_total < self.max_in_flight_total

    async def _reserve_slot(self, conn: _Connection) -> str | None:
        """Take a slot for one slow call; None when taken, else the error message.

        Waiting here stops this connection's read loop: past its limit a peer is simply not
        read (TCP pushes back), and only a call still without a slot after ``in_flight_wait``
        is refused.
        """
        if not self._has_slot(conn):
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.in_flight_wait
            while not self._has_slot(conn):
                remaining = deadline - loop.time()
                if self._stopping or remaining <= 0:
                    if conn.in_flight >= self.max_in_flight:
                        return f"too many calls in flight (limit {self.max_in_flight})"
                    return f"server busy: too many calls in flight on this server (limit {self.max_in_flight_total})"
                if self._slot_freed is None or self._slot_freed.done():
                    self._slot_freed = loop.create_future()
                try:
                    await asyncio.wait_for(asyncio.shield(self._slot_freed), remaining)
                except TimeoutError:
                    pass
        conn.in_flight += 1
        self._in_flight_total += 1
        if conn.in_flight > self._peak_in_flight:
            self._peak_in_flight = conn.in_flight
        return None

    def _free_slot(self, conn: _Connection) -> None:
        conn.in_flight -= 1
        self._in_flight_total -= 1
        self._wake_slot_waiters()

    def _wake_slot_waiters(self) -> None:
        waiter = self._slot_freed
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _call_in_slot(self, method: _Method, req: _Request, params: Any) -> None:
        try:
            await self._call(method, req, params)
        finally:
            self._free_slot(req.conn)

    async def _on_message(self, conn: _Connection, message: str | bytes) -> None:
        """Validate one frame and dispatch it; never raises for anything the peer sent."""
        if type(message) is not str:
            await self._bad_frame(
                conn, None, INVALID_REQUEST, "binary frames are not supported: send JSON-RPC as text", message
            )
            return
        try:
            request = _decode_frame(message)
        except _TooComplex:
            why = f"request too complex: more than {MAX_COMMAS} commas in one frame"
            await self._bad_frame(conn, None, INVALID_REQUEST, why, message)
            return
        except (ValueError, RecursionError) as exc:
            await self._bad_frame(conn, None, PARSE_ERROR, f"parse error: {exc}", message)
            return
        if type(request) is not dict:
            why = (
                "batch requests are not supported"
                if type(request) is list
                else "a request must be a JSON object"
            )
            await self._bad_frame(conn, None, INVALID_REQUEST, why, message)
            return
        rid = request.get("id", _ABSENT)
        answer = rid is not _ABSENT
        if answer and rid is not None and type(rid) is not str and type(rid) is not int:
            await self._bad_frame(
                conn, None, INVALID_REQUEST, "id must be a string, an integer or null", message
            )
            return
        reply_id = rid if answer else None
        if request.get("jsonrpc") != "2.0":
            await self._bad_frame(conn, reply_id, INVALID_REQUEST, 'jsonrpc must be "2.0"', message)
            return
        name = request.get("method")
        if type(name) is not str:
            await self._bad_frame(conn, reply_id, INVALID_REQUEST, "method must be a string", message)
            return
        params = request.get("params")
        if params is None or (type(params) is list and not params):
            params = {}
        elif type(params) is list:
            params = _ABSENT  # a valid request, but our methods take named params only
        elif type(params) is not dict:
            await self._bad_frame(
                conn, reply_id, INVALID_REQUEST, "params must be an object or an array", message
            )
            return
        method = self._methods.get(name)
        if method is None:
            logger.debug("connection %d: method not found: %.60r", conn.id, name)
            if answer:
                await self._send(
                    conn, _error_text(rid, METHOD_NOT_FOUND, f"method not found: {name[:100]!r}")
                )
            return
        req = _Request(conn, rid, answer)
        if method.in_task:
            refused = await self._reserve_slot(conn)
            if refused is not None:
                if answer:
                    await self._send(conn, _error_text(rid, SERVER_BUSY, refused))
                return
            task = asyncio.get_running_loop().create_task(self._call_in_slot(method, req, params))
            conn.tasks.add(task)
            task.add_done_callback(conn.tasks.discard)
        else:
            await self._call(method, req, params)

    async def _call(self, method: _Method, req: _Request, params: Any) -> None:
        conn = req.conn
        try:
            if params is _ABSENT:
                raise RpcError(INVALID_PARAMS, "params must be an object (named parameters)")
            if method.needs_auth and self.require_auth and conn.pubkey is None:
                raise RpcError(AUTH_REQUIRED, "authentication required: call fetch_nonce then authenticate")
            result = await method.handler(req, params)
        except RpcError as exc:
            if req.answer:
                await self._send(conn, _error_text(req.id, exc.code, exc.message, exc.data))
        except _NoReply:
            pass
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("connection %d: internal error", conn.id)
            if req.answer:
                await self._send(conn, _error_text(req.id, INTERNAL_ERROR, "internal error"))
        else:
            if req.answer:
                await self._send(conn, _encode({"jsonrpc": "2.0", "result": result, "id": req.id}))

    # --- methods ---------------------------------------------------------------------------

    async def _ping(self, req: _Request, params: dict[str, Any]) -> str:
        _only(params)
        return "pong"

    async def _whoami(self, req: _Request, params: dict[str, Any]) -> dict[str, Any]:
        _only(params)
        pubkey = req.conn.pubkey
        return {"authenticated": pubkey is not None, "pubkey": pubkey}

    async def _fetch_nonce(self, req: _Request, params: dict[str, Any]) -> dict[str, str]:
        _only(params, ("pubkey",))
        pubkey = _pubkey(params["pubkey"])
        try:
            return {"nonce": self.nonces.issue(pubkey, req.conn.id)}
        except NonceStoreFull as exc:
            raise RpcError(SERVER_BUSY, f"server busy: {exc}") from None

    async def _authenticate(self, req: _Request, params: dict[str, Any]) -> dict[str, bool]:
        _only(params, ("pubkey", "signature"))
        pubkey = _pubkey(params["pubkey"])
        signature = params["signature"]
        if type(signature) is not str or not SIGNATURE_RE.fullmatch(signature):
            raise RpcError(INVALID_PARAMS, "signature must be 130 lowercase hex chars (r || s || v)")
        conn = req.conn
        nonce = self.nonces.consume(pubkey, conn.id)  # consumed by any attempt
        if nonce is None:
            conn.auth_failures.warn(conn.id, "connection %d: auth failed for %s...: no live nonce", conn.id, pubkey[:12])
            raise RpcError(
                AUTH_FAILED,
                "authentication failed: no valid nonce for this pubkey on this "
                "connection (unknown, expired or already used); call fetch_nonce",
            )
        # Off the loop: with the pure-Python ecdsa backend a verification takes milliseconds.
        if not await asyncio.to_thread(verify_signature, pubkey, nonce, signature):
            conn.auth_failures.warn(conn.id, "connection %d: auth failed for %s...: bad signature", conn.id, pubkey[:12])
            raise RpcError(
                AUTH_FAILED, "authentication failed: signature does not match the nonce and pubkey"
            )
        conn.pubkey = pubkey
        logger.info("connection %d: authenticated as %s...", conn.id, pubkey[:12])
        return {"authenticated": True}

    async def _play(self, req: _Request, params: dict[str, Any]) -> dict[str, str]:
        _only(params, ("script",))
        script = params["script"]
        if type(script) is not str:
            raise RpcError(INVALID_PARAMS, "script must be a string")
        limit = self.max_script_size
        size = len(script)
        if size * 4 > limit:  # could be over: count UTF-8 bytes (a short script never pays)
            size = len(script.encode("utf-8", "surrogatepass"))
        if size > limit:  # before parsing: ast.parse of 16 MiB took 3.4 GB
            raise RpcError(INVALID_PARAMS, f"script too large: {size} bytes (limit {limit} bytes)")
        pool = self._pool
        if pool is None:
            raise RpcError(INTERNAL_ERROR, "server is stopping")
        try:
            output = await pool.run(script, req.conn.id, on_start=partial(self._write_journal, req, script))
        except PoolBusy as exc:
            raise RpcError(SERVER_BUSY, f"server busy: {exc}") from None
        except ScriptError as exc:
            raise RpcError(SCRIPT_ERROR, str(exc)) from None
        return {"output": output}

    def _write_journal(self, req: _Request, script: str) -> None:
        """Record a ``play`` that is about to run; refuse to run it when that fails."""
        journal = self._journal
        if journal is None:
            return
        rid = req.id if req.answer else None  # a notification has no id
        line = json.dumps({"conn": req.conn.id, "id": rid, "script": script}) + "\n"
        try:
            journal.write(line)  # ensure_ascii: lone surrogates in a script stay valid UTF-8
        except (OSError, ValueError) as exc:
            logger.error("connection %d: cannot write the request journal: %s", req.conn.id, exc)
            raise RpcError(INTERNAL_ERROR, "internal error: cannot write the request journal") from None

    # --- test controls (test_controls=True only) --------------------------------------------

    async def _test_silence(self, req: _Request, params: dict[str, Any]) -> None:
        _only(params, ("seconds",))
        seconds = _number(params, "seconds", 0, MAX_TEST_SECONDS)
        conn = req.conn
        if req.answer:
            await self._send(conn, _encode({"jsonrpc": "2.0", "result": {"ok": True}, "id": req.id}))
        conn.silent_until = asyncio.get_running_loop().time() + seconds
        logger.info("connection %d: silent for %g s", conn.id, seconds)
        raise _NoReply

    async def _test_garbage(self, req: _Request, params: dict[str, Any]) -> dict[str, bool]:
        _only(params)
        for frame in GARBAGE_FRAMES:
            await self._send(req.conn, frame)
        return {"ok": True}

    async def _test_notify(self, req: _Request, params: dict[str, Any]) -> dict[str, bool]:
        _only(params, ("method",), ("params",))
        if type(params["method"]) is not str:
            raise RpcError(INVALID_PARAMS, "method must be a string")
        note: dict[str, Any] = {"jsonrpc": "2.0", "method": params["method"]}
        if "params" in params:
            note["params"] = params["params"]
        await self._send(req.conn, _encode(note))
        return {"ok": True}

    async def _test_drop(self, req: _Request, params: dict[str, Any]) -> None:
        _only(params)
        logger.info("connection %d: dropping TCP connection (test.drop)", req.conn.id)
        req.conn.ws.transport.abort()  # abrupt: no close frame, no reply
        raise _NoReply

    async def _test_big(self, req: _Request, params: dict[str, Any]) -> dict[str, str]:
        _only(params, ("size",))
        return {"data": "x" * _integer(params, "size", 0, MAX_TEST_BIG)}

    async def _test_stats(self, req: _Request, params: dict[str, Any]) -> dict[str, Any]:
        """The server's :meth:`stats` (connections open now, calls in flight), e.g. to show
        that pooled clients share one connection."""
        _only(params)
        stats = self.stats()
        return {"connections": stats["connections"], "in_flight": stats["in_flight"]}

    async def _test_delay(self, req: _Request, params: dict[str, Any]) -> Any:
        _only(params, ("seconds",), ("result",))
        await asyncio.sleep(_number(params, "seconds", 0, MAX_TEST_SECONDS))
        return params.get("result")
