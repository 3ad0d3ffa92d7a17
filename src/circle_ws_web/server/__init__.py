"""The reference "circle" server (CPython only): JSON-RPC 2.0 over WebSocket, per SPEC section 2.

    async with CircleServer(ports=(0,), require_auth=True) as server:
        print(server.urls)

Or from a shell: ``python -m circle_ws_web.server --port 8701 [--require-auth] [--test-controls]``.
"""

from .app import CircleServer, PortInUseError, RpcError
from .cli import main
from .evaluator import CancelToken, ScriptError, ScriptTimeout, evaluate
from .nonces import NonceStore

__all__ = [
    "CancelToken",
    "CircleServer",
    "NonceStore",
    "PortInUseError",
    "RpcError",
    "ScriptError",
    "ScriptTimeout",
    "evaluate",
    "main",
]
