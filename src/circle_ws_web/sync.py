"""Blocking versions of the manager and the client, for CPython scripts and the command line.

Why: a script that only wants ``40 + 2`` from a server should not have to learn asyncio. Like
``websockets.sync``, this module offers the same names as the package with methods that block::

    from circle_ws_web.sync import ws_manager

    with ws_manager().private_key(KEY).add_server_url("ws://127.0.0.1:8701").build() as manager:
        print(manager.execute_script("ws://127.0.0.1:8701", "40 + 2").output)   # 42

The clients themselves are the asyncio ones, unchanged: they run on a private event loop in a
background thread that each sync manager (or stand-alone sync client) owns. So every guarantee
holds as it is (keep-alive, reconnection, re-authentication, typed errors, a call is never
re-sent), and it keeps holding *between* calls, while the calling thread does something else.

- **Thread-safe.** Any thread may call any method; each call is handed to the loop thread.
- **No call hangs.** Each blocking call takes the ``timeout`` its async counterpart takes, and
  the wait itself is bounded by that timeout (or the configured one) plus :data:`GRACE`.
- **Ctrl-C** (``KeyboardInterrupt``) while a call waits cancels that call and re-raises.
- **Cleanup.** ``close()`` (also ``disconnect_all()``), leaving ``with``, garbage collection and
  interpreter exit close the connections and stop the thread.
- Callbacks (``on_status_change``, ``on_notification``) run on the loop thread: keep them short
  and never make a blocking call from one (that raises ``RuntimeError`` instead of deadlocking).

Not for the browser: under Pyodide nothing may block (the page would freeze and no message
would arrive), so importing this module there raises ``ImportError``.
"""

from __future__ import annotations

import sys

if sys.platform == "emscripten":  # pragma: no cover - exercised in the browser tests
    raise ImportError(
        "circle_ws_web.sync is not available in the browser (Pyodide): its calls block the "
        "calling thread, and in a page nothing may block (no WebSocket message or timer would "
        "run, and the page would freeze). Use the async API: await manager.connect()."
    )

import asyncio
import concurrent.futures
import logging
import threading
import weakref
from types import TracebackType
from typing import Any, Awaitable, Callable, Coroutine, Iterable, Mapping, TypeVar

from . import builder as _builder
from .auth import PrivateKey
from .breaker import BreakerSettings, BreakerState
from .builder import _KEEP, _Keep
from .client import CLOSE_WAIT
from .client import CircleWsClient as AsyncCircleWsClient
from .config import ClientOptions
from .errors import CircleWsClientError, ClientClosedError, RequestTimeoutError
from .manager import WsManager as AsyncWsManager
from .metrics import Metrics
from .results import PlayResult, ServerHealth
from .routing import ServerSettings
from .status import ConnectionStatus
from .transport import TransportFactory

__all__ = ["GRACE", "CircleWsClient", "WsManager", "WsManagerBuilder", "ws_manager"]

logger = logging.getLogger("circle_ws_web")

T = TypeVar("T")

#: Seconds a blocking call waits beyond its own timeout before giving up on the background
#: loop (which would be a bug: the async call ends within its timeout by itself).
GRACE = 5.0


