"""The CPython benchmarks, run in a subprocess of their own (a clean interpreter, and an asyncio
loop of their own): ``python -m bench.cpython '<json config>'`` prints one JSON object of raw
samples, ``{measurement: [one value per repetition]}``. bench/__main__.py turns them into rows.

Each circle-ws-web figure has its baseline measured here, in the same run, alternating with it:

* RPC: a minimal raw ``websockets`` JSON-RPC client (dict of futures, one reader task);
* server capacity: the raw client against the reference server vs the fast ping server;
* connect: ``manager.connect()`` to N servers vs to one;
* recovery: a raw client that retries with the same fixed delay;
* silence detection: ``asyncio.sleep(interval + timeout)`` on the same loop (the timer floor);
* signing and keccak: the native backends (coincurve, pycryptodome);
* memory: traced memory before the workload.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import logging
import socket
import sys
import time
import tracemalloc
from collections import defaultdict
from typing import Any, Awaitable, Callable

from websockets.asyncio.client import ClientConnection, connect

from circle_ws_web import CircleWsClient, ConnectionLostError, ConnectionStatus, ws_manager
from circle_ws_web.auth import PrivateKey

from . import servers
from .stats import percentile

Samples = dict[str, list[float]]
Call = Callable[[], Awaitable[Any]]


class RawClient:
    """The baseline: the least a Python program on ``websockets`` does per JSON-RPC call."""

    def __init__(self) -> None:
        self.ws: ClientConnection | None = None
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.ids = itertools.count(1)
        self.reader: asyncio.Task[None] | None = None

    async def open(self, url: str) -> RawClient:
        self.ws = await connect(url, compression=None, ping_interval=None, max_queue=None)
        self.reader = asyncio.get_running_loop().create_task(self._read(self.ws))
        return self

    async def _read(self, ws: ClientConnection) -> None:
        pending = self.pending
        async for message in ws:
            msg = json.loads(message)
            future = pending.pop(msg["id"], None)
            if future is not None and not future.done():
                if "error" in msg:
                    future.set_exception(RuntimeError(msg["error"]["message"]))
                else:
                    future.set_result(msg.get("result"))

    async def call(self, method: str, params: Any) -> Any:
        call_id = next(self.ids)
        future = asyncio.get_running_loop().create_future()
        self.pending[call_id] = future
        await self.ws.send(json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": call_id}))  # type: ignore[union-attr]
        return await future

    async def ping(self) -> Any:
        return await self.call("ping", {})

    async def authenticate(self, key: PrivateKey) -> None:
        nonce = (await self.call("fetch_nonce", {"pubkey": key.public_key_hex}))["nonce"]
        await self.call("authenticate", {"pubkey": key.public_key_hex, "signature": key.sign_message(nonce)})

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.reader is not None:
            self.reader.cancel()
            await asyncio.gather(self.reader, return_exceptions=True)


# --- the loops (the browser twins are in web/jsclient.js and web/page_bench.py) -------------


async def sequential(ping: Call, n: int) -> list[float]:
    """Per-call round trips (ms) of ``n`` calls one after another."""
    out = [0.0] * n
    clock = time.perf_counter
    for i in range(n):
        t0 = clock()
        await ping()
        out[i] = (clock() - t0) * 1000
    return out


async def throughput(ping: Call, inflight: int, total: int) -> float:
    """``total`` calls by ``inflight`` workers that each call in a loop: calls per second."""
    left = total

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await ping()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(inflight)))
    return total / (time.perf_counter() - t0)


# --- benchmarks ----------------------------------------------------------------------------


async def bench_rpc(cfg: dict[str, Any], out: Samples) -> None:
    """Round trips and throughput of circle-ws-web vs the raw client, on the fast ping server."""
    with servers.ping_server() as ps:
        raw = await RawClient().open(ps.url)
        circle = CircleWsClient(ps.url)
        await circle.connect()
        clients = {"raw": raw.ping, "circle": circle.ping}
        for ping in clients.values():
            await throughput(ping, 64, cfg["calls"])  # warm-up
        for rep in range(cfg["reps"]):
            order = list(clients.items()) if rep % 2 == 0 else list(clients.items())[::-1]
            for name, ping in order:
                lat = await sequential(ping, cfg["sequential"])
                out[f"rpc.{name}.p50"].append(percentile(lat, 50))
                out[f"rpc.{name}.p99"].append(percentile(lat, 99))
            for k in cfg["inflight"]:
                for name, ping in order:
                    out[f"rpc.{name}.tput.{k}"].append(await throughput(ping, k, cfg["calls"]))
        await circle.disconnect()
        await raw.close()


async def bench_server_capacity(cfg: dict[str, Any], out: Samples) -> None:
    """The raw client at 64 in flight against each server: how much each one can take."""
    with servers.ping_server() as node, servers.py_ping_server() as pyping, servers.RefServer() as ref:
        targets = {"node": node.url, "pyping": pyping.url, "ref": ref.url}
        clients = {name: await RawClient().open(url) for name, url in targets.items()}
        for c in clients.values():
            await throughput(c.ping, 64, cfg["calls"])
        for rep in range(cfg["reps"]):
            for name, c in list(clients.items())[:: 1 if rep % 2 == 0 else -1]:
                out[f"capacity.{name}"].append(await throughput(c.ping, 64, cfg["calls"]))
        for c in clients.values():
            await c.close()


async def bench_connect(cfg: dict[str, Any], out: Samples) -> None:
    """``manager.connect()`` (open + authenticate every client at once) for N servers."""
    sizes = cfg["connect_sizes"]
    with servers.RefServer(nports=max(sizes)) as ref:
        for rep in range(cfg["reps"] + 1):  # the first round warms up
            for n in sizes if rep % 2 == 0 else sizes[::-1]:
                builder = ws_manager().private_key(servers.TEST_KEY)
                for url in ref.urls[:n]:
                    builder.add_server_url(url)
                manager = builder.build()
                t0 = time.perf_counter()
                report = await manager.connect()
                dt = (time.perf_counter() - t0) * 1000
                assert all(e is None for e in report.values()), report
                await manager.disconnect_all()
                if rep:
                    out[f"connect.{n}"].append(dt)
                await asyncio.sleep(0.05)


async def bench_recovery(cfg: dict[str, Any], out: Samples) -> None:
    """Server killed and restarted: time from the new process listening to the first answered
    call, for circle-ws-web (fixed reconnect delay D, no jitter) and for a raw client that
    retries with the same D."""
    delay = cfg["recovery_delay"]
    key = PrivateKey(servers.TEST_KEY)
    with servers.RefServer() as ref:
        url = ref.url
        for rep in range(cfg["recovery_reps"]):
            for name in ("circle", "raw") if rep % 2 == 0 else ("raw", "circle"):
                if name == "circle":
                    client = CircleWsClient(
                        url, servers.TEST_KEY, reconnect_initial_delay=delay, reconnect_max_delay=delay,
                        reconnect_factor=1, reconnect_jitter=False, reconnect_min_uptime=0,
                    )
                    await client.connect()
                    t_up = await asyncio.to_thread(ref.restart)
                    await client.wait_connected(30)
                    await client.ping()
                    t_first = time.perf_counter()
                    await client.disconnect()
                else:
                    # Like the client: connected before the kill, retrying from the moment of it.
                    first = await RawClient().open(url)
                    await first.authenticate(key)
                    task = asyncio.get_running_loop().create_task(_raw_recover(first, url, key, delay))
                    t_up = await asyncio.to_thread(ref.restart)
                    t_first = await task
                out[f"recovery.{name}"].append((t_first - t_up) * 1000)


async def _raw_recover(raw: RawClient, url: str, key: PrivateKey, delay: float) -> float:
    """Wait for ``raw``'s socket to drop, then retry every ``delay`` s; when the first call is
    answered again."""
    assert raw.reader is not None
    await asyncio.gather(raw.reader, return_exceptions=True)  # the reader ends with the socket
    await raw.close()
    while True:
        attempt = RawClient()
        try:
            await attempt.open(url)
            await attempt.authenticate(key)
            await attempt.ping()
        except Exception:  # noqa: BLE001 - still down: retry
            await attempt.close()
            await asyncio.sleep(delay)
            continue
        t_first = time.perf_counter()
        await attempt.close()
        return t_first


async def bench_silence(cfg: dict[str, Any], out: Samples) -> None:
    """A server that stops answering (``test.silence``): time until the client drops the
    connection, vs the loop's own sleep of interval + timeout."""
    interval, timeout = cfg["keepalive"]

    async def sleep() -> None:
        t0 = time.perf_counter()
        await asyncio.sleep(interval + timeout)
        out["silence.sleep"].append((time.perf_counter() - t0) * 1000)

    with servers.RefServer() as ref:

        async def detect() -> None:
            client = CircleWsClient(
                ref.url, servers.TEST_KEY, keepalive_interval=interval, keepalive_timeout=timeout,
                reconnect_initial_delay=30, reconnect_max_delay=30,
            )
            await client.connect()
            lost: asyncio.Future[float] = asyncio.get_running_loop().create_future()

            def watch(status: ConnectionStatus) -> None:
                if status is not ConnectionStatus.CONNECTED and not lost.done():
                    lost.set_result(time.perf_counter())

            client.on_status_change(watch)
            await client.call("test.silence", {"seconds": 60})
            t_silent = time.perf_counter()  # the server's last word
            out["silence.detect"].append((await lost - t_silent) * 1000)
            await client.disconnect()

        for rep in range(cfg["silence_reps"]):  # in turns, the order reversed every repetition
            for side in (sleep, detect) if rep % 2 == 0 else (detect, sleep):
                await side()


