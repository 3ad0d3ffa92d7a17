"""CircleWsClient: one autonomous, self-maintaining connection to one circle server.

The client is the asyncio layer over the plain-code core: it feeds frames from a transport to
:class:`~circle_ws_web.rpc.RpcCodec`, keeps calls in :class:`~circle_ws_web.rpc.PendingCalls`
(one deadline timer per client, not one per call), runs :class:`~circle_ws_web.auth_flow.AuthFlow`
on every connection, and asks :class:`~circle_ws_web.backoff.Backoff` how long to wait before
reconnecting. Timers come from the platform (:class:`~circle_ws_web.transport.Platform`):
asyncio's ``call_later`` in CPython, the browser's ``setTimeout``/``clearTimeout`` under Pyodide,
so that a cancelled timer is really cleared; futures and tasks run on the running loop (the
WebLoop in the browser). The same code runs in both places.

The public :class:`CircleWsClient` is a thin facade over an internal engine that owns the tasks.
Tasks hold the engine, never the facade, so dropping the last reference to a client lets the
garbage collector close it.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
import weakref
from typing import Any, Callable

from .auth import PrivateKey
from .auth_flow import AuthFlow
from .backoff import Backoff
from .config import ClientOptions, validate_url
from .errors import (
    AuthError,
    CircleWsClientError,
    ClientClosedError,
    ConfigError,
    ConnectError,
    ConnectionLostError,
    JsonRpcError,
    NotConnectedError,
    ProtocolError,
    RequestTimeoutError,
)
from .metrics import Metrics
from .results import PlayResult
from .rpc import BadFrame, ErrorResponse, Notification, PendingCalls, Response, RpcCodec
from .status import ConnectionStatus, StatusMachine
from .transport import Platform, Transport, TransportFactory, TransportOptions

__all__ = ["CircleWsClient"]

logger = logging.getLogger("circle_ws_web")

S = ConnectionStatus
NotificationCallback = Callable[[str, Any], None]
StatusCallback = Callable[[ConnectionStatus], None]

#: Close code we use when we drop a connection ourselves (keep-alive, protocol violation).
CLOSE_GOING_AWAY = 4000
#: How long ``disconnect()`` waits for the socket's close event before giving up on it.
CLOSE_WAIT = 3.0
#: Slack when comparing deadlines with the clock (timers may fire a hair early).
CLOCK_SLACK = 0.001
#: The engine's clock. Timers are set by delay (``call_later``), so any monotonic clock works;
#: this one is what the asyncio loops use, without a method call per message.
_clock = time.monotonic


class _CallFuture(asyncio.Future):  # type: ignore[type-arg]
    """The future of one call; an answer can resume its waiter at once (:meth:`resolve_now`).

    Why: a plain future wakes whoever awaits it through ``loop.call_soon``. Under Pyodide each
    such trip is a browser task and a JS->Python crossing (~40 us on a slow machine), more
    than everything else a call costs. An answer arrives in a transport callback, outside any
    task, so the waiting task can be stepped right there, as a JS promise would resume its
    ``await``. Inside a running task (CPython's reader task) that is not allowed, and it falls
    back to ``call_soon``; errors, timeouts and cancellation always go the usual way.
    """

    __slots__ = ("_waiters",)

    def __init__(self, *, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop=loop)
        self._waiters: list[tuple[Callable[[Any], object], contextvars.Context]] = []

    def add_done_callback(self, fn: Callable[[Any], object], *, context: contextvars.Context | None = None) -> None:
        if context is None:
            context = contextvars.copy_context()
        if self.done():
            self.get_loop().call_soon(fn, self, context=context)
        else:
            self._waiters.append((fn, context))

    def remove_done_callback(self, fn: Callable[[Any], object]) -> int:
        before = len(self._waiters)
        self._waiters = [w for w in self._waiters if w[0] != fn]
        return before - len(self._waiters)

    def set_result(self, result: Any) -> None:
        super().set_result(result)
        self._schedule()

    def set_exception(self, exception: BaseException | type[BaseException]) -> None:
        super().set_exception(exception)
        self._schedule()

    def cancel(self, msg: Any = None) -> bool:
        if not super().cancel(msg):
            return False
        self._schedule()
        return True

    def _schedule(self) -> None:
        waiters, self._waiters = self._waiters, []
        call_soon = self.get_loop().call_soon
        for fn, context in waiters:
            call_soon(fn, self, context=context)

    def resolve_now(self, result: Any) -> None:
        """``set_result``, and run the waiters right here unless a task is running."""
        super().set_result(result)
        loop = self.get_loop()
        if asyncio.current_task(loop) is not None:
            self._schedule()
            return
        waiters, self._waiters = self._waiters, []
        for fn, context in waiters:
            try:
                context.run(fn, self)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:  # what Handle._run does with a failing callback
                loop.call_exception_handler({"message": "exception resuming a call's waiter", "exception": exc})


class _Connection:
    """Event sink for one socket. Events from a connection that is no longer current are dropped."""

    __slots__ = ("engine", "transport", "opened", "closed", "lost", "last_rx", "connected_at", "close_info")

    def __init__(self, engine: _Engine, loop: asyncio.AbstractEventLoop) -> None:
        self.engine = engine
        self.transport: Transport | None = None
        #: True when the socket opened, False when it closed first.
        self.opened: asyncio.Future[bool] = loop.create_future()
        #: Resolved by the transport's close event (the socket is really gone).
        self.closed: asyncio.Future[None] = loop.create_future()
        #: Resolved when the engine stops using this connection (close event or abandoned).
        self.lost: asyncio.Future[str] = loop.create_future()
        self.last_rx = _clock()
        self.connected_at = 0.0
        self.close_info = ""

    def on_open(self) -> None:
        if not self.opened.done():
            self.opened.set_result(True)

    def on_message(self, data: str | bytes) -> None:
        if self.engine.conn is self:
            self.engine.on_frame(self, data)

    def on_error(self, message: str) -> None:
        self.close_info = message

    def on_close(self, code: int, reason: str) -> None:
        # Keep what the error event said (the browser's is vague) and add the close code.
        detail = ", ".join(part for part in (reason, self.close_info) if part)
        self.close_info = f"code {code}" + (f", {detail}" if detail else "")
        if not self.opened.done():
            self.opened.set_result(False)
        if not self.closed.done():
            self.closed.set_result(None)
        self.engine.lose(self, f"connection closed ({self.close_info})")


class _Engine:
    """All state and behaviour of a client. Referenced by its tasks; never references the facade."""

    def __init__(
        self,
        url: str,
        key: PrivateKey | None,
        options: ClientOptions,
        transport_factory: TransportFactory | None,
    ) -> None:
        self.url = url
        self.key = key
        self.options = options
        from .transports import current_platform

        platform: Platform = current_platform()
        self.factory = transport_factory or platform.transport_factory
        self.call_later = platform.call_later
        self.transport_options = TransportOptions(max_message_size=options.max_message_size)
        self.status = StatusMachine(on_error=self._callback_failed)
        self.codec = RpcCodec(options.max_message_size)
        # id -> (future, sent_at, method, timeout)
        self.pending: PendingCalls[tuple[_CallFuture, float, str, float]] = PendingCalls()
        self.backoff = Backoff(
            options.reconnect_initial_delay,
            options.reconnect_max_delay,
            options.reconnect_factor,
            options.reconnect_jitter,
            options.reconnect_max_attempts,
        )
        self.metrics = Metrics()
        self.conn: _Connection | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.supervisor: asyncio.Task[None] | None = None
        self.keepalive: asyncio.Task[None] | None = None
        self.cancel_timer: Callable[[], None] | None = None
        self.timer_at = 0.0
        self.closing = False
        self.notification_listeners: list[NotificationCallback] = []

    # -- calls -------------------------------------------------------------------------------

    def _loop(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self.loop is None:
            self.loop = loop
        elif loop is not self.loop:
            raise RuntimeError("a CircleWsClient is bound to the event loop it was first used on")
        return loop

    def send_call(
        self, conn: _Connection, method: str, params: Any, timeout: float
    ) -> tuple[str, _CallFuture]:
        """Send one request on ``conn``; the future gets the result or a typed error."""
        loop = self.loop
        assert loop is not None and conn.transport is not None
        try:
            call_id, frame = self.codec.request(method, params)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"params of {method!r} are not JSON-serializable: {exc}") from None
        # Not loop.create_future(): Pyodide's WebLoop adds a done callback to every future it
        # creates, which cost each answered call one more trip through the browser's task
        # queue (~40 us). Nothing here needs that bookkeeping.
        future = _CallFuture(loop=loop)
        now = _clock()
        deadline = now + timeout
        self.pending.add(call_id, (future, now, method, timeout), deadline)
        if self.cancel_timer is None or deadline < self.timer_at:
            self._arm_timer(deadline, now)
        self.metrics.calls += 1
        conn.transport.send(frame)
        return call_id, future

    async def request(self, conn: _Connection, method: str, params: Any, timeout: float) -> Any:
        call_id, future = self.send_call(conn, method, params, timeout)
        try:
            return await future
        except asyncio.CancelledError:
            if not future.done():  # the caller was cancelled: forget the call
                self.pending.pop(call_id)
            elif not future.cancelled():
                # Failed (e.g. connection lost) just as the caller was cancelled: mark the error
                # seen, or the future would log it when collected, its traceback (and with it
                # the connection) kept alive by the logging.
                future.exception()
            raise

    def _arm_timer(self, when: float, now: float) -> None:
        if self.cancel_timer is not None:
            self.cancel_timer()
        self.cancel_timer = self.call_later(max(0.0, when - now), self._on_deadline)
        self.timer_at = when

    def _on_deadline(self) -> None:
        self.cancel_timer = None
        now = _clock()
        for _call_id, (future, _sent, method, timeout) in self.pending.expired(now + CLOCK_SLACK):
            if not future.done():
                self.metrics.timeouts += 1
                future.set_exception(
                    RequestTimeoutError(f"no answer to {method!r} from {self.url} within {timeout:g}s")
                )
        nxt = self.pending.next_deadline()
        if nxt is not None:
            self._arm_timer(nxt, now)

    def fail_all(self, make_error: Callable[[str], CircleWsClientError]) -> None:
        for future, _sent, method, _timeout in self.pending.drain():
            if not future.done():
                self.metrics.errors += 1
                future.set_exception(make_error(method))
        if self.cancel_timer is not None:
            self.cancel_timer()
            self.cancel_timer = None

    # -- incoming ----------------------------------------------------------------------------

    def on_frame(self, conn: _Connection, data: str | bytes) -> None:
        now = _clock()
        conn.last_rx = now
        answer = self.codec.parse_result(data)  # the usual frame, on the short path
        if answer is not None:
            entry = self.pending.pop(answer[0])
            if entry is not None:
                future = entry[0]
                if not future.done():
                    self.metrics.record_rtt(now - entry[1])
                    future.resolve_now(answer[1])  # last: it may run the caller's code
                return
        msg = self.codec.parse(data)
        kind = type(msg)
        if kind is Response:
            assert isinstance(msg, Response)
            entry = self.pending.pop(msg.id)
            if entry is None:
                self.metrics.unknown_ids += 1
                logger.warning("%s: response for unknown call id %r dropped", self.url, msg.id)
                return
            future, sent, _method, _timeout = entry
            if not future.done():
                self.metrics.record_rtt(now - sent)
                future.resolve_now(msg.result)
        elif kind is ErrorResponse:
            assert isinstance(msg, ErrorResponse)
            entry = self.pending.pop(msg.id) if msg.id is not None else None
            if entry is None:
                self.metrics.unknown_ids += 1
                logger.warning("%s: error response for unknown call id %r: %s", self.url, msg.id, msg.error)
                return
            future, sent, _method, _timeout = entry
            if not future.done():
                self.metrics.record_rtt(now - sent)
                self.metrics.errors += 1
                future.set_exception(msg.error)
        elif kind is Notification:
            assert isinstance(msg, Notification)
            self.metrics.notifications += 1
            for listener in list(self.notification_listeners):
                try:
                    listener(msg.method, msg.params)
                except Exception as exc:
                    self._callback_failed(exc)
        else:
            assert isinstance(msg, BadFrame)
            self.metrics.bad_frames += 1
            logger.warning("%s: bad frame from server dropped: %s", self.url, msg.reason)
            if msg.id is not None:
                entry = self.pending.pop(msg.id)
                if entry is not None and not entry[0].done():
                    self.metrics.errors += 1
                    entry[0].set_exception(ProtocolError(f"bad response to {entry[2]!r}: {msg.reason}"))

    async def wait(self, future: asyncio.Future[Any], timeout: float) -> bool:
        """Wait up to ``timeout`` for ``future`` (without cancelling it); True if it is done.
        Built on the platform timer rather than ``asyncio.wait_for`` so nothing lingers."""
        if future.done():
            return True
        waiter: asyncio.Future[None] = self._loop().create_future()

        def wake(_: object = None) -> None:
            if not waiter.done():
                waiter.set_result(None)

        future.add_done_callback(wake)
        cancel = self.call_later(timeout, wake)
        try:
            await waiter
        finally:
            cancel()
            future.remove_done_callback(wake)
        return future.done()

    async def sleep(self, delay: float) -> None:
        await self.wait(self._loop().create_future(), delay)

    def _callback_failed(self, exc: BaseException) -> None:
        logger.error("%s: a user callback raised %s: %s", self.url, type(exc).__name__, exc)

    # -- connection lifecycle ----------------------------------------------------------------

    def lose(self, conn: _Connection, why: str) -> None:
        """Stop using ``conn``: fail its calls at once, and hand over to the supervisor."""
        if self.conn is not conn:
            return
        self.conn = None
        if conn.lost.done():
            return
        conn.lost.set_result(why)
        self.fail_all(
            lambda method: ConnectionLostError(
                f"connection to {self.url} lost while {method!r} was in flight ({why}); not re-sent"
            )
        )
        if self.keepalive is not None:
            self.keepalive.cancel()
            self.keepalive = None
        if self.status.status is S.CONNECTED and not self.closing:
            logger.warning("%s: %s; reconnecting", self.url, why)
            self.status.move(S.RECONNECTING)

    async def open_once(self) -> _Connection:
        """One attempt: open the socket and authenticate, within ``connect_timeout``."""
        loop = self._loop()
        self.status.move(S.CONNECTING)
        conn = _Connection(self, loop)
        self.conn = conn
        try:
            conn.transport = self.factory(self.url, conn, self.transport_options)
        except Exception as exc:
            self.conn = None
            raise ConnectError(f"could not open a WebSocket to {self.url}: {exc}") from None
        timed_out = False

        def expire() -> None:
            nonlocal timed_out
            timed_out = True
            if not conn.opened.done():
                conn.opened.set_result(False)
            self.lose(conn, "connect timeout")  # fails an authentication step in flight

        cancel = self.call_later(self.options.connect_timeout, expire)
        try:
            await self._handshake(conn)
        except BaseException as exc:
            self.lose(conn, "connection attempt failed")
            conn.transport.close(1000, "connection attempt failed")
            if self.closing and not isinstance(exc, asyncio.CancelledError):
                raise ClientClosedError(f"client for {self.url} was closed while connecting") from None
            if timed_out:
                raise ConnectError(
                    f"could not connect to {self.url} within {self.options.connect_timeout:g}s"
                ) from None
            if isinstance(exc, (ConnectError, AuthError)):
                raise
            if isinstance(exc, CircleWsClientError):
                raise ConnectError(f"connection to {self.url} failed during authentication: {exc}") from exc
            raise
        finally:
            cancel()
        if self.closing:  # disconnect() ran while the last step was being delivered
            conn.transport.close(1000, "client disconnect")
            raise ClientClosedError(f"client for {self.url} was closed while connecting")
        conn.connected_at = conn.last_rx = _clock()
        self.status.move(S.CONNECTED)
        self.keepalive = loop.create_task(self._keepalive(conn))
        return conn

    async def _handshake(self, conn: _Connection) -> None:
        if not await conn.opened:
            raise ConnectError(f"could not connect to {self.url}: {conn.close_info or 'refused'}")
        if self.key is not None:
            self.status.move(S.AUTHENTICATING)
            await self.authenticate(conn)

    async def authenticate(self, conn: _Connection) -> None:
        assert self.key is not None
        flow = AuthFlow(self.key.public_key_hex, self.key.sign_message)
        timeout = self.options.request_timeout
        method, params = flow.start()
        try:
            result = await self.request(conn, method, params, timeout)
            method, params = flow.receive_nonce(result)
            result = await self.request(conn, method, params, timeout)
        except JsonRpcError as exc:
            raise flow.receive_error(exc) from None
        flow.receive_result(result)
        logger.info("%s: authenticated as %s…", self.url, self.key.public_key_hex[:18])

    async def _keepalive(self, conn: _Connection) -> None:
        """Ping when the connection has been quiet for ``keepalive_interval``; any answer proves
        life. No answer within ``keepalive_timeout``: the connection is dead, drop it."""
        loop = self.loop
        assert loop is not None
        interval, timeout = self.options.keepalive_interval, self.options.keepalive_timeout
        while self.conn is conn:
            idle = _clock() - conn.last_rx
            if idle < interval:
                await self.sleep(interval - idle)
                continue
            try:
                await self.request(conn, "ping", {}, timeout)
            except JsonRpcError:
                pass  # a server without `ping` answers -32601: alive all the same
            except RequestTimeoutError:
                why = f"keep-alive: no answer to ping within {timeout:g}s"
                self.keepalive = None  # we are that task; do not cancel ourselves
                self.lose(conn, why)
                assert conn.transport is not None
                conn.transport.close(CLOSE_GOING_AWAY, "keep-alive timeout")
                return
            except CircleWsClientError:
                return

    async def maintain(self, conn: _Connection | None) -> None:
        """The supervisor: wait for the connection to be lost, then reconnect with backoff."""
        loop = self.loop
        assert loop is not None
        try:
            while not self.closing:
                if conn is not None:
                    await conn.lost
                    if self.closing:
                        return
                    if _clock() - conn.connected_at >= self.options.reconnect_min_uptime:
                        self.backoff.reset()
                    conn = None
                delay = self.backoff.next_delay()
                if delay is None:
                    logger.error(
                        "%s: giving up after %d reconnection attempts", self.url, self.backoff.attempts
                    )
                    self.status.move(S.DISCONNECTED)
                    return
                self.status.move(S.RECONNECTING)
                await self.sleep(delay)
                if self.closing:
                    return
                try:
                    conn = await self.open_once()
                except CircleWsClientError as exc:
                    logger.warning(
                        "%s: reconnection attempt %d failed: %s", self.url, self.backoff.attempts, exc
                    )
                    if not self.closing:
                        self.status.move(S.RECONNECTING)
                    continue
                self.metrics.reconnects += 1
                logger.info("%s: reconnected", self.url)
        except asyncio.CancelledError:
            pass
        finally:
            if self.supervisor is asyncio.current_task():
                self.supervisor = None

    def start_supervisor(self, conn: _Connection | None) -> None:
        if self.supervisor is None and not self.closing:
            self.supervisor = self._loop().create_task(self.maintain(conn))

    async def close(self) -> None:
        if self.status.status is S.CLOSED:
            return
        self.closing = True
        me = asyncio.current_task()
        tasks = [t for t in (self.supervisor, self.keepalive) if t is not None and t is not me]
        for task in tasks:
            task.cancel()
        self.keepalive = None
        conn, self.conn = self.conn, None
        self.fail_all(lambda method: ClientClosedError(f"client for {self.url} closed while {method!r} was in flight"))
        self.status.move(S.CLOSED)
        if conn is not None and conn.transport is not None:
            if not conn.lost.done():
                conn.lost.set_result("client closed")
            opened = conn.opened.done() and conn.opened.result()
            if not conn.opened.done():
                conn.opened.set_result(False)  # a connect() in progress ends now
            conn.transport.close(1000, "client disconnect")
            # A socket that never opened has nothing to confirm; its transport cleans up alone.
            if opened and not await self.wait(conn.closed, CLOSE_WAIT):
                logger.warning("%s: socket did not confirm close within %gs", self.url, CLOSE_WAIT)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def close_now(self) -> None:
        """Synchronous best-effort close, for garbage collection: no awaiting possible here."""
        if self.status.status is S.CLOSED:
            return
        self.closing = True
        try:
            for task in (self.supervisor, self.keepalive):
                if task is not None and not task.done():
                    task.cancel()
            conn, self.conn = self.conn, None
            self.fail_all(lambda method: ClientClosedError(f"client for {self.url} was garbage-collected"))
            if conn is not None and conn.transport is not None:
                conn.transport.close(1000, "client garbage-collected")
            self.status.move(S.CLOSED)
        except RuntimeError:
            pass  # the event loop is already closed (interpreter shutdown): nothing left to stop


class CircleWsClient:
    """An autonomous client for one circle server.

    ``await connect()`` opens and authenticates (raising on failure of that first attempt);
    from then on the client keeps itself alive, reconnects with backoff and re-authenticates
    with a fresh nonce, until ``await disconnect()``. Calls never hang: each ends with a result
    or a typed error within its timeout.
    """

    def __init__(
        self,
        url: str,
        private_key: str | None = None,
        *,
        keepalive_interval: float = 20.0,
        keepalive_timeout: float = 10.0,
        request_timeout: float = 30.0,
        connect_timeout: float = 10.0,
        reconnect_initial_delay: float = 0.5,
        reconnect_max_delay: float = 30.0,
        reconnect_factor: float = 2.0,
        reconnect_jitter: bool = True,
        reconnect_max_attempts: int | None = None,
        reconnect_min_uptime: float = 5.0,
        max_message_size: int = 16 * 2**20,
        transport_factory: TransportFactory | None = None,
    ) -> None:
        url = validate_url(url)
        key = None if private_key is None else PrivateKey(private_key)
        options = ClientOptions(
            keepalive_interval=keepalive_interval,
            keepalive_timeout=keepalive_timeout,
            request_timeout=request_timeout,
            connect_timeout=connect_timeout,
            reconnect_initial_delay=reconnect_initial_delay,
            reconnect_max_delay=reconnect_max_delay,
            reconnect_factor=reconnect_factor,
            reconnect_jitter=reconnect_jitter,
            reconnect_max_attempts=reconnect_max_attempts,
            reconnect_min_uptime=reconnect_min_uptime,
            max_message_size=max_message_size,
        )
        self._engine = _Engine(url, key, options, transport_factory)
        weakref.finalize(self, self._engine.close_now)

    @classmethod
    def _from_options(
        cls, url: str, key: PrivateKey | None, options: ClientOptions, factory: TransportFactory | None = None
    ) -> CircleWsClient:
        """Build from already-validated settings (used by the manager)."""
        self = cls.__new__(cls)
        self._engine = _Engine(url, key, options, factory)
        weakref.finalize(self, self._engine.close_now)
        return self

    # -- properties ----------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self._engine.url

    @property
    def public_key(self) -> str | None:
        """Uncompressed SEC1 public key (hex), or None without a private key."""
        key = self._engine.key
        return None if key is None else key.public_key_hex

    @property
    def status(self) -> ConnectionStatus:
        return self._engine.status.status

    @property
    def is_connected(self) -> bool:
        """True when ready for calls (connected and, with a key, authenticated)."""
        return self._engine.status.status is S.CONNECTED

    @property
    def metrics(self) -> Metrics:
        """A snapshot of the client's counters."""
        return self._engine.metrics.snapshot()

    @property
    def options(self) -> ClientOptions:
        return self._engine.options

    def __repr__(self) -> str:
        key = self.public_key
        shown = "" if key is None else f", public_key='{key[:18]}…'"
        return f"<CircleWsClient url={self.url!r} status={self.status.value}{shown}>"

    # -- lifecycle -----------------------------------------------------------------------

    async def connect(self, *, keep_trying: bool = False) -> None:
        """Open and authenticate; raises ``ConnectError``/``AuthError`` if this attempt fails.

        Once connected the client maintains itself. With ``keep_trying=True`` a failed first
        attempt still raises, but the client goes on reconnecting in the background (with
        backoff) and becomes ready when the server comes up: what ``WsManager`` uses.
        """
        engine = self._engine
        engine._loop()
        if engine.closing:
            raise ClientClosedError(f"client for {engine.url} is closed")
        if engine.status.status is S.CONNECTED:
            return
        if engine.supervisor is not None:
            await self.wait_connected(engine.options.connect_timeout)
            return
        try:
            conn = await engine.open_once()
        except CircleWsClientError:
            if engine.closing:
                raise
            if keep_trying:
                engine.status.move(S.RECONNECTING)
                engine.start_supervisor(None)
            else:
                engine.status.move(S.DISCONNECTED)
            raise
        engine.start_supervisor(conn)

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until the client is ready for calls; ``NotConnectedError`` after ``timeout``."""
        engine = self._engine
        loop = engine._loop()
        if engine.status.status is S.CONNECTED:
            return
        if engine.closing:
            raise ClientClosedError(f"client for {engine.url} is closed")
        if engine.supervisor is None:
            raise NotConnectedError(f"{engine.url} is not connected and not reconnecting; call connect()")
        ready: asyncio.Future[None] = loop.create_future()

        def watch(status: ConnectionStatus) -> None:
            if ready.done():
                return
            if status is S.CONNECTED:
                ready.set_result(None)
            elif status in (S.CLOSED, S.DISCONNECTED):
                ready.set_exception(NotConnectedError(f"{engine.url} is {status.value}"))

        unsubscribe = engine.status.subscribe(watch)
        try:
            if timeout is None:
                await ready
            elif not await engine.wait(ready, timeout):
                raise NotConnectedError(f"{engine.url} did not connect within {timeout:g}s")
            ready.result()
        finally:
            unsubscribe()

    async def disconnect(self) -> None:
        """Close the socket, fail calls in flight with ``ClientClosedError``, cancel timers and
        tasks, and release every resource. Idempotent; the client cannot be reused."""
        await self._engine.close()

    async def __aenter__(self) -> CircleWsClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.disconnect()

    # -- calls ---------------------------------------------------------------------------

    async def call(self, method: str, params: Any = None, *, timeout: float | None = None) -> Any:
        """Call any JSON-RPC method; returns its result or raises a typed error."""
        engine = self._engine
        if not isinstance(method, str) or not method:
            raise TypeError(f"method must be a non-empty str, got {method!r}")
        if timeout is None:
            timeout = engine.options.request_timeout
        elif isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ConfigError(f"timeout must be a number of seconds > 0, got {timeout!r}")
        conn = engine.conn
        if engine.status.status is not S.CONNECTED or conn is None:
            if engine.closing:
                raise ClientClosedError(f"client for {engine.url} is closed")
            raise NotConnectedError(f"{engine.url} is not ready (status: {engine.status.status.value})")
        engine._loop()
        return await engine.request(conn, method, params, timeout)

    async def play(self, script: str, *, timeout: float | None = None) -> PlayResult:
        """Run ``script`` on the server; ``JsonRpcError`` (code -32010) if the script fails."""
        if not isinstance(script, str):
            raise TypeError(f"script must be a str, got {type(script).__name__}")
        result = await self.call("play", {"script": script}, timeout=timeout)
        output = result.get("output") if isinstance(result, dict) else None
        if not isinstance(output, str):
            self._engine.metrics.bad_frames += 1
            raise ProtocolError(f"play result from {self.url} has no 'output' string: {result!r:.200}")
        return PlayResult(output)

    async def ping(self, *, timeout: float | None = None) -> Any:
        return await self.call("ping", {}, timeout=timeout)

    async def whoami(self, *, timeout: float | None = None) -> Any:
        return await self.call("whoami", {}, timeout=timeout)

    async def fetch_nonce(self, *, timeout: float | None = None) -> str:
        """Ask the server for a fresh nonce bound to this client's public key."""
        key = self._require_key()
        result = await self.call("fetch_nonce", {"pubkey": key.public_key_hex}, timeout=timeout)
        nonce = result.get("nonce") if isinstance(result, dict) else None
        if not isinstance(nonce, str):
            raise ProtocolError(f"fetch_nonce result from {self.url} has no 'nonce' string")
        return nonce

    async def authenticate(self) -> None:
        """Authenticate the current connection again (it is done automatically on connect)."""
        self._require_key()
        engine = self._engine
        conn = engine.conn
        if engine.status.status is not S.CONNECTED or conn is None:
            raise NotConnectedError(f"{engine.url} is not ready (status: {engine.status.status.value})")
        await engine.authenticate(conn)

    def _require_key(self) -> PrivateKey:
        key = self._engine.key
        if key is None:
            raise AuthError(f"client for {self.url} has no private key")
        return key

    # -- callbacks -----------------------------------------------------------------------

    def on_status_change(self, callback: StatusCallback) -> Callable[[], None]:
        """Call ``callback(status)`` on every status change; returns an unsubscribe function."""
        return self._engine.status.subscribe(callback)

    def on_notification(self, callback: NotificationCallback) -> Callable[[], None]:
        """Call ``callback(method, params)`` for every server notification; returns an
        unsubscribe function."""
        listeners = self._engine.notification_listeners
        listeners.append(callback)

        def unsubscribe() -> None:
            try:
                listeners.remove(callback)
            except ValueError:
                pass

        return unsubscribe
