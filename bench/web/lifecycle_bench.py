"""The lifecycle benchmarks' Python side, in Pyodide (``lifecycle_bench``; bench/lifecycle.py
drives the browser): one client whose status changes are timed with ``performance.now()``, the
clock of the page's event log, and the baselines measured in the same page."""

from __future__ import annotations

import asyncio
from typing import Any

import js  # type: ignore[import-not-found]
from circle_ws_web import CircleWsClient, ConnectionLostError
from circle_ws_web.lifecycle import LIVENESS_TIMEOUT
from circle_ws_web.transports import browser as bt, page_events

client: CircleWsClient | None = None
statuses: list[tuple[float, str]] = []


def now() -> float:
    return js.performance.now()  # type: ignore[no-any-return]


async def connect_ms(url: str, key: str) -> float:
    """Baseline: a fresh client's connect (WebSocket open + authentication), in ms."""
    c = CircleWsClient(url, key, pool=False)
    t0 = now()
    await c.connect()
    took = now() - t0
    await c.disconnect()
    return took


async def sleep_ms(seconds: float) -> float:
    """Baseline: ``asyncio.sleep`` for the liveness deadline, in ms (the floor of detection)."""
    t0 = now()
    await asyncio.sleep(seconds)
    return now() - t0


def liveness_timeout() -> float:
    return LIVENESS_TIMEOUT


async def open_client(url: str, key: str) -> str:
    """The measured client: keep-alive far away (60 + 10 s) and a 30 s backoff, so whatever
    happens within a few seconds is the lifecycle's doing."""
    global client
    await close_client()
    statuses.clear()
    client = CircleWsClient(url, key, pool=False, keepalive_interval=60.0, keepalive_timeout=10.0,
                            reconnect_initial_delay=30.0, reconnect_max_delay=30.0, reconnect_jitter=False)
    client.on_status_change(lambda s: statuses.append((now(), s.value)))
    await client.connect()
    return client.status.value


async def drop() -> list[Any]:
    """The server cuts the connection: the client waits 30 s before its next attempt."""
    assert client is not None
    try:
        await client.call("test.drop", {}, timeout=5)
    except ConnectionLostError:
        pass
    await until(lambda: client.status.value == "reconnecting", 5)  # type: ignore[union-attr]
    return [client.status.value, client.paused]


async def silence(seconds: float) -> Any:
    assert client is not None
    return await client.call("test.silence", {"seconds": seconds})


async def until(check: Any, timeout: float) -> bool:
    deadline = now() + timeout * 1000
    while not check():
        if now() > deadline:
            return False
        await asyncio.sleep(0.005)
    return True


async def wait_status(status: str, after: float, timeout: float = 20.0) -> float | None:
    """When the client first reached ``status`` at or after ``after`` (ms); None on timeout."""
    def first() -> float | None:
        return next((t for t, s in statuses if s == status and t >= after), None)

    await until(lambda: first() is not None, timeout)
    return first()


def paused() -> str | None:
    return None if client is None else client.paused


async def close_client() -> dict[str, Any]:
    global client
    if client is not None:
        await client.disconnect()
        client = None
    return {"listening": page_events.PAGE_EVENTS.listening, "proxies": bt.live_proxy_count(), "timers": bt.live_timer_count()}
