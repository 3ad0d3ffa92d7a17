"""Scripts run in worker processes, so one script can cost at most its own limits.

A script can sit inside one C-level operation for minutes (``[[0]*100000]*100000 ==
[[0]*100000]*100000`` is 10**10 comparisons in one call); in a thread it held the server's GIL,
froze every connection and even the SIGTERM handler, and no per-node deadline could interrupt
it. A process can be killed. :class:`ScriptPool` keeps a few warm workers (``forkserver``
context where available, else ``spawn``: a threaded asyncio process is never forked), sends one
script at a time to an idle worker over a socket pair, answers ``timed out`` at the deadline,
and SIGKILLs and replaces a worker that has not come back a short grace later. Each worker caps
its address space (``RLIMIT_AS``) and, as a safety net for a server that died without killing
it, its CPU time per script (``RLIMIT_CPU``); it exits when the server's end of the socket closes.

Waiting for a worker is fair: jobs queue per key (the connection id) and idle workers go to the
keys round-robin, so one connection's backlog cannot starve another's ``40 + 2``.

Wire format between the two ends: a 5-byte header (``!IB``: payload length, kind), then the
payload, UTF-8 with ``surrogatepass`` (a script may contain lone surrogates).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import multiprocessing
import multiprocessing.spawn
import os
import signal
import socket
import struct
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from multiprocessing.process import BaseProcess
from typing import Any

from .evaluator import CancelToken, ScriptError, ScriptMemoryError, ScriptTimeout, evaluate, timeout_message

__all__ = ["DEFAULT_MEMORY_LIMIT", "PoolBusy", "ScriptPool", "WorkerCrashed"]

logger = logging.getLogger("circle_ws_web.server")

DEFAULT_MEMORY_LIMIT = 512 * 2**20
"""Address space a script may add on top of its worker's interpreter (``RLIMIT_AS``)."""

_HEADER = struct.Struct("!IB")
_RUN, _READY, _OUTPUT, _ERROR, _TIMEOUT, _MEMORY = range(1, 7)
_MAX_PAYLOAD = 64 * 2**20  # far above any script or output; a corrupt length is an error


class PoolBusy(Exception):
    """No worker became free within the pool's queue timeout (the server is overloaded)."""


class WorkerCrashed(ScriptError):
    """The worker died while running the script (a crash, or killed from outside)."""


class PoolClosed(ScriptError):
    """The pool is shutting down."""


# --- the worker process ------------------------------------------------------------------


def _address_space() -> int:
    """The current virtual size of this process in bytes (0 where /proc is unavailable)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _send_frame(out: Any, kind: int, text: str) -> None:
    data = text.encode("utf-8", "surrogatepass")
    out.write(_HEADER.pack(len(data), kind) + data)
    out.flush()


def _worker_main(sock: socket.socket, timeout: float, max_output: int, memory_limit: int | None) -> None:
    """Entry point of a worker process: evaluate scripts until the server's end closes."""
    # Ctrl-C in a terminal signals the whole process group: the server shuts workers down itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # RLIMIT_CPU's SIGXCPU must not dump core
        if memory_limit:
            limit = _address_space() + memory_limit
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, ValueError, OSError):  # no resource module (Windows): no OS limits
        resource = None  # type: ignore[assignment]
    cpu_slack = math.ceil(timeout) + 2
    with sock, sock.makefile("rwb") as stream:
        _send_frame(stream, _READY, str(os.getpid()))
        while True:
            header = stream.read(_HEADER.size)
            if len(header) < _HEADER.size:
                return  # the server closed its end (or died): nothing left to do
            size, _kind = _HEADER.unpack(header)
            script = stream.read(size).decode("utf-8", "surrogatepass")
            if resource is not None:
                # Only matters when the server died without killing us mid-script: the kernel
                # then ends a stuck script a few seconds past its deadline.
                used = resource.getrusage(resource.RUSAGE_SELF)
                soft = math.ceil(used.ru_utime + used.ru_stime) + cpu_slack
                resource.setrlimit(resource.RLIMIT_CPU, (soft, resource.RLIM_INFINITY))
            try:
                kind, text = _OUTPUT, evaluate(script, max_output=max_output, token=CancelToken(timeout))
            except ScriptTimeout as exc:
                kind, text = _TIMEOUT, str(exc)
            except ScriptMemoryError as exc:
                kind, text = _MEMORY, str(exc)
            except ScriptError as exc:
                kind, text = _ERROR, str(exc)
            _send_frame(stream, kind, text)
            if kind == _MEMORY:
                return  # a fresh worker rather than a fragmented heap near its limit


