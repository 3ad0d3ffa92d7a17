"""The reference server's per-connection and global limits, each attacked the way hostile
testing found it (items 14-19): pipelining without reading, huge scripts and frames, output that
is not UTF-8, nonce eviction across connections, and log floods."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from circle_ws_web.auth import public_key_hex, sign_message
from circle_ws_web.rpc import AUTH_FAILED, INVALID_PARAMS, INVALID_REQUEST, SCRIPT_ERROR
from circle_ws_web.server import SERVER_BUSY, CircleServer, NonceStore, NonceStoreFull
from circle_ws_web.server.app import LARGE_FRAME, MAX_COMMAS

SRC = Path(__file__).resolve().parents[1] / "src"
KEY = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
PUB = public_key_hex(KEY)


async def rpc(ws: ClientConnection, method: str, params: Any = None, rid: Any = "r", timeout: float = 30) -> Any:
    await ws.send(json.dumps({"jsonrpc": "2.0", "method": method, "params": params or {}, "id": rid}))
    return await answer(ws, rid, timeout)


async def answer(ws: ClientConnection, rid: Any, timeout: float = 30) -> Any:
    async with asyncio.timeout(timeout):
        reply = json.loads(await ws.recv())
    assert reply["id"] == rid, reply
    return reply


def fake_pubkey(i: int) -> str:
    return "04" + f"{i:0128x}"


# --- 14: calls in flight, queued output, connections ------------------------------------------


async def test_in_flight_limit_pushes_back_then_refuses() -> None:
    async with CircleServer(ports=(0,), test_controls=True, max_in_flight=4, in_flight_wait=0.3) as srv:
        async with connect(srv.urls[0]) as ws:
            for i in range(6):
                await ws.send(json.dumps({"jsonrpc": "2.0", "method": "test.delay", "params": {"seconds": 30}, "id": i}))
            # The 5th and 6th found no free slot within 0.3 s: refused, in order, and nothing else.
            for rid in (4, 5):
                reply = await answer(ws, rid)
                assert reply["error"] == {"code": SERVER_BUSY, "message": "too many calls in flight (limit 4)"}
            assert (await rpc(ws, "ping"))["result"] == "pong"  # cheap calls are not limited
            assert srv.stats()["in_flight"] == 4 and srv.stats()["peak_in_flight_per_connection"] == 4
            async with connect(srv.urls[0]) as other:  # another connection has its own slots
                assert (await rpc(other, "test.delay", {"seconds": 0, "result": 7}))["result"] == 7


async def test_pipelined_plays_beyond_the_limit_all_succeed() -> None:
    """Below the wait, the limit is pure backpressure: 300 pipelined plays, 32 at a time."""
    async with CircleServer(ports=(0,)) as srv, connect(srv.urls[0]) as ws:
        for i in range(300):
            await ws.send(json.dumps({"jsonrpc": "2.0", "method": "play", "params": {"script": f"{i} * 2"}, "id": i}))
        replies = [json.loads(await ws.recv()) for _ in range(300)]
        assert {r["id"]: r["result"]["output"] for r in replies} == {i: str(i * 2) for i in range(300)}
        assert 1 <= srv.stats()["peak_in_flight_per_connection"] <= 32


async def test_global_in_flight_limit() -> None:
    async with CircleServer(
        ports=(0,), test_controls=True, max_in_flight_total=3, in_flight_wait=0.2
    ) as srv, connect(srv.urls[0]) as one, connect(srv.urls[0]) as two:
        for i in range(3):
            await one.send(json.dumps({"jsonrpc": "2.0", "method": "test.delay", "params": {"seconds": 30}, "id": i}))
        await asyncio.sleep(0.1)
        reply = await rpc(two, "test.delay", {"seconds": 0})
        assert reply["error"]["code"] == SERVER_BUSY
        assert reply["error"]["message"] == "server busy: too many calls in flight on this server (limit 3)"


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def test_client_that_pipelines_and_never_reads_cannot_grow_the_server() -> None:
    env = {**os.environ, "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "circle_ws_web.server", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 60)  # type: ignore[union-attr]
        url = line.removeprefix("listening on ").strip()
        async with connect(url) as other:
            assert (await rpc(other, "play", {"script": "1"}))["result"] == {"output": "1"}
            baseline = _rss_mib(proc.pid)
            # max_queue=1: this client's own library stops reading at once, so the server's
            # replies (64 KB each) pile up on the server's side of the socket.
            attacker = await connect(url, max_queue=1)
            frame = json.dumps({"jsonrpc": "2.0", "method": "play", "params": {"script": '"x" * 65000'}, "id": 1})

            async def flood() -> int:
                sent = 0
                while sent < 20000:  # 1.3 GB of output if the server ran them all and buffered it
                    await attacker.send(frame)
                    sent += 1
                return sent

            flooding = asyncio.ensure_future(flood())
            peak = baseline
            pings: list[float] = []
            for _ in range(40):  # ~4 s of attack
                await asyncio.sleep(0.1)
                peak = max(peak, _rss_mib(proc.pid))
                started = time.perf_counter()
                assert (await rpc(other, "ping"))["result"] == "pong"
                pings.append(time.perf_counter() - started)
            assert (await rpc(other, "play", {"script": "40 + 2"}))["result"] == {"output": "42"}
            sent = 20000 if flooding.done() else None
            flooding.cancel()
            print(
                f"\nnon-reading pipeliner: server RSS {baseline:.0f} -> peak {peak:.0f} MiB "
                f"(sent {sent or 'blocked before 20000'}); other client's ping p50 "
                f"{statistics.median(pings) * 1e3:.2f} ms max {max(pings) * 1e3:.1f} ms"
            )
            assert peak - baseline < 100, (baseline, peak)
            assert max(pings) < 1.0
            attacker.transport.abort()
    finally:
        proc.kill()
        proc.wait()


async def test_connection_limit() -> None:
    async with CircleServer(ports=(0,), max_connections=2) as srv:
        async with connect(srv.urls[0]) as one, connect(srv.urls[0]) as two:
            async with connect(srv.urls[0]) as three:
                with pytest.raises(ConnectionClosed) as info:
                    await three.recv()
                assert info.value.rcvd is not None and info.value.rcvd.code == 1013
                assert "too many connections (limit 2)" in info.value.rcvd.reason
            assert (await rpc(one, "ping"))["result"] == "pong"
            assert (await rpc(two, "ping"))["result"] == "pong"


# --- 15: script size ----------------------------------------------------------------------------


async def test_script_size_is_checked_before_parsing() -> None:
    async with CircleServer(ports=(0,), max_message_size=32 * 2**20) as srv, connect(srv.urls[0], max_size=None) as ws:
        huge = "1+" * (8 * 2**20) + "1"  # 16 MiB: ast.parse alone took 11-20 s and 3.4 GB
        reply = await rpc(ws, "play", {"script": huge})
        assert reply["error"] == {
            "code": INVALID_PARAMS,
            "message": f"script too large: {len(huge)} bytes (limit 65536 bytes)",
        }
        just_over = "1" * 65537
        assert (await rpc(ws, "play", {"script": just_over}))["error"]["code"] == INVALID_PARAMS
        at_limit = " " * (65536 - 6) + "40 + 2"
        assert (await rpc(ws, "play", {"script": at_limit}))["result"] == {"output": "42"}
        # UTF-8 bytes, not characters: 40000 "é" is 80000 bytes.
        reply = await rpc(ws, "play", {"script": "'" + "é" * 40000 + "'"})
        assert reply["error"]["code"] == INVALID_PARAMS and "80002 bytes" in reply["error"]["message"]
        assert (await rpc(ws, "play", {"script": "'" + "é" * 20000 + "'[:3]"}))["result"] == {"output": "ééé"}


async def test_script_size_is_configurable() -> None:
    async with CircleServer(ports=(0,), max_script_size=10) as srv, connect(srv.urls[0]) as ws:
        assert (await rpc(ws, "play", {"script": "40 + 2"}))["result"] == {"output": "42"}
        reply = await rpc(ws, "play", {"script": "1 + 1 + 1 + 1"})
        assert reply["error"] == {"code": INVALID_PARAMS, "message": "script too large: 13 bytes (limit 10 bytes)"}


# --- 16: frame size and decoding cost ----------------------------------------------------------


async def test_default_frame_limit_is_1_mib() -> None:
    async with CircleServer(ports=(0,)) as srv:
        async with connect(srv.urls[0], max_size=None) as ws:
            frame = '{"jsonrpc":"2.0","method":"ping","id":"%s"}'
            await ws.send(frame % ("x" * (2**20 - len(frame) + 2)))  # exactly 1 MiB: fine
            assert (await ws.recv()).endswith('"result":"pong","id":"xxx' + "x" * (2**20 - len(frame) - 1) + '"}')
            await ws.send(frame % ("x" * (2**20 - len(frame) + 3)))
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            assert info.value.rcvd is not None and info.value.rcvd.code == 1009


def _worst_frames() -> dict[str, str]:
    """Frames just under 1 MiB that are as expensive to parse as the limits allow."""
    head, tail = '{"jsonrpc":"2.0","method":"ping","id":"w","params":{"x":', "}}"
    n = MAX_COMMAS - 10  # just under the limit, so they are parsed
    pad = ',"' + "\\u00e9" * 140_000 + '"'  # and padded with escapes up to ~1 MiB
    return {
        "20k empty lists": head + "[" + ",".join(["[]"] * n) + pad + "]" + tail,
        "20k floats": head + "[" + ",".join(["1.5e300"] * n) + pad + "]" + tail,
        "20k small objects": head + "[" + ",".join(['{"a":[0]}'] * n) + pad + "]" + tail,
        "1 MiB string": head + '"' + "\\u00e9" * 170_000 + '"' + tail,
    }


async def test_expensive_frames_do_not_stall_other_clients() -> None:
    frames = _worst_frames()
    assert all(len(f) < 2**20 for f in frames.values())
    async with CircleServer(ports=(0,)) as srv:
        async with connect(srv.urls[0]) as attacker, connect(srv.urls[0]) as other:
            costs = {}
            for name, frame in frames.items():
                started = time.perf_counter()
                await attacker.send(frame)
                reply = await answer(attacker, "w")
                costs[name] = time.perf_counter() - started
                assert reply["error"]["code"] == INVALID_PARAMS  # parsed: ping takes no params
            too_many = '{"jsonrpc":"2.0","method":"ping","id":"c","params":{"x":[' + "0," * MAX_COMMAS + '0,"' + "a" * 30000 + '"]}}'
            assert len(too_many) > LARGE_FRAME
            await attacker.send(too_many)
            reply = await answer(attacker, None)
            assert reply["error"]["code"] == INVALID_REQUEST and "too complex" in reply["error"]["message"]

            async def flood() -> None:
                for _ in range(3):
                    for frame in frames.values():
                        await attacker.send(frame)
                        await answer(attacker, "w")

            flooding = asyncio.ensure_future(flood())
            pings = []
            while not flooding.done():
                started = time.perf_counter()
                assert (await rpc(other, "ping"))["result"] == "pong"
                pings.append(time.perf_counter() - started)
            await flooding
            print(
                "\nworst frames under 1 MiB, round trip: "
                + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in costs.items())
                + f"; other client's ping meanwhile p50 {statistics.median(pings) * 1e3:.2f} ms"
                f" max {max(pings) * 1e3:.1f} ms (n={len(pings)})"
            )
            assert max(pings) < 1.0


# --- 17: output that is not UTF-8 ----------------------------------------------------------------


async def test_lone_surrogate_output_is_an_error_and_the_connection_stays_up() -> None:
    async with CircleServer(ports=(0,), test_controls=True) as srv, connect(srv.urls[0]) as ws:
        reply = await rpc(ws, "play", {"script": '"\\ud800"'})  # the script's string holds a lone surrogate
        assert reply["error"]["code"] == SCRIPT_ERROR
        assert reply["error"]["message"] == "output is not valid UTF-8 (lone surrogate '\\ud800' at index 0)"
        reply = await rpc(ws, "play", {"script": '"ok" + "\\udfff"[:0]'})
        assert reply["result"] == {"output": "ok"}
        # An error message quoting one, and a value the peer sent itself, are escaped, not fatal.
        reply = await rpc(ws, "play", {"script": 'int("\\ud800")'})
        assert reply["error"]["code"] == SCRIPT_ERROR and "\\ud800" in reply["error"]["message"]
        await ws.send('{"jsonrpc":"2.0","method":"test.notify","params":{"method":"n","params":["\\ud800"]},"id":"n"}')
        assert json.loads(await ws.recv()) == {"jsonrpc": "2.0", "method": "n", "params": ["\ud800"]}
        assert (await answer(ws, "n"))["result"] == {"ok": True}
        assert (await rpc(ws, "play", {"script": "40 + 2"}))["result"] == {"output": "42"}


# --- 18: nonces: fair per connection ---------------------------------------------------------------


def test_nonce_store_bounds_each_scope_and_never_evicts_another() -> None:
    store = NonceStore(300, max_entries=20, max_per_scope=8)
    mine = store.issue(PUB, scope="victim")
    for i in range(1000):
        store.issue(fake_pubkey(i), scope="flooder")
    assert len(store) == 9  # the flooder keeps its 8 newest; the victim's nonce survives
    assert store.consume(fake_pubkey(999), scope="flooder") is not None
    assert store.consume(fake_pubkey(991), scope="flooder") is None  # its own oldest went
    for scope in ("b", "c"):
        for i in range(8):
            try:
                store.issue(fake_pubkey(i), scope=scope)
            except NonceStoreFull:
                break
    with pytest.raises(NonceStoreFull, match="limit 20"):
        store.issue(fake_pubkey(0), scope="late")
    assert len(store) == 20
    assert store.consume(PUB, scope="victim") == mine


async def test_one_connection_cannot_evict_anothers_nonce() -> None:
    srv = CircleServer(ports=(0,), require_auth=True)
    srv.nonces = NonceStore(300, max_entries=20)  # a small global bound, to reach it
    async with srv, connect(srv.urls[0]) as victim, connect(srv.urls[0]) as flooder:
        nonce = (await rpc(victim, "fetch_nonce", {"pubkey": PUB}))["result"]["nonce"]
        for i in range(100):
            assert "result" in await rpc(flooder, "fetch_nonce", {"pubkey": fake_pubkey(i)}, rid=i)
        more = []
        async with connect(srv.urls[0]) as c, connect(srv.urls[0]) as d:
            for ws in (c, d):
                for i in range(8):
                    more.append(await rpc(ws, "fetch_nonce", {"pubkey": fake_pubkey(i)}, rid=i))
        busy = [m["error"] for m in more if "error" in m]
        assert busy and all(e["code"] == SERVER_BUSY and "pending nonces" in e["message"] for e in busy)
        reply = await rpc(victim, "authenticate", {"pubkey": PUB, "signature": sign_message(KEY, nonce)})
        assert reply["result"] == {"authenticated": True}


# --- 19: what a peer can make the server log ---------------------------------------------------------


def _server_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "circle_ws_web.server" and r.levelno == logging.WARNING]


async def test_10000_bad_frames_log_six_lines(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="circle_ws_web.server")
    async with CircleServer(ports=(0,)) as srv:
        async with connect(srv.urls[0]) as ws:
            for _ in range(10):
                for _ in range(1000):
                    await ws.send("not json")
                for _ in range(1000):
                    assert json.loads(await ws.recv())["error"]["code"] == -32700
        async with connect(srv.urls[0]) as ws:  # the next connection has its own allowance
            await ws.send("still not json")
            await ws.recv()
        await asyncio.sleep(0.2)
    lines = _server_warnings(caplog)
    bad = [m for m in lines if ": bad frame " in m]
    assert len(bad) == 6, lines
    summary = [m for m in lines if "suppressed" in m]
    assert len(summary) == 1 and re.fullmatch(r"connection \d+: 9995 more bad frames suppressed", summary[0])


async def test_bad_frame_summary_every_interval(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.WARNING, logger="circle_ws_web.server")
    monkeypatch.setattr(CircleServer, "bad_frame_log_interval", 0.2)
    async with CircleServer(ports=(0,)) as srv:
        async with connect(srv.urls[0]) as ws:
            for _ in range(2):
                for _ in range(100):
                    await ws.send("[")
                for _ in range(100):
                    await ws.recv()
                await asyncio.sleep(0.3)
        await asyncio.sleep(0.2)
    summaries = [m for m in _server_warnings(caplog) if "suppressed" in m]
    counts = [int(re.search(r": (\d+) more", m).group(1)) for m in summaries]  # type: ignore[union-attr]
    assert sum(counts) == 195 and 2 <= len(counts) <= 3, summaries


async def test_failed_authentications_are_rate_limited_too(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="circle_ws_web.server")
    async with CircleServer(ports=(0,)) as srv:
        async with connect(srv.urls[0]) as ws:
            for i in range(20):
                reply = await rpc(ws, "authenticate", {"pubkey": PUB, "signature": "ab" * 65}, rid=i)
                assert reply["error"]["code"] == AUTH_FAILED
        await asyncio.sleep(0.2)
    lines = _server_warnings(caplog)
    assert len([m for m in lines if "auth failed" in m]) == 5
    assert any(m.endswith("15 more failed authentications suppressed") for m in lines), lines
