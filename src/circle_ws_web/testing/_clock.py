"""Clocks for tests: :class:`VirtualClock` (time moves only when the test says so) and
:class:`LoopClock` (the running asyncio loop's real time, what a :class:`FakeServer` uses when
it is given no clock)."""

from __future__ import annotations

import asyncio
import functools
import heapq
import logging
import math
from collections import deque
from typing import Any, Awaitable, Callable, NamedTuple, TypeVar

__all__ = ["LoopClock", "PendingTimer", "VirtualClock"]

logger = logging.getLogger("circle_ws_web.testing")

T = TypeVar("T")

#: Bumped by every timer change and every fake-server frame. Where the loop's queue of ready
#: callbacks cannot be read (Pyodide's WebLoop), "nothing changed for a few loop turns" is how
#: :meth:`VirtualClock.settle` knows the loop has gone idle.
_activity = [0]


def note_activity() -> None:
    """Tell waiting clocks that something happened (a frame moved, a timer changed)."""
    _activity[0] += 1


def _describe(callback: Callable[..., Any]) -> str:
    """A short name for a timer's callback: ``_Engine._fire(<Timer.KEEPALIVE: 'keepalive'>, 3)``."""
    if isinstance(callback, functools.partial):
        args = ", ".join([*map(repr, callback.args), *(f"{k}={v!r}" for k, v in callback.keywords.items())])
        return f"{_describe(callback.func)}({args})"
    return getattr(callback, "__qualname__", None) or repr(callback)


class PendingTimer(NamedTuple):
    """One timer that has neither fired nor been cancelled (see :meth:`VirtualClock.pending`)."""

    when: float
    callback: str


class _Timer:
    __slots__ = ("when", "seq", "callback")

    def __init__(self, when: float, seq: int, callback: Callable[[], None]) -> None:
        self.when = when
        self.seq = seq
        self.callback = callback


