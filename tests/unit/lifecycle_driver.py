"""A tiny in-test driver for :class:`circle_ws_web.lifecycle.Lifecycle`: a virtual clock, the
armed timers, the sockets, and a scripted server, all as plain data. No asyncio, no network."""

from __future__ import annotations

import json
from typing import Any

from circle_ws_web.backoff import Backoff
from circle_ws_web.config import ClientOptions
from circle_ws_web.lifecycle import (
    CancelTimer,
    CloseSocket,
    ConnectDone,
    FailCall,
    Lifecycle,
    OpenSocket,
    ResolveCall,
    Send,
    SetTimer,
    StatusChanged,
    Timer,
)
from circle_ws_web.status import ConnectionStatus as S

PUBKEY = "04" + "ab" * 64
OPTIONS = ClientOptions(
    keepalive_interval=20.0,
    keepalive_timeout=10.0,
    request_timeout=30.0,
    connect_timeout=10.0,
    reconnect_initial_delay=1.0,
    reconnect_max_delay=8.0,
    reconnect_jitter=False,
    reconnect_min_uptime=5.0,
)


def fake_sign(message: str) -> str:
    return (message.encode().hex() + "0" * 130)[:130]


class Waiter:
    """Stands for a future: records how it ended (exactly once, or the test fails)."""

    def __init__(self, name: str = "w") -> None:
        self.name = name
        self.outcomes: list[tuple[str, Any]] = []

    def __repr__(self) -> str:
        return f"<Waiter {self.name} {self.outcomes}>"


class Driver:
    def __init__(self, *, key: bool = True, **options: Any) -> None:
        opts = ClientOptions(**{**{f: getattr(OPTIONS, f) for f in OPTIONS.__slots__}, **options})  # type: ignore[attr-defined]
        backoff = Backoff(
            opts.reconnect_initial_delay, opts.reconnect_max_delay, opts.reconnect_factor, False, opts.reconnect_max_attempts
        )
        self.m = Lifecycle(
            "ws://test", opts, public_key=PUBKEY if key else None, sign=fake_sign if key else None, backoff=backoff
        )
        self.now = 0.0
        self.timers: dict[Timer, float] = {}
        self.opened: list[int] = []  # every sid the machine asked to open
        self.live: set[int] = set()  # sockets opened and not yet closed (by us or the peer)
        self.sent: dict[int, list[dict[str, Any]]] = {}  # sid -> requests sent on it
        self.statuses: list[S] = []
        self.log: list[Any] = []

    # -- executing actions (what client.py does, as data) ------------------------------------

    def run(self) -> list[Any]:
        out = []
        while self.m.actions:
            action = self.m.actions.popleft()
            out.append(action)
            kind = type(action)
            if kind is OpenSocket:
                assert action.sid not in self.opened, "socket id reused"
                self.opened.append(action.sid)
                self.live.add(action.sid)
                self.sent[action.sid] = []
            elif kind is Send:
                assert action.sid in self.live, f"send on a socket that is not live: {action}"
                self.sent[action.sid].append(json.loads(action.text))
            elif kind is CloseSocket:
                self.live.discard(action.sid)
            elif kind is SetTimer:
                assert action.delay >= 0
                self.timers[action.timer] = self.now + action.delay
            elif kind is CancelTimer:
                self.timers.pop(action.timer, None)
            elif kind is StatusChanged:
                self.statuses.append(action.status)
            elif kind is ResolveCall:
                action.waiter.outcomes.append(("result", action.result))
            elif kind is FailCall:
                action.waiter.outcomes.append(("error", action.error))
            elif kind is ConnectDone:
                for w in action.waiters:
                    w.outcomes.append(("connected", None) if action.error is None else ("error", action.error))
        self.log.extend(out)
        return out

    # -- events --------------------------------------------------------------------------------

    def connect(self, waiter: Waiter | None = None, keep_trying: bool = False) -> Waiter:
        waiter = waiter or Waiter("connect")
        if self.m.connect(self.now, waiter, keep_trying=keep_trying):
            waiter.outcomes.append(("connected", None))
        self.run()
        return waiter

    def open(self, sid: int | None = None) -> None:
        self.m.socket_opened(self.now, self.m.sid if sid is None else sid)
        self.run()

    def peer_close(self, sid: int | None = None, code: int = 1006, reason: str = "") -> None:
        sid = self.m.sid if sid is None else sid
        assert sid is not None
        self.live.discard(sid)
        self.m.socket_closed(self.now, sid, code, reason)
        self.run()

    def frame(self, data: Any, sid: int | None = None) -> None:
        text = data if isinstance(data, (str, bytes)) else json.dumps(data)
        self.m.frame(self.now, self.m.sid if sid is None else sid, text)
        self.run()

    def last_request(self, method: str | None = None) -> dict[str, Any]:
        assert self.m.sid is not None
        requests = [r for r in self.sent[self.m.sid] if method is None or r["method"] == method]
        assert requests, f"no {method or ''} request sent on socket {self.m.sid}"
        return requests[-1]

    def answer(self, request: dict[str, Any], result: Any = None, error: dict[str, Any] | None = None) -> None:
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": request["id"]}
        if error is not None:
            msg["error"] = error
        else:
            msg["result"] = result
        self.frame(msg)

    def authenticate(self) -> None:
        self.answer(self.last_request("fetch_nonce"), {"nonce": f"nonce-{self.m.sid}"})
        self.answer(self.last_request("authenticate"), {"authenticated": True})

    def call(self, method: str = "play", params: Any = None, timeout: float = 30.0) -> tuple[Waiter, str]:
        waiter = Waiter(method)
        call_id = self.m.send_call(self.now, method, params if params is not None else {"script": "1"}, timeout, waiter)
        self.run()
        return waiter, call_id

    def advance(self, seconds: float, *, late: float = 0.0) -> None:
        """Move the clock on, firing due timers in order (each ``late`` seconds after its moment,
        as a throttled tab would)."""
        end = self.now + seconds
        while True:
            due = [(at, t) for t, at in self.timers.items() if at + late <= end]
            if not due:
                break
            at, timer = min(due)
            self.now = max(self.now, at + late)
            del self.timers[timer]
            self.m.timer_fired(self.now, timer)
            self.run()
        self.now = end

    def fire(self, timer: Timer, at: float | None = None) -> None:
        """Fire ``timer`` now (or at ``at``), whether or not it is due: timers may be early."""
        if at is not None:
            self.now = at
        self.timers.pop(timer, None)
        self.m.timer_fired(self.now, timer)
        self.run()

    # -- getting somewhere ---------------------------------------------------------------------

    def connected(self) -> Waiter:
        waiter = self.connect()
        self.open()
        if self.m.public_key is not None:
            self.authenticate()
        assert self.m.status is S.CONNECTED, self.m.status
        return waiter


def to_status(status: S, *, key: bool = True, **options: Any) -> Driver:
    """A driver whose machine is in ``status``, reached the ordinary way."""
    d = Driver(key=key, **options)
    if status is S.DISCONNECTED:
        return d
    if status is S.CLOSED:
        d.m.disconnect(d.now)
        d.run()
        return d
    d.connect(keep_trying=True)
    if status is S.CONNECTING:
        return d
    d.open()
    if status is S.AUTHENTICATING:
        return d
    if d.m.public_key is not None:
        d.authenticate()
    if status is S.CONNECTED:
        return d
    d.peer_close()
    assert status is S.RECONNECTING and d.m.status is S.RECONNECTING
    return d
