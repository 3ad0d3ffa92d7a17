"""The reference circle server, driven in-process with a raw ``websockets`` client (and once
through its CLI as a subprocess)."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from circle_ws_web.auth import public_key_hex, sign_message
from circle_ws_web.rpc import (
    AUTH_FAILED,
    AUTH_REQUIRED,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    SCRIPT_ERROR,
)
from circle_ws_web.server import (
    CancelToken,
    CircleServer,
    NonceStore,
    NonceStoreFull,
    PortInUseError,
    ScriptError,
    ScriptTimeout,
    evaluate,
)

KEY_A = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
KEY_B = "0x" + "1" * 64
PUB_A = public_key_hex(KEY_A)
PUB_B = public_key_hex(KEY_B)
SRC = Path(__file__).resolve().parents[1] / "src"
TEST_METHODS = ("test.silence", "test.garbage", "test.notify", "test.drop", "test.big", "test.delay")
# ~14 ms of big-int work per element, 10000 elements: far beyond any timeout used here.
SLOW_SCRIPT = '[9**200000 % 7 for x in "a"*10000]'

_ids = itertools.count(1)


# --- helpers -------------------------------------------------------------------------------


async def recv_json(ws: ClientConnection, timeout: float = 5.0) -> Any:
    async with asyncio.timeout(timeout):
        frame = await ws.recv()
    assert isinstance(frame, str), f"expected a text frame, got {frame!r}"
    return json.loads(frame)


async def call(
    ws: ClientConnection, method: str, params: Any = None, *, timeout: float = 5.0
) -> dict[str, Any]:
    """Send one request and return its response (asserting it is the next frame, by id)."""
    rid = f"r{next(_ids)}"
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": rid}
    if params is not None:
        message["params"] = params
    await ws.send(json.dumps(message))
    response = await recv_json(ws, timeout)
    assert response.get("id") == rid, response
    assert response.get("jsonrpc") == "2.0", response
    return response


async def result(ws: ClientConnection, method: str, params: Any = None) -> Any:
    response = await call(ws, method, params)
    assert "error" not in response, response
    return response["result"]


async def error(ws: ClientConnection, method: str, params: Any = None) -> dict[str, Any]:
    response = await call(ws, method, params)
    assert "result" not in response, response
    assert set(response["error"]) >= {"code", "message"}, response
    assert isinstance(response["error"]["message"], str)
    return response["error"]


async def authenticate(ws: ClientConnection, key: str = KEY_A) -> Any:
    pub = public_key_hex(key)
    nonce = (await result(ws, "fetch_nonce", {"pubkey": pub}))["nonce"]
    return await call(ws, "authenticate", {"pubkey": pub, "signature": sign_message(key, nonce)})


def url(server: CircleServer, index: int = 0) -> str:
    return server.urls[index]


@pytest.fixture
async def server() -> AsyncIterator[CircleServer]:
    async with CircleServer(ports=(0,), test_controls=True) as srv:
        yield srv


@pytest.fixture
async def ws(server: CircleServer) -> AsyncIterator[ClientConnection]:
    async with connect(url(server)) as conn:
        yield conn


# --- basic methods -------------------------------------------------------------------------


async def test_ping(ws: ClientConnection) -> None:
    assert await result(ws, "ping", {}) == "pong"
    assert await result(ws, "ping") == "pong"  # params omitted
    assert await result(ws, "ping", []) == "pong"  # empty positional params
    await ws.send('{"jsonrpc":"2.0","method":"ping","id":7}')
    assert await recv_json(ws) == {"jsonrpc": "2.0", "result": "pong", "id": 7}


async def test_whoami_unauthenticated(ws: ClientConnection) -> None:
    assert await result(ws, "whoami", {}) == {"authenticated": False, "pubkey": None}


async def test_fetch_nonce_is_random_hex(ws: ClientConnection) -> None:
    first = (await result(ws, "fetch_nonce", {"pubkey": PUB_A}))["nonce"]
    second = (await result(ws, "fetch_nonce", {"pubkey": PUB_A}))["nonce"]
    for nonce in (first, second):
        assert len(nonce) == 32 and int(nonce, 16) >= 0  # 128 bits
    assert first != second


@pytest.mark.parametrize(
    "params",
    [
        {"pubkey": PUB_A.upper()},
        {"pubkey": "02" + PUB_A[2:66]},  # compressed
        {"pubkey": "05" + PUB_A[2:]},
        {"pubkey": PUB_A[:-2]},
        {"pubkey": PUB_A + "00"},
        {"pubkey": 4},
        {"pubkey": None},
    ],
)
async def test_fetch_nonce_rejects_bad_pubkey(ws: ClientConnection, params: dict[str, Any]) -> None:
    err = await error(ws, "fetch_nonce", params)
    assert err["code"] == INVALID_PARAMS
    assert "pubkey" in err["message"] and "130" in err["message"]


async def test_invalid_params_say_what_is_wrong(ws: ClientConnection) -> None:
    err = await error(ws, "fetch_nonce", {})
    assert err["code"] == INVALID_PARAMS and "missing param 'pubkey'" in err["message"]
    err = await error(ws, "ping", {"extra": 1})
    assert err["code"] == INVALID_PARAMS and "unexpected" in err["message"] and "extra" in err["message"]
    err = await error(ws, "play", {})
    assert err["code"] == INVALID_PARAMS and "script" in err["message"]
    err = await error(ws, "play", {"script": 42})
    assert err["code"] == INVALID_PARAMS and "script must be a string" in err["message"]
    err = await error(ws, "play", ["40 + 2"])
    assert err["code"] == INVALID_PARAMS and "named" in err["message"]
    err = await error(ws, "authenticate", {"pubkey": PUB_A, "signature": "00" * 64})
    assert err["code"] == INVALID_PARAMS and "signature" in err["message"]
    err = await error(ws, "authenticate", {"pubkey": PUB_A})
    assert err["code"] == INVALID_PARAMS and "signature" in err["message"]
    assert await result(ws, "ping") == "pong"


# --- authentication ------------------------------------------------------------------------


async def test_authenticate_happy_path(ws: ClientConnection) -> None:
    response = await authenticate(ws, KEY_A)
    assert response["result"] == {"authenticated": True}
    assert await result(ws, "whoami") == {"authenticated": True, "pubkey": PUB_A}


async def test_authentication_is_per_connection(server: CircleServer, ws: ClientConnection) -> None:
    assert (await authenticate(ws))["result"] == {"authenticated": True}
    async with connect(url(server)) as other:
        assert await result(other, "whoami") == {"authenticated": False, "pubkey": None}


async def test_wrong_signature_fails(ws: ClientConnection) -> None:
    nonce = (await result(ws, "fetch_nonce", {"pubkey": PUB_A}))["nonce"]
    err = await error(ws, "authenticate", {"pubkey": PUB_A, "signature": sign_message(KEY_B, nonce)})
    assert err["code"] == AUTH_FAILED and "signature" in err["message"]
    assert await result(ws, "whoami") == {"authenticated": False, "pubkey": None}


async def test_signature_over_other_message_fails(ws: ClientConnection) -> None:
    await result(ws, "fetch_nonce", {"pubkey": PUB_A})
    err = await error(
        ws, "authenticate", {"pubkey": PUB_A, "signature": sign_message(KEY_A, "not the nonce")}
    )
    assert err["code"] == AUTH_FAILED


async def test_replayed_nonce_fails(ws: ClientConnection) -> None:
    nonce = (await result(ws, "fetch_nonce", {"pubkey": PUB_A}))["nonce"]
    params = {"pubkey": PUB_A, "signature": sign_message(KEY_A, nonce)}
    assert await result(ws, "authenticate", params) == {"authenticated": True}
    err = await error(ws, "authenticate", params)
    assert err["code"] == AUTH_FAILED and "nonce" in err["message"]


async def test_failed_attempt_consumes_nonce(ws: ClientConnection) -> None:
    nonce = (await result(ws, "fetch_nonce", {"pubkey": PUB_A}))["nonce"]
    bad = await error(ws, "authenticate", {"pubkey": PUB_A, "signature": sign_message(KEY_B, nonce)})
    assert bad["code"] == AUTH_FAILED
    err = await error(ws, "authenticate", {"pubkey": PUB_A, "signature": sign_message(KEY_A, nonce)})
    assert err["code"] == AUTH_FAILED


async def test_authenticate_without_nonce_fails(ws: ClientConnection) -> None:
    err = await error(ws, "authenticate", {"pubkey": PUB_A, "signature": sign_message(KEY_A, "0" * 32)})
    assert err["code"] == AUTH_FAILED


async def test_expired_nonce_fails() -> None:
    async with CircleServer(ports=(0,), nonce_ttl=0.2) as srv, connect(srv.urls[0]) as conn:
        assert (await authenticate(conn))["result"] == {"authenticated": True}  # fresh: fine
        nonce = (await result(conn, "fetch_nonce", {"pubkey": PUB_A}))["nonce"]
        await asyncio.sleep(0.35)
        err = await error(conn, "authenticate", {"pubkey": PUB_A, "signature": sign_message(KEY_A, nonce)})
        assert err["code"] == AUTH_FAILED and "expired" in err["message"]


async def test_nonce_issued_to_another_pubkey_fails(ws: ClientConnection) -> None:
    nonce_b = (await result(ws, "fetch_nonce", {"pubkey": PUB_B}))["nonce"]
    # A signs B's nonce and claims to be A: A has no nonce.
    err = await error(ws, "authenticate", {"pubkey": PUB_A, "signature": sign_message(KEY_A, nonce_b)})
    assert err["code"] == AUTH_FAILED
    # A signs B's nonce and claims to be B: the signature does not recover to B.
    err = await error(ws, "authenticate", {"pubkey": PUB_B, "signature": sign_message(KEY_A, nonce_b)})
    assert err["code"] == AUTH_FAILED
    assert await result(ws, "whoami") == {"authenticated": False, "pubkey": None}


async def test_nonce_from_another_connection_fails(server: CircleServer, ws: ClientConnection) -> None:
    async with connect(url(server)) as other:
        nonce = (await result(other, "fetch_nonce", {"pubkey": PUB_A}))["nonce"]
        err = await error(ws, "authenticate", {"pubkey": PUB_A, "signature": sign_message(KEY_A, nonce)})
        assert err["code"] == AUTH_FAILED


async def test_same_key_on_two_connections_concurrently(server: CircleServer) -> None:
    async with connect(url(server)) as one, connect(url(server)) as two:
        n1 = (await result(one, "fetch_nonce", {"pubkey": PUB_A}))["nonce"]
        n2 = (await result(two, "fetch_nonce", {"pubkey": PUB_A}))["nonce"]
        assert await result(one, "authenticate", {"pubkey": PUB_A, "signature": sign_message(KEY_A, n1)})
        assert await result(two, "authenticate", {"pubkey": PUB_A, "signature": sign_message(KEY_A, n2)})


async def test_require_auth_gates_play_only() -> None:
    async with CircleServer(ports=(0,), require_auth=True) as srv, connect(srv.urls[0]) as conn:
        err = await error(conn, "play", {"script": "40 + 2"})
        assert err["code"] == AUTH_REQUIRED
        assert await result(conn, "ping") == "pong"
        assert await result(conn, "whoami") == {"authenticated": False, "pubkey": None}
        failed = await error(conn, "authenticate", {"pubkey": PUB_A, "signature": "ab" * 65})
        assert failed["code"] == AUTH_FAILED
        assert (await error(conn, "play", {"script": "1"}))["code"] == AUTH_REQUIRED
        assert (await authenticate(conn))["result"] == {"authenticated": True}
        assert await result(conn, "play", {"script": "40 + 2"}) == {"output": "42"}


async def test_auth_logs_pubkey_prefix_never_signature(
    ws: ClientConnection, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="circle_ws_web.server")
    nonce = (await result(ws, "fetch_nonce", {"pubkey": PUB_A}))["nonce"]
    bad_sig = sign_message(KEY_B, nonce)
    await error(ws, "authenticate", {"pubkey": PUB_A, "signature": bad_sig})
    nonce = (await result(ws, "fetch_nonce", {"pubkey": PUB_A}))["nonce"]
    good_sig = sign_message(KEY_A, nonce)
    await result(ws, "authenticate", {"pubkey": PUB_A, "signature": good_sig})
    records = [r for r in caplog.records if r.name == "circle_ws_web.server"]
    text = "\n".join(r.getMessage() for r in records)
    assert "auth failed" in text and "authenticated as" in text and PUB_A[:12] in text
    assert bad_sig[:20] not in text and good_sig[:20] not in text and PUB_A not in text
    assert any(r.levelno == logging.WARNING and "auth failed" in r.getMessage() for r in records)


# --- play ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("script", "output"),
    [
        ("40 + 2", "42"),
        ('"ab" * 2', "abab"),
        ("[x * 2 for x in [1, 2, 3]]", "[2, 4, 6]"),
        ("{'a': (1, 2)}", "{'a': (1, 2)}"),
        ('f"{3.14159:.2f}"', "3.14"),
        ("'é' * 3", "ééé"),
        ("  7 // 2  ", "3"),
    ],
)
async def test_play(ws: ClientConnection, script: str, output: str) -> None:
    assert await result(ws, "play", {"script": script}) == {"output": output}


@pytest.mark.parametrize(
    ("script", "fragment"),
    [
        ("1/0", "ZeroDivisionError: division by zero"),
        ("__import__('os')", "__import__"),
        ("().__class__", "__class__"),
        ("(1).__class__.__subclasses__()", "__attributes"),
        ("open('/etc/passwd')", "open"),
        ("import os", "statements"),
        ("x = 1", "statements"),
        ("1; 2", "one expression"),
        ("1 +", "SyntaxError"),
        ("", "empty"),
        ("undefined_name", "undefined_name"),
        ("4000000 ** 4000000", "NumberTooHigh"),
        ('"a".ljust(10**9)', "ljust"),
        ('"%999999999d" % 1', "too large"),
        ('f"{1:>999999999}"', "too large"),
        ("str([[0] * 100000] * 100000)", "exceed"),
        ('["a" * 100000 for x in "a" * 10000]', "budget"),
    ],
)
async def test_play_script_errors(ws: ClientConnection, script: str, fragment: str) -> None:
    started = time.monotonic()
    err = await error(ws, "play", {"script": script})
    assert err["code"] == SCRIPT_ERROR
    assert fragment in err["message"]
    assert time.monotonic() - started < 1.5  # refused, not run to exhaustion
    assert await result(ws, "play", {"script": "1 + 1"}) == {"output": "2"}


async def test_play_output_limit() -> None:
    async with CircleServer(ports=(0,), max_output=100) as srv, connect(srv.urls[0]) as conn:
        assert await result(conn, "play", {"script": "'a' * 100"}) == {"output": "a" * 100}
        err = await error(conn, "play", {"script": "'a' * 101"})
        assert err["code"] == SCRIPT_ERROR and "output too large" in err["message"]
        err = await error(conn, "play", {"script": "[[0] * 100000] * 100000"})
        assert err["code"] == SCRIPT_ERROR and "output too large" in err["message"]


async def test_play_timeout_keeps_loop_responsive() -> None:
    async with CircleServer(ports=(0,), script_timeout=0.5) as srv, connect(srv.urls[0]) as conn:
        started = time.monotonic()
        await conn.send(
            json.dumps({"jsonrpc": "2.0", "method": "play", "params": {"script": SLOW_SCRIPT}, "id": "slow"})
        )
        await asyncio.sleep(0.1)
        pong = await call(conn, "ping")  # answered while the script runs
        assert pong["result"] == "pong" and time.monotonic() - started < 0.45
        response = await recv_json(conn)
        elapsed = time.monotonic() - started
        assert response["id"] == "slow"
        assert response["error"]["code"] == SCRIPT_ERROR
        assert response["error"]["message"] == "script timed out after 0.5 s"
        assert 0.45 <= elapsed < 1.5
        assert await result(conn, "play", {"script": "2 * 21"}) == {"output": "42"}


def test_evaluator_stops_timed_out_script() -> None:
    """The worker thread itself gives up at the deadline: no runaway thread is left behind."""
    started = time.monotonic()
    with pytest.raises(ScriptTimeout, match="timed out"):
        evaluate(SLOW_SCRIPT, token=CancelToken(0.2))
    assert time.monotonic() - started < 0.6
    token = CancelToken(None)
    token.cancel()
    with pytest.raises(ScriptTimeout):
        evaluate("1 + 1", token=token)
    with pytest.raises(ScriptError, match="ZeroDivisionError"):
        evaluate("1/0")
    assert evaluate("40 + 2") == "42"


async def test_concurrent_plays_on_one_connection(ws: ClientConnection) -> None:
    for i in range(50):
        await ws.send(
            json.dumps({"jsonrpc": "2.0", "method": "play", "params": {"script": f"{i} * 2"}, "id": f"p{i}"})
        )
    responses = [await recv_json(ws) for _ in range(50)]
    assert {r["id"]: r["result"]["output"] for r in responses} == {f"p{i}": str(i * 2) for i in range(50)}


# --- bad frames ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "code", "rid"),
    [
        ("not json", PARSE_ERROR, None),
        ('{"jsonrpc":"2.0","method":"ping","id":"x"', PARSE_ERROR, None),
        ('{"jsonrpc":"2.0","method":"ping","params":{"x":NaN},"id":"x"}', PARSE_ERROR, None),
        ("[1,2,3]", INVALID_REQUEST, None),
        ('[{"jsonrpc":"2.0","method":"ping","id":"b"}]', INVALID_REQUEST, None),
        ("42", INVALID_REQUEST, None),
        ('"ping"', INVALID_REQUEST, None),
        ("null", INVALID_REQUEST, None),
        ('{"foo":"bar"}', INVALID_REQUEST, None),
        ('{"method":"ping","id":"m1"}', INVALID_REQUEST, "m1"),
        ('{"jsonrpc":"1.0","method":"ping","id":"m2"}', INVALID_REQUEST, "m2"),
        ('{"jsonrpc":"2.0","method":5,"id":"m3"}', INVALID_REQUEST, "m3"),
        ('{"jsonrpc":"2.0","id":"m4"}', INVALID_REQUEST, "m4"),
        ('{"jsonrpc":"2.0","method":"ping","id":true}', INVALID_REQUEST, None),
        ('{"jsonrpc":"2.0","method":"ping","id":{"a":1}}', INVALID_REQUEST, None),
        ('{"jsonrpc":"2.0","method":"ping","id":[1]}', INVALID_REQUEST, None),
        ('{"jsonrpc":"2.0","method":"ping","id":1.5}', INVALID_REQUEST, None),
        ('{"jsonrpc":"2.0","method":"ping","params":"x","id":"m5"}', INVALID_REQUEST, "m5"),
        ('{"jsonrpc":"2.0","result":1,"id":"m6"}', INVALID_REQUEST, "m6"),
        ('{"jsonrpc":"2.0","method":"nope","id":"m7"}', METHOD_NOT_FOUND, "m7"),
        (b"\x00\x01", INVALID_REQUEST, None),
        (b'{"jsonrpc":"2.0","method":"ping","id":"bin"}', INVALID_REQUEST, None),
    ],
)
async def test_bad_frames(
    ws: ClientConnection, frame: str | bytes, code: int, rid: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="circle_ws_web.server")
    await ws.send(frame)
    response = await recv_json(ws)
    assert response["jsonrpc"] == "2.0"
    assert response["id"] == rid
    assert response["error"]["code"] == code
    assert "result" not in response
    if code != METHOD_NOT_FOUND:
        assert any(r.levelno == logging.WARNING and "bad frame" in r.getMessage() for r in caplog.records)
    assert await result(ws, "ping") == "pong"  # still usable


async def test_notifications_are_executed_not_answered(ws: ClientConnection) -> None:
    await ws.send('{"jsonrpc":"2.0","method":"ping"}')
    await ws.send('{"jsonrpc":"2.0","method":"no.such.method"}')
    await ws.send('{"jsonrpc":"2.0","method":"ping","params":{"bad":1}}')
    # Executed: test.notify sent as a notification still emits its notification, without "ok".
    await ws.send('{"jsonrpc":"2.0","method":"test.notify","params":{"method":"hello","params":[1]}}')
    assert await recv_json(ws) == {"jsonrpc": "2.0", "method": "hello", "params": [1]}
    assert await result(ws, "ping") == "pong"  # the next frame is this answer, nothing else


async def test_oversized_frame_closes_only_that_connection() -> None:
    async with CircleServer(ports=(0,), max_message_size=1000) as srv:
        async with connect(srv.urls[0], max_size=None) as conn:
            await conn.send(
                json.dumps(
                    {"jsonrpc": "2.0", "method": "play", "params": {"script": "1" * 2000}, "id": "big"}
                )
            )
            with pytest.raises(ConnectionClosed) as info:
                await recv_json(conn)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1009
        async with connect(srv.urls[0]) as conn:
            assert await result(conn, "ping") == "pong"


# --- test controls -------------------------------------------------------------------------


async def test_test_controls_absent_by_default() -> None:
    async with CircleServer(ports=(0,)) as srv, connect(srv.urls[0]) as conn:
        for name in TEST_METHODS:
            err = await error(conn, name, {})
            assert err["code"] == METHOD_NOT_FOUND and name in err["message"]


async def test_silence(ws: ClientConnection) -> None:
    assert await result(ws, "test.silence", {"seconds": 0.6}) == {"ok": True}
    started = time.monotonic()
    # Dropped, not executed: if this were processed it would end the silence at once.
    await ws.send('{"jsonrpc":"2.0","method":"test.silence","params":{"seconds":0},"id":"s0"}')
    await ws.send('{"jsonrpc":"2.0","method":"ping","id":"during"}')
    with pytest.raises(TimeoutError):
        await recv_json(ws, timeout=0.3)
    pong_waiter = await ws.ping()  # websocket-level ping: still answered by the library
    async with asyncio.timeout(1):
        await pong_waiter
    await asyncio.sleep(max(0.0, 0.7 - (time.monotonic() - started)))
    response = await call(ws, "ping")  # the "during" request was dropped for good
    assert response["result"] == "pong"


async def test_silence_suppresses_in_flight_answers(ws: ClientConnection) -> None:
    await ws.send('{"jsonrpc":"2.0","method":"test.delay","params":{"seconds":0.2,"result":1},"id":"d"}')
    assert await result(ws, "test.silence", {"seconds": 0.5}) == {"ok": True}
    with pytest.raises(TimeoutError):
        await recv_json(ws, timeout=0.6)
    assert await result(ws, "ping") == "pong"


async def test_garbage(ws: ClientConnection) -> None:
    await ws.send('{"jsonrpc":"2.0","method":"test.garbage","params":{},"id":"g"}')
    frames = []
    for _ in range(7):
        async with asyncio.timeout(5):
            frames.append(await ws.recv())
    assert frames[:6] == [
        "not json",
        "[1,2,3]",
        '{"jsonrpc":"2.0","result":1,"id":"no-such-id"}',
        '{"jsonrpc":"1.0","id":null}',
        '{"foo":"bar"}',
        b"\x00\x01",
    ]
    assert json.loads(frames[6]) == {"jsonrpc": "2.0", "result": {"ok": True}, "id": "g"}


async def test_notify(ws: ClientConnection) -> None:
    await ws.send(
        '{"jsonrpc":"2.0","method":"test.notify","params":{"method":"status","params":{"a":1}},"id":"n"}'
    )
    assert await recv_json(ws) == {"jsonrpc": "2.0", "method": "status", "params": {"a": 1}}
    assert await recv_json(ws) == {"jsonrpc": "2.0", "result": {"ok": True}, "id": "n"}
    await ws.send('{"jsonrpc":"2.0","method":"test.notify","params":{"method":"bare"},"id":"n2"}')
    assert await recv_json(ws) == {"jsonrpc": "2.0", "method": "bare"}
    assert (await recv_json(ws))["id"] == "n2"
    err = await error(ws, "test.notify", {"method": 3})
    assert err["code"] == INVALID_PARAMS


async def test_drop(server: CircleServer, ws: ClientConnection) -> None:
    await ws.send('{"jsonrpc":"2.0","method":"test.drop","params":{},"id":"x"}')
    with pytest.raises(ConnectionClosed) as info:
        await recv_json(ws)
    assert info.value.rcvd is None  # abrupt: no close frame, no answer
    async with connect(url(server)) as conn:
        assert await result(conn, "ping") == "pong"


async def test_big(ws: ClientConnection) -> None:
    assert await result(ws, "test.big", {"size": 0}) == {"data": ""}
    data = (await result(ws, "test.big", {"size": 300_000}))["data"]
    assert data == "x" * 300_000
    for bad in (-1, 1.5, "10", True):
        assert (await error(ws, "test.big", {"size": bad}))["code"] == INVALID_PARAMS


async def test_delay_runs_concurrently(ws: ClientConnection) -> None:
    started = time.monotonic()
    await ws.send(
        '{"jsonrpc":"2.0","method":"test.delay","params":{"seconds":0.4,"result":{"k":[1,null]}},"id":"slow"}'
    )
    await ws.send('{"jsonrpc":"2.0","method":"test.delay","params":{"seconds":0.1},"id":"fast"}')
    await ws.send('{"jsonrpc":"2.0","method":"ping","id":"p"}')
    first, second, third = [await recv_json(ws) for _ in range(3)]
    assert [first["id"], second["id"], third["id"]] == ["p", "fast", "slow"]
    assert second["result"] is None
    assert third["result"] == {"k": [1, None]}
    assert 0.35 < time.monotonic() - started < 1.5
    assert (await error(ws, "test.delay", {"seconds": -1}))["code"] == INVALID_PARAMS
    assert (await error(ws, "test.silence", {"seconds": "1"}))["code"] == INVALID_PARAMS


# --- load, ports, lifecycle ----------------------------------------------------------------


async def test_500_concurrent_pings(ws: ClientConnection) -> None:
    ids = [f"c{i}" for i in range(500)]
    await asyncio.gather(*(ws.send(json.dumps({"jsonrpc": "2.0", "method": "ping", "id": i})) for i in ids))
    seen = []
    for _ in ids:
        response = await recv_json(ws)
        assert response["result"] == "pong"
        seen.append(response["id"])
    assert sorted(seen) == sorted(ids)


async def test_two_ports_are_independent() -> None:
    async with CircleServer(ports=(0, 0), test_controls=True) as srv:
        assert len(srv.bound_ports) == 2 and len(set(srv.bound_ports)) == 2
        assert all(p > 0 for p in srv.bound_ports)
        async with connect(srv.urls[0]) as one, connect(srv.urls[1]) as two:
            assert (await authenticate(one))["result"] == {"authenticated": True}
            assert await result(two, "whoami") == {"authenticated": False, "pubkey": None}
            await one.send('{"jsonrpc":"2.0","method":"test.drop","id":"d"}')
            with pytest.raises(ConnectionClosed):
                await recv_json(one)
            assert await result(two, "play", {"script": "40 + 2"}) == {"output": "42"}
    assert srv.bound_ports == []


async def test_port_in_use_raises_and_leaves_nothing_open() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        srv = CircleServer(ports=(0, port))
        with pytest.raises(PortInUseError) as info:
            await srv.start()
        assert info.value.port == port and f"port {port} is already in use" in str(info.value)
        assert srv.bound_ports == []


async def test_stop_closes_connections() -> None:
    srv = CircleServer(ports=(0,))
    await srv.start()
    conn = await connect(srv.urls[0])
    assert await result(conn, "ping") == "pong"
    started = time.monotonic()
    await srv.stop()
    assert time.monotonic() - started < 3
    with pytest.raises(ConnectionClosed) as info:
        await recv_json(conn)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1001
    await srv.stop()  # idempotent


async def test_connection_logs(server: CircleServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="circle_ws_web.server")
    async with connect(url(server)) as conn:
        await result(conn, "ping")
    await asyncio.sleep(0.1)
    text = "\n".join(r.getMessage() for r in caplog.records if r.name == "circle_ws_web.server")
    assert "open from 127.0.0.1:" in text and "closed" in text


def test_constructor_validates() -> None:
    for kwargs in (
        {"ports": ()},
        {"ports": (70000,)},
        {"script_timeout": 0},
        {"max_output": 0},
        {"nonce_ttl": 0},
        {"max_script_size": 0},
        {"max_in_flight": 0},
        {"max_connections": 0},
        {"memory_limit": 0},
        {"queue_timeout": 0},
    ):
        with pytest.raises(ValueError):
            CircleServer(**kwargs)  # type: ignore[arg-type]


# --- nonce store ---------------------------------------------------------------------------


def test_nonce_store_rules() -> None:
    now = [0.0]
    store = NonceStore(10, max_entries=3, clock=lambda: now[0])
    nonce = store.issue("a", scope=1)
    assert store.consume("a", scope=2) is None  # other scope
    assert store.consume("b", scope=1) is None  # other pubkey
    assert store.consume("a", scope=1) == nonce
    assert store.consume("a", scope=1) is None  # single use
    store.issue("a", scope=1)
    now[0] = 10.5
    assert store.consume("a", scope=1) is None  # expired
    first = store.issue("a", scope=1)
    second = store.issue("a", scope=1)
    assert first != second and len(store) == 1
    assert store.consume("a", scope=1) == second  # the newest replaces the older
    for key in "wxy":
        store.issue(key, scope=5)
    with pytest.raises(NonceStoreFull):  # full: refused, nobody's pending nonce is evicted
        store.issue("z", scope=5)
    assert len(store) == 3 and store.consume("w", scope=5) is not None
    store.discard_scope(5)
    assert len(store) == 0
    store.issue("q", scope=6)
    now[0] = 100.0
    store.issue("r", scope=7)  # issuing prunes expired entries
    assert len(store) == 1


# --- command line --------------------------------------------------------------------------


def _cli(*args: str, **kwargs: Any) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen(
        [sys.executable, "-m", "circle_ws_web.server", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        **kwargs,
    )


async def test_cli_serves_two_ports_and_exits_cleanly_on_sigterm() -> None:
    proc = _cli("--port", "0", "--port", "0", "--require-auth")
    try:
        lines = [await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 15) for _ in range(2)]  # type: ignore[union-attr]
        urls = []
        for line in lines:
            assert line.startswith("listening on ws://127.0.0.1:"), lines
            urls.append(line.removeprefix("listening on ").strip())
        assert len(set(urls)) == 2 and not urls[0].endswith(":0")
        for address in urls:
            async with connect(address) as conn:
                assert await result(conn, "ping") == "pong"
                assert (await error(conn, "play", {"script": "1"}))["code"] == AUTH_REQUIRED
        proc.send_signal(signal.SIGTERM)
        rc = await asyncio.to_thread(proc.wait, 10)
        stderr = proc.stderr.read()  # type: ignore[union-attr]
        assert rc == 0, stderr
        assert "Traceback" not in stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_port_in_use_exits_2_without_traceback() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = _cli("--port", str(port))
        stdout, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 2
    assert stderr.strip().splitlines()[-1] == f"error: port {port} is already in use"
    assert "Traceback" not in stderr
    assert "listening on" not in stdout


async def test_stats_control_counts_open_connections() -> None:
    """test.stats (test controls only) reports the connections open now: what the pooling
    scenarios use to show two managers share one socket."""
    import websockets

    async with CircleServer(ports=[0], test_controls=True) as server:
        url = server.urls[0]
        async with websockets.connect(url) as one, websockets.connect(url) as two:
            await one.send('{"jsonrpc":"2.0","method":"test.stats","params":{},"id":"1"}')
            assert json.loads(await one.recv())["result"]["connections"] == 2
            await two.close()
            await one.send('{"jsonrpc":"2.0","method":"test.stats","params":{},"id":"2"}')
            assert json.loads(await one.recv())["result"]["connections"] == 1
    async with CircleServer(ports=[0]) as server, websockets.connect(server.urls[0]) as ws:
        await ws.send('{"jsonrpc":"2.0","method":"test.stats","params":{},"id":"1"}')
        assert json.loads(await ws.recv())["error"]["code"] == -32601  # off without test controls