def bench_auth(cfg: dict[str, Any], out: Samples) -> None:
    """Per-operation cost (ms) of an authentication's signature and of keccak256, per backend,
    and of the same signature by the ecdsa package; each pair taken in turns (the order reversed every repetition)."""
    import hashlib

    from ecdsa import SECP256k1, SigningKey

    from circle_ws_web import keccak

    nonce = "a" * 64
    data = nonce.encode()
    prefixed = b"\x19Ethereum Signed Message:\n64" + data
    keys = {b: PrivateKey(servers.TEST_KEY, backend=b) for b in ("coincurve", "ecdsa")}
    digest = keccak.keccak256(prefixed)
    package = SigningKey.from_secret_exponent(int(servers.TEST_KEY, 16), curve=SECP256k1, hashfunc=hashlib.sha256)
    signs: dict[str, tuple[Callable[[], object], int]] = {
        "coincurve": (lambda: keys["coincurve"].sign_message(nonce), 200),
        "ecdsa": (lambda: keys["ecdsa"].sign_message(nonce), 20),
        # the same signature without its keccak: k*G, RFC 6979 and the inverse (what is left in
        # the browser if keccak were free)
        "ecdsa_digest": (lambda: keys["ecdsa"].sign_digest(digest), 20),
        # the same keccak as the signer (pycryptodome when installed): only the signing differs
        "ecdsa_package": (lambda: package.sign_digest_deterministic(keccak.keccak256(prefixed), hashfunc=hashlib.sha256), 20),
    }
    hashes = {"native": (keccak.keccak256, 2000), "pure": (keccak.keccak256_pure, 200)}
    for fn, _ in signs.values():
        fn()
    for rep in range(cfg["reps"]):
        for name in signs if rep % 2 == 0 else list(signs)[::-1]:
            fn, n = signs[name]
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            out[f"auth.sign.{name}"].append((time.perf_counter() - t0) * 1000 / n)
        for name in hashes if rep % 2 == 0 else list(hashes)[::-1]:
            h, n = hashes[name]
            t0 = time.perf_counter()
            for _ in range(n):
                h(data)
            out[f"auth.keccak.{name}"].append((time.perf_counter() - t0) * 1000 / n)
    out["auth.backend.native_keccak"] = [1.0 if keccak.KECCAK_BACKEND != "pure" else 0.0]
    _table_builds(cfg["reps"], out, "auth")


