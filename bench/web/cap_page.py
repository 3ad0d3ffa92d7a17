"""The socket-cap benchmark inside Pyodide (bench/cap.py uploads it as ``cap_page``): one
manager for N servers in one page, as many as Chromium allows (255). Its JavaScript twin is
cap_js.js; the driver alternates them on the same page.

Figures per run: ``manager.connect()`` time (authenticating when a key is given), one
``execute_script_all`` on every server, and the JS heap before, while connected and after
(``gc()`` on both sides first, as page_bench.heap does).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import page_bench  # type: ignore[import-not-found]  # the bench page's module: heap()
from circle_ws_web import ws_manager
from circle_ws_web.transports import browser as bt


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000


async def run(urls: list[str], key: str | None) -> dict[str, Any]:
    heap_before = page_bench.heap()
    builder = ws_manager().add_server_urls(*urls).connect_timeout(60)
    if key:
        builder = builder.private_key(key)
    manager = builder.build()
    t0 = time.perf_counter()
    report = await manager.connect()
    connect_ms = _ms(t0)
    failed = {u: str(e) for u, e in report.items() if e is not None}
    if failed:
        await manager.disconnect_all()
        raise RuntimeError(f"{len(failed)} of {len(urls)} did not connect, e.g. {next(iter(failed.items()))}")
    t1 = time.perf_counter()
    results = await manager.execute_script_all("40 + 2")
    play_ms = _ms(t1)
    bad = [u for u, r in results.items() if getattr(r, "output", None) != "42"]
    heap_connected = page_bench.heap()
    sockets = bt.live_socket_count()
    t2 = time.perf_counter()
    await manager.disconnect_all()
    disconnect_ms = _ms(t2)
    del manager, results, report
    for _ in range(100):  # close events still to come (bounded)
        if bt.live_socket_count() == 0 and bt.live_proxy_count() == 0:
            break
        await asyncio.sleep(0.02)
    return {
        "n": len(urls),
        "connect_ms": connect_ms,
        "play_ms": play_ms,
        "disconnect_ms": disconnect_ms,
        "bad_results": len(bad),
        "peak_sockets": sockets,
        "heap_before": heap_before,
        "heap_connected": heap_connected,
        "heap_after": page_bench.heap(),
        "live_proxies": bt.live_proxy_count(),
        "live_timers": bt.live_timer_count(),
        "live_sockets": bt.live_socket_count(),
    }
