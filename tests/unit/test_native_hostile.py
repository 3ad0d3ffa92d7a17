"""What a hostile server found in the CPython client, each against a real ``websockets``
server on 127.0.0.1: a nonce with no UTF-8 form, a peer that stops reading, an error behind
``on_message``; and the user's side of it: a script with no UTF-8 form, a bad
``wait_connected`` timeout, a waiter cancelled as the client closes.

Each used to end badly: a reader task dying with its socket left open (one more per retry), a
socket that never closed and outlived ``disconnect()``, a call that waited out its timeout for
a frame never sent, a NaN timer that upset the loop's other timers, a "Future exception was
never retrieved".
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from circle_ws_web import AuthError, CircleWsClient, ConfigError, ConnectionStatus
from circle_ws_web.rpc import NotUtf8Error, RpcCodec
from circle_ws_web.transport import TransportOptions
from circle_ws_web.transports.native import NativeTransport

from support.servers import TEST_KEY


class Server:
    """A websockets server whose handler the test sets; counts the connections still open."""

    def __init__(self) -> None:
        self.handler: Callable[[ServerConnection], Any] = self.echo
        self.open = 0
        self.received: list[dict[str, Any]] = []
        self.url = ""

    async def echo(self, ws: ServerConnection) -> None:
        async for message in ws:
            request = json.loads(message)
            self.received.append(request)
            if request.get("method") == "fetch_nonce":
                result: Any = {"nonce": "a-nonce"}
            elif request.get("method") == "authenticate":
                result = {"authenticated": True}
            else:
                result = {"output": "ok"}
            await ws.send(json.dumps({"jsonrpc": "2.0", "result": result, "id": request["id"]}))

    async def _handle(self, ws: ServerConnection) -> None:
        self.open += 1
        try:
            await self.handler(ws)
        except ConnectionClosed:
            pass
        finally:
            self.open -= 1


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    s = Server()
    async with serve(s._handle, "127.0.0.1", 0, max_size=None, ping_interval=None) as ws_server:
        s.url = f"ws://127.0.0.1:{ws_server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
        yield s


@pytest.fixture
async def loop_errors() -> list[dict[str, Any]]:
    """What reaches the loop's exception handler ("Task exception was never retrieved", ...)."""
    seen: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, context: seen.append(context))
    return seen


async def _until(predicate: Callable[[], bool], limit: float = 10.0) -> bool:
    """Poll until `predicate` holds (True) or `limit` seconds pass (False). A bound, not a timing."""
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    while not predicate():
        if loop.time() > end:
            return False
        await asyncio.sleep(0.02)
    return True


# --- a nonce with no UTF-8 form ---------------------------------------------------------------


async def test_a_nonce_that_is_no_unicode_fails_authentication_and_closes_every_socket(
    server: Server, loop_errors: list[dict[str, Any]]
) -> None:
    async def lone_surrogate_nonce(ws: ServerConnection) -> None:
        async for message in ws:
            request = json.loads(message)
            # json.dumps escapes it: "\ud800" is valid JSON, and a str no encoder can write
            await ws.send(json.dumps({"jsonrpc": "2.0", "result": {"nonce": "ab\ud800"}, "id": request["id"]}))

    server.handler = lone_surrogate_nonce
    client = CircleWsClient(server.url, TEST_KEY, connect_timeout=5, reconnect_initial_delay=0.05)
    with pytest.raises(AuthError, match="nonce that is not valid Unicode"):
        await client.connect()
    assert "not valid Unicode" in (client.last_error or "")
    assert await _until(lambda: server.open == 0), "the client left its socket open"
    await client.disconnect()
    gc.collect()
    await asyncio.sleep(0)
    assert loop_errors == []


async def test_keep_trying_past_a_bad_nonce_leaves_no_socket_behind(
    server: Server, loop_errors: list[dict[str, Any]]
) -> None:
    attempts = 0

    async def lone_surrogate_nonce(ws: ServerConnection) -> None:
        nonlocal attempts
        attempts += 1
        async for message in ws:
            request = json.loads(message)
            await ws.send(json.dumps({"jsonrpc": "2.0", "result": {"nonce": "\udfff"}, "id": request["id"]}))

    server.handler = lone_surrogate_nonce
    client = CircleWsClient(server.url, TEST_KEY, connect_timeout=5, reconnect_initial_delay=0.02,
                            reconnect_max_delay=0.05, reconnect_jitter=False)
    attempt = asyncio.ensure_future(client.connect(keep_trying=True))
    assert await _until(lambda: attempts >= 5)
    await client.disconnect()
    with pytest.raises(Exception):
        await attempt
    assert await _until(lambda: server.open == 0), f"{server.open} sockets left open after {attempts} attempts"
    gc.collect()
    await asyncio.sleep(0)
    assert loop_errors == []


# --- the transport -------------------------------------------------------------------------------


class Sink:
    def __init__(self, raise_on_message: bool = False) -> None:
        self.opened = asyncio.Event()
        self.closed = asyncio.Event()
        self.close_args: tuple[int, str] | None = None
        self.raise_on_message = raise_on_message

    def on_open(self) -> None:
        self.opened.set()

    def on_message(self, data: str | bytes) -> None:
        if self.raise_on_message:
            raise RuntimeError("a bug behind on_message")

    def on_error(self, message: str) -> None:
        pass

    def on_close(self, code: int, reason: str) -> None:
        assert self.close_args is None, "on_close twice"
        self.close_args = (code, reason)
        self.closed.set()


