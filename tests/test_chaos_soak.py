"""The chaos soak, short (docs/chaos.md): CPython clients through the chaos proxy in front of
real servers, with random seeded faults; plus checks that the proxy's faults do what they say.

CHAOS_SECONDS (default 40) sets the chaos duration and CHAOS_SEED (default: random, printed in
the failure message) the seed; ``./soak.sh --minutes N`` runs the same soak for longer.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import time

import pytest

from chaos.analysis import failure_message, format_figures
from chaos.cpython import run
from chaos.proxy import ChaosProxy
from chaos.rig import FAULT_KINDS, make_schedule
from support.servers import free_port

SECONDS = float(os.environ.get("CHAOS_SECONDS", "40"))


@pytest.mark.timeout(SECONDS + 240)
async def test_chaos_soak(tmp_path):
    seed = os.environ.get("CHAOS_SEED") or str(random.randrange(10**6))
    figures, violations, report = await run(SECONDS, seed, tmp_path)
    print(f"\nchaos soak, seed {seed}:\n{format_figures(figures)}")
    assert not violations and figures["violations"] == 0, failure_message(figures, violations, report)
    assert figures["results (right output)"] > 0 and figures["faults injected"] > 0


def test_schedule_is_a_function_of_the_seed():
    a = make_schedule("7", 30, ["x", "y"])
    assert a == make_schedule("7", 30, ["x", "y"]) and a != make_schedule("8", 30, ["x", "y"])
    assert {f["kind"] for f in make_schedule("7", 600, ["x", "y"])} == set(FAULT_KINDS)
    for f in a:  # every window ends within the run
        assert f["at"] + f.get("duration", 0) <= 30 + 0.1


# -- the proxy's faults, against a plain echo server -------------------------------------------


async def _echo_server():
    async def echo(reader, writer):
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _proxied():
    server, port = await _echo_server()
    proxy = ChaosProxy(free_port(), port)
    await proxy.start()
    return server, proxy


async def _open(proxy):
    return await asyncio.open_connection("127.0.0.1", proxy.listen_port)


async def test_proxy_forwards_and_delays():
    server, proxy = await _proxied()
    try:
        reader, writer = await _open(proxy)
        writer.write(b"hello")
        assert await asyncio.wait_for(reader.readexactly(5), 5) == b"hello"
        proxy.set_latency("s2c", 0.3)
        started = time.monotonic()
        writer.write(b"again")
        assert await asyncio.wait_for(reader.readexactly(5), 5) == b"again"
        assert time.monotonic() - started >= 0.29
        writer.close()
    finally:
        await proxy.close()
        server.close()


async def test_proxy_blackhole_holds_bytes_and_keeps_the_connection():
    server, proxy = await _proxied()
    try:
        reader, writer = await _open(proxy)
        writer.write(b"a")
        await asyncio.wait_for(reader.readexactly(1), 5)
        proxy.set_blackhole(True)
        writer.write(b"held")
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(reader.readexactly(4), 0.5)
        assert proxy.links == 1  # still open
        proxy.set_blackhole(False)
        assert await asyncio.wait_for(reader.readexactly(4), 5) == b"held"
        writer.close()
    finally:
        await proxy.close()
        server.close()


async def test_proxy_cut_forwards_half_then_resets():
    server, proxy = await _proxied()
    try:
        reader, writer = await _open(proxy)
        writer.write(b"x")
        await asyncio.wait_for(reader.readexactly(1), 5)
        assert proxy.arm_cut("s2c") == 1
        writer.write(b"0123456789")
        got = b""
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            while True:
                chunk = await asyncio.wait_for(reader.read(100), 5)
                if not chunk:
                    raise asyncio.IncompleteReadError(got, None)
                got += chunk
        assert got == b"01234"
        assert proxy.stats.cuts == 1
    finally:
        await proxy.close()
        server.close()


async def test_proxy_drop_rst_fin_and_refuse():
    server, proxy = await _proxied()
    try:
        reader, writer = await _open(proxy)
        writer.write(b"x")
        await asyncio.wait_for(reader.readexactly(1), 5)
        assert proxy.drop(rst=True) == 1
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(10), 5)
        reader, writer = await _open(proxy)
        writer.write(b"x")
        await asyncio.wait_for(reader.readexactly(1), 5)
        assert proxy.drop(rst=False) == 1
        assert await asyncio.wait_for(reader.read(10), 5) == b""  # FIN: a clean end of stream
        await proxy.set_refusing(True)
        with pytest.raises(ConnectionRefusedError):
            await _open(proxy)
        await proxy.set_refusing(False)
        reader, writer = await _open(proxy)
        writer.write(b"back")
        assert await asyncio.wait_for(reader.readexactly(4), 5) == b"back"
        writer.close()
    finally:
        await proxy.close()
        server.close()


async def test_proxy_half_open_keeps_the_client_side_silent():
    server, proxy = await _proxied()
    try:
        reader, writer = await _open(proxy)
        writer.write(b"x")
        await asyncio.wait_for(reader.readexactly(1), 5)
        assert proxy.half_open() == 1
        writer.write(b"anyone there?")
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(reader.read(10), 0.5)  # no answer, no FIN, no RST
        assert proxy.links == 1
        writer.close()  # the client gives up: the link goes
        for _ in range(100):
            if proxy.links == 0:
                break
            await asyncio.sleep(0.02)
        assert proxy.links == 0
    finally:
        await proxy.close()
        server.close()


async def test_proxy_drip_delivers_everything_in_order():
    server, proxy = await _proxied()
    try:
        reader, writer = await _open(proxy)
        proxy.set_drip(True)
        payload = bytes(range(256)) * 4
        writer.write(payload)
        assert await asyncio.wait_for(reader.readexactly(len(payload)), 10) == payload
        writer.close()
    finally:
        await proxy.close()
        server.close()


async def test_proxy_resets_a_client_when_the_server_is_down():
    port = free_port()  # nothing listens there
    proxy = ChaosProxy(free_port(), port)
    await proxy.start()
    try:
        reader, _writer = await _open(proxy)
        with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
            data = await asyncio.wait_for(reader.read(10), 5)
            if not data:
                raise asyncio.IncompleteReadError(b"", None)
        assert proxy.stats.upstream_refused == 1
    finally:
        await proxy.close()


def test_proxy_binds_loopback_only():
    async def main():
        server, proxy = await _proxied()
        try:
            with socket.socket() as s:
                s.settimeout(1)
                assert s.connect_ex(("127.0.0.1", proxy.listen_port)) == 0
            return proxy._server.sockets[0].getsockname()[0]
        finally:
            await proxy.close()
            server.close()

    assert asyncio.run(main()) == "127.0.0.1"
