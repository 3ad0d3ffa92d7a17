"""The client side of the chaos soak: many clients making calls while the network misbehaves.

This module imports nothing but circle_ws_web and the standard library, so the very same
driver runs in CPython (tests/test_chaos_soak.py, ``./soak.sh``) and inside Pyodide
(tests/browser/test_chaos_soak_browser.py uploads this file into the page). The faults come
from elsewhere: ``env`` talks to the rig (tests/chaos/rig.py) that owns the servers and the
chaos proxies, in the same process (CPython) or through a function Playwright exposes on the
page (Pyodide).

``env`` provides:
    env.platform                 "cpython" or "pyodide"
    env.key                      a private key (hex) the servers accept
    env.servers                  [{"name", "url" (through the proxy), "auth": bool}, ...]
    await env.rig_time()         the rig's clock (seconds), to put fault and status times on one axis
    await env.begin_chaos(s)     the rig injects faults for ``s`` seconds, then heals everything
    await env.chaos_state()      {"running": bool, "healed_at": rig time or None}

What runs (every loop bounded in count and time): one keyed CircleWsClient per server, one
keyless client per open server, one WsManager over all servers, each with a few workers calling
``play`` with unique scripts (``'c3-n1234'``: a string literal the server echoes, so every
execution is identifiable in the servers' journals) and ``ping``; plus a churn worker that
creates, connects and disconnects short-lived clients. Phases: warm-up (no faults: every call
must succeed), chaos, recovery (every client must be CONNECTED again within
``recover_within`` s of the rig healing), calm (every call must succeed again), shutdown
(``disconnect()`` never raises, CLOSED is the last status, no task left behind).

``run_soak`` returns a JSON-able report; what needs the servers' journals and the rig's fault log
(duplicates, recovery times) is judged on the CPython side (tests/chaos/analysis.py).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import gc
import logging
import random
import threading
import time
from typing import Any, Callable

from circle_ws_web import (
    CircleWsClient,
    CircleWsClientError,
    ClientClosedError,
    ConnectionLostError,
    ConnectionStatus,
    JsonRpcError,
    NotConnectedError,
    RequestTimeoutError,
    ws_manager,
)

S = ConnectionStatus
now = time.monotonic

#: The legal status changes (the contract's lifecycle; CLOSED is terminal).
LEGAL: dict[str, frozenset[str]] = {
    "disconnected": frozenset({"connecting", "reconnecting", "closed"}),
    "connecting": frozenset({"authenticating", "connected", "disconnected", "reconnecting", "closed"}),
    "authenticating": frozenset({"connected", "disconnected", "reconnecting", "closed"}),
    "connected": frozenset({"reconnecting", "disconnected", "closed"}),
    "reconnecting": frozenset({"connecting", "disconnected", "closed"}),
    "closed": frozenset(),
}

#: Outcome of one play, one byte per call number (the journal check reads these).
NOT_ISSUED, OK, WRONG, NOT_CONNECTED, LOST, TIMEOUT, OTHER_TYPED, UNTYPED, HANG, CLOSED, ABANDONED = range(11)
OUTCOME_NAMES = ["not issued", "ok", "wrong result", "NotConnectedError", "ConnectionLostError",
                 "RequestTimeoutError", "other typed error", "untyped error", "hang", "ClientClosedError",
                 "abandoned by its caller (wait_for)"]


class _Abandoned:
    """What a call gives when its caller gave up on it first (``asyncio.wait_for`` ran out)."""

    def __repr__(self) -> str:
        return "<abandoned by the caller>"


ABANDON = _Abandoned()
#: ``target`` byte of a call sent to every server (execute_script_all).
ALL = 255
#: ``target`` byte of a call the manager places on one server of its choice (execute_script_any).
ANY = 254
#: Errors a call may end with while the network misbehaves; anything else is looked at.
EXPECTED = (NotConnectedError, ConnectionLostError, RequestTimeoutError)

DEFAULTS: dict[str, Any] = {
    "seconds": 45.0,  # chaos duration
    "seed": 0,
    "slack": 3.0,  # a call must end within its timeout + slack (a shared, noisy machine)
    "hang_grace": 10.0,  # how much longer a hung call is waited for before it is cancelled
    "warmup": 2.0,
    "calm": 3.0,
    "recover_within": 20.0,
    "play_workers": 2,
    "ping_workers": 1,
    "manager_workers": 2,
    "churn_workers": 2,
    "burst_workers": 1,  # 10-40 plays at once on one client, so drops find many calls in flight
    "abandon": 0.05,  # share of calls (and churn connects) the caller abandons with wait_for
    "timeouts": [0.1, 0.5, 1.0, 2.0, 3.0, None],  # per call; None: the client's request_timeout
    "max_calls": 5_000_000,
    "pause": 0.02,
    "tracemalloc": True,
    "max_violations": 60,
    "client": {
        "keepalive_interval": 1.0,
        "keepalive_timeout": 1.0,
        "request_timeout": 3.0,
        "connect_timeout": 2.0,
        "reconnect_initial_delay": 0.05,
        "reconnect_max_delay": 1.0,
        "reconnect_min_uptime": 0.5,
    },
}


class Track:
    """One connection's status history: a client's, or one URL's inside the manager."""

    LIMIT = 100_000

    def __init__(self, soak: Soak, name: str, server: int, keyed: bool, kind: str, fresh: bool = True) -> None:
        self.soak, self.name, self.server, self.keyed, self.kind = soak, name, server, keyed, kind
        #: A connection of its own, never used before: its first change must be connecting (or
        #: closed). A pooled client joins a connection in whatever state it is.
        self.fresh = fresh
        self.initial = "disconnected"
        #: Set for a client left disconnected on purpose (its connect() abandoned, nothing
        #: maintaining it): NotConnectedError is its normal answer, faults or none.
        self.idle_by_design = False
        #: Calls through a manager that removes servers: ClientClosedError is a normal answer.
        self.closed_ok = False
        self.url = soak.servers[server]["url"]
        self.note = ""  # what the churn worker did to this client, for the failure message
        self.log: list[tuple[float, str]] = []
        self.calm_results = 0

    def watch(self, client: Any) -> None:
        self.initial = client.status.value
        client.on_status_change(self)

    def __call__(self, status: Any) -> None:
        if not isinstance(status, ConnectionStatus):
            self.soak.violation(f"{self.name}: on_status_change got {status!r}, not a ConnectionStatus")
            return
        if len(self.log) < self.LIMIT:
            self.log.append((now(), status.value))

    def check(self, final: ConnectionStatus) -> None:
        """Legal changes only, CONNECTED only after authenticating (with a key), CLOSED last."""
        v = self.soak.violation
        statuses = [self.initial] + [s for _, s in self.log]
        if len(statuses) == 1:
            v(f"{self.name}: no status change was reported")
            return
        if self.fresh and statuses[1] not in ("connecting", "closed"):
            v(f"{self.name}{self.note}: first status {statuses[1]}, expected connecting: {self.log[:6]}")
        for old, new in zip(statuses, statuses[1:]):
            if new not in LEGAL[old]:
                v(f"{self.name}: illegal status change {old} -> {new}")
            if new == "connected" and old != ("authenticating" if self.keyed else "connecting"):
                v(f"{self.name}: connected straight after {old} ({'keyed' if self.keyed else 'keyless'} client)")
            if new == "authenticating" and not self.keyed:
                v(f"{self.name}: authenticating without a key")
        if statuses[-1] != "closed" or statuses.count("closed") != 1:
            v(f"{self.name}: statuses must end with one closed, got ...{statuses[-4:]}")
        if final is not S.CLOSED:
            v(f"{self.name}: status after disconnect is {final.value}, not closed")

    def as_json(self, offset: float) -> dict[str, Any]:
        return {
            "name": self.name, "url": self.url, "server": self.server, "keyed": self.keyed, "kind": self.kind,
            "log": [[round(t + offset, 4), s] for t, s in self.log],
        }