class _Runner:
    """A private asyncio event loop running in a daemon thread, and the way in from others.

    Holds no reference to the facades, so a manager that is garbage-collected can be finalized.
    """

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._lock = threading.Lock()
        self._closed = False
        self._closers: list[Callable[[], Awaitable[None]]] = []
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        loop = self.loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            try:
                tasks = asyncio.all_tasks(loop)
                for task in tasks:
                    task.cancel()
                if tasks:
                    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                asyncio.set_event_loop(None)
                loop.close()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    def in_loop_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def add_closer(self, closer: Callable[[], Awaitable[None]]) -> None:
        """Run ``await closer()`` on the loop when the runner closes, before the loop stops."""
        self._closers.append(closer)

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the loop; the returned future can be waited on from any thread."""
        with self._lock:
            if self._closed:
                coro.close()
                raise ClientClosedError("this sync manager or client is closed")
            return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], bound: float | None) -> T:
        """Run ``coro`` on the loop and block until it ends (at most ``bound`` seconds)."""
        if self.in_loop_thread():
            coro.close()
            raise RuntimeError(
                "a blocking circle_ws_web.sync call from the client's own loop thread (a status or "
                "notification callback) would wait for itself forever; hand it to another thread"
            )
        return self.wait(self.submit(coro), bound)

    @staticmethod
    def wait(future: concurrent.futures.Future[T], bound: float | None) -> T:
        """Block on ``future``; on Ctrl-C or when ``bound`` runs out, cancel it and raise."""
        try:
            return future.result(bound)
        except BaseException as exc:
            if future.done() and not future.cancelled() and future.exception() is exc:
                raise  # the call's own outcome (a typed error), not the wait's
            future.cancel()  # cancels the task on the loop: the call is forgotten at once
            if isinstance(exc, TimeoutError):
                raise RequestTimeoutError(
                    f"the background event loop did not answer within {bound:g} s"
                ) from None
            raise

    def call(self, fn: Callable[[], T]) -> T:
        """Run a plain function on the loop thread (so it sees a consistent state) and return
        its result; directly when already there, or once the loop has stopped."""
        if self._closed or self.in_loop_thread() or not self._thread.is_alive():
            return fn()

        async def run() -> T:
            return fn()

        try:
            return self.wait(self.submit(run()), GRACE)
        except ClientClosedError:  # closed meanwhile: nothing runs on the loop any more
            return fn()

    def close(self) -> None:
        """Run the closers, stop the loop and join the thread. Idempotent, never raises."""
        with self._lock:
            if self._closed:
                already = True
            else:
                already, self._closed = False, True
        if already:
            if not self.in_loop_thread():
                self._thread.join(CLOSE_WAIT + GRACE)
            return
        if not self._thread.is_alive():
            return
        if self.in_loop_thread():  # from a callback or the collector: cannot wait for ourselves
            self.loop.create_task(self._close_then_stop())
            return
        future = asyncio.run_coroutine_threadsafe(self._close_then_stop(), self.loop)
        try:
            future.result(CLOSE_WAIT + GRACE)
        except BaseException as exc:  # noqa: BLE001 - closing must go on whatever happens
            logger.warning("closing the sync manager's connections: %s: %s", type(exc).__name__, exc)
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(CLOSE_WAIT + GRACE)

    async def _close_then_stop(self) -> None:
        try:
            for closer in self._closers:
                try:
                    await closer()
                except Exception:
                    logger.exception("error while closing a sync client (ignored)")
        finally:
            self.loop.call_soon(self.loop.stop)


def _bound(timeout: float | None, default: float) -> float:
    """How long a blocking wait may last: the call's timeout (or the configured one) + GRACE."""
    if isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and 0 < timeout < float("inf"):
        return float(timeout) + GRACE
    return default + GRACE  # an invalid timeout is refused by the async call, at once