class VirtualClock:
    """A :class:`~circle_ws_web.transport.Clock` whose time moves only in :meth:`advance`.

    Why: a client's behaviour is about time (keep-alive after 20 s of silence, backoff of 30 s,
    a 10 s connect timeout); on a virtual clock a test runs those in microseconds and can assert
    *exact* times, with no flakiness from a loaded machine.

    Timers fire in time order (ties in the order they were set), each with ``now()`` equal to
    its own deadline; timers set by a firing callback fire in the same advance when they fall
    due within it. A cancelled timer is removed at once (its callback reference is dropped).
    An exception raised by a timer callback propagates out of ``advance``: in a test, a bug
    should be loud.

    Use :meth:`advance_async` (or :meth:`run_for`, :meth:`run_until`,
    :meth:`run_until_complete`) from async tests: between timers it lets the asyncio loop run
    until idle, so a task woken by one timer acts before the next timer fires.
    """

    #: Loop turns without any activity after which the loop counts as idle, where the loop's
    #: ready queue cannot be inspected (Pyodide's WebLoop).
    settle_turns = 5
    #: Upper bound of loop turns per settle (a task spinning on ``sleep(0)`` never goes idle).
    max_settle_turns = 10_000
    #: Timers one advance may fire before it concludes that callbacks re-arm each other forever.
    max_timers_per_advance = 1_000_000

    def __init__(self, start: float = 0.0) -> None:
        if not math.isfinite(start):
            raise ValueError(f"start must be a finite number, got {start!r}")
        self._now = float(start)
        self._seq = 0
        self._heap: list[tuple[float, int]] = []
        self._live: dict[int, _Timer] = {}
        self._advancing = False

    def __repr__(self) -> str:
        return f"<VirtualClock now={self._now:g} pending={len(self._live)}>"

    # -- the Clock protocol ------------------------------------------------------------------

    def now(self) -> float:
        """Virtual seconds; starts at ``start`` and moves only while advancing."""
        return self._now

    def call_later(self, delay: float, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` after ``delay`` virtual seconds (negative: as soon as due).

        Returns ``cancel()``: idempotent, a no-op once the timer fired; the timer is removed.
        """
        if math.isnan(delay):
            raise ValueError("delay is NaN")
        return self.call_at(self._now + max(0.0, delay), callback)

    def call_at(self, when: float, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` when virtual time reaches ``when``; returns ``cancel()``."""
        if math.isnan(when):
            raise ValueError("when is NaN")
        self._seq += 1
        seq = self._seq
        self._live[seq] = _Timer(max(when, self._now), seq, callback)
        heapq.heappush(self._heap, (self._live[seq].when, seq))
        note_activity()

        def cancel() -> None:
            if self._live.pop(seq, None) is not None:
                note_activity()
                if len(self._heap) > 64 and len(self._heap) > 2 * len(self._live):
                    self._heap = [(t.when, t.seq) for t in self._live.values()]
                    heapq.heapify(self._heap)

        return cancel

    # -- inspection --------------------------------------------------------------------------

    def pending(self) -> list[PendingTimer]:
        """Timers neither fired nor cancelled, soonest first. ``[]`` after a clean shutdown:
        the leak check ``assert not clock.pending()``."""
        timers = sorted(self._live.values(), key=lambda t: (t.when, t.seq))
        return [PendingTimer(t.when, _describe(t.callback)) for t in timers]

    def pending_count(self) -> int:
        """How many timers are pending (``len(pending())``, without building the list)."""
        return len(self._live)

    def next_deadline(self) -> float | None:
        """When the next pending timer is due, or None."""
        heap = self._heap
        while heap and heap[0][1] not in self._live:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    # -- moving time (sync) ------------------------------------------------------------------

    def _pop_due(self, until: float) -> _Timer | None:
        when = self.next_deadline()
        if when is None or when > until:
            return None
        _, seq = heapq.heappop(self._heap)
        return self._live.pop(seq)

    def _check_step(self, seconds: float) -> float:
        if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"seconds must be a finite number >= 0, got {seconds!r}")
        if self._advancing:
            raise RuntimeError("VirtualClock.advance called from a timer callback or while advancing")
        return self._now + seconds

    def advance(self, seconds: float) -> int:
        """Move time forward by ``seconds``, firing every timer that falls due, in order.

        Synchronous: no asyncio task runs in between (use :meth:`advance_async` for that).
        Returns how many timers fired.
        """
        target = self._check_step(seconds)
        fired = 0
        self._advancing = True
        try:
            while (timer := self._pop_due(target)) is not None:
                fired = self._fire(timer, fired)
            self._now = max(self._now, target)
        finally:
            self._advancing = False
        return fired

    def _fire(self, timer: _Timer, fired: int) -> int:
        if fired >= self.max_timers_per_advance:
            raise RuntimeError(
                f"{fired} timers fired in one advance: callbacks keep re-arming each other "
                f"(last: {_describe(timer.callback)})"
            )
        self._now = max(self._now, timer.when)
        note_activity()
        timer.callback()
        return fired + 1

    # -- moving time (async) -----------------------------------------------------------------

    async def settle(self) -> None:
        """Let the asyncio loop run until it is idle, without moving virtual time.

        On CPython's loop "idle" means its queue of ready callbacks is empty. Elsewhere (Pyodide)
        it means :attr:`settle_turns` loop turns in a row in which no timer changed and no fake
        server moved a frame. Bounded by :attr:`max_settle_turns`.
        """
        loop = asyncio.get_running_loop()
        ready = getattr(loop, "_ready", None)  # CPython's BaseEventLoop internals, when present
        exact = isinstance(ready, deque)
        quiet = 0
        for _ in range(self.max_settle_turns):
            before = _activity[0]
            await asyncio.sleep(0)
            if exact:
                if not ready:
                    return
            elif _activity[0] == before:
                quiet += 1
                if quiet >= self.settle_turns:
                    return
            else:
                quiet = 0
        logger.warning("VirtualClock.settle: the loop was still busy after %d turns", self.max_settle_turns)

    async def advance_async(self, seconds: float) -> int:
        """Like :meth:`advance`, but lets the loop run until idle before the first timer and
        after each one, so tasks woken by a timer run before the next timer fires. Returns how
        many timers fired."""
        return await self._advance_async_to(self._check_step(seconds))

    run_for = advance_async

    async def _advance_async_to(self, target: float) -> int:
        # By absolute time: ``now + (when - now)`` is not always ``when`` in floating point.
        fired = 0
        await self.settle()
        while True:
            self._advancing = True
            try:
                timer = self._pop_due(target)
                if timer is None:
                    self._now = max(self._now, target)
                    break
                fired = self._fire(timer, fired)
            finally:
                self._advancing = False
            await self.settle()
        await self.settle()
        return fired

    async def run_until(self, predicate: Callable[[], bool], *, timeout: float = 300.0) -> None:
        """Advance timer by timer until ``predicate()`` is true; afterwards ``now()`` is the
        exact virtual time at which it became true.

        Raises ``TimeoutError`` when it is still false after ``timeout`` virtual seconds, or at
        once when nothing is scheduled on this clock (waiting could not change anything).
        """
        limit = self._check_step(timeout)
        await self.settle()
        while not predicate():
            when = self.next_deadline()
            if when is None:
                raise TimeoutError(
                    f"condition still false at virtual time {self._now:g} and no timer is pending "
                    "on this clock: nothing left that could make it true"
                )
            if when > limit:
                await self._advance_async_to(limit)
                if predicate():
                    return
                raise TimeoutError(f"condition still false after {timeout:g} virtual seconds")
            await self._advance_async_to(when)

    async def run_until_complete(self, awaitable: Awaitable[T], *, timeout: float = 300.0) -> T:
        """Await ``awaitable`` while advancing virtual time as it needs; returns its result.

        On timeout (virtual seconds) the awaitable is cancelled and ``TimeoutError`` raised.
        """
        task = asyncio.ensure_future(awaitable)
        # A done callback, not polling task.done(): Pyodide's WebLoop reports a task that
        # fails with no other done callback as "Unhandled exception in event loop".
        finished: list[object] = []
        task.add_done_callback(finished.append)
        try:
            await self.run_until(lambda: bool(finished), timeout=timeout)
        except BaseException:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            raise
        return task.result()


class LoopClock:
    """Real time from the running asyncio loop (``loop.time()`` and ``loop.call_later``).

    What a :class:`FakeServer` uses without a clock: it then keeps time with a client on the
    platform's default clock. The loop is looked up at each call, so one object can be made
    before the loop runs.
    """

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    def call_later(self, delay: float, callback: Callable[[], None]) -> Callable[[], None]:
        handle = asyncio.get_running_loop().call_later(max(0.0, delay), callback)
        note_activity()
        return handle.cancel

    def __repr__(self) -> str:
        return "<LoopClock>"
