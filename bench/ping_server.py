"""A minimal JSON-RPC ``ping`` server on ``websockets`` (the bench's Python server).

Answers every text frame ``{"id": X, ...}`` with ``{"jsonrpc":"2.0","result":"pong","id":X}``,
nothing else: no validation, no evaluator, no authentication. It exists so that the benchmarks
measure the clients, not the reference server's request handling. Prints one ``listening on``
line per ``--port`` (0 picks a free one), like the reference server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal

from websockets.asyncio.server import ServerConnection, serve

_loads = json.loads


async def _handle(ws: ServerConnection) -> None:
    send = ws.send
    async for message in ws:
        rid = _loads(message).get("id")
        await send(f'{{"jsonrpc":"2.0","result":"pong","id":{json.dumps(rid)}}}')


async def _main(host: str, ports: list[int]) -> None:
    servers = [
        await serve(_handle, host, port, compression=None, ping_interval=None, max_queue=None)
        for port in ports
    ]
    for server in servers:
        print(f"listening on ws://{host}:{server.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for server in servers:
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, action="append")
    args = parser.parse_args()
    asyncio.run(_main(args.host, args.port or [0]))


if __name__ == "__main__":
    main()
