"""A TCP chaos proxy for loopback: sits between WebSocket clients and one real server and
injects network faults on command.

One :class:`ChaosProxy` listens on ``127.0.0.1:<listen_port>`` and forwards every connection
to ``127.0.0.1:<target_port>``, byte for byte, in both directions (``c2s``: client to server,
``s2c``: server to client). It knows nothing of WebSocket or JSON-RPC: faults are what a
network does to a TCP stream.

Faults (all bounded: every window has an end, and ``heal()`` ends them all at once):

* ``drop(rst=True)``: kill live connections, with a RST (``SO_LINGER`` 0) or a FIN;
* ``set_latency(direction, seconds)``: each chunk in that direction goes out ``seconds`` after
  it arrived (order kept; throughput unchanged);
* ``set_blackhole(True)``: nothing flows either way, on live and on new connections, but every
  TCP connection stays open (bytes wait, as TCP would keep retransmitting them; they go out
  when the hole closes, if the connection is still there);
* ``arm_cut(direction)``: the next chunk in that direction goes out half, then the connection
  is reset: a frame cut in the middle;
* ``set_refusing(True)``: the listening socket is closed, so new connections are refused
  (``ECONNREFUSED``); live ones are untouched;
* ``half_open()``: the server side of live connections is reset, the client side stays open
  and silent: the server is gone but the client hears nothing, ever (only its keep-alive can
  tell);
* ``set_drip(True)``: chunks go out in pieces of 1-7 bytes, a moment apart, so frames arrive
  split across many reads.

A connection whose server side cannot be reached (the server is down) is reset at once, which
is what a client sees when the server process is gone.

Loopback only: the proxy binds 127.0.0.1 and connects to 127.0.0.1, nothing else.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["ChaosProxy", "DIRECTIONS"]

HOST = "127.0.0.1"
DIRECTIONS = ("c2s", "s2c")
CHUNK = 64 * 1024
#: Chunks waiting in one direction of one connection before the proxy stops reading it.
QUEUE_CHUNKS = 256
UPSTREAM_CONNECT_TIMEOUT = 2.0
_EOF = None


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a RST: SO_LINGER on with a zero timeout, then close."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()


@dataclass
class Stats:
    accepted: int = 0
    upstream_refused: int = 0
    dropped_rst: int = 0
    dropped_fin: int = 0
    cuts: int = 0
    half_open: int = 0
    bytes_c2s: int = 0
    bytes_s2c: int = 0


@dataclass(eq=False)
class _Link:
    """One client connection and its server-side twin."""

    id: int
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    cut: set[str] = field(default_factory=set)
    closed: bool = False
    #: The server side was reset; the client side is held open, and nothing goes to it.
    mute: bool = False


class ChaosProxy:
    def __init__(self, listen_port: int, target_port: int, name: str = "", clock: Callable[[], float] = time.monotonic) -> None:
        self.listen_port = listen_port
        self.target_port = target_port
        self.name = name or f"proxy:{listen_port}"
        self.clock = clock
        self.stats = Stats()
        self.latency = {d: 0.0 for d in DIRECTIONS}
        self.drip = False
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False

    @property
    def url(self) -> str:
        return f"ws://{HOST}:{self.listen_port}"

    @property
    def links(self) -> int:
        return len(self._links)

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        await self._listen()

    async def _listen(self, timeout: float = 5.0) -> None:
        deadline = self.clock() + timeout
        while True:
            try:
                self._server = await asyncio.start_server(self._accept, HOST, self.listen_port, reuse_address=True)
                return
            except OSError:
                if self.clock() > deadline:
                    raise
                await asyncio.sleep(0.05)

    async def close(self) -> None:
        self._closing = True
        if self._server is not None:
            self._server.close()
            self._server = None
        for link in list(self._links):
            self._close_link(link, rst=True)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- faults -----------------------------------------------------------------------------

    def drop(self, *, rst: bool = True, pick: Callable[[list[int]], list[int]] | None = None) -> int:
        """Kill live connections (all of them, or those ``pick`` chooses by id); returns how many."""
        links = sorted(self._links, key=lambda link: link.id)
        if pick is not None:
            chosen = set(pick([link.id for link in links]))
            links = [link for link in links if link.id in chosen]
        for link in links:
            self._close_link(link, rst=rst)
            if rst:
                self.stats.dropped_rst += 1
            else:
                self.stats.dropped_fin += 1
        return len(links)

    def set_latency(self, direction: str, seconds: float) -> None:
        assert direction in DIRECTIONS, direction
        self.latency[direction] = max(0.0, float(seconds))

    def set_blackhole(self, on: bool) -> None:
        if on:
            self._flowing.clear()
        else:
            self._flowing.set()

    @property
    def blackholed(self) -> bool:
        return not self._flowing.is_set()

    def arm_cut(self, direction: str, pick: Callable[[list[int]], list[int]] | None = None) -> int:
        """Cut the next chunk in ``direction`` on the chosen live connections; returns how many armed."""
        assert direction in DIRECTIONS, direction
        links = sorted(self._links, key=lambda link: link.id)
        if pick is not None:
            chosen = set(pick([link.id for link in links]))
            links = [link for link in links if link.id in chosen]
        for link in links:
            link.cut.add(direction)
        return len(links)

    def half_open(self, pick: Callable[[list[int]], list[int]] | None = None) -> int:
        """Reset the server side of the chosen live connections, keep their client side open
        and silent until the client gives up on it; returns how many."""
        links = sorted((link for link in self._links if not link.mute), key=lambda link: link.id)
        if pick is not None:
            chosen = set(pick([link.id for link in links]))
            links = [link for link in links if link.id in chosen]
        for link in links:
            link.mute = True
            for task in link.tasks[2:]:  # the s2c pair: nothing more reaches the client
                task.cancel()
            if link.server is not None:
                _reset(link.server)
            self.stats.half_open += 1
        return len(links)

    def set_drip(self, on: bool) -> None:
        self.drip = on

    def disarm_cuts(self) -> None:
        for link in self._links:
            link.cut.clear()

    async def set_refusing(self, on: bool) -> None:
        if on:
            if self._server is not None:
                self._server.close()
                self._server = None
        elif self._server is None and not self._closing:
            await self._listen()

    @property
    def refusing(self) -> bool:
        return self._server is None

    async def heal(self) -> None:
        """End every fault now: no latency, no black hole, listening, no cut armed, and the
        half-open connections reset (their client would otherwise learn of them only from its
        keep-alive, after the heal)."""
        for d in DIRECTIONS:
            self.latency[d] = 0.0
        self.drip = False
        self._flowing.set()
        self.disarm_cuts()
        for link in [link for link in self._links if link.mute]:
            self._close_link(link, rst=True)
        await self.set_refusing(False)

    # -- forwarding -------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        link = _Link(next(self._ids), writer)
        if self._closing:
            _reset(writer)
            return
        self._links.add(link)
        self.stats.accepted += 1
        try:
            s_reader, s_writer = await asyncio.wait_for(
                asyncio.open_connection(HOST, self.target_port), UPSTREAM_CONNECT_TIMEOUT
            )
        except (OSError, asyncio.TimeoutError):
            self.stats.upstream_refused += 1
            self._close_link(link, rst=True)
            return
        if link.closed:  # dropped while connecting upstream
            _reset(s_writer)
            return
        link.server = s_writer
        loop = asyncio.get_running_loop()
        for direction, src, dst in (("c2s", reader, s_writer), ("s2c", s_reader, writer)):
            queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(QUEUE_CHUNKS)
            for coro in (self._read(link, src, queue), self._write(link, direction, dst, queue)):
                task = loop.create_task(coro)
                link.tasks.append(task)
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _read(self, link: _Link, src: asyncio.StreamReader, queue: asyncio.Queue[tuple[float, bytes] | None]) -> None:
        try:
            while True:
                data = await src.read(CHUNK)
                if not data:
                    await queue.put(_EOF)
                    return
                await queue.put((self.clock(), data))
        except (ConnectionError, OSError):
            self._close_link(link, rst=True)
        except asyncio.CancelledError:
            pass

    async def _write(
        self, link: _Link, direction: str, dst: asyncio.StreamWriter, queue: asyncio.Queue[tuple[float, bytes] | None]
    ) -> None:
        try:
            while True:
                item = await queue.get()
                if item is _EOF:
                    # One side ended its stream: the connection is over (WebSocket never half-closes
                    # usefully); pass the end on as a FIN to both sides, after what was queued.
                    await self._flowing.wait()
                    self._close_link(link, rst=False)
                    return
                arrived, data = item
                while True:
                    await self._flowing.wait()
                    wait = arrived + self.latency[direction] - self.clock()
                    if wait <= 0:
                        break
                    await asyncio.sleep(wait)
                await self._flowing.wait()  # a black hole may have opened while we slept
                if link.mute:
                    continue  # half-open: what the client sends goes nowhere
                if dst.is_closing():  # the other side went away: the link is over
                    self._close_link(link, rst=True)
                    return
                if direction in link.cut:
                    half = data[: len(data) // 2]
                    if half:
                        dst.write(half)
                        try:
                            await asyncio.wait_for(dst.drain(), 1.0)
                        except (asyncio.TimeoutError, ConnectionError, OSError):
                            pass
                    self.stats.cuts += 1
                    self._close_link(link, rst=True)
                    return
                if self.drip and len(data) > 1:
                    rng = random.Random(len(data))
                    i = 0
                    while i < len(data):
                        step = rng.randint(1, 7)
                        dst.write(data[i : i + step])
                        i += step
                        await dst.drain()
                        await asyncio.sleep(0.0005)
                else:
                    dst.write(data)
                    await dst.drain()
                if direction == "c2s":
                    self.stats.bytes_c2s += len(data)
                else:
                    self.stats.bytes_s2c += len(data)
        except (ConnectionError, OSError):
            if link.mute:  # the server side was reset on purpose: keep swallowing
                await self._swallow(link, queue)
            else:
                self._close_link(link, rst=True)
        except asyncio.CancelledError:
            pass

    async def _swallow(self, link: _Link, queue: asyncio.Queue[tuple[float, bytes] | None]) -> None:
        try:
            while await queue.get() is not _EOF:
                pass
            self._close_link(link, rst=False)
        except asyncio.CancelledError:
            pass

    def _close_link(self, link: _Link, *, rst: bool) -> None:
        if link.closed:
            return
        link.closed = True
        self._links.discard(link)
        me = asyncio.current_task()
        for task in link.tasks:
            if task is not me:
                task.cancel()
        for writer in (link.client, link.server):
            if writer is None:
                continue
            if rst:
                _reset(writer)
            else:
                writer.close()
