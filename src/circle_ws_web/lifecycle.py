"""The connection lifecycle of one client, as a sans-I/O state machine.

Everything that decides what a client does lives here: connecting (single-flight: every
``connect()`` caller joins the attempt in progress), authenticating, keep-alive, losing the
connection, backing off, reconnecting, giving up, closing; and the calls in flight. The machine
never touches a socket, a timer, a task or a clock. The I/O layer (``client.py``) feeds it
events, each with the current time ``now``, and executes the actions it queues:

=====================  ====================================================================
event (method)         what the driver reports
=====================  ====================================================================
``connect``            a caller wants a connection (returns True when already connected)
``connect_cancelled``  that caller stopped waiting
``disconnect``         the user closes the client (terminal)
``socket_opened``      the socket of attempt ``sid`` opened
``socket_error``       the transport said why it is failing (kept for the error message)
``socket_closed``      the socket ``sid`` is gone (also when it never opened)
``frame``              a text or binary frame arrived on socket ``sid``
``timer_fired``        one of the machine's named timers fired
``send_call``          the user sends a call (raises at once when not connected)
``cancel_call``        the caller of a call gave up on it
=====================  ====================================================================

Actions (queued in :attr:`Lifecycle.actions`, executed in order by the driver):
:class:`OpenSocket`, :class:`Send`, :class:`CloseSocket`, :class:`SetTimer`,
:class:`CancelTimer`, :class:`ResolveCall`, :class:`FailCall`, :class:`ConnectDone`,
:class:`StatusChanged`, :class:`NotificationReceived`.

Why a queue and not callbacks: executing an action may run user code (a status callback, a
resumed caller) that feeds the machine a new event. Appending to one FIFO queue that the driver
drains keeps every effect in the order the machine decided it, whatever the nesting.

Time is only ever compared, never counted: every deadline (connect, call, keep-alive) is a
moment on the caller's clock, and a timer firing is only a prompt to look at the clock. A timer
that fires late (a throttled browser tab) or early is harmless: the machine re-arms it for what
remains, or acts on what really expired.

:data:`TRANSITIONS` lists every status change each event may cause; the machine checks each
change it makes against it, and ``docs/lifecycle.md`` is generated from it
(:func:`transitions_markdown`), so the picture and the code cannot drift.
"""

from __future__ import annotations

import enum
import logging
from collections import deque
from typing import Any, Callable, NamedTuple

from .auth_flow import AuthFlow, AuthState
from .backoff import Backoff
from .config import ClientOptions
from .errors import (
    AuthError,
    CircleWsClientError,
    ClientClosedError,
    ConnectError,
    ConnectionLostError,
    JsonRpcError,
    NotConnectedError,
    ProtocolError,
    RequestTimeoutError,
)
from .metrics import Metrics
from .rpc import BadFrame, ErrorResponse, Notification, NotUtf8Error, PendingCalls, Response, RpcCodec
from .status import ConnectionStatus

__all__ = [
    "CLOSE_DROPPED",
    "CancelTimer",
    "CloseSocket",
    "ConnectDone",
    "Event",
    "FailCall",
    "Lifecycle",
    "NotificationReceived",
    "OpenSocket",
    "ResolveCall",
    "Send",
    "SetTimer",
    "StatusChanged",
    "TRANSITIONS",
    "Timer",
    "transitions_markdown",
]

logger = logging.getLogger("circle_ws_web")

S = ConnectionStatus

#: Close code for a connection the client drops itself (keep-alive timeout, failed handshake).
CLOSE_DROPPED = 4000
#: A timer may fire this much before its moment and still count (browsers round to 1 ms).
SLACK = 0.002
#: Bad frames logged at WARNING per connection; the rest at DEBUG (they are still counted).
BAD_FRAME_WARNINGS = 5
#: The deadline of a liveness check (the page became visible, resumed, or the network came
#: back): short, so a connection that died while the tab slept is replaced at once.
LIVENESS_TIMEOUT = 3.0
#: Close code when the page is hidden (pagehide), so the page may enter the back-forward cache
#: cleanly. A normal close with a reason that says why: a page may send only 1000 or 3000-4999
#: (``close(1001)`` throws InvalidAccessError in the browser).
CLOSE_PAGE_HIDDEN = 1000


class Timer(str, enum.Enum):
    """The machine's timers; each name has at most one armed at a time."""

    CONNECT = "connect"  # the attempt's deadline
    BACKOFF = "backoff"  # the next reconnection attempt
    KEEPALIVE = "keepalive"  # the next idle check or the ping's deadline
    CALLS = "calls"  # the earliest deadline of a call in flight


