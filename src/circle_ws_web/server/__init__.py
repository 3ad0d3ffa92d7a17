"""The reference "circle" server (CPython only): JSON-RPC 2.0 over WebSocket, per SPEC section 2.

    async with CircleServer(ports=(0,), require_auth=True) as server:
        print(server.urls)

Or from a shell: ``python -m circle_ws_web.server --port 8701 [--require-auth] [--test-controls]``.
"""

from .app import SERVER_BUSY, CircleServer, PortInUseError, RpcError
from .cli import main
from .evaluator import CancelToken, ScriptError, ScriptMemoryError, ScriptTimeout, evaluate
from .nonces import NonceStore, NonceStoreFull
from .workers import PoolBusy, ScriptPool, WorkerCrashed

__all__ = [
    "SERVER_BUSY",
    "CancelToken",
    "CircleServer",
    "NonceStore",
    "NonceStoreFull",
    "PoolBusy",
    "PortInUseError",
    "RpcError",
    "ScriptError",
    "ScriptMemoryError",
    "ScriptPool",
    "ScriptTimeout",
    "WorkerCrashed",
    "evaluate",
    "main",
]