class _LogCounter(logging.Handler):
    """Counts the library's log records by their message template (bounded: a few dozen), and
    keeps the last few hundred lines, for the failure message."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.counts: dict[str, int] = {}
        self.tail: collections.deque[tuple[float, str]] = collections.deque(maxlen=600)

    def emit(self, record: logging.LogRecord) -> None:
        key = f"{record.levelname}: {record.msg}"
        self.counts[key] = self.counts.get(key, 0) + 1
        try:
            self.tail.append((now(), f"{record.levelname} {record.getMessage()}"[:300]))
        except Exception:  # a bad format string in a log call: count it, keep going
            self.tail.append((now(), f"{record.levelname} {record.msg!r}"[:300]))


class _AsyncioWarnings(logging.Handler):
    """asyncio's own warnings raised on the clients' thread (the rig's proxy runs on another):
    e.g. "socket.send() raised exception." when something keeps writing to a lost socket."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.thread = threading.get_ident()
        self.counts: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            key = record.getMessage()[:200]
            self.counts[key] = self.counts.get(key, 0) + 1


class Soak:
    def __init__(self, env: Any, config: dict[str, Any]) -> None:
        self.env = env
        self.cfg = {**DEFAULTS, **config, "client": {**DEFAULTS["client"], **config.get("client", {})}}
        self.rng = random.Random(f"{self.cfg['seed']}-clients")
        self.opts = self.cfg["client"]
        self.servers = list(env.servers)
        self.phase = "setup"
        self.stopping = False
        self.violations: list[str] = []
        self.violation_count = 0
        self.counts: dict[str, int] = {}
        self.errors: dict[str, int] = {}
        self.outcome = bytearray([NOT_ISSUED])  # index: call number (from 1)
        self.target = bytearray([0])
        self.all_calls: dict[int, dict[int, int]] = {}
        #: execute_script_any calls that got a result: call number -> the server it says ran it.
        self.any_where: dict[int, int] = {}
        self.tracks: list[Track] = []
        self.worst_overshoot = float("-inf")  # max(elapsed - timeout) over calls that ended
        self.worst_overshoot_what = ""
        self._warm_snapshot: Any = None
        self.worst_connect = 0.0
        self.worst_disconnect = 0.0
        self.offset = 0.0
        self.memory: dict[str, Any] = {}
        #: Cleared while memory is measured: workers wait before their next call.
        self.gate = asyncio.Event()
        self.gate.set()
        self.in_flight = 0
        self.timing: dict[str, Any] = {}

    # -- bookkeeping --------------------------------------------------------------------------

    def violation(self, text: str) -> None:
        self.violation_count += 1
        if len(self.violations) < self.cfg["max_violations"]:
            self.violations.append(f"[{self.phase}] {text}")

    def count(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def new_call(self, target: int) -> int:
        self.outcome.append(NOT_ISSUED)
        self.target.append(target)
        return len(self.outcome) - 1

    def running(self) -> bool:
        return not self.stopping and self.counts.get("calls", 0) < self.cfg["max_calls"]

    def pick_timeout(self) -> float | None:
        return self.rng.choice(self.cfg["timeouts"])

    async def bounded(self, make: Callable[[], Any], limit: float) -> tuple[str, Any, float]:
        """Run ``make()`` as a task; ("done", task, elapsed) or ("hang", None, elapsed) past
        ``limit`` (then waited ``hang_grace`` more and cancelled, so the soak never hangs)."""
        await self.gate.wait()
        self.in_flight += 1
        try:
            return await self._bounded(make, limit)
        finally:
            self.in_flight -= 1

    async def _bounded(self, make: Callable[[], Any], limit: float) -> tuple[str, Any, float]:
        started = now()
        task = asyncio.ensure_future(make())
        done, _ = await asyncio.wait({task}, timeout=limit)
        if done:
            return "done", task, now() - started
        done, _ = await asyncio.wait({task}, timeout=self.cfg["hang_grace"])
        if not done:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        elif not task.cancelled():
            task.exception()  # seen: late, but no "never retrieved" noise
        return "hang", None, now() - started

    def classify(self, track: Track, what: str, outcome: Any, expect: Any, phase: str, timeout: float) -> int:
        """Judge one call's outcome (a value or an exception); return its outcome code."""
        if outcome is ABANDON:
            self.count("abandoned by the caller")
            return ABANDONED
        if not isinstance(outcome, BaseException):
            if outcome != expect:
                self.violation(f"{track.name}: {what} returned {outcome!r}, expected {expect!r}")
                return WRONG
            self.count("results")
            if phase == "calm":
                track.calm_results += 1
            return OK
        name = type(outcome).__name__
        if isinstance(outcome, JsonRpcError):
            name = f"JsonRpcError({outcome.code})"
        self.errors[name] = self.errors.get(name, 0) + 1
        if not isinstance(outcome, CircleWsClientError):
            self.violation(f"{track.name}: {what} raised an untyped {type(outcome).__name__}: {outcome!r:.300}")
            return UNTYPED
        if phase in ("warmup", "calm") and self.phase == phase:
            if isinstance(outcome, NotConnectedError) and track.idle_by_design:
                pass
            elif isinstance(outcome, RequestTimeoutError) and timeout < 1.0:
                self.count("short timeouts expired on a healthy network")  # a busy loop, not a fault
            else:
                self.violation(f"{track.name}: {what} failed with the network healthy: {name}: {outcome}")
        elif not isinstance(outcome, EXPECTED) and not (track.closed_ok and isinstance(outcome, ClientClosedError)):
            self.violation(f"{track.name}: {what} failed with an unexpected {name}: {outcome}")
        if isinstance(outcome, NotConnectedError):
            return NOT_CONNECTED
        if isinstance(outcome, ConnectionLostError):
            return LOST
        if isinstance(outcome, RequestTimeoutError):
            return TIMEOUT
        if isinstance(outcome, ClientClosedError):
            return CLOSED
        return OTHER_TYPED

    async def one_call(self, track: Track, what: str, make: Callable[[], Any], timeout: float | None,
                       expect: Any) -> tuple[int, Any]:
        """One bounded call: ("result or error" code, the raw outcome or None on a hang)."""
        phase = self.phase
        timeout = self.opts["request_timeout"] if timeout is None else timeout
        self.count("calls")
        state, task, elapsed = await self.bounded(make, timeout + self.cfg["slack"])
        if state == "hang":
            self.count("hangs")
            self.violation(f"{track.name}: {what} (timeout {timeout:g}s) did not end within timeout + "
                           f"{self.cfg['slack']:g}s (waited {elapsed:.1f}s)")
            return HANG, None
        if elapsed - timeout > self.worst_overshoot:
            self.worst_overshoot = elapsed - timeout
            self.worst_overshoot_what = f"{track.name}: {what}, timeout {timeout:g}s, in the {phase} phase"
        if elapsed > timeout + 0.5:
            self.count("late (over timeout + 0.5 s)")
        outcome = task.exception() if not task.cancelled() else asyncio.CancelledError()
        if outcome is None:
            outcome = task.result()
        if expect is None:  # the caller judges (execute_script_all)
            return OK, outcome
        return self.classify(track, what, outcome, expect, phase, timeout), outcome

    async def pause(self, code: int) -> None:
        if code == NOT_CONNECTED:
            await asyncio.sleep(self.rng.uniform(0.02, 0.1))  # no tight loop while reconnecting
        else:
            await asyncio.sleep(self.rng.uniform(0, self.cfg["pause"]))

    # -- workers ------------------------------------------------------------------------------

    async def play_worker(self, unit: int, client: CircleWsClient, track: Track) -> None:
        while self.running():
            code = await self.play_once(unit, client, track)
            if code == NOT_CONNECTED and self.rng.random() < 0.5:
                # What the README tells users to do before a call while a client reconnects.
                wait = self.rng.uniform(0.05, 1.0)
                await self.lifecycle_call(track, "wait_connected()", lambda: client.wait_connected(wait),
                                          wait + self.cfg["slack"])
            else:
                await self.pause(code)

    async def play_once(self, unit: int, client: CircleWsClient, track: Track) -> int:
        """One ``play`` of a fresh script; sometimes abandoned by its caller (``wait_for``)."""
        n = self.new_call(track.server)
        text = f"c{unit}-n{n}"
        timeout = self.pick_timeout()
        if self.rng.random() < self.cfg["abandon"]:
            patience = self.rng.uniform(0.0005, 0.05)
            make = lambda: self._abandon(client.play(f"'{text}'", timeout=timeout), patience)  # noqa: E731
        else:
            make = lambda: self._play_output(client.play(f"'{text}'", timeout=timeout))  # noqa: E731
        code, _ = await self.one_call(track, f"play #{n}", make, timeout, text)
        self.outcome[n] = code
        return code

    @staticmethod
    async def _play_output(call: Any) -> Any:
        return (await call).output

    @staticmethod
    async def _abandon(call: Any, patience: float) -> Any:
        try:
            result = await asyncio.wait_for(call, patience)
        except asyncio.TimeoutError:
            return ABANDON
        return getattr(result, "output", result)

    async def burst_worker(self, singles: list[tuple[int, CircleWsClient, Track]]) -> None:
        while self.running():
            unit, client, track = self.rng.choice(singles)
            size = self.rng.randint(10, 40)
            self.count("bursts")
            codes = await asyncio.gather(*(self.play_once(unit, client, track) for _ in range(size)))
            await self.pause(NOT_CONNECTED if NOT_CONNECTED in codes else OK)
            await asyncio.sleep(self.rng.uniform(0.2, 0.8))

    async def ping_worker(self, client: CircleWsClient, track: Track) -> None:
        while self.running():
            timeout = self.pick_timeout()
            self.count("pings")
            if self.rng.random() < 0.02:  # the server sends junk frames, then the answer
                self.count("garbage calls")
                code, _ = await self.one_call(
                    track, "test.garbage", lambda: client.call("test.garbage", {}, timeout=timeout), timeout, {"ok": True})
            else:
                code, _ = await self.one_call(track, "ping", lambda: client.ping(timeout=timeout), timeout, "pong")
            if code == NOT_CONNECTED and self.rng.random() < 0.2:
                bound = self.opts["connect_timeout"] + self.cfg["slack"]
                if self.rng.random() < 0.5:  # starts the attempt now, or joins the one in progress
                    await self.lifecycle_call(track, "connect() while not ready", client.connect, bound)
                else:
                    wait = self.rng.uniform(0.1, 2.0)
                    await self.lifecycle_call(track, "wait_connected()", lambda: client.wait_connected(wait),
                                              wait + self.cfg["slack"])
            await self.pause(code)

    async def manager_worker(self, unit: int, manager: Any, tracks: list[Track]) -> None:
        urls = [s["url"] for s in self.servers]
        while self.running():
            timeout = self.pick_timeout()
            if self.rng.random() < 0.1:
                n = self.new_call(ALL)
                text = f"c{unit}-n{n}"
                self.count("execute_script_all")
                code, outcome = await self.one_call(
                    tracks[0], f"execute_script_all #{n}",
                    lambda: manager.execute_script_all(f"'{text}'", timeout=timeout), timeout, None)
                if code == HANG:
                    self.outcome[n] = HANG
                elif isinstance(outcome, BaseException):
                    self.classify(tracks[0], f"execute_script_all #{n}", outcome, text, self.phase, timeout or 9.0)
                    self.outcome[n] = UNTYPED
                else:
                    per = {}
                    for i, url in enumerate(urls):
                        got = outcome.get(url)
                        got = got.output if hasattr(got, "output") else got
                        per[i] = self.classify(tracks[i], f"execute_script_all #{n} on {url}", got, text, self.phase,
                                               timeout or 9.0)
                    self.all_calls[n] = per
                    self.outcome[n] = max(per.values())
                await self.pause(NOT_CONNECTED if NOT_CONNECTED in self.all_calls.get(n, {}).values() else OK)
                continue
            if self.rng.random() < 0.3:
                await self.any_call(unit, manager, urls, timeout)
                continue
            i = self.rng.randrange(len(urls))
            n = self.new_call(i)
            text = f"c{unit}-n{n}"
            code, _ = await self.one_call(
                tracks[i], f"execute_script #{n}",
                lambda: self._play_output(manager.execute_script(urls[i], f"'{text}'", timeout=timeout)), timeout, text)
            self.outcome[n] = code
            await self.pause(code)

    async def any_call(self, unit: int, manager: Any, urls: list[str], timeout: float | None,
                       track: Track | None = None) -> None:
        """``execute_script_any``: the manager picks a server, passes over those that surely did
        not get the call, never sends a sent call again. The result says where it ran; the
        journals must agree (and show it ran nowhere else)."""
        n = self.new_call(ANY)
        text = f"c{unit}-n{n}"
        where: list[Any] = []

        async def make() -> Any:
            result = await manager.execute_script_any(f"'{text}'", timeout=timeout)
            where.append(getattr(result, "url", None))
            return result.output

        self.count("execute_script_any")
        track = track or self.any_track
        code, _ = await self.one_call(track, f"execute_script_any #{n}", make, timeout, text)
        self.outcome[n] = code
        if code == OK:
            if where and where[0] in urls:
                self.any_where[n] = urls.index(where[0])
            else:
                self.violation(f"execute_script_any #{n}: result.url {where[:1]!r} is none of the servers")
        await self.pause(code)

    async def fleet_worker(self, unit: int, fleet: Any, settings: list[dict[str, int]]) -> None:
        """A manager whose servers come and go while it works: during the chaos a server is
        now and then removed (its calls in flight fail with ClientClosedError) and added back
        a little later; everything else is ``execute_script_any``, and ``health()``."""
        urls = [s["url"] for s in self.servers]
        removed: list[int] = []
        bound = 5.0 + self.cfg["slack"]
        while self.running():
            present = [i for i in range(len(urls)) if i not in removed]
            if self.phase == "chaos" and len(present) > 1 and self.rng.random() < 0.03:
                i = self.rng.choice(present)
                removed.append(i)
                await self.fleet_op(f"remove_server({self.servers[i]['name']})", lambda: fleet.remove_server(urls[i]), bound)
                continue
            if removed and (self.phase != "chaos" or self.rng.random() < 0.05):
                i = removed.pop(0)
                await self.fleet_op(f"add_server({self.servers[i]['name']})",
                                    lambda: fleet.add_server(urls[i], **settings[i]), bound)
                continue
            if self.rng.random() < 0.03:
                await self.fleet_op("health()", self._health(fleet, [urls[i] for i in present]), bound)
            await self.any_call(unit, fleet, urls, self.pick_timeout(), self.fleet_track)
        for i in removed:  # back to full strength for the shutdown
            await self.fleet_op(f"add_server({self.servers[i]['name']})", lambda: fleet.add_server(urls[i], **settings[i]), bound)

    def _health(self, fleet: Any, present: list[str]) -> Callable[[], Any]:
        async def check() -> None:
            health = fleet.health()
            if sorted(health) != sorted(present):
                self.violation(f"fleet: health() lists {sorted(health)}, the manager has {sorted(present)}")
        return check

    async def fleet_op(self, what: str, make: Callable[[], Any], bound: float) -> None:
        """add_server / remove_server / health(): bounded, and never an exception."""
        self.count(f"fleet {what.split('(')[0]}")
        state, task, elapsed = await self.bounded(make, bound)
        if state == "hang":
            self.violation(f"fleet: {what} did not end within {bound:g}s")
        elif task.cancelled() or task.exception() is not None:
            exc = asyncio.CancelledError() if task.cancelled() else task.exception()
            self.violation(f"fleet: {what} raised {type(exc).__name__}: {exc!r:.300}")

    async def lifecycle_call(self, track: Track, what: str, make: Callable[[], Any], bound: float) -> Any:
        """``connect()`` / ``wait_connected()``: ends within ``bound`` with None or a typed error
        (ClientClosedError only once the client is being closed). Returns the outcome."""
        self.count(what)
        phase = self.phase
        state, task, elapsed = await self.bounded(make, bound)
        if what.startswith("connect"):
            self.worst_connect = max(self.worst_connect, elapsed)
        if state == "hang":
            self.count("hangs")
            self.violation(f"{track.name}: {what} did not end within {bound:g}s (waited {elapsed:.1f}s)")
            return None
        exc = asyncio.CancelledError() if task.cancelled() else task.exception()
        if exc is None:
            return task.result()  # None, or ABANDON
        name = type(exc).__name__
        self.errors[f"{what}: {name}"] = self.errors.get(f"{what}: {name}", 0) + 1
        if not isinstance(exc, CircleWsClientError):
            self.violation(f"{track.name}: {what} raised an untyped {name}: {exc!r:.300}")
        elif (phase in ("warmup", "calm") and self.phase == phase and not isinstance(exc, ClientClosedError)
              and not track.idle_by_design):
            self.violation(f"{track.name}: {what} failed with the network healthy: {name}: {exc}")
        return exc

    async def churn_worker(self, unit: int) -> None:
        """Short-lived clients: connect (sometimes twice at once, sometimes disconnecting while
        it is in progress), live a random while making calls through whatever the network does,
        then disconnect in whatever state they are. Each one's bounds and statuses are checked
        at once, then it is let go (so memory must not grow with their number)."""
        opts, cfg = self.opts, self.cfg
        bound = opts["connect_timeout"] + cfg["slack"]
        while self.running():
            i = self.rng.randrange(len(self.servers))
            pooled = self.rng.random() < 0.5  # shares the long-lived keyed client's connection
            track = Track(self, f"churn({self.servers[i]['name']}{', pooled' if pooled else ''})", i, True, "churn",
                          fresh=not pooled)
            client = CircleWsClient(self.servers[i]["url"], self.env.key, pool=pooled, **opts)
            track.watch(client)
            early = self.rng.random() < 0.2
            double = self.rng.random() < 0.3
            life = self.rng.uniform(0, 4.0)
            self.count("churn clients")
            track.note = f" (created {now():.3f}{', disconnected early' if early else ''}{', two connect() callers' if double else ''})"
            disconnects: list[asyncio.Future[Any]] = []
            if early:
                delay = self.rng.uniform(0, 0.3)

                async def disconnect_soon() -> None:
                    await asyncio.sleep(delay)
                    track.note += f", disconnect() at {now():.3f}"
                    await self.disconnect(client, track.name)

                disconnects.append(asyncio.ensure_future(disconnect_soon()))
            if self.rng.random() < self.cfg["abandon"] * 2:  # the caller gives up on connect() early
                patience = self.rng.uniform(0.001, 0.2)
                attempts = [self.lifecycle_call(track, "connect() abandoned by its caller",
                                                lambda: self._abandon(client.connect(), patience), bound)]
                early = abandoned = True  # no outcome is expected to agree with anything now
                track.note += ", connect() abandoned"
            else:
                abandoned = False
                attempts = [self.lifecycle_call(track, "connect()", client.connect, bound)]
            if double:  # single-flight: both callers get the one attempt's outcome
                attempts.append(self.lifecycle_call(track, "connect() (second caller)", client.connect, bound))
            outcomes = await asyncio.gather(*attempts)
            track.idle_by_design = abandoned and not pooled and outcomes[0] is ABANDON
            if double and (outcomes[0] is None) != (outcomes[1] is None) and not early:
                self.violation(f"{track.name}: two concurrent connect() calls disagree: {outcomes[0]!r} / {outcomes[1]!r}")
            if not disconnects and (outcomes[0] is None or abandoned):  # abandoned: live on, in whatever state
                self.count("churn connected" if client.is_connected else "churn living on, not connected")
                until = now() + life
                while self.running() and now() < until and client.status is not S.CLOSED:
                    n = self.new_call(i)
                    text = f"c{unit}-n{n}"
                    timeout = self.pick_timeout()
                    code, _ = await self.one_call(
                        track, f"play #{n}", lambda: self._play_output(client.play(f"'{text}'", timeout=timeout)),
                        timeout, text)
                    self.outcome[n] = code
                    if code == NOT_CONNECTED and self.rng.random() < 0.5:
                        if self.rng.random() < 0.5:
                            await self.lifecycle_call(track, "connect() while not ready", client.connect, bound)
                        else:
                            wait = self.rng.uniform(0.1, 2.0)
                            await self.lifecycle_call(track, "wait_connected()", lambda: client.wait_connected(wait),
                                                      wait + cfg["slack"])
                    await self.pause(code)
            if disconnects:
                await asyncio.gather(*disconnects)
            status = client.status.value
            self.count(f"churn disconnect while {status}")
            await self.disconnect(client, track.name)
            await self.disconnect(client, track.name)  # idempotent
            track.check(client.status)
            del client, track, disconnects, attempts
            await asyncio.sleep(self.rng.uniform(0.05, 0.3))

    async def disconnect(self, target: Any, name: str) -> None:
        """``disconnect()`` / ``disconnect_all()``: must never raise, and must end in bounded time."""
        close = target.disconnect_all if hasattr(target, "disconnect_all") else target.disconnect
        state, task, elapsed = await self.bounded(close, 5.0 + self.cfg["slack"])
        self.worst_disconnect = max(self.worst_disconnect, elapsed)
        if state == "hang":
            self.violation(f"{name}: disconnect did not end within {5.0 + self.cfg['slack']:g}s")
        elif task.cancelled() or task.exception() is not None:
            exc = asyncio.CancelledError() if task.cancelled() else task.exception()
            self.violation(f"{name}: disconnect raised {type(exc).__name__}: {exc!r:.300}")

    # -- the run ------------------------------------------------------------------------------

    async def clock_offset(self) -> float:
        """rig time - local time, from the sample with the shortest round trip."""
        best = None
        for _ in range(5):
            t0 = now()
            remote = await self.env.rig_time()
            t1 = now()
            if best is None or t1 - t0 < best[0]:
                best = (t1 - t0, remote - (t0 + t1) / 2)
        assert best is not None
        return best[1]

    def memory_sample(self) -> dict[str, float] | None:
        try:
            import tracemalloc
        except ImportError:
            return None
        if not tracemalloc.is_tracing():
            return None
        started = now()
        gc.collect()
        snap = tracemalloc.take_snapshot()
        lib = snap.filter_traces([tracemalloc.Filter(True, "*circle_ws_web*"), tracemalloc.Filter(True, "*websockets*")])
        lib = lib.filter_traces([tracemalloc.Filter(False, "*circle_ws_web/server*")])
        mb = 1 / 2**20
        sample: dict[str, Any] = {
            "library_mb": round(sum(s.size for s in lib.statistics("filename")) * mb, 3),
            "traced_mb": round(tracemalloc.get_traced_memory()[0] * mb, 3),
        }
        if self._warm_snapshot is None:
            self._warm_snapshot = lib
        else:  # where the library's memory grew since the warm-up, for the report
            sample["top_growth"] = [
                f"{d.size_diff / 1024:+.1f} KiB ({d.count_diff:+d} blocks) {d.traceback[0].filename.split('/')[-1]}:"
                f"{d.traceback[0].lineno}"
                for d in lib.compare_to(self._warm_snapshot, "lineno")[:8] if d.size_diff
            ]
            self._warm_snapshot = None
        sample["took_s"] = round(now() - started, 3)
        return sample

    def all_connected(self, clients: list[CircleWsClient]) -> bool:
        return all(c.status is S.CONNECTED for c in clients)

    async def wait_all_connected(self, clients: list[CircleWsClient], limit: float) -> float | None:
        started = now()
        while now() - started < limit:
            if self.all_connected(clients):
                return now() - started
            await asyncio.sleep(0.02)
        return None

    async def run(self) -> dict[str, Any]:
        cfg, opts = self.cfg, self.opts
        loop = asyncio.get_running_loop()
        baseline = {t for t in asyncio.all_tasks() if not t.done()}
        lib_logger = logging.getLogger("circle_ws_web")
        counter = _LogCounter()
        lib_logger.addHandler(counter)
        asyncio_warnings = _AsyncioWarnings()
        logging.getLogger("asyncio").addHandler(asyncio_warnings)
        old_propagate, lib_logger.propagate = lib_logger.propagate, False  # thousands of expected warnings
        old_level = lib_logger.level
        lib_logger.setLevel(logging.INFO)

        def on_loop_error(_loop: Any, context: dict[str, Any]) -> None:
            self.violation(f"event loop: {context.get('message')}: {context.get('exception')!r:.300}")

        try:  # Pyodide's WebLoop may not have these: its own handler reports to the console
            old_handler = loop.get_exception_handler()
            loop.set_exception_handler(on_loop_error)
            handler_set = True
        except (AttributeError, NotImplementedError):
            handler_set = False
        started_tracing = False
        try:
            import tracemalloc

            if cfg["tracemalloc"] and not tracemalloc.is_tracing():
                tracemalloc.start(1)
                started_tracing = True
        except ImportError:
            pass
        try:
            report = await self._run(baseline)
            report["log_counts"] = dict(counter.counts)
            for message, n in asyncio_warnings.counts.items():
                self.violation(f"asyncio logged {message!r} {n} times on the clients' loop")
                report["violations"], report["violation_count"] = self.violations, self.violation_count
            report["log_tail"] = [[round(t + self.offset, 4), line] for t, line in counter.tail]
            return report
        finally:
            if started_tracing:
                import tracemalloc

                tracemalloc.stop()
            if handler_set:
                loop.set_exception_handler(old_handler)
            lib_logger.removeHandler(counter)
            logging.getLogger("asyncio").removeHandler(asyncio_warnings)
            lib_logger.propagate = old_propagate
            lib_logger.setLevel(old_level)

    async def _run(self, baseline: set[Any]) -> dict[str, Any]:
        cfg, opts, key = self.cfg, self.opts, self.env.key
        self.offset = await self.clock_offset()
        # The clients: one keyed per server, one keyless per open server, a manager over all.
        singles: list[tuple[int, CircleWsClient, Track]] = []
        for i, server in enumerate(self.servers):
            variants = [True] if server["auth"] else [True, False]
            for keyed in variants:
                client = CircleWsClient(server["url"], key if keyed else None, **opts)
                track = Track(self, f"{'keyed' if keyed else 'keyless'}({server['name']})", i, keyed, "client")
                track.watch(client)
                self.tracks.append(track)
                singles.append((len(self.tracks) - 1, client, track))
        builder = ws_manager().private_key(key)
        for server in self.servers:
            builder.add_server_url(server["url"])
        manager = (
            builder.keepalive(opts["keepalive_interval"], opts["keepalive_timeout"])
            .reconnect(initial_delay=opts["reconnect_initial_delay"], max_delay=opts["reconnect_max_delay"],
                       min_uptime=opts["reconnect_min_uptime"])
            .request_timeout(opts["request_timeout"])
            .connect_timeout(opts["connect_timeout"])
            .pool(False)  # connections of its own (churned clients share the keyed clients')
            .build()
        )
        # A second manager whose servers come and go (fleet_worker); k connections to the first.
        fleet_settings = [{"priority": 0 if i < 2 else 1, "weight": 1 + i % 2, "connections": 2 if i == 0 else 1}
                          for i in range(len(self.servers))]
        fleet_builder = ws_manager().private_key(key)
        for server, settings in zip(self.servers, fleet_settings):
            fleet_builder.add_server_url(server["url"], **settings)
        fleet = (
            fleet_builder.keepalive(opts["keepalive_interval"], opts["keepalive_timeout"])
            .reconnect(initial_delay=opts["reconnect_initial_delay"], max_delay=opts["reconnect_max_delay"],
                       min_uptime=opts["reconnect_min_uptime"])
            .request_timeout(opts["request_timeout"])
            .connect_timeout(opts["connect_timeout"])
            .pool(False)
            .build()
        )
        self.fleet_track = Track(self, "fleet(execute_script_any)", 0, True, "any")
        self.fleet_track.closed_ok = True
        mtracks = [Track(self, f"manager({s['name']})", i, True, "manager") for i, s in enumerate(self.servers)]
        by_url = {s["url"]: t for s, t in zip(self.servers, mtracks)}
        manager.on_status_change(lambda url, status: by_url[url](status))
        self.tracks.extend(mtracks)
        self.any_track = Track(self, "manager(execute_script_any)", 0, True, "any")
        manager_unit = len(self.tracks)
        churn_unit = manager_unit + 1
        connections = [c for _, c, _ in singles] + [manager.get_client(s["url"]) for s in self.servers]

        # Connect everything, with no fault yet.
        self.phase = "connect"
        await self.bounded(
            lambda: asyncio.gather(*(c.connect(keep_trying=True) for _, c, _ in singles), manager.connect(),
                                   fleet.connect(), return_exceptions=True), 30.0)
        if await self.wait_all_connected(connections, 15.0) is None:
            self.violation("setup: not every client connected before any fault: "
                           + ", ".join(f"{c.url}={c.status.value}" for c in connections))
            self.stopping = True
            for _, client, _ in singles:
                await self.disconnect(client, client.url)
            await self.disconnect(manager, "manager")
            await self.disconnect(fleet, "fleet")
            return self.report(connections)

        self.phase = "warmup"
        workers: list[asyncio.Future[Any]] = []
        for unit, client, track in singles:
            for _ in range(cfg["play_workers"]):
                workers.append(asyncio.ensure_future(self.play_worker(unit, client, track)))
            for _ in range(cfg["ping_workers"]):
                workers.append(asyncio.ensure_future(self.ping_worker(client, track)))
        for _ in range(cfg["manager_workers"]):
            workers.append(asyncio.ensure_future(self.manager_worker(manager_unit, manager, mtracks)))
        for _ in range(cfg["churn_workers"]):
            workers.append(asyncio.ensure_future(self.churn_worker(churn_unit)))
        for _ in range(cfg["burst_workers"]):
            workers.append(asyncio.ensure_future(self.burst_worker(singles)))
        workers.append(asyncio.ensure_future(self.fleet_worker(churn_unit + 1, fleet, fleet_settings)))
        await asyncio.sleep(cfg["warmup"])
        # Measure with no call in flight: a snapshot holds the loop for a few hundred ms, which
        # would make calls with short timeouts time out for no fault of the network.
        self.gate.clear()
        quiet_by = now() + 15.0
        while self.in_flight and now() < quiet_by:
            await asyncio.sleep(0.01)
        self.memory["warm"] = self.memory_sample()
        self.gate.set()

        self.phase = "chaos"
        await self.env.begin_chaos(cfg["seconds"])
        self.timing["chaos_started"] = now() + self.offset
        healed_at = None
        limit = now() + cfg["seconds"] + 90.0
        while now() < limit:
            await asyncio.sleep(0.25)
            state_ = await self.env.chaos_state()
            if state_["healed_at"] is not None:
                healed_at = state_["healed_at"]
                break
        if healed_at is None:
            self.violation("the rig did not heal within the chaos duration + 90 s")
            healed_at = now() + self.offset
        self.timing["healed_at"] = healed_at

        self.phase = "recover"
        took = await self.wait_all_connected(connections, cfg["recover_within"])
        if took is None:
            self.violation(f"not every client was CONNECTED within {cfg['recover_within']:g}s of the rig healing: "
                           + ", ".join(f"{c.url}={c.status.value}" for c in connections))
        else:
            self.timing["all_connected_at"] = now() + self.offset
            self.timing["final_recovery"] = round(self.timing["all_connected_at"] - healed_at, 3)

        self.phase = "calm"
        for track in self.tracks:
            track.calm_results = 0
        await asyncio.sleep(cfg["calm"])
        for track in self.tracks:
            if track.kind not in ("churn", "any") and track.calm_results == 0:
                self.violation(f"{track.name}: no successful call in the {cfg['calm']:g}s after recovery")

        self.phase = "stopping"
        self.stopping = True
        longest = max(t for t in cfg["timeouts"] + [opts["request_timeout"]] if t is not None)
        done, pending = await asyncio.wait(workers, timeout=longest + cfg["slack"] + cfg["hang_grace"] + 15.0)
        for w in pending:
            self.violation(f"a worker did not stop: {w!r:.200}")
            w.cancel()
        for w in done:
            if not w.cancelled() and w.exception() is not None:
                exc = w.exception()
                self.violation(f"a worker crashed: {type(exc).__name__}: {exc!r:.300}")
        self.memory["calm"] = self.memory_sample()

        self.phase = "disconnect"
        for _, client, track in singles:
            await self.disconnect(client, track.name)
            await self.disconnect(client, track.name)
        await self.disconnect(manager, "manager")
        await self.disconnect(manager, "manager")
        await self.disconnect(fleet, "fleet")
        await self.disconnect(fleet, "fleet")
        for _, client, track in singles:
            track.check(client.status)
        for s, track in zip(self.servers, mtracks):
            track.check(manager.get_client(s["url"]).status)
        await asyncio.sleep(0.2)
        leftover = {t for t in asyncio.all_tasks() if not t.done()} - baseline - {asyncio.current_task()}
        if leftover:
            self.violation(f"{len(leftover)} task(s) left after every client disconnected: "
                           + ", ".join(repr(t.get_coro())[:120] for t in list(leftover)[:5]))
        return self.report(connections)

    def report(self, connections: list[CircleWsClient]) -> dict[str, Any]:
        metrics: dict[str, dict[str, Any]] = {}
        engines = set()  # pooled clients report their shared connection's metrics: count each once
        for track, client in zip([t for t in self.tracks if t.kind != "churn"], connections):
            engine = id(getattr(client, "_engine", client))
            if engine not in engines:
                engines.add(engine)
                metrics[track.name] = client.metrics.as_dict()
        return {
            "platform": self.env.platform,
            "config": self.cfg,
            "servers": self.servers,
            "offset": self.offset,
            "counts": self.counts,
            "errors": self.errors,
            "violations": self.violations,
            "violation_count": self.violation_count,
            "tracks": [t.as_json(self.offset) for t in self.tracks],
            "outcome": base64.b64encode(bytes(self.outcome)).decode(),
            "target": base64.b64encode(bytes(self.target)).decode(),
            "all_calls": {str(n): {str(k): v for k, v in per.items()} for n, per in self.all_calls.items()},
            "any_where": {str(n): i for n, i in self.any_where.items()},
            "metrics": metrics,
            "memory": self.memory,
            "timing": self.timing,
            "worst_overshoot": None if self.worst_overshoot == float("-inf") else round(self.worst_overshoot, 3),
            "worst_overshoot_what": self.worst_overshoot_what,
            "worst_connect": round(self.worst_connect, 3),
            "worst_disconnect": round(self.worst_disconnect, 3),
        }


async def run_soak(env: Any, **config: Any) -> dict[str, Any]:
    """Run the soak against ``env``; returns the report (see the module docstring)."""
    return await Soak(env, config).run()
