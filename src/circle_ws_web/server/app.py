"""The reference circle server: JSON-RPC 2.0 over WebSocket text frames (SPEC section 2).

One :class:`CircleServer` listens on one or more ports; each port is an independent
``websockets`` server with its own connections (the nonce store and the script thread pool are
shared). Messages of one connection are read in order; cheap methods (``ping``, ``whoami``,
``fetch_nonce``, ``authenticate`` and most ``test.*`` controls) are answered inline, in order,
while slow ones (``play``, ``test.delay``) run in their own task so a connection keeps being
served while they work. Responses are matched by id, never by order.

Batch requests (JSON arrays) are not supported: they are answered with -32600 and id null. The
SPEC's clients never batch, and refusing them keeps one frame = one request = at most one reply.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import json
import logging
import math
import os
import re
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
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
from .evaluator import CancelToken, ScriptError, evaluate, timeout_message
from .nonces import NonceStore

__all__ = ["CircleServer", "PortInUseError", "RpcError"]

logger = logging.getLogger("circle_ws_web.server")

PUBKEY_RE = re.compile(r"04[0-9a-f]{128}")
SIGNATURE_RE = re.compile(r"[0-9a-f]{130}")
MAX_TEST_SECONDS = 3600.0
MAX_TEST_BIG = 256 * 2**20

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


class _Connection:
    """Per-connection state: authentication, the silence window, in-flight tasks."""

    __slots__ = ("ws", "id", "port", "pubkey", "silent_until", "tasks")

    def __init__(self, ws: ServerConnection, conn_id: int, port: int) -> None:
        self.ws = ws
        self.id = conn_id
        self.port = port
        self.pubkey: str | None = None
        self.silent_until = 0.0
        self.tasks: set[asyncio.Task[None]] = set()


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
    ``max_message_size``: the largest incoming frame (bigger ones close the connection with
    1009, the ``websockets`` behaviour). ``script_timeout`` / ``max_output``: per-``play``
    limits. ``script_workers``: threads evaluating scripts (kept separate from the default
    executor so runaway scripts cannot starve anything else). ``journal``: a file that gets one
    JSON line ``{"conn": <connection id>, "id": <request id>, "script": <script>}`` per ``play``
    the server starts executing (append mode, flushed per line), so a test can prove that no
    request ran twice.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        ports: Iterable[int] = (8701,),
        *,
        require_auth: bool = False,
        nonce_ttl: float = 300.0,
        test_controls: bool = False,
        max_message_size: int = 16 * 2**20,
        script_timeout: float = 2.0,
        max_output: int = 65536,
        script_workers: int = 8,
        journal: str | os.PathLike[str] | None = None,
    ) -> None:
        ports = tuple(ports)
        if not ports:
            raise ValueError("at least one port is required")
        for port in ports:
            if type(port) is not int or not 0 <= port <= 65535:
                raise ValueError(f"invalid port: {port!r}")
        if not script_timeout > 0:
            raise ValueError("script_timeout must be > 0")
        if max_output < 1 or max_message_size < 1 or script_workers < 1:
            raise ValueError("max_output, max_message_size and script_workers must be >= 1")
        self.host = host
        self.ports = ports
        self.require_auth = require_auth
        self.test_controls = test_controls
        self.max_message_size = max_message_size
        self.script_timeout = float(script_timeout)
        self.max_output = max_output
        self.script_workers = script_workers
        self.nonces = NonceStore(nonce_ttl)
        self.journal_path = None if journal is None else os.fspath(journal)
        self._journal: IO[str] | None = None
        self._servers: list[Server] = []
        self._bound_ports: list[int] = []
        self._executor: ThreadPoolExecutor | None = None
        self._conn_ids = itertools.count(1)
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

    async def start(self) -> None:
        """Listen on every port; on any failure nothing stays open.

        Raises :class:`PortInUseError` for a taken port, ``OSError`` for other bind errors.
        """
        if self._servers:
            raise RuntimeError("server already started")
        self._executor = ThreadPoolExecutor(self.script_workers, thread_name_prefix="circle-play")
        try:
            if self.journal_path is not None:
                # Line-buffered append: every line is on disk (in the OS) before its script runs,
                # even if this process is killed a moment later.
                self._journal = open(self.journal_path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
            for port in self.ports:
                try:
                    server = await serve(
                        self._serve_connection,
                        self.host,
                        port,
                        compression=None,  # JSON frames are small; deflate costs more than it saves
                        max_size=self.max_message_size,
                        ping_interval=20,
                        ping_timeout=20,
                        close_timeout=2,  # bounds stop() when a peer ignores the close frame
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
        """Stop listening, close every connection (1001) and cancel running scripts. Idempotent."""
        servers, self._servers = self._servers, []
        self._bound_ports = []
        for server in servers:
            server.close()
        if servers:
            await asyncio.gather(*(server.wait_closed() for server in servers))
        if self._executor is not None:
            # Handler tasks were cancelled above, which cancelled their scripts' tokens; the
            # threads stop at their next AST node. Do not wait for them here.
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        if self._journal is not None:
            self._journal.close()
            self._journal = None

    async def __aenter__(self) -> CircleServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # --- connection and dispatch -----------------------------------------------------------

    async def _serve_connection(self, ws: ServerConnection) -> None:
        conn = _Connection(ws, next(self._conn_ids), ws.local_address[1])
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
            for task in conn.tasks:
                task.cancel()
            if conn.tasks:
                await asyncio.gather(*conn.tasks, return_exceptions=True)
            self.nonces.discard_scope(conn.id)
            logger.info("connection %d from %s closed (code %s)", conn.id, _peer(ws), ws.close_code)

    async def _send(self, conn: _Connection, text: str | bytes) -> None:
        """Send unless the connection is silenced or gone (a vanished peer is not an error)."""
        if conn.silent_until and asyncio.get_running_loop().time() < conn.silent_until:
            return
        try:
            await conn.ws.send(text)
        except ConnectionClosed:
            pass

    async def _bad_frame(self, conn: _Connection, rid: Any, code: int, why: str, frame: str | bytes) -> None:
        logger.warning("connection %d: bad frame %s: %s", conn.id, _preview(frame), why)
        await self._send(conn, _error_text(rid, code, why))

    async def _on_message(self, conn: _Connection, message: str | bytes) -> None:
        """Validate one frame and dispatch it; never raises for anything the peer sent."""
        if type(message) is not str:
            await self._bad_frame(
                conn, None, INVALID_REQUEST, "binary frames are not supported: send JSON-RPC as text", message
            )
            return
        try:
            request = _decode(message)
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
            task = asyncio.get_running_loop().create_task(self._call(method, req, params))
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
        return {"nonce": self.nonces.issue(pubkey, req.conn.id)}

    async def _authenticate(self, req: _Request, params: dict[str, Any]) -> dict[str, bool]:
        _only(params, ("pubkey", "signature"))
        pubkey = _pubkey(params["pubkey"])
        signature = params["signature"]
        if type(signature) is not str or not SIGNATURE_RE.fullmatch(signature):
            raise RpcError(INVALID_PARAMS, "signature must be 130 lowercase hex chars (r || s || v)")
        conn = req.conn
        nonce = self.nonces.consume(pubkey, conn.id)  # consumed by any attempt
        if nonce is None:
            logger.warning("connection %d: auth failed for %s...: no live nonce", conn.id, pubkey[:12])
            raise RpcError(
                AUTH_FAILED,
                "authentication failed: no valid nonce for this pubkey on this "
                "connection (unknown, expired or already used); call fetch_nonce",
            )
        # Off the loop: with the pure-Python ecdsa backend a verification takes milliseconds.
        if not await asyncio.to_thread(verify_signature, pubkey, nonce, signature):
            logger.warning("connection %d: auth failed for %s...: bad signature", conn.id, pubkey[:12])
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
        executor = self._executor
        if executor is None:
            raise RpcError(INTERNAL_ERROR, "server is stopping")
        self._write_journal(req, script)
        token = CancelToken(self.script_timeout)
        job = partial(evaluate, script, max_output=self.max_output, token=token)
        try:
            # The thread hop (~50-100 us) is paid even by trivial scripts: one code path, and
            # the loop never runs script code.
            future = asyncio.get_running_loop().run_in_executor(executor, job)
            output = await asyncio.wait_for(future, self.script_timeout)
        except ScriptError as exc:
            raise RpcError(SCRIPT_ERROR, str(exc)) from None
        except TimeoutError:
            # The worker notices the cancelled token at its next AST node and stops; a single
            # long C-level operation can keep it busy until that operation ends.
            raise RpcError(SCRIPT_ERROR, timeout_message(self.script_timeout)) from None
        finally:
            token.cancel()
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

    async def _test_delay(self, req: _Request, params: dict[str, Any]) -> Any:
        _only(params, ("seconds",), ("result",))
        await asyncio.sleep(_number(params, "seconds", 0, MAX_TEST_SECONDS))
        return params.get("result")