class CircleWsClient:
    """A blocking :class:`circle_ws_web.CircleWsClient`: the same methods, without ``await``.

    Built directly, it owns a private loop thread (closed by ``disconnect()``/``close()``,
    ``with``, garbage collection or interpreter exit); from ``WsManager.get_client()`` it
    shares the manager's.
    """

    def __init__(
        self,
        url: str,
        private_key: str | None = None,
        *,
        transport_factory: TransportFactory | None = None,
        **tuning: Any,
    ) -> None:
        """Same arguments as the async client (``keepalive_interval=``, ``request_timeout=``...);
        raises ``ConfigError`` at once on bad input."""
        runner = _Runner(f"circle-ws-client {url!s:.60}")
        try:
            client = runner.run(_make(lambda: AsyncCircleWsClient(
                url, private_key, transport_factory=transport_factory, **tuning
            )), GRACE)
        except BaseException:
            runner.close()
            raise
        runner.add_closer(client.disconnect)
        self._init(client, runner, owner=True)

    @classmethod
    def _wrap(cls, client: AsyncCircleWsClient, runner: _Runner) -> CircleWsClient:
        self = cls.__new__(cls)
        self._init(client, runner, owner=False)
        return self

    def _init(self, client: AsyncCircleWsClient, runner: _Runner, *, owner: bool) -> None:
        self._client = client
        self._runner = runner
        self._owner = owner
        if owner:
            weakref.finalize(self, runner.close)  # also at interpreter exit (atexit)

    # -- properties ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self._client.url

    @property
    def public_key(self) -> str | None:
        """Uncompressed SEC1 public key (hex), or None without a private key."""
        return self._client.public_key

    @property
    def status(self) -> ConnectionStatus:
        return self._client.status

    @property
    def is_connected(self) -> bool:
        return self._client.is_connected

    @property
    def metrics(self) -> Metrics:
        """A snapshot of the client's counters, taken on the loop thread."""
        return self._runner.call(lambda: self._client.metrics)

    @property
    def options(self) -> ClientOptions:
        return self._client.options

    def __repr__(self) -> str:
        return repr(self._client)

    def _repr_html_(self) -> str:
        from .display import client_html
        return client_html(self)

    # -- lifecycle -------------------------------------------------------------------------

    def connect(self, *, keep_trying: bool = False) -> None:
        """Open and authenticate; raises ``ConnectError``/``AuthError`` if this attempt fails."""
        self._runner.run(self._client.connect(keep_trying=keep_trying), self.options.connect_timeout + GRACE)

    def wait_connected(self, timeout: float | None = None) -> None:
        """Block until ready for calls; ``NotConnectedError`` after ``timeout`` (None: no limit,
        as the async one)."""
        bound = None if timeout is None else _bound(timeout, 0.0)
        self._runner.run(self._client.wait_connected(timeout), bound)

    def disconnect(self) -> None:
        """Close the connection (idempotent, never raises); a client that owns its loop thread
        stops it too."""
        if self._owner:
            self._runner.close()  # its closer disconnects the client
        elif not self._runner.closed:
            try:
                self._runner.run(self._client.disconnect(), CLOSE_WAIT + GRACE)
            except ClientClosedError:
                pass  # the manager closed meanwhile: so is this client

    close = disconnect

    def __enter__(self) -> CircleWsClient:
        self.connect()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.disconnect()

    # -- calls -----------------------------------------------------------------------------

    def call(self, method: str, params: Any = None, *, timeout: float | None = None) -> Any:
        """Call any JSON-RPC method; returns its result or raises a typed error."""
        bound = _bound(timeout, self.options.request_timeout)
        return self._runner.run(self._client.call(method, params, timeout=timeout), bound)

    def play(self, script: str, *, timeout: float | None = None) -> PlayResult:
        """Run ``script``; ``JsonRpcError`` (code -32010) if the script fails."""
        bound = _bound(timeout, self.options.request_timeout)
        return self._runner.run(self._client.play(script, timeout=timeout), bound)

    def ping(self, *, timeout: float | None = None) -> Any:
        return self.call("ping", {}, timeout=timeout)

    def whoami(self, *, timeout: float | None = None) -> Any:
        return self.call("whoami", {}, timeout=timeout)

    def fetch_nonce(self, *, timeout: float | None = None) -> str:
        bound = _bound(timeout, self.options.request_timeout)
        return self._runner.run(self._client.fetch_nonce(timeout=timeout), bound)

    def authenticate(self) -> None:
        """Authenticate the current connection again (two calls)."""
        self._runner.run(self._client.authenticate(), 2 * self.options.request_timeout + GRACE)

    # -- callbacks -------------------------------------------------------------------------

    def on_status_change(self, callback: Callable[[ConnectionStatus], None]) -> Callable[[], None]:
        """``callback(status)`` on every change, called on the loop thread; returns an
        unsubscribe function (callable from any thread)."""
        undo = self._runner.call(lambda: self._client.on_status_change(callback))
        runner = self._runner  # not self: a subscriber must not keep the manager alive
        return lambda: runner.call(undo)

    def on_notification(self, callback: Callable[[str, Any], None]) -> Callable[[], None]:
        """``callback(method, params)`` for every server notification, on the loop thread."""
        undo = self._runner.call(lambda: self._client.on_notification(callback))
        runner = self._runner  # not self: a subscriber must not keep the manager alive
        return lambda: runner.call(undo)


async def _make(factory: Callable[[], T]) -> T:
    """Build an object on the loop thread (clients bind to the loop they are used on)."""
    return factory()