async def test_an_error_behind_on_message_drops_the_socket_and_reports_it(
    server: Server, loop_errors: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    sink = Sink(raise_on_message=True)
    transport = NativeTransport(server.url, sink, TransportOptions())
    await asyncio.wait_for(sink.opened.wait(), 10)
    with caplog.at_level(logging.ERROR, logger="circle_ws_web"):
        transport.send(json.dumps({"jsonrpc": "2.0", "method": "play", "params": {}, "id": "1"}))
        await asyncio.wait_for(sink.closed.wait(), 10)
    assert sink.close_args is not None
    assert sink.close_args[1] == "internal error: RuntimeError: a bug behind on_message"
    assert any("internal error handling a frame" in r.getMessage() for r in caplog.records)
    assert await _until(lambda: server.open == 0)
    assert loop_errors == []


async def test_close_drops_a_socket_whose_peer_stopped_reading(server: Server) -> None:
    """A half-open peer: the socket's buffer fills, the writer waits on it for ever, and so
    would websockets' own closing handshake; close() drops the socket instead."""
    stop_reading = asyncio.Event()
    peers: list[ServerConnection] = []

    async def reads_nothing(ws: ServerConnection) -> None:
        peers.append(ws)
        ws.transport.pause_reading()
        stop_reading.set()
        await ws.wait_closed()

    server.handler = reads_nothing
    sink = Sink()
    transport = NativeTransport(server.url, sink, TransportOptions())
    await asyncio.wait_for(sink.opened.wait(), 10)
    await stop_reading.wait()
    ws = transport._ws
    assert ws is not None
    frame = json.dumps({"jsonrpc": "2.0", "method": "play", "params": {"script": "x" * 2**20}, "id": "1"})
    for _ in range(64):  # until the kernel's and asyncio's buffers are full: writing pauses
        transport.send(frame)
        await asyncio.sleep(0)
        if transport._outbox:
            break
    assert transport._outbox or ws.paused, "the peer's buffers never filled"
    transport.close(4000, "no answer to ping")
    assert await _until(sink.closed.is_set), "the socket never closed"
    assert transport._task.done()
    peers[0].transport.resume_reading()  # the server finds the reset at once, not after 10 s


# --- the user's side ----------------------------------------------------------------------------


def test_params_with_no_utf8_form_are_refused_by_the_codec() -> None:
    codec = RpcCodec()
    assert codec.request("play", {"script": "déjà vu ✓"})[1].endswith('"id":"1"}')
    with pytest.raises(NotUtf8Error, match="lone surrogate"):
        codec.request("play", {"script": "print('\ud800')"})
    with pytest.raises(NotUtf8Error, match="the method name"):
        codec.request("pl\udc80y", {})


async def test_a_script_with_no_utf8_form_fails_at_once_and_sends_nothing(server: Server) -> None:
    client = CircleWsClient(server.url, TEST_KEY, request_timeout=30)
    await client.connect()
    try:
        sent = len(server.received)
        with pytest.raises(TypeError, match="'play' call: params cannot be sent as UTF-8"):
            await client.play("print('\ud800')")
        assert (await client.play("print('fine')")).output == "ok"
        assert [r["method"] for r in server.received[sent:]] == ["play"]
        assert client.status is ConnectionStatus.CONNECTED and client.metrics.reconnects == 0
    finally:
        await client.disconnect()


@pytest.mark.parametrize("timeout", [float("nan"), float("inf"), -1, 0, "1", True])
async def test_wait_connected_refuses_a_timeout_that_is_no_duration(server: Server, timeout: Any) -> None:
    client = CircleWsClient(server.url, TEST_KEY)
    try:
        with pytest.raises(ConfigError, match="timeout must be None or a finite number of seconds > 0"):
            await client.wait_connected(timeout)
    finally:
        await client.disconnect()


async def test_a_waiter_cancelled_as_the_client_closes_leaves_no_unretrieved_error(
    loop_errors: list[dict[str, Any]]
) -> None:
    async def never_answers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    stalled = await asyncio.start_server(never_answers, "127.0.0.1", 0)
    try:
        url = f"ws://127.0.0.1:{stalled.sockets[0].getsockname()[1]}"
        client = CircleWsClient(url, None, connect_timeout=10)
        connecting = asyncio.ensure_future(client.connect(keep_trying=True))
        await asyncio.sleep(0.05)
        waiter = asyncio.ensure_future(client.wait_connected(timeout=30))
        await asyncio.sleep(0.05)
        waiter.cancel()  # the usual clean-up: cancel the waiters, then disconnect
        await client.disconnect()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        with pytest.raises(Exception):
            await connecting
        del waiter, connecting
        for _ in range(3):  # the unretrieved error is reported when its future is collected
            gc.collect()
            await asyncio.sleep(0.01)
        assert [c.get("message") for c in loop_errors] == []
    finally:
        stalled.close()
