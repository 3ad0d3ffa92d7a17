"""Oversized answers on CPython behave as in a browser: only the call they answer fails, they
are counted, and the connection stays up. Only past the transport's memory-safety limit
(``HARD_LIMIT_FACTOR`` x ``max_message_size``) is the connection closed (1009), as a drop.

Against a real ``websockets`` server on 127.0.0.1 that answers ``big`` with a frame of the
requested size and echoes everything else.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from circle_ws_web import CircleWsClient, ConnectionLostError, ConnectionStatus, ProtocolError
from circle_ws_web.transports.native import HARD_LIMIT_FACTOR

LIMIT = 1024  # the client's max_message_size


async def answer(ws: ServerConnection) -> None:
    try:
        await serve_calls(ws)
    except ConnectionClosed:
        pass  # the client dropped a connection (the hard-limit test): nothing to answer


async def serve_calls(ws: ServerConnection) -> None:
    async for message in ws:
        request = json.loads(message)
        params = request.get("params") or {}
        if request.get("method") == "big":
            await asyncio.sleep(params.get("delay", 0))
            result: object = {"output": "x" * params["size"]}
        elif request.get("method") == "slow":
            await asyncio.sleep(params["delay"])
            result = params
        else:
            result = params
        await ws.send(json.dumps({"jsonrpc": "2.0", "result": result, "id": request["id"]}))


@pytest.fixture
async def url() -> AsyncIterator[str]:
    async with serve(answer, "127.0.0.1", 0, max_size=None, ping_interval=None) as server:
        port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        yield f"ws://127.0.0.1:{port}"


async def test_an_answer_over_4x_max_message_size_fails_only_its_call(url):
    """It used to close the socket (websockets' max_size was 4x): every call in flight was lost
    and nothing was counted."""
    client = CircleWsClient(url, max_message_size=LIMIT, request_timeout=10)
    await client.connect()
    try:
        size = 6 * LIMIT  # over 4x, under the hard limit
        assert size < HARD_LIMIT_FACTOR * LIMIT
        slow = asyncio.ensure_future(client.call("slow", {"delay": 0.3, "n": 1}))  # in flight meanwhile
        with pytest.raises(ProtocolError, match="exceeds max_message_size"):
            await client.call("big", {"size": size})
        assert await slow == {"delay": 0.3, "n": 1}
        assert await client.call("echo", {"n": 2}) == {"n": 2}
        metrics = client.metrics
        assert metrics.bad_frames == 1 and metrics.reconnects == 0
        assert client.status is ConnectionStatus.CONNECTED
    finally:
        await client.disconnect()


async def test_an_answer_over_the_hard_limit_drops_the_connection_and_the_client_recovers(url):
    client = CircleWsClient(url, max_message_size=LIMIT, request_timeout=10, reconnect_initial_delay=0.05)
    await client.connect()
    try:
        slow = asyncio.ensure_future(client.call("slow", {"delay": 0.5, "n": 1}))
        with pytest.raises(ConnectionLostError, match=r"code 1009"):  # message too big, as documented
            await client.call("big", {"size": HARD_LIMIT_FACTOR * LIMIT + 1, "delay": 0.1})
        with pytest.raises(ConnectionLostError):
            await slow  # a drop loses every call in flight
        await client.wait_connected(timeout=10)
        assert await client.call("echo", {"n": 3}) == {"n": 3}
        assert client.metrics.reconnects == 1
    finally:
        await client.disconnect()
