"""CircleWsClient: one autonomous, self-maintaining connection to one circle server.

All behaviour lives in the sans-I/O :class:`~circle_ws_web.lifecycle.Lifecycle`; this module is
its asyncio driver. It feeds the machine the transport's events and the clock's time, and
executes the actions the machine queues: open/send/close on a transport, set/cancel a timer,
resolve or fail a caller's future, tell the status and notification listeners. Timers come from
the clock (:class:`~circle_ws_web.transport.Clock`): the platform's ``call_later`` (asyncio's in
CPython, the browser's ``setTimeout`` under Pyodide, so a cancelled timer is really cleared), or
a test's virtual clock. The same code runs in both places, and no task runs in the background:
a client that is connected holds a socket and a few timers, nothing else.

The public :class:`CircleWsClient` is a thin facade over the driver. Timers and sockets hold the
driver, never the facade, so dropping the last reference to a client lets the garbage collector
close it.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import time
import weakref
from typing import Any, Callable

from .auth import PrivateKey
from .auth_flow import AuthFlow
from .config import ClientOptions, validate_url
from .errors import (
    AuthError,
    ClientClosedError,
    ConfigError,
    JsonRpcError,
    NotConnectedError,
    ProtocolError,
)
from .lifecycle import (
    CancelTimer,
    CloseSocket,
    ConnectDone,
    FailCall,
    Lifecycle,
    NotificationReceived,
    OpenSocket,
    ResolveCall,
    Send,
    SetTimer,
    StatusChanged,
    Timer,
)
from .metrics import Metrics
from .results import PlayResult
from .status import ConnectionStatus
from .transport import CallLater, Clock, PageEvents, Transport, TransportFactory, TransportOptions

__all__ = ["CircleWsClient"]

logger = logging.getLogger("circle_ws_web")

S = ConnectionStatus
NotificationCallback = Callable[[str, Any], None]
StatusCallback = Callable[[ConnectionStatus], None]

#: How long ``disconnect()`` waits for the sockets' close events before giving up on them.
CLOSE_WAIT = 3.0


_future_set_result = asyncio.Future.set_result  # the C methods, called without super()
_future_set_exception = asyncio.Future.set_exception
_future_cancel = asyncio.Future.cancel
_current_task = asyncio.current_task
_get_running_loop = asyncio._get_running_loop


class _CallFuture(asyncio.Future):  # type: ignore[type-arg]
    """The future of one call; an answer can resume its waiter at once (:meth:`resolve_now`).

    Why: a plain future wakes whoever awaits it through ``loop.call_soon``. Under Pyodide each
    such trip is a browser task and a JS->Python crossing (~40 us on a slow machine), more
    than everything else a call costs. An answer arrives in a transport callback, outside any
    task, so the waiting task can be stepped right there, as a JS promise would resume its
    ``await``. Inside a running task (CPython's reader task) that is not allowed, and it falls
    back to ``call_soon``; errors, timeouts and cancellation always go the usual way.

    The callbacks are kept here, not in the C future (whose callbacks only ``call_soon``
    reaches). No ``__init__`` of its own: the C one runs alone (one call less per call), and the
    list of callbacks is made by the first one (the task awaiting the call).
    """

    _waiters: list[tuple[Callable[[Any], object], contextvars.Context]] | None = None

    def add_done_callback(self, fn: Callable[[Any], object], *, context: contextvars.Context | None = None) -> None:
        if context is None:
            context = contextvars.copy_context()
        if self.done():
            self.get_loop().call_soon(fn, self, context=context)
        elif self._waiters is None:
            self._waiters = [(fn, context)]
        else:
            self._waiters.append((fn, context))

    def remove_done_callback(self, fn: Callable[[Any], object]) -> int:
        before = self._waiters or []
        self._waiters = [w for w in before if w[0] != fn]
        return len(before) - len(self._waiters)

    def set_result(self, result: Any) -> None:
        _future_set_result(self, result)
        self._schedule()

    def set_exception(self, exception: BaseException | type[BaseException]) -> None:
        _future_set_exception(self, exception)
        self._schedule()

    def cancel(self, msg: Any = None) -> bool:
        if not _future_cancel(self, msg):
            return False
        self._schedule()
        return True

    def _schedule(self) -> None:
        waiters, self._waiters = self._waiters, None
        if waiters:
            call_soon = self.get_loop().call_soon
            for fn, context in waiters:
                call_soon(fn, self, context=context)

    def resolve_now(self, result: Any) -> None:
        """``set_result``, and run the waiters right here unless a task is running."""
        _future_set_result(self, result)
        loop = self.get_loop()
        if _current_task(loop) is not None:
            self._schedule()
            return
        waiters, self._waiters = self._waiters, None
        for fn, context in waiters or ():
            try:
                context.run(fn, self)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:  # what Handle._run does with a failing callback
                loop.call_exception_handler({"message": "exception resuming a call's waiter", "exception": exc})


class _PlatformClock:
    """The platform's clock: ``time.monotonic`` and the platform's own timers."""

    __slots__ = ("call_later",)

    def __init__(self, call_later: CallLater) -> None:
        self.call_later = call_later

    #: The builtin itself, not a function calling it: read twice per call.
    now = staticmethod(time.monotonic)


class _Socket:
    """Event sink of one transport: tags its events with the attempt's socket id."""

    __slots__ = ("engine", "sid", "transport", "opened", "closed")

    def __init__(self, engine: _Engine, sid: int) -> None:
        self.engine = engine
        self.sid = sid
        self.transport: Transport | None = None
        self.opened = False
        #: Created by ``disconnect()`` when it waits for this socket's close event.
        self.closed: asyncio.Future[None] | None = None

    def on_open(self) -> None:
        self.opened = True
        engine = self.engine
        engine.machine.socket_opened(engine.now(), self.sid)
        engine.flush()

    def on_message(self, data: str | bytes) -> None:
        engine = self.engine
        engine.machine.frame(engine.now(), self.sid, data)
        engine.flush()

    def on_error(self, message: str) -> None:
        self.engine.machine.socket_error(self.sid, message)

    def on_close(self, code: int, reason: str) -> None:
        engine = self.engine
        if engine.sockets.get(self.sid) is self:
            del engine.sockets[self.sid]
        if self.closed is not None and not self.closed.done():
            self.closed.set_result(None)
        engine.machine.socket_closed(engine.now(), self.sid, code, reason)
        engine.flush()


class _Engine:
    """Executes the lifecycle's actions. Referenced by timers and sockets; never references
    the facade."""

    def __init__(
        self,
        url: str,
        key: PrivateKey | None,
        options: ClientOptions,
        transport_factory: TransportFactory | None,
        clock: Clock | None,
        page_events: PageEvents | None = None,
    ) -> None:
        from .transports import current_platform

        platform = current_platform()
        self.url = url
        self.key = key
        self.options = options
        self.factory: TransportFactory = transport_factory or platform.transport_factory
        self.clock: Clock = clock or _PlatformClock(platform.call_later)
        self.page_events = (page_events or platform.page_events) if options.lifecycle else None
        self._unsubscribe_page: Callable[[], None] | None = None
        self.now = self.clock.now
        self.machine = Lifecycle(
            url,
            options,
            public_key=None if key is None else key.public_key_hex,
            sign=None if key is None else key.sign_message,
        )
        self.transport_options = TransportOptions(max_message_size=options.max_message_size)
        self.sockets: dict[int, _Socket] = {}
        self.timers: dict[Timer, tuple[int, Callable[[], None]]] = {}
        self._timer_token = 0
        self.users = 0  # clients using this engine (more than one when pooled)
        self.pool_key: tuple[Any, ...] | None = None
        self.status_listeners: list[StatusCallback] = []
        self.notification_listeners: list[NotificationCallback] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self._flushing = False

    def bind_loop(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self.loop is None:
            self.loop = loop
            if self.page_events is not None and self.machine.status is not S.CLOSED:
                self._unsubscribe_page = self.page_events.subscribe(self.on_page_event)
        elif loop is not self.loop:
            raise RuntimeError("a CircleWsClient is bound to the event loop it was first used on")
        return loop

    # -- executing actions -------------------------------------------------------------------

    def flush(self) -> None:
        """Execute the machine's queued actions, in order. Re-entrant calls (an action ran user
        code that fed the machine another event) return at once: the outer loop goes on."""
        if self._flushing:
            return
        self._flushing = True
        actions = self.machine.actions
        try:
            while actions:
                action = actions.popleft()
                try:
                    self._execute(action)
                except Exception:  # a bug: report it, but never leave the queue half-run
                    logger.exception("%s: internal error executing %r", self.url, action)
        finally:
            self._flushing = False

    def _execute(self, action: Any) -> None:
        kind = type(action)
        if kind is Send:
            sock = self.sockets.get(action.sid)
            if sock is not None and sock.transport is not None:
                sock.transport.send(action.text)
        elif kind is ResolveCall:
            waiter = action.waiter
            if not waiter.done():
                waiter.resolve_now(action.result)  # last: it may run the caller's code
        elif kind is FailCall:
            if not action.waiter.done():
                action.waiter.set_exception(action.error)
        elif kind is SetTimer:
            self._set_timer(action.timer, action.delay)
        elif kind is CancelTimer:
            entry = self.timers.pop(action.timer, None)
            if entry is not None:
                entry[1]()
        elif kind is OpenSocket:
            self._open(action.sid)
        elif kind is CloseSocket:
            sock = self.sockets.get(action.sid)
            if sock is not None and sock.transport is not None:
                sock.transport.close(action.code, action.reason)
        elif kind is StatusChanged:
            for listener in list(self.status_listeners):
                try:
                    listener(action.status)
                except Exception as exc:  # a user's callback must not break the client
                    self.callback_failed(exc)
        elif kind is ConnectDone:
            for waiter in action.waiters:
                if not waiter.done():
                    if action.error is None:
                        waiter.set_result(None)
                    else:
                        waiter.set_exception(action.error)
        elif kind is NotificationReceived:
            for on_note in list(self.notification_listeners):
                try:
                    on_note(action.method, action.params)
                except Exception as exc:
                    self.callback_failed(exc)
        else:  # pragma: no cover - every action type is handled above
            raise TypeError(f"unknown action {action!r}")

    def _open(self, sid: int) -> None:
        sock = _Socket(self, sid)
        self.sockets[sid] = sock
        try:
            sock.transport = self.factory(self.url, sock, self.transport_options)
        except Exception as exc:  # e.g. a URL the browser refuses
            self.sockets.pop(sid, None)
            self.machine.socket_error(sid, f"could not open a WebSocket: {exc}")
            self.machine.socket_closed(self.now(), sid, 1006, "")

    def _set_timer(self, timer: Timer, delay: float) -> None:
        old = self.timers.pop(timer, None)
        if old is not None:
            old[1]()
        self._timer_token += 1
        token = self._timer_token
        cancel = self.clock.call_later(delay, functools.partial(self._fire, timer, token))
        self.timers[timer] = (token, cancel)

    def _fire(self, timer: Timer, token: int) -> None:
        entry = self.timers.get(timer)
        if entry is None or entry[0] != token:
            return  # replaced or cancelled after the platform queued it
        del self.timers[timer]
        self.machine.timer_fired(self.now(), timer)
        self.flush()

    def on_page_event(self, name: str) -> None:
        """A browser lifecycle event (see :data:`circle_ws_web.transport.PAGE_EVENTS`)."""
        machine = self.machine
        handler = {
            "offline": machine.network_offline,
            "online": machine.network_online,
            "wake": machine.wake,
            "pagehide": machine.page_hide,
            "pageshow": machine.page_show,
        }.get(name)
        if handler is None:
            logger.debug("%s: unknown page event %r ignored", self.url, name)
            return
        handler(self.now())
        self.flush()

    def _stop_page_events(self) -> None:
        unsubscribe, self._unsubscribe_page = self._unsubscribe_page, None
        if unsubscribe is not None:
            unsubscribe()

    def callback_failed(self, exc: BaseException) -> None:
        logger.error("%s: a user callback raised %s: %s", self.url, type(exc).__name__, exc, exc_info=exc)

    # -- waiting -----------------------------------------------------------------------------

    async def wait(self, future: asyncio.Future[Any], timeout: float) -> bool:
        """Wait up to ``timeout`` for ``future`` (without cancelling it); True if it is done.
        Built on the clock's timers rather than ``asyncio.wait_for`` so nothing lingers, and so
        a virtual clock drives it too."""
        if future.done():
            return True
        waiter: asyncio.Future[None] = self.bind_loop().create_future()

        def wake(_: object = None) -> None:
            if not waiter.done():
                waiter.set_result(None)

        future.add_done_callback(wake)
        cancel = self.clock.call_later(timeout, wake)
        try:
            await waiter
        finally:
            cancel()
            future.remove_done_callback(wake)
        return future.done()

    # -- closing -----------------------------------------------------------------------------

    async def close(self) -> None:
        """``disconnect()``: close everything, then wait (bounded) for the sockets to confirm."""
        self.machine.disconnect(self.now())
        self._stop_page_events()
        self.flush()
        if self.loop is None:
            return  # never used on a loop: nothing was opened
        loop = self.bind_loop()
        waits = []
        for sock in list(self.sockets.values()):
            if sock.opened:  # a socket that never opened has nothing to confirm
                if sock.closed is None:
                    sock.closed = loop.create_future()
                waits.append(sock.closed)
        pending = [closed for closed in waits if not closed.done()]
        if pending:
            # One plain future, not asyncio.gather: a gather cancelled on time-out would leave
            # an exception nobody retrieves ("_GatheringFuture exception was never retrieved").
            all_closed: asyncio.Future[None] = loop.create_future()
            remaining = len(pending)

            def one_closed(_: object) -> None:
                nonlocal remaining
                remaining -= 1
                if remaining == 0 and not all_closed.done():
                    all_closed.set_result(None)

            for closed in pending:
                closed.add_done_callback(one_closed)
            if not await self.wait(all_closed, CLOSE_WAIT):
                logger.warning("%s: socket did not confirm close within %gs", self.url, CLOSE_WAIT)

    def close_now(self) -> None:
        """Synchronous close, for garbage collection: no awaiting possible here."""
        self.machine.disconnect(self.now())
        self._stop_page_events()
        if self.loop is not None and self.loop.is_closed():
            self.machine.actions.clear()  # interpreter shutdown: no future can be resolved now
            return
        self.flush()


#: Engines shared by clients of the same URL, key, settings, transport, clock and event loop:
#: one authenticated connection however many managers (or bare clients) use that server.
_POOL: dict[tuple[Any, ...], _Engine] = {}


def _acquire(
    url: str,
    key: PrivateKey | None,
    options: ClientOptions,
    factory: TransportFactory | None,
    clock: Clock | None,
    page_events: PageEvents | None,
    slot: int = 0,
) -> _Engine:
    """A new engine, or (``options.pool``) the pooled one for the same settings, one user more.
    ``slot`` tells apart the connections a manager keeps to one server on purpose."""
    if not options.pool:
        engine = _Engine(url, key, options, factory, clock, page_events)
    else:
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None  # built outside any loop: shared only with others built so
        pool_key = (url, None if key is None else key.public_key_hex, options, factory, clock, page_events, loop, slot)
        engine = _POOL.get(pool_key)  # type: ignore[assignment]
        if engine is None or engine.machine.status is S.CLOSED:
            engine = _Engine(url, key, options, factory, clock, page_events)
            engine.pool_key = pool_key
            _POOL[pool_key] = engine
    engine.users += 1
    return engine


def _release(engine: _Engine) -> bool:
    """One user fewer; True when that was the last (the caller then closes the engine)."""
    engine.users -= 1
    if engine.users > 0:
        return False
    if engine.pool_key is not None and _POOL.get(engine.pool_key) is engine:
        del _POOL[engine.pool_key]
    return True


def _collected(engine: _Engine) -> None:
    """A client was garbage-collected without ``disconnect()``."""
    if _release(engine):
        engine.close_now()


def _bad_timeout(timeout: object) -> bool:
    """Not a finite number of seconds > 0 (bool is no number of seconds here)."""
    return isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < float("inf")


class CircleWsClient:
    """An autonomous client for one circle server.

    ``await connect()`` opens and authenticates (raising on failure of that first attempt);
    from then on the client keeps itself alive, reconnects with backoff and re-authenticates
    with a fresh nonce, until ``await disconnect()``. Calls never hang: each ends with a result
    or a typed error within its timeout. ``connect()`` is single-flight: concurrent callers
    share one attempt and its outcome.

    Pooling (``pool=True``, the default): clients with the same URL, key and settings, made on
    the same event loop (by several managers, say), share one authenticated connection. Each
    client still has its own callbacks, calls and ``disconnect()``; the connection closes with
    the last of them. ``metrics`` are the connection's. ``pool=False`` gives a connection of
    its own.
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
        lifecycle: bool = True,
        pool: bool = True,
        transport_factory: TransportFactory | None = None,
        clock: Clock | None = None,
        page_events: PageEvents | None = None,
    ) -> None:
        url = validate_url(url)
        if private_key is not None and not isinstance(private_key, str):
            raise ConfigError(f"private_key must be a hex string, got {type(private_key).__name__}")
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
            lifecycle=lifecycle,
            pool=pool,
        )
        self._attach(_acquire(url, key, options, transport_factory, clock, page_events))

    @classmethod
    def _from_options(
        cls,
        url: str,
        key: PrivateKey | None,
        options: ClientOptions,
        factory: TransportFactory | None = None,
        clock: Clock | None = None,
        page_events: PageEvents | None = None,
        slot: int = 0,
    ) -> CircleWsClient:
        """Build from already-validated settings (used by the manager)."""
        self = cls.__new__(cls)
        self._attach(_acquire(url, key, options, factory, clock, page_events, slot))
        return self

    def _attach(self, engine: _Engine) -> None:
        self._engine = engine
        self._closed = False
        self._status_callbacks: list[StatusCallback] = []
        self._unsubscribers: list[Callable[[], None]] = []
        self._calls: dict[_CallFuture, str] = {}  # this client's calls in flight -> call id
        self._connects: set[asyncio.Future[None]] = set()  # this client's connect() waiters
        self._finalizer = weakref.finalize(self, _collected, engine)

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
        return S.CLOSED if self._closed else self._engine.machine.status

    @property
    def is_connected(self) -> bool:
        """True when ready for calls (connected and, with a key, authenticated)."""
        return not self._closed and self._engine.machine.status is S.CONNECTED

    @property
    def metrics(self) -> Metrics:
        """A snapshot of the client's counters."""
        return self._engine.machine.metrics.snapshot()

    @property
    def last_error(self) -> str | None:
        """What ended the last failed connection attempt or lost connection (None before any)."""
        return self._engine.machine.last_error

    @property
    def paused(self) -> str | None:
        """Why the client makes no attempt right now (browser only): ``"offline"`` (waiting for
        the network) or ``"page hidden"`` (after ``pagehide``); None otherwise."""
        return self._engine.machine.paused

    @property
    def options(self) -> ClientOptions:
        return self._engine.options

    def __repr__(self) -> str:
        key = self.public_key
        shown = "" if key is None else f", public_key='{key[:18]}…'"
        return f"<CircleWsClient url={self.url!r} status={self.status.value}{shown}>"

    def _repr_html_(self) -> str:  # notebooks: a status table (circle_ws_web.display)
        from .display import client_html; return client_html(self)  # noqa: E702

    # -- lifecycle -----------------------------------------------------------------------

    async def connect(self, *, keep_trying: bool = False) -> None:
        """Open and authenticate; raises ``ConnectError``/``AuthError`` if this attempt fails.

        Single-flight: a call while an attempt is in progress waits for that attempt and gets
        its outcome; a call while the client waits to reconnect starts that attempt now. Once
        connected the client maintains itself. With ``keep_trying=True`` a failed attempt
        still raises, but the client goes on reconnecting in the background (with backoff)
        and becomes ready when the server comes up: what ``WsManager`` uses.
        """
        engine = self._engine
        if self._closed:
            raise ClientClosedError(f"client for {engine.url} is closed")
        loop = engine.bind_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        if engine.machine.connect(engine.now(), waiter, keep_trying=keep_trying):
            return
        engine.flush()
        self._connects.add(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            engine.machine.connect_cancelled(engine.now(), waiter)
            engine.flush()
            raise
        finally:
            self._connects.discard(waiter)

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until the client is ready for calls; ``NotConnectedError`` after ``timeout``,
        or at once if it is neither connecting nor reconnecting."""
        engine = self._engine
        if timeout is not None and _bad_timeout(timeout):  # NaN would even corrupt the loop's timers
            raise ConfigError(f"timeout must be None or a finite number of seconds > 0, got {timeout!r}")
        loop = engine.bind_loop()
        machine = engine.machine
        if self._closed or machine.status is S.CLOSED:
            raise ClientClosedError(f"client for {engine.url} is closed")
        if machine.status is S.CONNECTED:
            return
        if machine.status is S.DISCONNECTED:
            raise NotConnectedError(f"{engine.url} is not connected and not reconnecting; call connect()")
        ready: asyncio.Future[None] = loop.create_future()

        def watch(status: ConnectionStatus) -> None:
            if ready.done():
                return
            if status is S.CONNECTED:
                ready.set_result(None)
            elif status is S.CLOSED:
                ready.set_exception(ClientClosedError(f"client for {engine.url} was closed"))
            elif status is S.DISCONNECTED:
                ready.set_exception(NotConnectedError(f"{engine.url} is {status.value}"))

        unsubscribe = self.on_status_change(watch)
        try:
            if timeout is None:
                await ready
            elif not await engine.wait(ready, timeout):
                raise NotConnectedError(f"{engine.url} did not connect within {timeout:g}s")
            ready.result()
        finally:
            unsubscribe()
            if ready.done() and not ready.cancelled():
                ready.exception()  # retrieved: this wait was cancelled as the client closed
            else:
                ready.cancel()

    async def disconnect(self) -> None:
        """Close the socket, fail calls in flight with ``ClientClosedError``, cancel timers,
        and release every resource. Idempotent, never raises; the client cannot be reused.
        A pooled connection closes with the last client using it; before that, only this
        client's calls and callbacks end."""
        if self._closed:
            return
        self._closed = True
        self._finalizer.detach()
        engine = self._engine
        try:
            if _release(engine):
                await engine.close()
            else:
                self._leave(engine)
        except asyncio.CancelledError:
            raise
        except Exception:  # closing must not fail the caller; it is a bug worth reporting
            logger.exception("%s: error while disconnecting (ignored; the client is closed)", self.url)
        finally:
            for unsubscribe in list(self._unsubscribers):
                unsubscribe()

    def _leave(self, engine: _Engine) -> None:
        """Close this client on a connection others still use: end only what is its own."""
        now = engine.now()
        for waiter, call_id in list(self._calls.items()):
            engine.machine.cancel_call(call_id)
            if not waiter.done():
                waiter.set_exception(ClientClosedError(f"client for {engine.url} closed while a call was in flight"))
        for connecting in list(self._connects):
            engine.machine.connect_cancelled(now, connecting)
            if not connecting.done():
                connecting.set_exception(ClientClosedError(f"client for {engine.url} was closed while connecting"))
        engine.flush()
        for callback in list(self._status_callbacks):
            try:
                callback(S.CLOSED)
            except Exception as exc:
                engine.callback_failed(exc)

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
        elif _bad_timeout(timeout):
            raise ConfigError(f"timeout must be a finite number of seconds > 0, got {timeout!r}")
        if self._closed:
            raise ClientClosedError(f"client for {engine.url} is closed")
        loop = engine.loop
        if loop is None or _get_running_loop() is not loop:
            loop = engine.bind_loop()  # binds, or raises for another loop / no running loop
        waiter = _CallFuture(loop=loop)
        call_id = engine.machine.send_call(engine.now(), method, params, timeout, waiter)
        engine.flush()
        calls = self._calls
        calls[waiter] = call_id
        try:
            return await waiter
        except asyncio.CancelledError:
            engine.machine.cancel_call(call_id)  # forget it now, not when the server answers
            if waiter.done() and not waiter.cancelled():
                # Failed just as the caller was cancelled: mark the error seen, or the future
                # would log it when collected.
                waiter.exception()
            raise
        finally:
            del calls[waiter]

    async def play(self, script: str, *, timeout: float | None = None) -> PlayResult:
        """Run ``script`` on the server; ``JsonRpcError`` (code -32010) if the script fails."""
        if not isinstance(script, str):
            raise TypeError(f"script must be a str, got {type(script).__name__}")
        result = await self.call("play", {"script": script}, timeout=timeout)
        output = result.get("output") if isinstance(result, dict) else None
        if not isinstance(output, str):
            self._engine.machine.metrics.bad_frames += 1
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
        key = self._require_key()
        flow = AuthFlow(key.public_key_hex, key.sign_message)
        method, params = flow.start()
        try:
            result = await self.call(method, params)
            method, params = flow.receive_nonce(result)
            result = await self.call(method, params)
        except JsonRpcError as exc:
            raise flow.receive_error(exc) from None
        flow.receive_result(result)

    def _require_key(self) -> PrivateKey:
        key = self._engine.key
        if key is None:
            raise AuthError(f"client for {self.url} has no private key")
        return key

    # -- callbacks -----------------------------------------------------------------------

    def on_status_change(self, callback: StatusCallback) -> Callable[[], None]:
        """Call ``callback(status)`` on every status change; returns an unsubscribe function."""
        undo_engine = _subscribe(self._engine.status_listeners, callback)
        undo_own = _subscribe(self._status_callbacks, callback)

        def unsubscribe() -> None:
            undo_engine()
            undo_own()

        return self._remember(unsubscribe)

    def on_notification(self, callback: NotificationCallback) -> Callable[[], None]:
        """Call ``callback(method, params)`` for every server notification; returns an
        unsubscribe function."""
        return self._remember(_subscribe(self._engine.notification_listeners, callback))

    def _remember(self, undo: Callable[[], None]) -> Callable[[], None]:
        """Keep ``undo`` for ``disconnect()`` until it is called (then forget it: no leak per
        subscription, e.g. one per ``wait_connected()``)."""
        unsubscribers = self._unsubscribers

        def unsubscribe() -> None:
            undo()
            try:
                unsubscribers.remove(unsubscribe)
            except ValueError:
                pass

        unsubscribers.append(unsubscribe)
        return unsubscribe


def _subscribe(listeners: list[Any], callback: Any) -> Callable[[], None]:
    listeners.append(callback)

    def unsubscribe() -> None:
        try:
            listeners.remove(callback)
        except ValueError:
            pass

    return unsubscribe
