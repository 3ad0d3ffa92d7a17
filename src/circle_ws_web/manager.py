"""WsManager: a fleet of servers, each with its own self-maintaining clients; the manager only
chooses where a call goes.

The manager does not keep connections alive: each client does that itself (keep-alive,
reconnection with backoff, a fresh authentication). The manager starts them, adds and removes
servers at run time, counts the calls it sends each one, keeps a circuit breaker per server
(:mod:`circle_ws_web.breaker`) and a window of recent round trips, and ranks the servers for
each call (:mod:`circle_ws_web.routing`): priority, then health, then weight. docs/fleet.md
describes the whole.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import weakref
from collections import deque
from typing import Any, Awaitable, Callable, Iterable, Iterator, Mapping, TypeVar

from .auth import PrivateKey
from .breaker import BreakerSettings, BreakerState, CircuitBreaker
from .client import CircleWsClient
from .config import ClientOptions, validate_url
from .errors import (
    CircleWsClientError,
    CircuitOpenError,
    ClientClosedError,
    ConfigError,
    ConnectionLostError,
    JsonRpcError,
    NotConnectedError,
    RequestTimeoutError,
)
from .metrics import Metrics
from .results import PlayResult, ServerHealth
from .routing import Candidate, Router, ServerSettings, least_loaded
from .status import ConnectionStatus
from .transport import Clock, PageEvents, TransportFactory

__all__ = ["RTT_WINDOW", "WsManager"]

logger = logging.getLogger("circle_ws_web")

S = ConnectionStatus
T = TypeVar("T")
StatusCallback = Callable[[str, ConnectionStatus], None]
BreakerCallback = Callable[[str, BreakerState], None]

#: Round trips the manager keeps per server for ``health()`` percentiles.
RTT_WINDOW = 256

#: How a server's status reads when it has several connections: the best of theirs.
_BEST_FIRST = (S.CONNECTED, S.AUTHENTICATING, S.CONNECTING, S.RECONNECTING, S.DISCONNECTED, S.CLOSED)
_RANK = {status: i for i, status in enumerate(_BEST_FIRST)}
_ATTEMPTING = (S.CONNECTING, S.AUTHENTICATING)
_DOWN = (S.RECONNECTING, S.DISCONNECTED)


def _percentile(ordered: list[float], p: float) -> float | None:
    """Nearest-rank percentile of an ascending list (None when empty)."""
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


def _check_seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ConfigError(f"{name} must be a finite number of seconds > 0, got {value!r}")
    return float(value)


class _Anchor:
    """How what outlives the user's references (the clients' engines, held by sockets and
    timers) reaches a manager: weakly, so a manager nobody uses is collected and its clients'
    finalizers close their sockets; strongly while the user has callbacks registered
    (:meth:`WsManager.on_status_change`, :meth:`WsManager.on_breaker_change`), because someone
    is listening to it then. The engines hold this, never the manager itself."""

    __slots__ = ("ref", "strong", "lists")

    def __init__(self, manager: WsManager, *callback_lists: list[Any]) -> None:
        self.ref = weakref.ref(manager)
        self.strong: WsManager | None = None
        self.lists = callback_lists

    def manager(self) -> WsManager | None:
        strong = self.strong
        return strong if strong is not None else self.ref()

    def hold(self) -> None:
        """Hold the manager strongly while any user callback is registered, weakly otherwise."""
        self.strong = self.ref() if any(self.lists) else None


class _Server:
    """One server of the fleet: its settings, its ``connections`` clients (slots), the calls
    in flight on each, its breaker and its recent round trips."""

    __slots__ = ("url", "settings", "clients", "loads", "cursor", "breaker", "rtts", "last_error",
                 "slot_status", "shown", "timer", "removed", "__weakref__")

    def __init__(self, url: str, settings: ServerSettings, clients: list[CircleWsClient], breaker: CircuitBreaker) -> None:
        self.url = url
        self.settings = settings
        self.clients = clients
        self.loads = [0] * len(clients)
        self.cursor = 0  # where the next tie-break starts: ties go round-robin
        self.breaker = breaker
        self.rtts: deque[float] = deque(maxlen=RTT_WINDOW)
        self.last_error: str | None = None
        self.slot_status = [c.status for c in clients]
        self.shown = self.status()
        self.timer: Callable[[], None] | None = None  # cancels the half-open timer
        self.removed = False

    def status(self) -> ConnectionStatus:
        return min((c.status for c in self.clients), key=_RANK.__getitem__)

    def ready(self) -> list[bool]:
        return [c.is_connected for c in self.clients]

    def any_ready(self) -> bool:
        for client in self.clients:
            if client.is_connected:
                return True
        return False

    @property
    def in_flight(self) -> int:
        return sum(self.loads)


class WsManager:
    """Servers, each with its own clients; calls routed by URL or to the best server.

    Build it with :func:`ws_manager`. ``servers`` maps a URL to its
    :class:`~circle_ws_web.routing.ServerSettings` (priority, weight, connections; defaults
    otherwise), ``breaker`` sets every server's circuit breaker.
    """

    def __init__(
        self,
        urls: Iterable[str],
        private_key: PrivateKey | str | None = None,
        options: ClientOptions | None = None,
        transport_factory: TransportFactory | None = None,
        clock: Clock | None = None,
        page_events: PageEvents | None = None,
        *,
        servers: Mapping[str, ServerSettings] | None = None,
        breaker: BreakerSettings | None = None,
    ) -> None:
        """Validate everything here, as the builder does, so a manager built directly fails
        at once with a ``ConfigError`` naming the problem instead of later, mid-connect.

        ``private_key``: a :class:`PrivateKey`, or its hex text (parsed with ``PrivateKey``).
        """
        if isinstance(urls, (str, bytes)) or not isinstance(urls, Iterable):
            raise ConfigError(
                f"urls must be an iterable of URL strings (a list, say), got {type(urls).__name__}"
            )
        checked: list[str] = []
        for raw in urls:
            url = validate_url(raw)
            if url in checked:
                raise ConfigError(f"server URL {url!r} was given twice")
            checked.append(url)
        if not checked:
            raise ConfigError("a WsManager needs at least one server URL")
        if isinstance(private_key, str):
            private_key = PrivateKey(private_key)  # ConfigError naming the problem, never the key
        elif private_key is not None and not isinstance(private_key, PrivateKey):
            # Only the type is named: the value might be the key in another form (bytes, int).
            raise ConfigError(
                f"private_key must be a PrivateKey or a hex str, got {type(private_key).__name__}"
            )
        if options is None:
            options = ClientOptions()
        elif not isinstance(options, ClientOptions):
            raise ConfigError(f"options must be a ClientOptions, got {type(options).__name__}")
        if transport_factory is not None and not callable(transport_factory):
            raise ConfigError(f"transport_factory must be callable, got {type(transport_factory).__name__}")
        if clock is not None and not (callable(getattr(clock, "now", None)) and callable(getattr(clock, "call_later", None))):
            raise ConfigError(f"clock must have now() and call_later(), got {type(clock).__name__}")
        per_url: dict[str, ServerSettings] = {}
        for raw, settings in (servers or {}).items():
            url = validate_url(raw)
            if url not in checked:
                raise ConfigError(f"settings given for {url!r}, which is not among the server URLs")
            if not isinstance(settings, ServerSettings):
                raise ConfigError(f"settings of {url!r} must be a ServerSettings, got {type(settings).__name__}")
            per_url[url] = settings
        if breaker is None:
            breaker = BreakerSettings()
        elif not isinstance(breaker, BreakerSettings):
            raise ConfigError(f"breaker must be a BreakerSettings, got {type(breaker).__name__}")
        self._key = private_key
        self._options = options
        self._factory = transport_factory
        self._clock = clock
        self._page_events = page_events
        self._breaker_settings = breaker
        self._now: Callable[[], float] = clock.now if clock is not None else time.monotonic
        self._router = Router()
        self._status_callbacks: list[StatusCallback] = []
        self._breaker_callbacks: list[BreakerCallback] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._anchor = _Anchor(self, self._status_callbacks, self._breaker_callbacks)
        # The half-open timers' cancel functions, for the finalizer: a collected manager leaves
        # no timer behind (in the browser, each holds a JS proxy until it fires).
        self._timers: set[Callable[[], None]] = set()
        weakref.finalize(self, _cancel_all, self._timers).atexit = False
        self._servers: dict[str, _Server] = {}
        for url in checked:
            self._servers[url] = self._make_server(url, per_url.get(url, ServerSettings()))

    def _make_server(self, url: str, settings: ServerSettings) -> _Server:
        clients = [
            CircleWsClient._from_options(
                url, self._key, self._options, self._factory, self._clock, self._page_events, slot=i
            )
            for i in range(settings.connections)
        ]
        server = _Server(url, settings, clients, CircuitBreaker(self._breaker_settings, name=url))
        for slot, client in enumerate(clients):
            self._listen(server, slot, client)
        return server

    def __repr__(self) -> str:
        statuses = ", ".join(f"{u}: {s.status().value}" for u, s in self._servers.items())
        return f"<WsManager {len(self._servers)} servers ({statuses})>"

    def _repr_html_(self) -> str:  # notebooks: a status table (circle_ws_web.display)
        from .display import manager_html; return manager_html(self)  # noqa: E702

    def display(self) -> Any:
        """In a notebook: the status table, redrawn in place on each status change; returns the handle."""
        from .display import live_view; return live_view(self)  # noqa: E702

    @property
    def urls(self) -> list[str]:
        """Every server's URL, in the order they were added."""
        return list(self._servers)

    # -- the fleet ---------------------------------------------------------------------------

    async def connect(self) -> dict[str, CircleWsClientError | None]:
        """Connect to every server at once (never one after another), each of its connections.

        Returns ``{url: None or the error of its first attempt}`` (None when at least one of
        its connections came up). A server that was down keeps being retried in the
        background by its clients and joins when it comes up. Raises
        :class:`NotConnectedError` only if no server came up (the retries go on all the
        same; ``disconnect_all()`` stops them).
        """
        servers = list(self._servers.values())
        clients = [(server, client) for server in servers for client in server.clients]
        outcomes = await asyncio.gather(
            *(client.connect(keep_trying=True) for _, client in clients), return_exceptions=True
        )
        report: dict[str, CircleWsClientError | None] = {}
        for (server, client), outcome in zip(clients, outcomes, strict=True):
            if isinstance(outcome, BaseException) and not isinstance(outcome, CircleWsClientError):
                raise outcome
            if outcome is None:
                report[server.url] = None
            elif server.url not in report:
                if not isinstance(outcome, ClientClosedError):  # closed meanwhile: nothing retries
                    logger.info("%s: not connected yet (%s); retrying in the background", client.url, outcome)
                report[server.url] = outcome
        if all(error is not None for error in report.values()):
            detail = "; ".join(f"{url}: {error}" for url, error in report.items())
            raise NotConnectedError(f"none of the {len(report)} servers could be reached ({detail})")
        return report

    async def add_server(self, url: str, *, priority: int = 0, weight: int = 1, connections: int = 1) -> None:
        """Add a server while the manager runs and start connecting to it in the background
        (its clients keep trying until it comes up). Returns once the attempts have begun
        (the server is ``connecting``), without waiting for them; callbacks registered
        with :meth:`on_status_change` see it too. ``ConfigError`` for a bad URL or option, or
        a URL already there. To wait for it: ``await manager.get_client(url).wait_connected(t)``."""
        url = validate_url(url)
        settings = ServerSettings(priority=priority, weight=weight, connections=connections)
        if url in self._servers:
            raise ConfigError(f"server URL {url!r} is already in the manager")
        loop = asyncio.get_running_loop()
        server = self._make_server(url, settings)
        self._servers[url] = server
        logger.info("%s: added (priority %d, weight %d, %d connection%s)", url, priority, weight,
                    connections, "" if connections == 1 else "s")
        for client in server.clients:
            task = loop.create_task(self._connect_in_background(client))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        await asyncio.sleep(0)  # the tasks take their first step: the attempts have begun

    async def _connect_in_background(self, client: CircleWsClient) -> None:
        try:
            await client.connect(keep_trying=True)
        except ClientClosedError:
            pass  # removed or disconnected meanwhile
        except CircleWsClientError as exc:
            logger.info("%s: not connected yet (%s); retrying in the background", client.url, exc)

    async def remove_server(self, url: str) -> None:
        """Take a server out: no new call goes to it, its connections close, and its calls in
        flight fail with :class:`ClientClosedError`. ``ConfigError`` if it is not there."""
        server = self._server(url)
        del self._servers[server.url]
        server.removed = True
        self._cancel_timer(server)
        self._router.forget(server.url)
        logger.info("%s: removed", server.url)
        await asyncio.gather(*(client.disconnect() for client in server.clients))

    def _server(self, url: str) -> _Server:
        server = self._servers.get(url.strip() if isinstance(url, str) else url)  # type: ignore[arg-type]
        if server is None:
            known = ", ".join(self._servers) or "none"
            raise ConfigError(f"{url!r} is not a configured server (configured: {known})")
        return server

    def get_client(self, url: str) -> CircleWsClient:
        """The (first) client for ``url``; ``ConfigError`` if that URL is not configured."""
        return self._server(url).clients[0]

    def get_clients(self, url: str) -> list[CircleWsClient]:
        """Every client of ``url``: one per connection (``connections=k`` gives k)."""
        return list(self._server(url).clients)

    # -- status and breakers -----------------------------------------------------------------

    def _listen(self, server: _Server, slot: int, client: CircleWsClient) -> None:
        """Follow the status of connection ``slot`` of ``server``.

        The client's engine keeps this listener for as long as it lives (its sockets and timers
        hold it, and a pooled one may serve other managers), so the listener reaches the manager
        through its anchor and the server through a weak reference: holding either strongly
        would keep a manager the user dropped, and its connections, alive for ever. Once the
        manager (or a removed server) is gone, the listener unsubscribes itself at the next
        status change, so a long-lived pooled engine does not pile up dead ones."""
        anchor = self._anchor
        entry = weakref.ref(server)
        undo: list[Callable[[], None]] = []

        def on_status(status: ConnectionStatus) -> None:
            manager, it = anchor.manager(), entry()
            if manager is None or it is None:
                while undo:
                    undo.pop()()
                return
            manager._slot_changed(it, slot, status)

        undo.append(client.on_status_change(on_status))

    def _slot_changed(self, server: _Server, slot: int, status: ConnectionStatus) -> None:
        """One connection of ``server`` changed status: feed its breaker, tell the callbacks
        when the server's own status (the best of its connections') changed."""
        previous = server.slot_status[slot]
        server.slot_status[slot] = status
        if not server.removed:
            client = server.clients[slot]
            if status in _DOWN and client.paused is None:  # offline or page hidden: not the server's fault
                if previous in _ATTEMPTING:
                    self._failure(server, client.last_error or "a connection attempt failed")
                elif previous is S.CONNECTED:
                    self._failure(server, client.last_error or "the connection was lost")
            elif status is S.CONNECTED and server.breaker.state is BreakerState.OPEN:
                # The client reconnected by itself: the best sign the server is back. Let the
                # next call probe now rather than shun a server that was only restarting.
                self._breaker_moved(server, server.breaker.probe_now(self._now(), "reconnected"))
        shown = min(server.slot_status, key=_RANK.__getitem__)
        if shown is server.shown:
            return
        server.shown = shown
        for callback in list(self._status_callbacks):
            try:
                callback(server.url, shown)
            except Exception as exc:  # a user's callback must not break the manager
                logger.error("%s: a status callback raised %s: %s", server.url, type(exc).__name__, exc, exc_info=exc)

    def _failure(self, server: _Server, why: str) -> None:
        server.last_error = why
        self._breaker_moved(server, server.breaker.failure(self._now(), why))

    def _breaker_moved(self, server: _Server, state: BreakerState | None) -> None:
        if state is None:
            return
        self._cancel_timer(server)
        if state is BreakerState.OPEN and not server.removed:
            delay = server.breaker.retry_in(self._now())
            self._arm_half_open(server, delay)
        for callback in list(self._breaker_callbacks):
            try:
                callback(server.url, state)
            except Exception as exc:
                logger.error("%s: a breaker callback raised %s: %s", server.url, type(exc).__name__, exc, exc_info=exc)

    def _arm_half_open(self, server: _Server, delay: float) -> None:
        """The timer that moves an open breaker to half-open. It holds the manager and the
        server weakly (a platform timer must not keep a dropped manager alive until
        ``reset_timeout``), and the finalizer cancels it."""
        ref, entry, timers = weakref.ref(self), weakref.ref(server), self._timers

        def due() -> None:
            timers.discard(cancel)
            manager, it = ref(), entry()
            if manager is not None and it is not None and it.timer is cancel:
                manager._half_open_due(it)

        cancel = self._call_later(delay, due)
        server.timer = cancel
        timers.add(cancel)

    def _half_open_due(self, server: _Server) -> None:
        server.timer = None
        if not server.removed:
            self._breaker_moved(server, server.breaker.poll(self._now()))

    def _call_later(self, delay: float, callback: Callable[[], None]) -> Callable[[], None]:
        if self._clock is not None:
            return self._clock.call_later(delay, callback)
        from .transports import current_platform

        return current_platform().call_later(delay, callback)

    def _cancel_timer(self, server: _Server) -> None:
        cancel, server.timer = server.timer, None
        if cancel is not None:
            self._timers.discard(cancel)
            cancel()

    def _poll(self, server: _Server, now: float) -> CircuitBreaker:
        """The breaker of ``server``, moved to half-open if its time has come (told to the
        callbacks: the timer for it may not have fired yet on a busy loop)."""
        breaker = server.breaker
        if breaker.state is BreakerState.OPEN:
            self._breaker_moved(server, breaker.poll(now))
        return breaker

    def on_breaker_change(self, callback: BreakerCallback) -> Callable[[], None]:
        """Call ``callback(url, state)`` whenever a server's breaker opens, half-opens or
        closes; returns an unsubscribe function. While a callback is registered the manager is
        not garbage-collected (someone listens to it)."""
        return _subscribe(self._breaker_callbacks, callback, self._anchor)

    def breaker_state(self, url: str) -> BreakerState:
        """The breaker of ``url`` now (``closed``, ``open`` or ``half-open``)."""
        server = self._server(url)
        return self._poll(server, self._now()).state

    # -- one call on one server -----------------------------------------------------------------

    def _take(self, server: _Server) -> tuple[int, int]:
        """A connection of ``server`` for one call, and the breaker's ticket. Raises, with
        nothing sent, when the breaker refuses (:class:`CircuitOpenError`), no connection is
        ready (:class:`NotConnectedError`) or the server is closed (:class:`ClientClosedError`)."""
        now = self._now()
        breaker = self._poll(server, now)
        ticket = breaker.allow(now)
        if ticket is None:
            raise self._open_error(server, now)
        slot = least_loaded(server.loads, server.ready(), server.cursor)
        if slot is None:
            breaker.release(ticket)
            status = server.status()
            if status is S.CLOSED:
                raise ClientClosedError(f"client for {server.url} is closed")
            raise NotConnectedError(f"{server.url} is not ready (status: {status.value})")
        server.cursor = (slot + 1) % len(server.loads)
        return slot, ticket

    def _open_error(self, server: _Server, now: float) -> CircuitOpenError:
        breaker = server.breaker
        wait = breaker.retry_in(now)
        if breaker.state is BreakerState.HALF_OPEN:
            why = "circuit half-open: a probe call is in flight"
        else:
            why = (f"circuit open after {breaker.consecutive_failures} consecutive failures "
                   f"(last: {breaker.last_failure}); a probe may go through in {wait:.3g}s")
        return CircuitOpenError(f"{server.url}: {why}; nothing was sent", url=server.url, retry_in=wait)

    async def _run(self, server: _Server, slot: int, ticket: int, invoke: Callable[[CircleWsClient], Awaitable[T]]) -> T:
        """Run one call on connection ``slot`` (ready: it is sent at once), counted in flight,
        its round trip and outcome reported to the breaker."""
        loads = server.loads
        loads[slot] += 1
        started = self._now()
        try:
            result = await invoke(server.clients[slot])
        except JsonRpcError:  # an answer (a script's error): the server works
            self._answered(server, started)
            raise
        except RequestTimeoutError:
            server.breaker.release(ticket)
            self._failure(server, "a call timed out")
            raise
        except BaseException:
            # Lost connections are counted once, by their status change; the rest (cancelled,
            # bad answers, closed) tell nothing about the server.
            server.breaker.release(ticket)
            raise
        else:
            self._answered(server, started)
            return result
        finally:
            loads[slot] -= 1

    def _answered(self, server: _Server, started: float) -> None:
        now = self._now()
        server.rtts.append(now - started)
        if server.breaker.state is not BreakerState.CLOSED or server.breaker.consecutive_failures:
            self._breaker_moved(server, server.breaker.success(now))

    async def _call(self, server: _Server, invoke: Callable[[CircleWsClient], Awaitable[T]]) -> T:
        slot, ticket = self._take(server)
        return await self._run(server, slot, ticket, invoke)

    async def _play(self, server: _Server, script: str, timeout: float | None) -> PlayResult:
        result = await self._call(server, lambda client: client.play(script, timeout=timeout))
        return PlayResult(result.output, server.url)

    def _timeout(self, timeout: float | None) -> float:
        return self._options.request_timeout if timeout is None else _check_seconds("timeout", timeout)

    # -- calls -----------------------------------------------------------------------------------

    async def execute_script(self, url: str, script: str, *, timeout: float | None = None) -> PlayResult:
        """Run ``script`` on the server at ``url`` (on its least loaded connection). Raises at
        once, without sending anything, if that URL is not configured (``ConfigError``), not
        ready (``NotConnectedError``) or its breaker is open (``CircuitOpenError``)."""
        if not isinstance(script, str):
            raise TypeError(f"script must be a str, got {type(script).__name__}")
        return await self._play(self._server(url), script, self._timeout(timeout))

    async def execute_script_any(
        self,
        script: str,
        *,
        timeout: float | None = None,
        idempotent: bool = False,
        hedge_after: float | None = None,
    ) -> PlayResult:
        """Run ``script`` on the best server; the result's ``url`` says which.

        Best: lowest priority number, then health (a ready connection, breaker closed), then
        weight among equals (smooth weighted round-robin). A server that surely did not get
        the call (breaker open, not connected) is passed over for the next one at once. A call
        that was sent is never sent again (``play`` is not idempotent): if its connection is
        lost, ``ConnectionLostError``. ``idempotent=True`` allows a retry on the next server
        then, and ``hedge_after=s`` (idempotent only) sends a second copy to the next server
        when no answer came within ``s`` seconds, returning the first answer (the other copy
        is cancelled). ``timeout`` (default: the request timeout) bounds the whole call,
        retries included.
        """
        if not isinstance(script, str):
            raise TypeError(f"script must be a str, got {type(script).__name__}")
        budget = self._timeout(timeout)
        if hedge_after is not None:
            if not idempotent:
                raise ConfigError("hedge_after needs idempotent=True: a hedged call runs on two servers")
            hedge_after = _check_seconds("hedge_after", hedge_after)
        deadline = self._now() + budget
        order = self._order()
        if hedge_after is not None:
            return await self._hedged(list(order), script, deadline, budget, hedge_after)
        passed: list[tuple[str, CircleWsClientError]] = []
        lost: CircleWsClientError | None = None
        for server in order:
            if server.removed:
                continue
            remaining = deadline - self._now()
            if remaining <= 0:
                break
            try:
                slot, ticket = self._take(server)
            except (NotConnectedError, ClientClosedError) as exc:  # nothing was sent: next one
                passed.append((server.url, exc))
                continue
            try:
                result = await self._run(server, slot, ticket, lambda c: c.play(script, timeout=remaining))
            except (ConnectionLostError, ClientClosedError) as exc:
                if not idempotent:
                    raise  # sent, then lost: it may have run; never sent again
                logger.info("%s: %s; idempotent, so trying the next server", server.url, exc)
                lost = exc
                continue
            return PlayResult(result.output, server.url)
        if lost is not None:
            raise lost
        raise self._none_took(passed, budget, deadline)

    def _none_took(self, passed: list[tuple[str, CircleWsClientError]], budget: float, deadline: float) -> CircleWsClientError:
        if self._now() >= deadline:
            return RequestTimeoutError(f"no server answered within {budget:g}s")
        if not passed:
            return NotConnectedError("no server is configured")
        detail = "; ".join(f"{url}: {exc}" for url, exc in passed)
        message = f"none of the {len(passed)} servers could take the call, nothing was sent ({detail})"
        if all(isinstance(exc, CircuitOpenError) for _, exc in passed):
            return CircuitOpenError(message, url=passed[0][0], retry_in=min(e.retry_in for _, e in passed))  # type: ignore[attr-defined]
        return NotConnectedError(message)

    async def _hedged(self, order: list[_Server], script: str, deadline: float, budget: float, hedge_after: float) -> PlayResult:
        """The idempotent call with a hedge: one copy, a second on the next server after
        ``hedge_after`` without an answer, the first answer wins and the other is cancelled.
        Any failure short of an answer moves on to the next server (idempotent: allowed)."""
        loop = asyncio.get_running_loop()
        queue = list(order)
        running: dict[asyncio.Future[PlayResult], _Server] = {}
        passed: list[tuple[str, CircleWsClientError]] = []
        last: BaseException | None = None

        def launch() -> None:
            while queue:
                server = queue.pop(0)
                remaining = deadline - self._now()
                if server.removed or remaining <= 0:
                    continue
                try:
                    slot, ticket = self._take(server)
                except (NotConnectedError, ClientClosedError) as exc:
                    passed.append((server.url, exc))
                    continue
                task = loop.create_task(self._run(server, slot, ticket, lambda c: c.play(script, timeout=remaining)))
                running[task] = server
                return

        hedge: asyncio.Future[None] = loop.create_future()

        def hedge_due() -> None:
            if not hedge.done():
                hedge.set_result(None)

        cancel_hedge = self._call_later(hedge_after, hedge_due)
        hedged = False
        try:
            launch()
            while running:
                waiting: set[asyncio.Future[Any]] = set(running)
                if not hedged:
                    waiting.add(hedge)
                done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                for task in running.keys() & done:
                    server = running.pop(task)
                    error = task.exception()
                    if error is None:
                        return PlayResult(task.result().output, server.url)
                    if isinstance(error, JsonRpcError):
                        raise error  # an answer: the script failed there, and would elsewhere
                    if not isinstance(error, CircleWsClientError):
                        raise error
                    last = error
                    logger.info("%s: %s; trying the next server", server.url, error)
                if not hedged and hedge.done():
                    hedged = True
                    if running:
                        logger.debug("no answer within %gs: hedging on the next server", hedge_after)
                        launch()
                if not running:
                    launch()
            if last is not None:
                raise last  # what the last copy that was sent ran into
            raise self._none_took(passed, budget, deadline)
        finally:
            cancel_hedge()
            for task in running:
                task.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)

    async def execute_script_all(
        self, script: str, *, timeout: float | None = None, quorum: int | None = None
    ) -> dict[str, PlayResult | CircleWsClientError]:
        """Run ``script`` on every server at once; each URL maps to its result or its error.

        ``quorum=k``: return as soon as ``k`` servers returned a result; the calls still
        running are cancelled and left out of the answer (they may still run on their
        servers). Without it, every server's outcome is waited for.
        """
        if not isinstance(script, str):
            raise TypeError(f"script must be a str, got {type(script).__name__}")
        limit = self._timeout(timeout)
        servers = list(self._servers.values())
        if quorum is not None and (isinstance(quorum, bool) or not isinstance(quorum, int) or not 1 <= quorum <= len(servers)):
            raise ConfigError(f"quorum must be an int from 1 to the number of servers ({len(servers)}), got {quorum!r}")
        out: dict[str, PlayResult | CircleWsClientError] = {}
        if quorum is None:
            outcomes = await asyncio.gather(*(self._play(s, script, limit) for s in servers), return_exceptions=True)
            for server, outcome in zip(servers, outcomes, strict=True):
                if isinstance(outcome, (PlayResult, CircleWsClientError)):
                    out[server.url] = outcome
                else:
                    raise outcome  # a bug or a cancellation, not a server's answer
            return out
        loop = asyncio.get_running_loop()
        tasks = {loop.create_task(self._play(s, script, limit)): s.url for s in servers}
        pending = set(tasks)
        answered = 0
        try:
            while pending and answered < quorum:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    error = task.exception()
                    if error is None:
                        out[tasks[task]] = task.result()
                        answered += 1
                    elif isinstance(error, CircleWsClientError):
                        out[tasks[task]] = error
                    else:
                        raise error
        finally:
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        return {url: out[url] for url in tasks.values() if url in out}  # in server order

    async def call(self, url: str, method: str, params: Any = None, *, timeout: float | None = None) -> Any:
        """Any JSON-RPC method on the server at ``url`` (its breaker applies, as to a play)."""
        return await self._call(self._server(url), lambda client: client.call(method, params, timeout=timeout))

    def _candidates(self) -> list[Candidate]:
        """What the router needs of each server, now (an open breaker whose time has come
        moves to half-open here)."""
        now = self._now()
        out = []
        for server in self._servers.values():
            breaker = server.breaker
            state = breaker.state
            if state is not BreakerState.CLOSED:
                state = self._poll(server, now).state
            usable = (state is BreakerState.CLOSED or breaker.would_allow(now)) and server.any_ready()
            rtts = server.rtts
            settings = server.settings
            out.append(Candidate(server.url, settings.priority, settings.weight, usable,
                                 sum(server.loads), rtts[-1] if rtts else None))
        return out

    def _order(self) -> Iterator[_Server]:
        """The servers in the order to try them for one call; the fallbacks are ranked only
        if the first choice could not take it (the common case costs one pass)."""
        candidates = self._candidates()
        snapshot = dict(self._servers)
        first = self._router.first(candidates)
        if first is not None:
            yield snapshot[first.key]
        for candidate in self._router.fallbacks(candidates, first):
            yield snapshot[candidate.key]

    # -- reports ---------------------------------------------------------------------------------

    def connected_urls(self) -> list[str]:
        return [url for url, server in self._servers.items() if any(server.ready())]

    def connection_statuses(self) -> dict[str, ConnectionStatus]:
        """Each server's status (with several connections: the best of theirs)."""
        return {url: server.status() for url, server in self._servers.items()}

    def is_connected(self, url: str) -> bool:
        return any(self._server(url).ready())

    def metrics(self) -> dict[str, Metrics]:
        """Each server's counters (with several connections: summed over them)."""
        return {url: _merged([c.metrics for c in server.clients]) for url, server in self._servers.items()}

    def health(self) -> dict[str, ServerHealth]:
        """Per server: breaker state, consecutive failures, calls in flight, round-trip
        percentiles over the recent window, reconnects and the last failure."""
        now = self._now()
        out: dict[str, ServerHealth] = {}
        for url, server in self._servers.items():
            breaker = self._poll(server, now)
            ordered = sorted(server.rtts)
            settings = server.settings
            out[url] = ServerHealth(
                url=url,
                priority=settings.priority,
                weight=settings.weight,
                connections=settings.connections,
                connected=sum(server.ready()),
                breaker=breaker.state.value,
                consecutive_failures=breaker.consecutive_failures,
                retry_in=breaker.retry_in(now),
                in_flight=server.in_flight,
                rtt_p50=_percentile(ordered, 50),
                rtt_p95=_percentile(ordered, 95),
                rtt_p99=_percentile(ordered, 99),
                samples=len(ordered),
                reconnects=sum(c.metrics.reconnects for c in server.clients),
                last_error=server.last_error,
            )
        return out

    def on_status_change(self, callback: StatusCallback) -> Callable[[], None]:
        """Call ``callback(url, status)`` whenever a server's status changes, for the servers
        there now and those added later; returns an unsubscribe function. While a callback is
        registered the manager is not garbage-collected (someone listens to it): unsubscribe,
        or ``disconnect_all()``, to let it go."""
        return _subscribe(self._status_callbacks, callback, self._anchor)

    async def disconnect(self, url: str) -> None:
        """Close every connection to ``url`` (the server stays in the manager, closed)."""
        server = self._server(url)
        self._cancel_timer(server)
        await asyncio.gather(*(client.disconnect() for client in server.clients))

    async def disconnect_all(self) -> None:
        """Close every client, all at once. Idempotent; never raises (``disconnect()`` never does)."""
        servers = list(self._servers.values())
        for server in servers:
            self._cancel_timer(server)
        await asyncio.gather(*(client.disconnect() for server in servers for client in server.clients))

    async def __aenter__(self) -> WsManager:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.disconnect_all()


