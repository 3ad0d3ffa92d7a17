"""The typed errors of circle-ws-web: every failure a caller can see is one of these.

All derive from :class:`CircleWsClientError`, so ``except CircleWsClientError`` catches
everything the library raises on purpose. Messages name the problem and never contain a
private key.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AuthError",
    "CircleWsClientError",
    "ClientClosedError",
    "ConfigError",
    "ConnectError",
    "ConnectionLostError",
    "JsonRpcError",
    "NotConnectedError",
    "ProtocolError",
    "RequestTimeoutError",
]


class CircleWsClientError(Exception):
    """Base class of every error raised by circle-ws-web."""


class ConfigError(CircleWsClientError, ValueError):
    """A bad private key, server URL or option, found before any network I/O."""


class ConnectError(CircleWsClientError):
    """Opening the WebSocket failed (refused, unreachable, handshake rejected, timed out)."""


class NotConnectedError(CircleWsClientError):
    """The call needs a ready connection and there is none right now."""


class ConnectionLostError(CircleWsClientError):
    """The socket dropped while the call was in flight; the call was not re-sent."""


class RequestTimeoutError(CircleWsClientError, TimeoutError):
    """No response arrived within the call's timeout."""


class AuthError(CircleWsClientError):
    """The challenge-response authentication failed or was refused by the server."""


class ProtocolError(CircleWsClientError):
    """The server sent something that is not valid JSON-RPC 2.0."""


class ClientClosedError(CircleWsClientError):
    """The client was closed with ``disconnect()`` and cannot be used again."""


class JsonRpcError(CircleWsClientError):
    """The server answered with a JSON-RPC error object."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"JSON-RPC error {code}: {message}")
        self.code = code
        self.message = message
        self.data = data

    def __repr__(self) -> str:
        return f"JsonRpcError(code={self.code!r}, message={self.message!r}, data={self.data!r})"
