"""The request journal: one JSON line per ``play`` the server starts executing.

Other suites (a chaos soak) read it to prove no request ran twice, so its format is a contract:
``{"conn": <connection id>, "id": <request id>, "script": <script>}`` + newline, appended and
flushed per line.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from circle_ws_web.auth import public_key_hex, sign_message
from circle_ws_web.rpc import AUTH_REQUIRED, INVALID_PARAMS, SCRIPT_ERROR
from circle_ws_web.server import CircleServer

KEY = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
SRC = Path(__file__).resolve().parents[1] / "src"


async def rpc(ws: ClientConnection, method: str, params: Any, rid: Any) -> dict[str, Any]:
    await ws.send(json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": rid}))
    async with asyncio.timeout(10):
        answer = json.loads(await ws.recv())
    assert answer["id"] == rid, answer
    return answer


def lines(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


async def test_journal_records_each_started_play_once(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    async with CircleServer(ports=(0,), journal=path) as srv:
        async with connect(srv.urls[0]) as one, connect(srv.urls[0]) as two:
            assert (await rpc(one, "play", {"script": "40 + 2"}, "a"))["result"] == {"output": "42"}
            assert (await rpc(two, "play", {"script": "1/0"}, 7))["error"]["code"] == SCRIPT_ERROR
            # Refused before running: not journaled.
            assert (await rpc(one, "play", {"script": 5}, "bad"))["error"]["code"] == INVALID_PARAMS
            # A notification runs too (no answer): journaled with id null.
            await one.send('{"jsonrpc":"2.0","method":"play","params":{"script":"\\"\\u00e9\\" * 2"}}')
            assert (await rpc(one, "play", {"script": '"x\\ny"'}, "nl"))["result"] == {"output": "x\ny"}
            # Flushed per line: readable while the server still runs.
            got = lines(path)
    conns = sorted({entry["conn"] for entry in got})
    assert len(conns) == 2 and all(type(c) is int for c in conns)
    first = got[0]["conn"]
    assert [(e["conn"] == first, e["id"], e["script"]) for e in got] == [
        (True, "a", "40 + 2"),
        (False, 7, "1/0"),
        (True, None, '"é" * 2'),
        (True, "nl", '"x\\ny"'),
    ]
    assert path.read_text(encoding="utf-8").splitlines()[0] == json.dumps(
        {"conn": first, "id": "a", "script": "40 + 2"}
    )


async def test_journal_appends_and_skips_unauthenticated_plays(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    path.write_text('{"conn": 0, "id": "old", "script": "1"}\n', encoding="utf-8")
    async with CircleServer(ports=(0,), require_auth=True, journal=path) as srv:
        async with connect(srv.urls[0]) as ws:
            assert (await rpc(ws, "play", {"script": "1 + 1"}, "x"))["error"]["code"] == AUTH_REQUIRED
            pub = public_key_hex(KEY)
            nonce = (await rpc(ws, "fetch_nonce", {"pubkey": pub}, "n"))["result"]["nonce"]
            await rpc(ws, "authenticate", {"pubkey": pub, "signature": sign_message(KEY, nonce)}, "au")
            assert (await rpc(ws, "play", {"script": "2 + 2"}, "y"))["result"] == {"output": "4"}
    assert [(e["id"], e["script"]) for e in lines(path)] == [("old", "1"), ("y", "2 + 2")]


async def test_journal_keeps_lone_surrogates_valid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    async with CircleServer(ports=(0,), journal=path) as srv, connect(srv.urls[0]) as ws:
        await ws.send('{"jsonrpc":"2.0","method":"play","params":{"script":"len(\\"\\ud800\\")"},"id":"s"}')
        async with asyncio.timeout(10):
            assert json.loads(await ws.recv())["id"] == "s"  # answered (an error: not valid UTF-8)
    (entry,) = lines(path)  # read as strict UTF-8
    assert (entry["id"], entry["script"]) == ("s", 'len("\ud800")')


async def test_cli_journal_flag(tmp_path: Path) -> None:
    path = tmp_path / "cli-journal.jsonl"
    env = {**os.environ, "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "circle_ws_web.server", "--port", "0", "--journal", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)  # type: ignore[union-attr]
        assert line.startswith("listening on ws://"), line
        async with connect(line.removeprefix("listening on ").strip()) as ws:
            assert (await rpc(ws, "play", {"script": "6 * 7"}, 1))["result"] == {"output": "42"}
            assert [(e["id"], e["script"]) for e in lines(path)] == [(1, "6 * 7")]
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