def _table_builds(reps: int, out: Samples, prefix: str) -> None:
    """The pure signer's table build (ms), once per repetition: w=7 is what a first signature
    builds, w=8 what a memory snapshot holds. The table in use is put back afterwards."""
    from circle_ws_web import auth

    kept = auth._TABLE
    try:
        for rep in range(reps):
            for window in (7, 8) if rep % 2 == 0 else (8, 7):
                auth._TABLE = None
                t0 = time.perf_counter()
                auth.precompute(window)
                out[f"{prefix}.table_build.w{window}"].append((time.perf_counter() - t0) * 1000)
    finally:
        auth._TABLE = kept


async def _workload(ping_url: str, auth_url: str, calls: int, cycles: int) -> None:
    """``calls`` calls (16 in flight), then ``cycles`` x (connect, server drops the socket,
    reconnect, call, disconnect): each cycle authenticates twice."""
    client = CircleWsClient(ping_url)
    await client.connect()
    await throughput(client.ping, 16, calls)
    await client.disconnect()
    del client
    for _ in range(cycles):
        c = CircleWsClient(auth_url, servers.TEST_KEY, reconnect_initial_delay=0.01, reconnect_min_uptime=0.01)
        await c.connect()
        try:
            await c.call("test.drop", {})
        except ConnectionLostError:
            pass
        await c.wait_connected(10)
        await c.ping()
        await c.disconnect()
        del c
    await asyncio.sleep(0.05)


