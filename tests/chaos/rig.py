"""The fault side of the chaos soak: real reference servers behind chaos proxies, and a seeded
schedule of faults played against them.

:class:`ChaosRig` runs in its own thread with its own event loop, so the same rig serves a soak
whose clients run on the test's loop (CPython) or in a browser page (Pyodide, driven by sync
Playwright on the main thread). Servers are ``python -m circle_ws_web.server --test-controls
[--require-auth] [--journal PATH]`` subprocesses (tests/support/servers.py); a restart is a real
``kill -9`` and a new process on the same port, with a fresh journal file per process.

The schedule is a pure function of (seed, duration, server names): :func:`make_schedule`. What
it cannot fix in advance (which of the live connections a drop hits) is drawn from a generator
seeded by the fault itself.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import support.servers
from support.servers import TEST_KEY, ServerProcess, free_port

from .proxy import DIRECTIONS, ChaosProxy

__all__ = ["ChaosRig", "make_schedule", "server_supports_journal", "DEFAULT_SERVERS", "FAULT_KINDS"]

#: name, authentication required
DEFAULT_SERVERS: tuple[tuple[str, bool], ...] = (("auth1", True), ("open1", False), ("auth2", True))

#: kind: weight. Windowed kinds hold a server for a while; at most one at a time per server.
FAULT_KINDS = {
    "drop": 3.0, "cut": 2.0, "delay": 2.0, "blackhole": 1.5, "refuse": 1.0, "restart": 1.0,
    "halfopen": 1.0, "drip": 1.0,
}
WINDOWED = frozenset({"delay", "blackhole", "refuse", "restart", "drip"})
#: Seconds between two faults (anywhere), drawn uniformly.
GAP = (0.2, 1.6)
#: What a restart holds its server for, besides its down time (the new process's start-up; a
#: restart that takes longer still is serialised by the server's lock, never overlapped).
RESTART_MARGIN = 4.0


def make_schedule(seed: Any, seconds: float, servers: Sequence[str]) -> list[dict[str, Any]]:
    """The faults of one run: ``[{"at": s, "kind", "server", ...params}, ...]``, sorted by ``at``."""
    rng = random.Random(f"{seed}-faults")
    kinds, weights = list(FAULT_KINDS), list(FAULT_KINDS.values())
    busy_until = {name: 0.0 for name in servers}
    out: list[dict[str, Any]] = []
    t = 0.0
    while True:
        t += rng.uniform(*GAP)
        if t >= seconds:
            return out
        kind = rng.choices(kinds, weights)[0]
        server = rng.choice(list(servers))
        left = max(0.1, seconds - t)
        fault: dict[str, Any] = {"at": round(t, 3), "kind": kind, "server": server, "pick": rng.randrange(2**32)}
        if kind == "delay":
            fault["direction"] = rng.choice(["c2s", "s2c", "both"])
            fault["latency"] = round(rng.uniform(0.05, 0.8), 3)
            fault["duration"] = round(min(left, rng.uniform(0.5, 3.0)), 3)
        elif kind == "blackhole":
            fault["duration"] = round(min(left, rng.uniform(0.3, 3.5)), 3)
        elif kind == "refuse":
            fault["duration"] = round(min(left, rng.uniform(0.5, 3.0)), 3)
            fault["drop_live"] = rng.random() < 0.6  # else only new connections notice
        elif kind == "restart":
            fault["down"] = round(rng.uniform(0.0, 1.5), 3)
        elif kind == "drop":
            fault["rst"] = rng.random() < 0.65
            fault["one"] = rng.random() < 0.5
        elif kind == "cut":
            fault["direction"] = rng.choice(DIRECTIONS)
            fault["one"] = rng.random() < 0.6
        elif kind == "halfopen":
            fault["one"] = rng.random() < 0.6
        elif kind == "drip":
            fault["duration"] = round(min(left, rng.uniform(0.5, 3.0)), 3)
        if kind in WINDOWED:
            hold = fault.get("duration", 0.0) + fault.get("down", 0.0) + (RESTART_MARGIN if kind == "restart" else 0.0)
            if busy_until[server] > t:
                # The server already has a window fault: drop a connection instead.
                fault = {"at": fault["at"], "kind": "drop", "server": server, "pick": fault["pick"],
                         "rst": rng.random() < 0.65, "one": True}
            else:
                busy_until[server] = t + hold
        out.append(fault)


if os.environ.get("CHAOS_SRC"):
    # ./soak.sh --rev REV: the servers (and, through PYTHONPATH, the clients) run that revision's
    # src/, not the working tree's.
    support.servers.SRC = Path(os.environ["CHAOS_SRC"]).resolve()

_journal_support: bool | None = None


def server_supports_journal(python: str = sys.executable) -> bool:
    """Whether this checkout's server has ``--journal``."""
    global _journal_support
    if _journal_support is None:
        env = {**os.environ, "PYTHONPATH": str(support.servers.SRC) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        out = subprocess.run([python, "-m", "circle_ws_web.server", "--help"], capture_output=True, text=True,
                             env=env, timeout=60)
        _journal_support = "--journal" in out.stdout
    return _journal_support


class _Server:
    def __init__(self, name: str, require_auth: bool, workdir: Path, journal: bool) -> None:
        self.name = name
        self.require_auth = require_auth
        self.workdir = workdir
        self.journal = journal
        self.process = ServerProcess(free_port(), require_auth=require_auth)
        self.incarnation = 0
        self.journals: list[Path] = []
        #: Held while the process is being stopped or started (rig loop only).
        self.lock = asyncio.Lock()

    def start(self) -> None:
        self.process.stop()  # never leave a running process behind a new one
        self.incarnation += 1
        extra: tuple[str, ...] = ()
        if self.journal:
            path = self.workdir / f"{self.name}.{self.incarnation}.jsonl"
            self.journals.append(path)
            extra = ("--journal", str(path))
        self.process.extra = extra
        self.process.start(timeout=30.0)

    def stop(self) -> None:
        self.process.stop()

    def ensure_running(self) -> None:
        if not self.process.running:
            self.process.stop()
            self.start()


class ChaosRig:
    """Servers, one chaos proxy in front of each, and the fault scheduler, on a private loop."""

    def __init__(
        self,
        seed: Any,
        workdir: Path,
        servers: Sequence[tuple[str, bool]] = DEFAULT_SERVERS,
        *,
        journal: bool | None = None,
    ) -> None:
        self.seed = seed
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.journal = server_supports_journal() if journal is None else journal
        self.servers = [_Server(name, auth, self.workdir, self.journal) for name, auth in servers]
        self.proxies: dict[str, ChaosProxy] = {}
        self.key = TEST_KEY
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="chaos-rig", daemon=True)
        self.fault_log: list[dict[str, Any]] = []
        self.schedule: list[dict[str, Any]] = []
        self.chaos_started: float | None = None
        self.healed_at: float | None = None
        self._chaos: Future[Any] | None = None
        self._lock = threading.Lock()

    # -- thread plumbing ----------------------------------------------------------------------

    def _submit(self, coro: Coroutine[Any, Any, Any]) -> Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, coro: Coroutine[Any, Any, Any], timeout: float = 60.0) -> Any:
        """Run ``coro`` on the rig's loop and wait for it (from any other thread)."""
        return self._submit(coro).result(timeout)

    @staticmethod
    def now() -> float:
        return time.monotonic()

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        self.thread.start()
        for server in self.servers:
            server.start()

        async def proxies() -> None:
            for server in self.servers:
                proxy = ChaosProxy(free_port(), server.process.port, server.name)
                await proxy.start()
                self.proxies[server.name] = proxy

        self.call(proxies())

    def close(self) -> None:
        if self._chaos is not None and not self._chaos.done():
            self._chaos.cancel()
        if self.thread.is_alive():
            async def shut() -> None:
                for proxy in self.proxies.values():
                    await proxy.close()

            try:
                self.call(shut(), 30.0)
            finally:
                self.loop.call_soon_threadsafe(self.loop.stop)
                self.thread.join(10)
        for server in self.servers:
            server.stop()
        if not self.loop.is_running():
            self.loop.close()

    def __enter__(self) -> ChaosRig:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def server_specs(self) -> list[dict[str, Any]]:
        """What the soak driver needs: name, URL through the proxy, authentication required."""
        return [{"name": s.name, "url": self.proxies[s.name].url, "auth": s.require_auth} for s in self.servers]

    # -- chaos --------------------------------------------------------------------------------

    def begin_chaos(self, seconds: float) -> None:
        """Start the schedule for ``seconds`` (non-blocking); ``state()`` says when it healed."""
        assert self._chaos is None, "one chaos run per rig"
        self.schedule = make_schedule(self.seed, seconds, [s.name for s in self.servers])
        self._chaos = self._submit(self._run_chaos(seconds))

    def state(self) -> dict[str, Any]:
        if self._chaos is not None and self._chaos.done() and self._chaos.exception() is not None:
            raise RuntimeError(f"the chaos scheduler failed: {self._chaos.exception()!r}")
        return {"running": self._chaos is not None and not self._chaos.done(), "healed_at": self.healed_at}

    async def _run_chaos(self, seconds: float) -> None:
        t0 = self.chaos_started = self.now()
        tasks: set[asyncio.Task[None]] = set()
        try:
            for fault in self.schedule:
                wait = t0 + fault["at"] - self.now()
                if wait > 0:
                    await asyncio.sleep(wait)
                task = asyncio.get_running_loop().create_task(self._apply_logged(fault))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            await asyncio.sleep(max(0.0, t0 + seconds - self.now()))
            if tasks:
                await asyncio.wait(tasks, timeout=60.0)
        finally:
            for task in tasks:
                task.cancel()
            await self.heal()
            self.healed_at = self.now()

    async def heal(self) -> None:
        for proxy in self.proxies.values():
            await proxy.heal()
        for server in self.servers:
            async with server.lock:
                if not server.process.running:
                    await asyncio.to_thread(server.ensure_running)

    def _log(self, fault: dict[str, Any], start: float, **detail: Any) -> None:
        entry = {**{k: v for k, v in fault.items() if k != "pick"}, "start": round(start, 4),
                 "end": round(self.now(), 4), **detail}
        with self._lock:
            self.fault_log.append(entry)

    async def _apply_logged(self, fault: dict[str, Any]) -> None:
        """A fault the rig could not carry out (a server that would not start again) is logged
        with its error: the analysis reports it, and the heal tries once more."""
        start = self.now()
        try:
            await self._apply(fault)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._log(fault, start, error=f"{type(exc).__name__}: {exc}"[:500])

    async def _apply(self, fault: dict[str, Any]) -> None:
        kind, name = fault["kind"], fault["server"]
        proxy = self.proxies[name]
        server = next(s for s in self.servers if s.name == name)
        rng = random.Random(fault["pick"])

        def pick(ids: list[int]) -> list[int]:
            return [rng.choice(ids)] if fault.get("one") and ids else ids

        start = self.now()
        if kind == "drop":
            n = proxy.drop(rst=fault["rst"], pick=pick)
            self._log(fault, start, links=n)
        elif kind == "cut":
            n = proxy.arm_cut(fault["direction"], pick=pick)
            before = proxy.stats.cuts
            deadline = start + 3.0
            while proxy.stats.cuts - before < n and self.now() < deadline:
                await asyncio.sleep(0.01)
            fired = proxy.stats.cuts - before
            proxy.disarm_cuts()
            self._log(fault, start, links=n, fired=fired)
        elif kind == "delay":
            directions = DIRECTIONS if fault["direction"] == "both" else (fault["direction"],)
            for d in directions:
                proxy.set_latency(d, fault["latency"])
            try:
                await asyncio.sleep(fault["duration"])
            finally:
                for d in directions:
                    proxy.set_latency(d, 0.0)
                self._log(fault, start)
        elif kind == "blackhole":
            proxy.set_blackhole(True)
            try:
                await asyncio.sleep(fault["duration"])
            finally:
                proxy.set_blackhole(False)
                self._log(fault, start)
        elif kind == "refuse":
            await proxy.set_refusing(True)
            n = proxy.drop(rst=True) if fault["drop_live"] else 0
            try:
                await asyncio.sleep(fault["duration"])
            finally:
                await proxy.set_refusing(False)
                self._log(fault, start, links=n)
        elif kind == "halfopen":
            n = proxy.half_open(pick=pick)
            self._log(fault, start, links=n)
        elif kind == "drip":
            proxy.set_drip(True)
            try:
                await asyncio.sleep(fault["duration"])
            finally:
                proxy.set_drip(False)
                self._log(fault, start)
        elif kind == "restart":
            async with server.lock:
                start = self.now()
                try:
                    await asyncio.to_thread(server.stop)
                    await asyncio.sleep(fault["down"])
                finally:
                    await asyncio.to_thread(server.start)
                    self._log(fault, start, incarnation=server.incarnation)
        else:  # pragma: no cover
            raise ValueError(kind)

    # -- what the servers did -------------------------------------------------------------------

    def journals(self) -> dict[str, list[dict[str, Any]]] | None:
        """Every ``play`` each server started, across its restarts; None without ``--journal``."""
        if not self.journal:
            return None
        out: dict[str, list[dict[str, Any]]] = {}
        for server in self.servers:
            entries: list[dict[str, Any]] = []
            for path in server.journals:
                if not path.exists():
                    continue
                for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                    if not line.strip():
                        continue
                    try:
                        entry = json.loads(line)
                    except ValueError:
                        entry = {"torn": line[:200]}
                    entry["incarnation"] = path.name
                    entries.append(entry)
            out[server.name] = entries
        return out

    def server_output(self, limit: int = 40) -> dict[str, list[str]]:
        return {s.name: s.process.output[-limit:] for s in self.servers}


class RigEnv:
    """The soak driver's ``env`` for clients on a CPython loop in this process."""

    platform = "cpython"

    def __init__(self, rig: ChaosRig) -> None:
        self.rig = rig
        self.key = rig.key
        self.servers = rig.server_specs

    async def rig_time(self) -> float:
        return self.rig.now()

    async def begin_chaos(self, seconds: float) -> None:
        self.rig.begin_chaos(seconds)

    async def chaos_state(self) -> dict[str, Any]:
        return self.rig.state()
