"""The benchmarks that run inside Pyodide; bench.js imports this module as ``page_bench``.

Each loop mirrors its JavaScript twin in jsclient.js one for one, so the two clients do the
same work on the same page against the same server; the driver (bench/browser.py) alternates
them. Times come from ``time.perf_counter`` (``performance.now()`` underneath, the clock the
JS side uses).
"""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

import js  # type: ignore[import-not-found]
from circle_ws_web import CircleWsClient, ConnectionLostError, ws_manager
from circle_ws_web.transports import browser as bt

_client: CircleWsClient | None = None


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000


async def cold_connect_and_first_result(url: str, key: str) -> dict[str, Any]:
    """What a page does on load: build a manager, connect (authenticates), run one script."""
    t0 = time.perf_counter()
    manager = ws_manager().private_key(key).add_server_url(url).build()
    await manager.connect()
    connected = _ms(t0)
    t1 = time.perf_counter()
    result = await manager.execute_script(url, "40 + 2")
    first = _ms(t1)
    await manager.disconnect_all()
    assert result.output == "42", result
    return {"connect_auth_ms": connected, "first_result_ms": first}


async def open_client(url: str) -> str:
    """Open the client the RPC loops use (no key: the ping server does not authenticate)."""
    global _client
    if _client is not None:
        await _client.disconnect()
    _client = CircleWsClient(url)
    await _client.connect()
    return _client.status.value


async def close_client() -> int:
    global _client
    if _client is not None:
        await _client.disconnect()
        _client = None
    return bt.live_proxy_count()


async def sequential(n: int) -> list[float]:
    """Per-call round trips (ms) of ``n`` calls one after another."""
    ping = _client.ping  # type: ignore[union-attr]
    out = [0.0] * n
    clock = time.perf_counter
    for i in range(n):
        t0 = clock()
        await ping()
        out[i] = (clock() - t0) * 1000
    return out


async def throughput(inflight: int, total: int) -> float:
    """``total`` calls by ``inflight`` workers that each call in a loop: calls per second."""
    ping = _client.ping  # type: ignore[union-attr]
    left = total

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await ping()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(inflight)))
    return total / (time.perf_counter() - t0)


def heap() -> float:
    """Used JS heap after a full garbage collection on both sides (Python first: a collected
    Python object may release JS references)."""
    for _ in range(2):
        gc.collect()
        js.gc()
    return float(js.performance.memory.usedJSHeapSize)


async def _workload(ping_url: str, auth_url: str, key: str, calls: int, cycles: int) -> int:
    """``calls`` calls (16 in flight), then ``cycles`` x (connect, server drops the socket,
    reconnect, call, disconnect): each cycle authenticates twice. Returns the reconnects."""
    client = CircleWsClient(ping_url)
    await client.connect()
    ping = client.ping
    left = calls

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await ping()

    await asyncio.gather(*(worker() for _ in range(16)))
    await client.disconnect()
    del client, ping
    reconnects = 0
    for _ in range(cycles):
        c = CircleWsClient(auth_url, key, reconnect_initial_delay=0.01, reconnect_min_uptime=0.01)
        await c.connect()
        try:
            await c.call("test.drop", {})
        except ConnectionLostError:
            pass
        await c.wait_connected(10)
        await c.ping()
        reconnects += c.metrics.reconnects
        await c.disconnect()
        del c
    return reconnects


async def memory(ping_url: str, auth_url: str, key: str, calls: int, cycles: int, rounds: int) -> dict[str, Any]:
    """JS heap before and after each of ``rounds`` rounds of the workload (after a warm-up
    round: first-use allocations are not growth), and the JS proxies and timers left alive."""
    await _workload(ping_url, auth_url, key, 200, 1)
    out: dict[str, Any] = {"heap_before": [], "heap_after": [], "reconnects": 0}
    for _ in range(rounds):
        out["heap_before"].append(heap())
        out["reconnects"] += await _workload(ping_url, auth_url, key, calls, cycles)
        out["heap_after"].append(heap())
    out["live_proxies"] = bt.live_proxy_count()
    out["live_timers"] = bt.live_timer_count()
    return out


def auth_costs(key: str, reps: int) -> dict[str, list[float]]:
    """Per-operation times (ms) of signing and keccak256, next to the same EIP-191 signature by
    the ecdsa package (``sign_digest_deterministic`` + the pure keccak), taken in turns; the
    signature without its keccak (k*G, RFC 6979, the inverse: the profile's other half); and
    the signer table's build, w=7 (a first signature without a snapshot) and w=8 (the snapshot's)."""
    import hashlib

    from ecdsa import SECP256k1, SigningKey

    from circle_ws_web import auth, keccak

    signer = auth.PrivateKey(key, backend="ecdsa")
    package = SigningKey.from_secret_exponent(int(key, 16), curve=SECP256k1, hashfunc=hashlib.sha256)
    nonce = "a" * 64
    data = nonce.encode()
    prefixed = b"\x19Ethereum Signed Message:\n64" + data
    digest = keccak.keccak256_pure(prefixed)

    def with_package() -> None:
        package.sign_digest_deterministic(keccak.keccak256_pure(prefixed), hashfunc=hashlib.sha256)

    sides = {
        "sign_ecdsa": lambda: signer.sign_message(nonce),
        "sign_ecdsa_package": with_package,
        "sign_digest_ecdsa": lambda: signer.sign_digest(digest),
    }
    out: dict[str, list[float]] = {name: [] for name in (*sides, "keccak_pure", "table_build_w7", "table_build_w8")}
    for fn in sides.values():  # warm-up (the package builds its own table on first use)
        fn()
    for rep in range(reps):
        for name in sides if rep % 2 == 0 else list(sides)[::-1]:
            fn = sides[name]
            t0 = time.perf_counter()
            for _ in range(10):
                fn()
            out[name].append(_ms(t0) / 10)
        t0 = time.perf_counter()
        for _ in range(100):
            keccak.keccak256_pure(data)
        out["keccak_pure"].append(_ms(t0) / 100)
    kept = auth._TABLE  # the page's own table goes back afterwards (the memory figures follow)
    try:
        for rep in range(reps):
            for window in (7, 8) if rep % 2 == 0 else (8, 7):
                auth._TABLE = None
                t0 = time.perf_counter()
                auth.precompute(window)
                out[f"table_build_w{window}"].append(_ms(t0))
    finally:
        auth._TABLE = kept
    return out


async def connect_n(urls: list[str], key: str) -> float:
    """``manager.connect()`` to every URL at once (each client authenticates): ms."""
    manager = ws_manager().private_key(key).add_server_urls(*urls).build()
    t0 = time.perf_counter()
    report = await manager.connect()
    dt = _ms(t0)
    await manager.disconnect_all()
    assert all(error is None for error in report.values()), report
    return dt