def _subscribe(callbacks: list[Any], callback: Any, anchor: _Anchor) -> Callable[[], None]:
    """Register a user callback. While one is registered the engines hold the manager strongly
    (someone listens to it: it must not be collected, and its connections closed, from under
    them); unsubscribing the last makes it collectable again. The unsubscribe function holds
    the manager only through the anchor, so keeping a spent one keeps nothing alive."""
    callbacks.append(callback)
    anchor.hold()

    def unsubscribe() -> None:
        if callback in callbacks:
            callbacks.remove(callback)
            anchor.hold()

    return unsubscribe


def _cancel_all(timers: set[Callable[[], None]]) -> None:
    """A manager was collected: cancel its half-open timers (they would only find it gone)."""
    while timers:
        timers.pop()()


def _merged(parts: list[Metrics]) -> Metrics:
    """One server's counters from those of its connections."""
    if len(parts) == 1:
        return parts[0]
    samples = sum(m.rtt_samples for m in parts)
    return Metrics(
        calls=sum(m.calls for m in parts),
        errors=sum(m.errors for m in parts),
        timeouts=sum(m.timeouts for m in parts),
        reconnects=sum(m.reconnects for m in parts),
        bad_frames=sum(m.bad_frames for m in parts),
        unknown_ids=sum(m.unknown_ids for m in parts),
        notifications=sum(m.notifications for m in parts),
        rtt_samples=samples,
        last_rtt=next((m.last_rtt for m in parts if m.last_rtt is not None), None),
        avg_rtt=None if not samples else sum((m.avg_rtt or 0.0) * m.rtt_samples for m in parts) / samples,
    )