class Event(str, enum.Enum):
    """What can happen to a client (the rows of :data:`TRANSITIONS`)."""

    CONNECT = "connect requested"
    CONNECT_CANCELLED = "connect cancelled"
    DISCONNECT = "disconnect requested"
    SOCKET_OPENED = "socket opened"
    SOCKET_CLOSED = "socket closed"
    FRAME = "frame received"
    CONNECT_TIMER = "connect deadline"
    BACKOFF_TIMER = "backoff elapsed"
    KEEPALIVE_TIMER = "keep-alive check"
    CALLS_TIMER = "call deadline"
    OFFLINE = "network offline"
    ONLINE = "network online"
    WAKE = "page visible or resumed"
    PAGE_HIDE = "page hidden"
    PAGE_SHOW = "page shown again"


E = Event

#: For each status, the events it handles and the statuses each may lead to (itself: no
#: change). An event a status does not list is ignored there: a stale socket's event, a timer
#: that belongs to another phase. ``send_call`` is not listed: it never changes the status
#: (and is refused unless connected).
TRANSITIONS: dict[ConnectionStatus, dict[Event, frozenset[ConnectionStatus]]] = {
    S.DISCONNECTED: {
        E.CONNECT: frozenset({S.CONNECTING}),
        E.DISCONNECT: frozenset({S.CLOSED}),
        E.OFFLINE: frozenset({S.DISCONNECTED}),
        E.ONLINE: frozenset({S.DISCONNECTED}),
        E.WAKE: frozenset({S.DISCONNECTED}),
        E.PAGE_HIDE: frozenset({S.DISCONNECTED}),
        E.PAGE_SHOW: frozenset({S.DISCONNECTED}),
    },
    S.CONNECTING: {
        E.CONNECT: frozenset({S.CONNECTING}),
        E.CONNECT_CANCELLED: frozenset({S.CONNECTING, S.DISCONNECTED}),
        E.DISCONNECT: frozenset({S.CLOSED}),
        E.SOCKET_OPENED: frozenset({S.AUTHENTICATING, S.CONNECTED}),
        E.SOCKET_CLOSED: frozenset({S.RECONNECTING, S.DISCONNECTED}),
        E.CONNECT_TIMER: frozenset({S.RECONNECTING, S.DISCONNECTED}),
        E.OFFLINE: frozenset({S.CONNECTING}),
        E.ONLINE: frozenset({S.CONNECTING}),
        E.WAKE: frozenset({S.CONNECTING}),
        E.PAGE_HIDE: frozenset({S.RECONNECTING, S.DISCONNECTED}),
        E.PAGE_SHOW: frozenset({S.CONNECTING}),
    },
    S.AUTHENTICATING: {
        E.CONNECT: frozenset({S.AUTHENTICATING}),
        E.CONNECT_CANCELLED: frozenset({S.AUTHENTICATING, S.DISCONNECTED}),
        E.DISCONNECT: frozenset({S.CLOSED}),
        E.FRAME: frozenset({S.AUTHENTICATING, S.CONNECTED, S.RECONNECTING, S.DISCONNECTED}),
        E.SOCKET_CLOSED: frozenset({S.RECONNECTING, S.DISCONNECTED}),
        E.CONNECT_TIMER: frozenset({S.RECONNECTING, S.DISCONNECTED}),
        E.CALLS_TIMER: frozenset({S.AUTHENTICATING, S.RECONNECTING, S.DISCONNECTED}),
        E.OFFLINE: frozenset({S.AUTHENTICATING}),
        E.ONLINE: frozenset({S.AUTHENTICATING}),
        E.WAKE: frozenset({S.AUTHENTICATING}),
        E.PAGE_HIDE: frozenset({S.RECONNECTING, S.DISCONNECTED}),
        E.PAGE_SHOW: frozenset({S.AUTHENTICATING}),
    },
    S.CONNECTED: {
        E.CONNECT: frozenset({S.CONNECTED}),
        E.DISCONNECT: frozenset({S.CLOSED}),
        E.FRAME: frozenset({S.CONNECTED}),
        E.SOCKET_CLOSED: frozenset({S.RECONNECTING, S.DISCONNECTED}),
        E.KEEPALIVE_TIMER: frozenset({S.CONNECTED, S.RECONNECTING, S.DISCONNECTED}),
        E.CALLS_TIMER: frozenset({S.CONNECTED}),
        E.OFFLINE: frozenset({S.CONNECTED}),
        E.ONLINE: frozenset({S.CONNECTED}),
        E.WAKE: frozenset({S.CONNECTED}),
        E.PAGE_HIDE: frozenset({S.RECONNECTING}),
        E.PAGE_SHOW: frozenset({S.CONNECTED}),
    },
    S.RECONNECTING: {
        E.CONNECT: frozenset({S.CONNECTING}),
        E.DISCONNECT: frozenset({S.CLOSED}),
        E.BACKOFF_TIMER: frozenset({S.CONNECTING}),
        E.OFFLINE: frozenset({S.RECONNECTING}),
        E.ONLINE: frozenset({S.CONNECTING, S.RECONNECTING}),
        E.WAKE: frozenset({S.CONNECTING, S.RECONNECTING}),
        E.PAGE_HIDE: frozenset({S.RECONNECTING}),
        E.PAGE_SHOW: frozenset({S.CONNECTING, S.RECONNECTING}),
    },
    S.CLOSED: {
        E.DISCONNECT: frozenset({S.CLOSED}),
    },
}

