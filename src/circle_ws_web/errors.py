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
    "CircuitOpenError",
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


class CircuitOpenError(NotConnectedError):
    """The server's circuit breaker is open (it failed too often lately): the call was refused
    at once and nothing was sent. ``url`` names the server, ``retry_in`` the seconds until a
    probe call may go through."""

    def __init__(self, message: str, *, url: str = "", retry_in: float = 0.0) -> None:
        super().__init__(message)
        self.url = url
        self.retry_in = retry_in


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
