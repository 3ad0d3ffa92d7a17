"""circle-ws-web: self-managing, authenticated JSON-RPC WebSocket clients for circle script
servers, in the browser (Pyodide) and in CPython, with one API.

    manager = ws_manager().private_key(KEY).add_server_url("ws://127.0.0.1:8701").build()
    await manager.connect()
    print((await manager.execute_script("ws://127.0.0.1:8701", "40 + 2")).output)

The names below are imported on first use (PEP 562 ``__getattr__``): a page pays for every
module it imports at each load, in WebAssembly, so ``import circle_ws_web`` itself loads only
the error classes; ``ws_manager`` and the rest come in when first named.
"""

import logging as _logging
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:  # what the lazy names are, for type checkers and the API reference
    from .builder import WsManagerBuilder, ws_manager
    from .client import CircleWsClient
    from .manager import WsManager
    from .metrics import Metrics
    from .results import PlayResult
    from .status import ConnectionStatus

__version__ = "0.1.0"

# A library leaves output to the application: without this, Python's last-resort handler would
# print every WARNING (a server that went away) to stderr, in red under a notebook cell.
_logging.getLogger("circle_ws_web").addHandler(_logging.NullHandler())

#: Public name -> the submodule that defines it, imported when the name is first used.
_LAZY = {
    "CircleWsClient": "client",
    "ConnectionStatus": "status",
    "Metrics": "metrics",
    "PlayResult": "results",
    "WsManager": "manager",
    "WsManagerBuilder": "builder",
    "ws_manager": "builder",
}

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


def __getattr__(name: str) -> Any:
    """Import the submodule behind a lazy public name once; later lookups find a global."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