_TIMER_EVENT = {
    Timer.CONNECT: E.CONNECT_TIMER,
    Timer.BACKOFF: E.BACKOFF_TIMER,
    Timer.KEEPALIVE: E.KEEPALIVE_TIMER,
    Timer.CALLS: E.CALLS_TIMER,
}


# -- actions ------------------------------------------------------------------------------------


class OpenSocket(NamedTuple):
    """Open a WebSocket to the client's URL; report its events tagged with ``sid``."""

    sid: int


class Send(NamedTuple):
    sid: int
    text: str


class CloseSocket(NamedTuple):
    """Close socket ``sid`` (it may still be connecting); the machine has already let go of it."""

    sid: int
    code: int
    reason: str


class SetTimer(NamedTuple):
    """Arm ``timer`` to fire after ``delay`` seconds, replacing any armed timer of that name."""

    timer: Timer
    delay: float


class CancelTimer(NamedTuple):
    timer: Timer


class ResolveCall(NamedTuple):
    waiter: Any
    result: Any


class FailCall(NamedTuple):
    waiter: Any
    error: CircleWsClientError


#: ``_make(Send, (sid, text))`` is ``Send(sid, text)`` without the NamedTuple's Python
#: ``__new__``: the two actions of every call (Send, ResolveCall) are built this way.
_make = tuple.__new__


class ConnectDone(NamedTuple):
    """The attempt these ``connect()`` callers waited for ended: ``error`` None means connected."""

    waiters: list[Any]
    error: CircleWsClientError | None


class StatusChanged(NamedTuple):
    status: ConnectionStatus


class NotificationReceived(NamedTuple):
    method: str
    params: Any


Action = (
    OpenSocket | Send | CloseSocket | SetTimer | CancelTimer | ResolveCall | FailCall
    | ConnectDone | StatusChanged | NotificationReceived
)