class WsManager:
    """A blocking :class:`circle_ws_web.WsManager` with a private loop thread.

    Build it with :func:`ws_manager` (or with the async manager's arguments). Every method of
    the async manager is here, blocking instead of awaitable, with the same arguments and
    outcomes; ``close()`` (or ``disconnect_all()``, or leaving ``with``) closes every
    connection and stops the thread.
    """

    def __init__(
        self,
        urls: Iterable[str],
        private_key: PrivateKey | str | None = None,
        options: ClientOptions | None = None,
        transport_factory: TransportFactory | None = None,
        *,
        servers: Mapping[str, ServerSettings] | None = None,
        breaker: BreakerSettings | None = None,
    ) -> None:
        """Validates like the async manager: ``ConfigError`` at once on bad input.
        ``servers`` and ``breaker`` are the async manager's (per-server settings, breakers)."""
        urls = list(urls) if not isinstance(urls, (str, bytes)) else urls
        self._setup(lambda: AsyncWsManager(
            urls, private_key, options, transport_factory, servers=servers, breaker=breaker
        ))

    @classmethod
    def _from_builder(cls, inner: _builder.WsManagerBuilder) -> WsManager:
        self = cls.__new__(cls)
        self._setup(inner.build)
        return self

    def _setup(self, make: Callable[[], AsyncWsManager]) -> None:
        runner = _Runner("circle-ws-manager")
        try:
            manager = runner.run(_make(make), GRACE)
        except BaseException:
            runner.close()
            raise
        runner.add_closer(manager.disconnect_all)
        self._manager = manager
        self._runner = runner
        # Every client of the manager shares its options; kept here so the bounds below hold
        # even once every server was removed.
        self._options = manager.get_client(manager.urls[0]).options
        self._lock = threading.Lock()
        self._clients: dict[str, list[CircleWsClient]] = {}
        weakref.finalize(self, runner.close)  # also at interpreter exit (atexit)

    def __repr__(self) -> str:
        return repr(self._manager)

    def _repr_html_(self) -> str:
        from .display import manager_html
        return manager_html(self)

    def display(self) -> Any:
        """In a notebook: show the status table and update it in place on every status change;
        returns IPython's display handle (see :func:`circle_ws_web.display.live_view`)."""
        from .display import live_view
        return live_view(self)

    @property
    def urls(self) -> list[str]:
        return self._manager.urls

    @property
    def closed(self) -> bool:
        """True once ``close()`` ran: calls raise ``ClientClosedError``."""
        return self._runner.closed

    @property
    def thread(self) -> threading.Thread:
        """The background thread the clients run on (it ends when the manager closes)."""
        return self._runner.thread

    def _bound(self, timeout: float | None) -> float:
        return _bound(timeout, self._options.request_timeout)

    def connect(self) -> dict[str, CircleWsClientError | None]:
        """Connect to every server at once; ``{url: None or the first attempt's error}``.
        ``NotConnectedError`` if none came up (the others keep retrying in the background)."""
        return self._runner.run(self._manager.connect(), self._options.connect_timeout + GRACE)

    def _connect_report(self) -> dict[str, CircleWsClientError | None]:
        """Like ``connect()``, but never raises: ``{url: None or its first error}`` even when
        no server came up (the command line names each server's reason)."""
        clients = [(url, c) for url in self._manager.urls for c in self._manager.get_clients(url)]

        async def each() -> dict[str, CircleWsClientError | None]:
            outcomes = await asyncio.gather(*(c.connect(keep_trying=True) for _, c in clients), return_exceptions=True)
            report: dict[str, CircleWsClientError | None] = {}
            for (url, _), outcome in zip(clients, outcomes, strict=True):
                if not (isinstance(outcome, CircleWsClientError) or outcome is None):
                    raise outcome
                if outcome is None or url not in report:  # up if any of its connections is
                    report[url] = outcome
            return report

        return self._runner.run(each(), self._options.connect_timeout + GRACE)

    # -- the fleet -------------------------------------------------------------------------

    def add_server(self, url: str, *, priority: int = 0, weight: int = 1, connections: int = 1) -> None:
        """Add a server while the manager runs; returns once its connection attempts have begun
        (they go on in the background until it comes up). ``ConfigError`` for a bad URL or
        option, or a URL already there. To wait: ``manager.get_client(url).wait_connected(t)``."""
        self._runner.run(
            self._manager.add_server(url, priority=priority, weight=weight, connections=connections), GRACE
        )

    def remove_server(self, url: str) -> None:
        """Take a server out: no new call goes to it, its connections close, its calls in
        flight fail with ``ClientClosedError``. ``ConfigError`` if it is not there."""
        self._runner.run(self._manager.remove_server(url), CLOSE_WAIT + GRACE)

    def get_clients(self, url: str) -> list[CircleWsClient]:
        """Every blocking client of ``url``, one per connection (sharing this manager's
        thread); ``ConfigError`` if that URL is not configured."""
        inner = self._manager.get_clients(url)
        with self._lock:
            wrapped = self._clients.get(inner[0].url)
            # A server removed and added again has new clients: wrap those.
            if wrapped is None or len(wrapped) != len(inner) or any(
                w._client is not c for w, c in zip(wrapped, inner)
            ):
                wrapped = [CircleWsClient._wrap(c, self._runner) for c in inner]
                self._clients[inner[0].url] = wrapped
            return list(wrapped)

    def get_client(self, url: str) -> CircleWsClient:
        """The blocking client for ``url`` (its first connection's, sharing this manager's
        thread); ``ConfigError`` if that URL is not configured."""
        return self.get_clients(url)[0]

    # -- calls -----------------------------------------------------------------------------

    def execute_script(self, url: str, script: str, *, timeout: float | None = None) -> PlayResult:
        """Run ``script`` on the server at ``url``; raises at once if it is not ready."""
        return self._runner.run(self._manager.execute_script(url, script, timeout=timeout), self._bound(timeout))

    def execute_script_any(
        self, script: str, *, timeout: float | None = None, idempotent: bool = False, hedge_after: float | None = None
    ) -> PlayResult:
        """Run ``script`` on the best server (priority, health, weight); the result's ``url``
        says which. Moves on to the next server only when nothing was sent, unless
        ``idempotent=True``; ``hedge_after`` as in :meth:`circle_ws_web.WsManager.execute_script_any`.
        ``timeout`` bounds the whole call, retries included."""
        return self._runner.run(
            self._manager.execute_script_any(script, timeout=timeout, idempotent=idempotent, hedge_after=hedge_after),
            self._bound(timeout),
        )

    def execute_script_all(
        self, script: str, *, timeout: float | None = None, quorum: int | None = None
    ) -> dict[str, PlayResult | CircleWsClientError]:
        """Run ``script`` on every server at once; each URL maps to its result or its error.
        ``quorum=k``: return once ``k`` servers answered (the rest are cancelled, left out)."""
        return self._runner.run(
            self._manager.execute_script_all(script, timeout=timeout, quorum=quorum), self._bound(timeout)
        )

    def call(self, url: str, method: str, params: Any = None, *, timeout: float | None = None) -> Any:
        """Any JSON-RPC method on the server at ``url``."""
        return self._runner.run(self._manager.call(url, method, params, timeout=timeout), self._bound(timeout))

    def _submit_call(
        self, url: str, method: str, params: Any = None, *, timeout: float | None = None
    ) -> concurrent.futures.Future[Any]:
        """Start a call and return its future at once (the command line shows progress while
        it waits, and cancels it on Ctrl-C)."""
        self._manager.get_client(url)  # ConfigError now, in the caller's thread
        return self._runner.submit(self._manager.call(url, method, params, timeout=timeout))

    def _submit_script(self, url: str, script: str, *, timeout: float | None = None) -> concurrent.futures.Future[PlayResult]:
        self._manager.get_client(url)
        return self._runner.submit(self._manager.execute_script(url, script, timeout=timeout))

    def _submit_any(
        self, script: str, *, timeout: float | None = None, idempotent: bool = False
    ) -> concurrent.futures.Future[PlayResult]:
        return self._runner.submit(self._manager.execute_script_any(script, timeout=timeout, idempotent=idempotent))

    def connected_urls(self) -> list[str]:
        return self._runner.call(self._manager.connected_urls)

    def connection_statuses(self) -> dict[str, ConnectionStatus]:
        return self._runner.call(self._manager.connection_statuses)

    def is_connected(self, url: str) -> bool:
        return self._manager.is_connected(url)

    def metrics(self) -> dict[str, Metrics]:
        return self._runner.call(self._manager.metrics)

    def health(self) -> dict[str, ServerHealth]:
        """Per server: breaker, failures, calls in flight, round-trip percentiles, reconnects
        and the last failure (taken on the loop thread: one consistent snapshot)."""
        return self._runner.call(self._manager.health)

    def breaker_state(self, url: str) -> BreakerState:
        """The breaker of ``url`` now (``closed``, ``open`` or ``half-open``)."""
        return self._runner.call(lambda: self._manager.breaker_state(url))

    def on_status_change(self, callback: Callable[[str, ConnectionStatus], None]) -> Callable[[], None]:
        """``callback(url, status)`` on every change of any server (those added later too),
        called on the loop thread; returns an unsubscribe function (callable from any thread)."""
        undo = self._runner.call(lambda: self._manager.on_status_change(callback))
        runner = self._runner  # not self: a subscriber must not keep the manager alive
        return lambda: runner.call(undo)

    def on_breaker_change(self, callback: Callable[[str, BreakerState], None]) -> Callable[[], None]:
        """``callback(url, state)`` when a breaker opens, half-opens or closes, on the loop
        thread; returns an unsubscribe function (callable from any thread)."""
        undo = self._runner.call(lambda: self._manager.on_breaker_change(callback))
        runner = self._runner
        return lambda: runner.call(undo)

    def disconnect(self, url: str) -> None:
        """Close every connection to ``url`` (the server stays in the manager, closed; the
        others stay connected)."""
        self._manager.get_client(url)  # ConfigError now, in the caller's thread
        if self._runner.closed:
            return
        try:
            self._runner.run(self._manager.disconnect(url), CLOSE_WAIT + GRACE)
        except ClientClosedError:
            pass  # the manager closed meanwhile: so is this server

    def close(self) -> None:
        """Close every client, all at once, and stop the thread. Idempotent; never raises."""
        self._runner.close()

    disconnect_all = close

    def __enter__(self) -> WsManager:
        self.connect()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class WsManagerBuilder:
    """The builder of :func:`circle_ws_web.ws_manager`, whose ``build()`` gives a blocking
    :class:`WsManager`. Every method validates at once (``ConfigError``) and returns the
    builder; tuning methods change only the arguments given."""

    def __init__(self) -> None:
        self._inner = _builder.WsManagerBuilder()

    def __repr__(self) -> str:
        return repr(self._inner).replace("<WsManagerBuilder", "<sync.WsManagerBuilder", 1)

    def private_key(self, key: str) -> WsManagerBuilder:
        """Authenticate with this secp256k1 key (64 hex chars, optional 0x)."""
        self._inner.private_key(key)
        return self

    def add_server_url(self, url: str, priority: int = 0, weight: int = 1, connections: int = 1) -> WsManagerBuilder:
        """As :meth:`circle_ws_web.WsManagerBuilder.add_server_url` (priority, weight,
        connections; ``ConfigError`` naming a bad value)."""
        self._inner.add_server_url(url, priority, weight, connections)
        return self

    def add_server_urls(self, *urls: str) -> WsManagerBuilder:
        self._inner.add_server_urls(*urls)
        return self

    def keepalive(self, interval: float | _Keep = _KEEP, timeout: float | _Keep = _KEEP) -> WsManagerBuilder:
        """As :meth:`circle_ws_web.WsManagerBuilder.keepalive`."""
        self._inner.keepalive(interval, timeout)
        return self

    def reconnect(
        self,
        initial_delay: float | _Keep = _KEEP,
        max_delay: float | _Keep = _KEEP,
        factor: float | _Keep = _KEEP,
        jitter: bool | _Keep = _KEEP,
        max_attempts: int | None | _Keep = _KEEP,
        min_uptime: float | _Keep = _KEEP,
    ) -> WsManagerBuilder:
        """As :meth:`circle_ws_web.WsManagerBuilder.reconnect`."""
        self._inner.reconnect(initial_delay, max_delay, factor, jitter, max_attempts, min_uptime)
        return self

    def request_timeout(self, seconds: float | _Keep = _KEEP) -> WsManagerBuilder:
        self._inner.request_timeout(seconds)
        return self

    def connect_timeout(self, seconds: float | _Keep = _KEEP) -> WsManagerBuilder:
        self._inner.connect_timeout(seconds)
        return self

    def max_message_size(self, size: int | _Keep = _KEEP) -> WsManagerBuilder:
        self._inner.max_message_size(size)
        return self

    def circuit_breaker(
        self, failure_threshold: int | _Keep = _KEEP, reset_timeout: float | _Keep = _KEEP
    ) -> WsManagerBuilder:
        """As :meth:`circle_ws_web.WsManagerBuilder.circuit_breaker`."""
        self._inner.circuit_breaker(failure_threshold, reset_timeout)
        return self

    def pool(self, enabled: bool = True) -> WsManagerBuilder:
        """As :meth:`circle_ws_web.WsManagerBuilder.pool`: on by default; the pool is per event
        loop, so it is shared only within this manager's thread."""
        self._inner.pool(enabled)
        return self

    def transport_factory(self, factory: TransportFactory) -> WsManagerBuilder:
        """Use another transport (advanced)."""
        self._inner.transport_factory(factory)
        return self

    def build(self) -> WsManager:
        """A blocking manager, its loop thread started (not connected yet: ``connect()``)."""
        if not self._inner._urls:
            self._inner.build()  # raises the builder's own ConfigError, before any thread starts
        return WsManager._from_builder(self._inner)


def ws_manager() -> WsManagerBuilder:
    """Start building a blocking :class:`WsManager`."""
    return WsManagerBuilder()