async def bench_memory(cfg: dict[str, Any], out: Samples) -> None:
    """Traced Python memory before and after each round of the workload (after a warm-up
    round: first-use allocations are not growth)."""
    calls, cycles, rounds = cfg["memory"]
    with servers.ping_server() as ps, servers.RefServer() as ref:
        tracemalloc.start()
        await _workload(ps.url, ref.url, 200, 1)
        for _ in range(rounds):
            gc.collect()
            out["memory.before"].append(float(tracemalloc.get_traced_memory()[0]))
            await _workload(ps.url, ref.url, calls, cycles)
            gc.collect()
            out["memory.after"].append(float(tracemalloc.get_traced_memory()[0]))
        tracemalloc.stop()


async def bench_fleet(cfg: dict[str, Any], out: Samples) -> None:
    """The fleet's routing cost: ``execute_script_any`` against ``execute_script`` on the same
    connection (two servers, the preferred one up), and the time to an answer when the
    preferred server is already known down (nothing listens there: its client reconnects in
    the background and its breaker is open) against a plain call to the next server."""
    n = cfg["sequential"]
    with servers.ping_server(nports=2) as ps:
        main, spare = ps.urls
        with socket.socket() as sock:  # a port where nothing listens
            sock.bind(("127.0.0.1", 0))
            dead = f"ws://127.0.0.1:{sock.getsockname()[1]}"
        up = ws_manager().add_server_url(main, priority=0).add_server_url(spare, priority=1).build()
        down = (ws_manager().add_server_url(dead, priority=0).add_server_url(spare, priority=1)
                .reconnect(initial_delay=0.05, max_delay=0.2).circuit_breaker(failure_threshold=3).build())
        await up.connect()
        await down.connect()
        while down.breaker_state(dead).value != "open":  # known down: refused and counted
            await asyncio.sleep(0.05)
        pairs: list[tuple[tuple[str, Call], tuple[str, Call]]] = [
            (("direct", lambda: up.execute_script(main, "1")), ("any", lambda: up.execute_script_any("1"))),
            (("next", lambda: down.execute_script(spare, "1")), ("any_down", lambda: down.execute_script_any("1"))),
        ]
        clock = time.perf_counter
        for rep in range(cfg["reps"] + 1):  # the first round warms up
            for pair in pairs:
                # Interleaved call by call (the order swapped each time): on a shared machine
                # both sides of a ratio then see the same load.
                lat: dict[str, list[float]] = {pair[0][0]: [], pair[1][0]: []}
                for i in range(n if rep else 200):
                    for name, call in (pair if i % 2 == 0 else pair[::-1]):
                        t0 = clock()
                        await call()
                        lat[name].append((clock() - t0) * 1000)
                if rep:
                    for name, values in lat.items():
                        out[f"fleet.{name}.p50"].append(percentile(values, 50))
        result = await down.execute_script_any("1")
        assert result.url == spare, result
        await up.disconnect_all()
        await down.disconnect_all()


BENCHES = {
    "rpc": bench_rpc,
    "capacity": bench_server_capacity,
    "connect": bench_connect,
    "recovery": bench_recovery,
    "silence": bench_silence,
    "auth": bench_auth,
    "memory": bench_memory,
    "fleet": bench_fleet,
}


async def main(cfg: dict[str, Any]) -> Samples:
    out: Samples = defaultdict(list)
    for name in cfg["only"]:
        fn = BENCHES[name]
        t0 = time.perf_counter()
        result = fn(cfg, out)
        if asyncio.iscoroutine(result):
            await result
        print(f"  cpython {name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    return dict(out)


if __name__ == "__main__":
    # The drops and restarts provoked here are logged as warnings by design: not news here.
    logging.getLogger("circle_ws_web").setLevel(logging.ERROR)
    config = json.loads(sys.argv[1])
    print(json.dumps(asyncio.run(main(config))))