class _Internal:
    """The waiter of a call the machine makes itself (authentication steps, keep-alive ping)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<internal {self.name}>"


_AUTH = _Internal("authentication")
_PING = _Internal("ping")

#: A pending call: (waiter, sent_at, method, timeout).
_Pending = tuple[Any, float, str, float]


class Lifecycle:
    """The whole behaviour of one client, as events in and actions out. See the module doc.

    ``public_key`` and ``sign`` stand for the private key (the machine never holds the key
    itself): ``sign(message) -> signature`` is called once per authentication.
    """

    def __init__(
        self,
        url: str,
        options: ClientOptions,
        *,
        public_key: str | None = None,
        sign: Callable[[str], str] | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        if (public_key is None) != (sign is None):
            raise ValueError("public_key and sign go together")
        self.url = url
        self.options = options
        self.public_key = public_key
        self._sign = sign
        self.backoff = backoff or Backoff(
            options.reconnect_initial_delay,
            options.reconnect_max_delay,
            options.reconnect_factor,
            options.reconnect_jitter,
            options.reconnect_max_attempts,
        )
        self.codec = RpcCodec(options.max_message_size)
        self.pending: PendingCalls[_Pending] = PendingCalls()
        self.metrics = Metrics()
        self.actions: deque[Action] = deque()
        self.status = S.DISCONNECTED
        #: Keep reconnecting after a failure (set by ``connect(keep_trying=True)`` and by every
        #: successful connection; cleared by giving up and by closing).
        self.maintain = False
        #: The socket in use (or being opened), None between attempts. At most one.
        self.sid: int | None = None
        self._next_sid = 0
        self._timers: dict[Timer, float] = {}  # armed timers -> the moment they are for
        self._waiters: list[Any] = []  # connect() callers of the attempt in progress
        self._flow: AuthFlow | None = None
        self._why = ""  # what the transport said about the current attempt's socket
        self._was_connected = False
        #: What ended the last failed attempt or lost connection, for health pages.
        self.last_error: str | None = None
        self._connected_at = 0.0
        self._last_rx = 0.0
        self._ping_deadline: float | None = None  # when the outstanding ping must be answered by
        self._ping_timeout = 0.0
        #: The browser says the network is gone: no attempt starts until it is back.
        self.offline = False
        #: The page was hidden (pagehide): sockets closed until it is shown again.
        self.suspended = False
        self._bad_logged = 0

    def __repr__(self) -> str:
        return f"<Lifecycle {self.url} {self.status.value} sid={self.sid} pending={len(self.pending)}>"

    # -- helpers ------------------------------------------------------------------------------

    def _move(self, event: Event, new: ConnectionStatus) -> None:
        old = self.status
        if new not in TRANSITIONS[old].get(event, ()):
            raise RuntimeError(f"lifecycle bug: {old.value} --{event.value}--> {new.value} is not in TRANSITIONS")
        if new is not old:
            self.status = new
            self.actions.append(StatusChanged(new))

    def _set_timer(self, timer: Timer, at: float, now: float) -> None:
        self._timers[timer] = at
        self.actions.append(SetTimer(timer, max(0.0, at - now)))

    def _cancel_timer(self, timer: Timer) -> None:
        if self._timers.pop(timer, None) is not None:
            self.actions.append(CancelTimer(timer))

    def _close_socket(self, code: int, reason: str) -> None:
        """Let go of the current socket and tell the driver to close it."""
        if self.sid is not None:
            self.actions.append(CloseSocket(self.sid, code, reason))
            self.sid = None

    def _fail_pending(self, make_error: Callable[[str], CircleWsClientError]) -> None:
        for waiter, _sent, method, _timeout in self.pending.drain():
            if not isinstance(waiter, _Internal):
                self.metrics.errors += 1
                self.actions.append(FailCall(waiter, make_error(method)))
        self._cancel_timer(Timer.CALLS)
        self._ping_deadline = None

    def _internal_call(self, now: float, waiter: _Internal, method: str, params: Any, timeout: float) -> None:
        assert self.sid is not None
        call_id, frame = self.codec.request(method, params)
        self._track(call_id, waiter, now, method, timeout)
        self.actions.append(Send(self.sid, frame))

    def _track(self, call_id: str, waiter: Any, now: float, method: str, timeout: float) -> None:
        deadline = now + timeout
        self.pending.add(call_id, (waiter, now, method, timeout), deadline)
        self.metrics.calls += 1
        armed = self._timers.get(Timer.CALLS)
        if armed is None or deadline < armed:
            self._set_timer(Timer.CALLS, deadline, now)

    # -- the connect attempt ------------------------------------------------------------------

    def _start_attempt(self, now: float, event: Event) -> None:
        self._cancel_timer(Timer.BACKOFF)
        self._move(event, S.CONNECTING)
        self._next_sid += 1
        self.sid = self._next_sid
        self._why = ""
        self._bad_logged = 0
        self._flow = None
        self.actions.append(OpenSocket(self.sid))
        self._set_timer(Timer.CONNECT, now + self.options.connect_timeout, now)

    def _connected(self, now: float, event: Event) -> None:
        self._cancel_timer(Timer.CONNECT)
        self._flow = None
        reconnected = self._was_connected
        self._was_connected = True
        self.maintain = True
        self._connected_at = self._last_rx = now
        self._ping_deadline = None
        self._move(event, S.CONNECTED)
        self._set_timer(Timer.KEEPALIVE, now + self.options.keepalive_interval, now)
        if reconnected:
            self.metrics.reconnects += 1
            logger.info("%s: reconnected", self.url)
        waiters, self._waiters = self._waiters, []
        self.actions.append(ConnectDone(waiters, None))

    def _attempt_failed(
        self, now: float, event: Event, error: CircleWsClientError, *, closed: bool, code: int = CLOSE_DROPPED
    ) -> None:
        """The attempt in progress failed: tell its waiters, then back off or stay down."""
        self._cancel_timer(Timer.CONNECT)
        self._fail_pending(lambda method: ConnectError(f"{method!r} failed: {error}"))
        if closed:
            self.sid = None
        else:
            self._close_socket(code, "connection attempt failed")
        self._flow = None
        self.last_error = str(error)
        waiters, self._waiters = self._waiters, []
        if isinstance(error, AuthError):
            logger.warning("%s: %s", self.url, error)
        else:
            logger.info("%s: %s", self.url, error)
        if self.maintain:
            self._back_off(now, event)
        else:
            self._move(event, S.DISCONNECTED)
        self.actions.append(ConnectDone(waiters, error))

    def _back_off(self, now: float, event: Event, *, at_once: bool = False) -> None:
        if self.paused is not None:  # no attempt (and none counted) until online / pageshow
            self._move(event, S.RECONNECTING)
            logger.info("%s: %s; will reconnect when that changes", self.url, self.paused)
            return
        delay = self.backoff.next_delay()
        if delay is None:
            logger.error(
                "%s: giving up after %d reconnection attempts; call connect() to try again",
                self.url,
                self.backoff.attempts,
            )
            self.maintain = False
            self.backoff.reset()
            self._move(event, S.DISCONNECTED)
            return
        if at_once:
            delay = 0.0  # still counted against max_attempts
        self._move(event, S.RECONNECTING)
        logger.info("%s: reconnecting in %.2fs (attempt %d)", self.url, delay, self.backoff.attempts)
        self._set_timer(Timer.BACKOFF, now + delay, now)

    def _lost(
        self, now: float, event: Event, why: str, *, closed: bool, code: int = CLOSE_DROPPED, at_once: bool = False
    ) -> None:
        """The connection that was up is gone: fail its calls at once, then reconnect."""
        self._cancel_timer(Timer.KEEPALIVE)
        self._fail_pending(
            lambda method: ConnectionLostError(
                f"connection to {self.url} lost while {method!r} was in flight ({why}); not re-sent"
            )
        )
        if closed:
            self.sid = None
        else:
            self._close_socket(code, why[:120])
        if now - self._connected_at >= self.options.reconnect_min_uptime:
            self.backoff.reset()
        self.last_error = why
        logger.info("%s: %s", self.url, why)
        self._back_off(now, event, at_once=at_once)

    # -- events: the user ---------------------------------------------------------------------

    def connect(self, now: float, waiter: Any, *, keep_trying: bool = False) -> bool:
        """A ``connect()`` call. True: already connected (nothing to wait for). Otherwise the
        waiter joins the attempt in progress (starting one if none is) and gets a
        :class:`ConnectDone`. Raises :class:`ClientClosedError` on a closed client."""
        status = self.status
        if status is S.CLOSED:
            raise ClientClosedError(f"client for {self.url} is closed")
        if status is S.CONNECTED:
            return True
        if keep_trying:
            self.maintain = True
        self._waiters.append(waiter)
        if status is S.DISCONNECTED or status is S.RECONNECTING:
            self._start_attempt(now, E.CONNECT)
        else:
            self._move(E.CONNECT, status)
        return False

    def connect_cancelled(self, now: float, waiter: Any) -> None:
        """A ``connect()`` caller stopped waiting. If nobody waits and the client is not
        maintaining itself, the attempt is abandoned (back to ``disconnected``)."""
        try:
            self._waiters.remove(waiter)
        except ValueError:
            return
        if self._waiters or self.maintain or self.status not in (S.CONNECTING, S.AUTHENTICATING):
            return
        self._cancel_timer(Timer.CONNECT)
        self._fail_pending(lambda method: ConnectError(f"{method!r} abandoned: connect() was cancelled"))
        self._close_socket(1000, "connect cancelled")
        self._flow = None
        self._move(E.CONNECT_CANCELLED, S.DISCONNECTED)

    def disconnect(self, now: float) -> None:
        """Close for good: the socket, every timer, every call and connect waiter. Idempotent."""
        if self.status is S.CLOSED:
            return
        self.maintain = False
        for timer in list(self._timers):
            self._cancel_timer(timer)
        self._fail_pending(lambda method: ClientClosedError(f"client for {self.url} closed while {method!r} was in flight"))
        self._close_socket(1000, "client disconnect")
        self._flow = None
        waiters, self._waiters = self._waiters, []
        self._move(E.DISCONNECT, S.CLOSED)
        if waiters:
            self.actions.append(
                ConnectDone(waiters, ClientClosedError(f"client for {self.url} was closed while connecting"))
            )

    def send_call(self, now: float, method: str, params: Any, timeout: float, waiter: Any) -> str:
        """Send a call; its waiter gets :class:`ResolveCall` or :class:`FailCall`. Raises at once
        (nothing sent) when not connected, or ``TypeError`` for params that are not JSON."""
        if self.status is not S.CONNECTED:
            if self.status is S.CLOSED:
                raise ClientClosedError(f"client for {self.url} is closed")
            raise NotConnectedError(f"{self.url} is not ready (status: {self.status.value})")
        try:
            call_id, frame = self.codec.request(method, params)
        except NotUtf8Error as exc:
            raise TypeError(f"{method!r} call: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise TypeError(f"params of {method!r} are not JSON-serializable: {exc}") from None
        # _track, inline: this is every call's path
        deadline = now + timeout
        self.pending.add(call_id, (waiter, now, method, timeout), deadline)
        self.metrics.calls += 1
        armed = self._timers.get(Timer.CALLS)
        if armed is None or deadline < armed:
            self._set_timer(Timer.CALLS, deadline, now)
        self.actions.append(_make(Send, (self.sid, frame)))
        return call_id

    def cancel_call(self, call_id: str) -> None:
        """The caller gave up on a call: forget it now (a late answer counts as unknown)."""
        self.pending.pop(call_id)

    # -- events: the socket -------------------------------------------------------------------

    def socket_opened(self, now: float, sid: int) -> None:
        if sid != self.sid or self.status is not S.CONNECTING:
            return
        if self.public_key is None:
            self._connected(now, E.SOCKET_OPENED)
            return
        self._move(E.SOCKET_OPENED, S.AUTHENTICATING)
        assert self._sign is not None
        self._flow = AuthFlow(self.public_key, self._sign)
        method, params = self._flow.start()
        self._internal_call(now, _AUTH, method, params, self.options.request_timeout)

    def socket_error(self, sid: int, message: str) -> None:
        if sid == self.sid and message:
            self._why = message

    def socket_closed(self, now: float, sid: int, code: int, reason: str) -> None:
        if sid != self.sid:
            return  # a socket we already let go of
        detail = ", ".join(dict.fromkeys(part for part in (reason, self._why) if part))  # each once
        info = f"code {code}" + (f", {detail}" if detail else "")
        status = self.status
        if status is S.CONNECTING:
            self._attempt_failed(now, E.SOCKET_CLOSED, ConnectError(f"could not connect to {self.url}: {info}"), closed=True)
        elif status is S.AUTHENTICATING:
            error = ConnectError(f"connection to {self.url} closed during authentication ({info})")
            self._attempt_failed(now, E.SOCKET_CLOSED, error, closed=True)
        elif status is S.CONNECTED:
            self._lost(now, E.SOCKET_CLOSED, f"connection closed ({info})", closed=True)

    def frame(self, now: float, sid: int, data: str | bytes) -> None:
        """One frame from the server: any frame proves the connection alive."""
        if sid != self.sid:
            return
        self._last_rx = now
        if self._ping_deadline is not None:  # the ping is answered (or anything came): alive
            self._ping_deadline = None
            self._set_timer(Timer.KEEPALIVE, now + self.options.keepalive_interval, now)
        msg = self.codec.parse(data)
        if isinstance(msg, Response):
            entry = self.pending.pop(msg.id)
            if entry is None:
                self._unknown_id(msg.id)
                return
            waiter = entry[0]
            self.metrics.record_rtt(now - entry[1])
            if waiter is _AUTH:
                self._auth_step(now, msg.result)
            elif waiter is not _PING:
                self.actions.append(_make(ResolveCall, (waiter, msg.result)))
        elif isinstance(msg, ErrorResponse):
            entry = self.pending.pop(msg.id) if msg.id is not None else None
            if entry is None:
                self._unknown_id(msg.id, msg.error)
                return
            waiter = entry[0]
            self.metrics.record_rtt(now - entry[1])
            if waiter is _AUTH:
                assert self._flow is not None
                self._attempt_failed(now, E.FRAME, self._flow.receive_error(msg.error), closed=False)
            elif waiter is not _PING:  # a server without ``ping`` answers -32601: alive all the same
                self.metrics.errors += 1
                self.actions.append(FailCall(waiter, msg.error))
        elif isinstance(msg, Notification):
            self.metrics.notifications += 1
            self.actions.append(NotificationReceived(msg.method, msg.params))
        else:
            self._bad_frame(now, msg)

    def _unknown_id(self, call_id: str | None, error: JsonRpcError | None = None) -> None:
        # Usually a late answer to a call that timed out or was cancelled: expected, so DEBUG.
        self.metrics.unknown_ids += 1
        logger.debug("%s: answer for unknown call id %r dropped%s", self.url, call_id, f" ({error})" if error else "")

    def _bad_frame(self, now: float, msg: BadFrame) -> None:
        self.metrics.bad_frames += 1
        self._bad_logged += 1
        if self._bad_logged <= BAD_FRAME_WARNINGS:
            more = "; further bad frames on this connection are logged at DEBUG" if self._bad_logged == BAD_FRAME_WARNINGS else ""
            logger.warning("%s: bad frame from server dropped: %s%s", self.url, msg.reason, more)
        else:
            logger.debug("%s: bad frame from server dropped: %s", self.url, msg.reason)
        if msg.id is None:
            return
        entry = self.pending.pop(msg.id)
        if entry is None:
            return
        waiter = entry[0]
        if waiter is _AUTH:
            error = AuthError(f"authentication failed: bad answer from the server: {msg.reason}")
            self._attempt_failed(now, E.FRAME, error, closed=False)
        elif waiter is not _PING:
            self.metrics.errors += 1
            self.actions.append(FailCall(waiter, ProtocolError(f"bad response to {entry[2]!r}: {msg.reason}")))

    def _auth_step(self, now: float, result: Any) -> None:
        flow = self._flow
        assert flow is not None and self.status is S.AUTHENTICATING
        try:
            if flow.state is AuthState.AWAITING_NONCE:
                method, params = flow.receive_nonce(result)
                self._internal_call(now, _AUTH, method, params, self.options.request_timeout)
                return
            flow.receive_result(result)
        except AuthError as exc:
            self._attempt_failed(now, E.FRAME, exc, closed=False)
            return
        logger.info("%s: authenticated as %s…", self.url, flow.public_key[:18])
        self._connected(now, E.FRAME)

    # -- events: timers -----------------------------------------------------------------------

    def timer_fired(self, now: float, timer: Timer) -> None:
        """A timer fired. It is only a prompt: the clock decides what is due."""
        at = self._timers.get(timer)
        if at is None:
            return  # cancelled meanwhile
        if now < at - SLACK:  # early (or clamped by the platform): wait for the rest
            self.actions.append(SetTimer(timer, at - now))
            return
        del self._timers[timer]
        if timer is Timer.CALLS:
            self._calls_due(now)
        elif timer is Timer.KEEPALIVE:
            self._keepalive_due(now)
        elif timer is Timer.CONNECT:
            if self.status in (S.CONNECTING, S.AUTHENTICATING):
                why = f"; {self._why}" if self._why else ""
                error = ConnectError(f"could not connect to {self.url} within {self.options.connect_timeout:g}s{why}")
                self._attempt_failed(now, E.CONNECT_TIMER, error, closed=False)
        elif timer is Timer.BACKOFF:
            if self.status is S.RECONNECTING:
                self._start_attempt(now, E.BACKOFF_TIMER)

    def _calls_due(self, now: float) -> None:
        for _call_id, (waiter, _sent, method, timeout) in self.pending.expired(now + SLACK):
            if waiter is _AUTH:
                error = ConnectError(f"no answer to {method!r} from {self.url} within {timeout:g}s during authentication")
                self._attempt_failed(now, E.CALLS_TIMER, error, closed=False)
                return  # the attempt's calls are gone with it
            if waiter is not _PING:  # the keep-alive timer judges the ping
                self.metrics.timeouts += 1
                self.actions.append(
                    FailCall(waiter, RequestTimeoutError(f"no answer to {method!r} from {self.url} within {timeout:g}s"))
                )
        nxt = self.pending.next_deadline()
        if nxt is not None:
            self._set_timer(Timer.CALLS, nxt, now)

    def _keepalive_due(self, now: float) -> None:
        if self.status is not S.CONNECTED:
            return
        interval = self.options.keepalive_interval
        if self._ping_deadline is not None:  # nothing arrived since the ping (a frame clears it)
            if now >= self._ping_deadline - SLACK:
                why = f"keep-alive: no answer to ping within {self._ping_timeout:g}s"
                if self.offline:  # the likely reason, for whoever reads a lost call's error
                    why += " (the browser is offline)"
                # A liveness check (wake, offline) found it dead: the sleep is the suspect, not
                # the server, so the replacement is tried at once.
                at_once = self._ping_timeout < self.options.keepalive_timeout
                self._lost(now, E.KEEPALIVE_TIMER, why, closed=False, at_once=at_once)
                return
            self._set_timer(Timer.KEEPALIVE, self._ping_deadline, now)
            return
        if now - self._last_rx >= interval - SLACK:
            self._ping(now, self.options.keepalive_timeout)
        else:
            self._set_timer(Timer.KEEPALIVE, self._last_rx + interval, now)
        self._move(E.KEEPALIVE_TIMER, S.CONNECTED)

    def _ping(self, now: float, timeout: float) -> None:
        """Send a keep-alive ping that must be answered (by any frame) within ``timeout``."""
        deadline = now + timeout
        if self._ping_deadline is not None and self._ping_deadline <= deadline:
            return  # a ping is already out, due sooner
        self._ping_deadline, self._ping_timeout = deadline, timeout
        self._internal_call(now, _PING, "ping", {}, timeout)
        self._set_timer(Timer.KEEPALIVE, deadline, now)

    # -- events: the browser page and its network -----------------------------------------

    @property
    def paused(self) -> str | None:
        """Why no attempt is made now: ``"offline"``, ``"page hidden"``, or None."""
        return "offline" if self.offline else "page hidden" if self.suspended else None

    def network_offline(self, now: float) -> None:
        """The browser says the network is gone (``offline``): stop attempting (attempts made
        now would fail and only grow the backoff; ``online`` resumes at once), and check a
        connection that is up with a short ping."""
        if self.offline or self.status is S.CLOSED:
            return
        self.offline = True
        logger.info("%s: the browser is offline; waiting for the network", self.url)
        if self.status is S.RECONNECTING:
            self._cancel_timer(Timer.BACKOFF)
        elif self.status is S.CONNECTED:
            # Chromium keeps an open socket across offline and holds its frames: check it.
            # Answered (the browser was wrong), it stays; otherwise it is dropped, and the
            # client waits for the network without counting attempts.
            self._ping(now, min(self.options.keepalive_timeout, LIVENESS_TIMEOUT))
        self._move(E.OFFLINE, self.status)

    def network_online(self, now: float) -> None:
        """The network is back (``online``): reconnect at once, backoff reset; a connected
        client checks its connection, which may have died meanwhile."""
        if not self.offline or self.status is S.CLOSED:
            return
        self.offline = False
        self.backoff.reset()
        logger.info("%s: the browser is online again", self.url)
        self._resume(now, E.ONLINE)

    def wake(self, now: float) -> None:
        """The page became visible or was resumed from a freeze: a connection may have died
        while timers slept. Check it now (a ping with a short deadline), or reconnect now."""
        if self.status is S.CLOSED:
            return
        self._resume(now, E.WAKE)

    def page_hide(self, now: float) -> None:
        """``pagehide``: close the socket cleanly (1000, "page hidden") so the page can enter the back-forward
        cache, and make no attempt until the page is shown again."""
        if self.suspended or self.status is S.CLOSED:
            return
        self.suspended = True
        status = self.status
        why = "page hidden (pagehide); closed for the back-forward cache"
        if status is S.CONNECTED:
            self._lost(now, E.PAGE_HIDE, why, closed=False, code=CLOSE_PAGE_HIDDEN)
        elif status is S.CONNECTING or status is S.AUTHENTICATING:
            error = ConnectError(f"connection attempt to {self.url} abandoned: {why}")
            self._attempt_failed(now, E.PAGE_HIDE, error, closed=False, code=CLOSE_PAGE_HIDDEN)
        else:
            if status is S.RECONNECTING:
                self._cancel_timer(Timer.BACKOFF)
            self._move(E.PAGE_HIDE, status)

    def page_show(self, now: float) -> None:
        """``pageshow`` after a ``pagehide`` (back from the back-forward cache): reconnect and
        re-authenticate at once. A ``pageshow`` without a ``pagehide`` before it changes nothing."""
        if not self.suspended or self.status is S.CLOSED:
            return
        self.suspended = False
        self.backoff.reset()
        self._resume(now, E.PAGE_SHOW)

    def _resume(self, now: float, event: Event) -> None:
        """Something says a connection may work now: act at once instead of waiting."""
        if self.paused is not None:
            self._move(event, self.status)
        elif self.status is S.RECONNECTING:
            self._start_attempt(now, event)
        elif self.status is S.CONNECTED:
            self._ping(now, min(self.options.keepalive_timeout, LIVENESS_TIMEOUT))
            self._move(event, S.CONNECTED)
        else:
            self._move(event, self.status)


def transitions_markdown() -> str:
    """:data:`TRANSITIONS` as a Markdown table, one row per event (``docs/lifecycle.md``)."""
    statuses = list(S)
    lines = [
        "| event | " + " | ".join(f"**{st.value}**" for st in statuses) + " |",
        "| --- |" + " --- |" * len(statuses),
    ]
    for event in Event:
        cells = []
        for status in statuses:
            targets = TRANSITIONS[status].get(event)
            if targets is None:
                cells.append("·")
            else:
                cells.append(", ".join("(same)" if t is status else t.value for t in sorted(targets, key=statuses.index)))
        lines.append(f"| {event.value} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
