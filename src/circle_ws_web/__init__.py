"""circle-ws-web: self-managing, authenticated JSON-RPC WebSocket clients for circle script
servers, in the browser (Pyodide) and in CPython, with one API.

    manager = ws_manager().private_key(KEY).add_server_url("ws://127.0.0.1:8701").build()
    await manager.connect()
    print((await manager.execute_script("ws://127.0.0.1:8701", "40 + 2")).output)
"""

import logging as _logging

from .builder import WsManagerBuilder, ws_manager
from .client import CircleWsClient
from .errors import (
    AuthError,
    CircleWsClientError,
    CircuitOpenError,
    ClientClosedError,
    ConfigError,
    ConnectError,
    ConnectionLostError,
    JsonRpcError,
    NotConnectedError,
    ProtocolError,
    RequestTimeoutError,
)
from .manager import WsManager
from .metrics import Metrics
from .results import PlayResult
from .status import ConnectionStatus

__version__ = "0.1.0"

# A library leaves output to the application: without this, Python's last-resort handler would
# print every WARNING (a server that went away) to stderr, in red under a notebook cell.
_logging.getLogger("circle_ws_web").addHandler(_logging.NullHandler())

__all__ = [
    "AuthError",
    "CircleWsClient",
    "CircleWsClientError",
    "CircuitOpenError",
    "ClientClosedError",
    "ConfigError",
    "ConnectError",
    "ConnectionLostError",
    "ConnectionStatus",
    "JsonRpcError",
    "Metrics",
    "NotConnectedError",
    "PlayResult",
    "ProtocolError",
    "RequestTimeoutError",
    "WsManager",
    "WsManagerBuilder",
    "__version__",
    "ws_manager",
]