# --- the server side -----------------------------------------------------------------------


class _Worker:
    """One worker process and the server's end of its socket."""

    __slots__ = ("proc", "reader", "writer", "reply", "pump", "alive", "jobs")

    def __init__(self, proc: BaseProcess, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.proc = proc
        self.reader = reader
        self.writer = writer
        self.reply: asyncio.Future[tuple[int, str]] | None = None
        self.pump: asyncio.Task[None] | None = None
        self.alive = True
        self.jobs = 0

    def expect(self) -> asyncio.Future[tuple[int, str]]:
        self.reply = asyncio.get_running_loop().create_future()
        return self.reply

    def kill(self) -> None:
        """SIGKILL: the only signal a worker stuck in C code cannot delay."""
        self.alive = False
        try:
            self.proc.kill()
        except (OSError, ValueError, AttributeError):  # already gone / closed
            pass


WORKER_NAME = "circle-script-worker"


def _skip_main_module_in_workers() -> None:
    """Workers never import the server's ``__main__``.

    multiprocessing re-imports the parent's main script in every spawned/forkserver child, so
    a script that starts a server without an ``if __name__ == "__main__"`` guard would start
    servers recursively, and every worker would pay for the import. Workers need only this
    module, so their preparation data drops the main module (other processes are untouched).
    """
    original = multiprocessing.spawn.get_preparation_data
    if getattr(original, "_circle_workers", False):
        return

    @functools.wraps(original)
    def get_preparation_data(name: str) -> dict[str, Any]:
        data: dict[str, Any] = original(name)
        if name == WORKER_NAME:
            data.pop("init_main_from_path", None)
            data.pop("init_main_from_name", None)
        return data

    get_preparation_data._circle_workers = True  # type: ignore[attr-defined]
    multiprocessing.spawn.get_preparation_data = get_preparation_data


def _context() -> multiprocessing.context.BaseContext:
    _skip_main_module_in_workers()
    methods = multiprocessing.get_all_start_methods()
    if "forkserver" in methods:
        ctx = multiprocessing.get_context("forkserver")
        # Preloaded once in the fork server, so each worker starts warm in milliseconds.
        # (No effect if this process's fork server is already running.)
        ctx.set_forkserver_preload([__name__])
        return ctx
    return multiprocessing.get_context("spawn")


class ScriptPool:
    """``size`` warm worker processes evaluating scripts with a hard wall-clock limit.

    ``timeout``: seconds a script may run (then -32010 "script timed out after N s", and the
    worker is killed unless it stops by itself within ``kill_grace``). ``memory_limit``: bytes a
    script may allocate (None: unlimited). ``queue_timeout``: seconds a job may wait for a free
    worker before :class:`PoolBusy`.
    """

    def __init__(
        self,
        size: int = 4,
        *,
        timeout: float = 2.0,
        max_output: int = 65536,
        memory_limit: int | None = DEFAULT_MEMORY_LIMIT,
        queue_timeout: float = 10.0,
        kill_grace: float = 0.25,
        start_timeout: float = 60.0,
    ) -> None:
        if size < 1:
            raise ValueError("size must be >= 1")
        self.size = size
        self.timeout = float(timeout)
        self.max_output = max_output
        self.memory_limit = memory_limit or None
        self.queue_timeout = queue_timeout
        self.kill_grace = kill_grace
        self.start_timeout = start_timeout
        self._ctx = _context()
        self._spawn_lock = threading.Lock()  # Process.start() is not meant to race itself
        self._workers: set[_Worker] = set()
        self._idle: list[_Worker] = []
        self._waiting: OrderedDict[Hashable, deque[asyncio.Future[_Worker]]] = OrderedDict()
        self._starting = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        self._started = False
        self.counters = {"spawned": 0, "killed": 0, "crashed": 0, "jobs": 0}

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Start every worker and wait until they are ready (the first start launches the
        fork server: a fraction of a second)."""
        self._started = True
        results = await asyncio.gather(*(self._add_worker() for _ in range(self.size)), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            await self.close()
            raise errors[0]

    async def close(self) -> None:
        """Kill every worker now and fail whatever waits for one. Idempotent, bounded."""
        self._closed = True
        for queue in self._waiting.values():
            for fut in queue:
                if not fut.done():
                    fut.set_exception(PoolClosed("server is stopping"))
        self._waiting.clear()
        self._idle.clear()
        workers = list(self._workers)
        for worker in workers:
            worker.kill()
            worker.writer.close()
        for task in list(self._tasks):
            task.cancel()
        pumps = [w.pump for w in workers if w.pump is not None]
        if pumps or self._tasks:
            await asyncio.wait([*pumps, *self._tasks], timeout=1.0)
        await asyncio.gather(*(asyncio.to_thread(self._reap, w.proc) for w in workers))

    def kill_now(self) -> None:
        """Synchronous last resort (a stop that overran its bound): SIGKILL every worker."""
        self._closed = True
        for worker in list(self._workers):
            worker.kill()

    def pids(self) -> list[int]:
        """Process ids of the live workers (tests check nothing is left behind)."""
        return [w.proc.pid for w in self._workers if w.alive and w.proc.pid is not None]

    def stats(self) -> dict[str, int]:
        waiting = sum(len(q) for q in self._waiting.values())
        return {
            "workers": len(self._workers),
            "idle": len(self._idle),
            "waiting": waiting,
            **self.counters,
        }

    # --- running a script -------------------------------------------------------------------

    async def run(self, script: str, key: Hashable = None, on_start: Callable[[], None] | None = None) -> str:
        """Evaluate ``script`` in a worker and return its output.

        ``on_start`` runs once a worker is assigned, right before the script is sent (the
        journal); if it raises, nothing runs. Raises :class:`ScriptError` (its subclasses
        :class:`ScriptTimeout`, :class:`ScriptMemoryError`, :class:`WorkerCrashed`) or
        :class:`PoolBusy`.
        """
        worker = await self._acquire(key)
        try:
            if on_start is not None:
                on_start()
            reply = worker.expect()
            data = script.encode("utf-8", "surrogatepass")
            worker.writer.write(_HEADER.pack(len(data), _RUN) + data)
        except BaseException:
            worker.reply = None
            self._release(worker)
            raise
        worker.jobs += 1
        self.counters["jobs"] += 1
        deadline = asyncio.get_running_loop().time() + self.timeout
        try:
            kind, text = await asyncio.wait_for(asyncio.shield(reply), self.timeout)
        except TimeoutError:
            self._reclaim_later(worker, reply, self.kill_grace)
            raise ScriptTimeout(timeout_message(self.timeout)) from None
        except asyncio.CancelledError:  # the caller went away: let the script finish, or kill it
            remaining = max(0.0, deadline - asyncio.get_running_loop().time())
            self._reclaim_later(worker, reply, remaining + self.kill_grace)
            raise
        self._after_job(worker, kind)
        if kind == _OUTPUT:
            return text
        if kind == _TIMEOUT:
            raise ScriptTimeout(text)
        if kind == _MEMORY:
            raise ScriptMemoryError(text)
        raise ScriptError(text)

    def _after_job(self, worker: _Worker, kind: int) -> None:
        if kind == _MEMORY:
            worker.alive = False  # it exits by itself; its pump schedules the replacement
        elif worker.alive:
            self._release(worker)

    def _reclaim_later(self, worker: _Worker, reply: asyncio.Future[tuple[int, str]], wait: float) -> None:
        """Give a worker whose caller stopped waiting ``wait`` seconds to answer, else kill it."""

        async def reclaim() -> None:
            try:
                kind, _ = await asyncio.wait_for(asyncio.shield(reply), wait)
            except WorkerCrashed:
                return
            except TimeoutError:
                logger.warning("script worker %s stuck past its deadline: killed", worker.proc.pid)
                self.counters["killed"] += 1
                worker.kill()
                return
            self._after_job(worker, kind)

        self._track(asyncio.get_running_loop().create_task(reclaim()))

    # --- fair assignment of workers ----------------------------------------------------------

    async def _acquire(self, key: Hashable) -> _Worker:
        if self._closed:
            raise PoolClosed("server is stopping")
        if self._idle and not self._waiting:
            return self._idle.pop()
        fut: asyncio.Future[_Worker] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, deque()).append(fut)
        try:
            return await asyncio.wait_for(fut, self.queue_timeout)
        except TimeoutError:
            raise PoolBusy(f"no script worker became free within {self.queue_timeout:g} s") from None
        finally:
            if not fut.done() or fut.cancelled():
                queue = self._waiting.get(key)
                if queue is not None and fut in queue:
                    queue.remove(fut)
                    if not queue:
                        del self._waiting[key]

    def _release(self, worker: _Worker) -> None:
        """Hand an idle worker to the next key in round-robin order, or park it."""
        if not worker.alive or self._closed:
            return
        while self._waiting:
            key, queue = next(iter(self._waiting.items()))
            fut = queue.popleft()
            if queue:
                self._waiting.move_to_end(key)
            else:
                del self._waiting[key]
            if not fut.done():
                fut.set_result(worker)
                return
        self._idle.append(worker)

    # --- starting and losing workers ---------------------------------------------------------

    def _track(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _spawn_blocking(self) -> tuple[BaseProcess, socket.socket]:
        ours, theirs = socket.socketpair()
        try:
            proc = self._ctx.Process(  # type: ignore[attr-defined]
                target=_worker_main,
                args=(theirs, self.timeout, self.max_output, self.memory_limit),
                name=WORKER_NAME,
                daemon=True,
            )
            with self._spawn_lock:
                proc.start()
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()  # the child has its own copy; EOF then means the child is gone
        return proc, ours

    async def _add_worker(self) -> None:
        self._starting += 1
        try:
            proc, sock = await asyncio.to_thread(self._spawn_blocking)
            try:
                reader, writer = await asyncio.open_unix_connection(sock=sock, limit=2**20)
                worker = _Worker(proc, reader, writer)
                ready = worker.expect()
                worker.pump = asyncio.get_running_loop().create_task(self._pump(worker))
                await asyncio.wait_for(ready, self.start_timeout)
            except BaseException:
                proc.kill()
                sock.close()
                await asyncio.to_thread(self._reap, proc)
                raise
        finally:
            self._starting -= 1
        self.counters["spawned"] += 1
        if self._closed:
            worker.kill()
            return
        self._workers.add(worker)
        self._release(worker)

    async def _pump(self, worker: _Worker) -> None:
        """Read the worker's replies; on EOF retire it and start a replacement."""
        reader = worker.reader
        try:
            while True:
                size, kind = _HEADER.unpack(await reader.readexactly(_HEADER.size))
                if size > _MAX_PAYLOAD:
                    raise ValueError(f"corrupt frame from worker ({size} bytes)")
                text = (await reader.readexactly(size)).decode("utf-8", "surrogatepass")
                reply, worker.reply = worker.reply, None
                if kind == _MEMORY:  # it exits after this reply, by design: its EOF may come
                    worker.alive = False  # before the caller resumes (_after_job) and is no crash
                if reply is not None and not reply.done():
                    reply.set_result((kind, text))
        except (asyncio.IncompleteReadError, ConnectionError, OSError, ValueError):
            pass
        finally:
            self._on_exit(worker)

    def _on_exit(self, worker: _Worker) -> None:
        was_expected = not worker.alive
        worker.alive = False
        worker.writer.close()
        self._workers.discard(worker)
        if worker in self._idle:
            self._idle.remove(worker)
        reply, worker.reply = worker.reply, None
        if reply is not None and not reply.done():
            if not was_expected:
                self.counters["crashed"] += 1
            code = worker.proc.exitcode
            reply.set_exception(WorkerCrashed(f"script worker died while running the script (exit code {code})"))
            reply.exception()  # retrieved: whoever still awaits it gets it, nobody else logs it
        if self._closed:
            return
        if not was_expected and reply is None:
            logger.warning("idle script worker %s died; replacing it", worker.proc.pid)
        self._track(asyncio.get_running_loop().create_task(self._replace(worker)))

    async def _replace(self, dead: _Worker) -> None:
        await asyncio.to_thread(self._reap, dead.proc)
        delay = 0.05
        while not self._closed and len(self._workers) + self._starting < self.size:
            try:
                await self._add_worker()
            except Exception:
                logger.exception("cannot start a script worker; retrying in %g s", delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    @staticmethod
    def _reap(proc: BaseProcess) -> None:
        """Collect a dead worker's exit status (bounded: a SIGKILLed process dies at once)."""
        try:
            proc.join(2.0)
            if proc.exitcode is None:
                proc.kill()
                proc.join(0.5)
            proc.close()
        except ValueError:  # already closed, or still running: multiprocessing's atexit cleans up
            pass
