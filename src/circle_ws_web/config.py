"""Validation of user-supplied settings, shared by the builder and the client. Fails fast,
before any I/O, with a :class:`ConfigError` that names the problem."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from .errors import ConfigError

__all__ = ["ClientOptions", "validate_url"]


#: The common shape, ``ws[s]://host[:port][/path][?query]``, with a plain host name or IPv4
#: address and printable ASCII only: checked here without :mod:`urllib.parse`, which (with the
#: :mod:`ipaddress` it imports) is about a third of the package's import in Pyodide. Anything
#: else (IPv6, user info, a fragment, unusual characters) goes through ``urlsplit`` as before;
#: for what matches, ``urlsplit`` would find the same scheme, host and port, and no fragment.
_PLAIN_WS_URL = re.compile(r"wss?://[A-Za-z0-9.-]+(?::([0-9]{1,5}))?(?:[/?][!-\"$-~]*)?")


def validate_url(url: object) -> str:
    """Return the URL (surrounding whitespace removed) if it is a usable ws:// or wss:// URL."""
    if not isinstance(url, str):
        raise ConfigError(f"server URL must be a string, got {type(url).__name__}")
    text = url.strip()
    if not text:
        raise ConfigError("server URL is empty")
    plain = _PLAIN_WS_URL.fullmatch(text)
    if plain is not None and (plain.group(1) is None or 0 < int(plain.group(1)) <= 65535):
        return text
    from urllib.parse import urlsplit  # here: only an unusual URL needs it

    try:
        parts = urlsplit(text)
        port = parts.port  # raises ValueError for a non-numeric or out-of-range port
    except ValueError as exc:
        raise ConfigError(f"server URL {text!r} is malformed: {exc}") from None
    if parts.scheme not in ("ws", "wss"):
        if "://" not in text:  # "localhost:8701" parses as scheme "localhost": say what is missing
            raise ConfigError(f"server URL {text!r} has no scheme; expected ws:// or wss:// (ws://{text})")
        raise ConfigError(f"server URL {text!r} has scheme {parts.scheme!r}; expected 'ws' or 'wss'")
    if not parts.hostname:
        raise ConfigError(f"server URL {text!r} has no host")
    if parts.fragment:
        raise ConfigError(f"server URL {text!r} has a fragment (#...), which WebSocket URLs cannot have")
    if port == 0:
        raise ConfigError(f"server URL {text!r} has port 0")
    if any(c.isspace() for c in text):
        raise ConfigError(f"server URL {text!r} contains whitespace")
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in text):
        raise ConfigError(f"server URL {text!r} contains a control character")
    return text


def _positive(name: str, value: object, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number of seconds, got {type(value).__name__}")
    number = float(value)
    if math.isnan(number) or number < 0 or (number == 0 and not allow_zero) or math.isinf(number):
        raise ConfigError(f"{name} must be a finite number > 0, got {value!r}")
    return number


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """Every tuning knob of a client, validated. The builder's tuning maps onto these."""

    keepalive_interval: float = 20.0
    keepalive_timeout: float = 10.0
    request_timeout: float = 30.0
    connect_timeout: float = 10.0
    reconnect_initial_delay: float = 0.5
    reconnect_max_delay: float = 30.0
    reconnect_factor: float = 2.0
    reconnect_jitter: bool = True
    reconnect_max_attempts: int | None = None
    #: A connection must stay up this long before the backoff starts again from its initial
    #: delay, so a server that accepts and then drops at once is not hammered.
    reconnect_min_uptime: float = 5.0
    max_message_size: int = 16 * 2**20
    #: In a browser, follow the page's lifecycle (offline/online, visible/resumed, pagehide/
    #: pageshow); False turns all of it off. No effect in CPython.
    lifecycle: bool = True
    #: Share one connection among clients of the same URL, key and settings (see
    #: :class:`~circle_ws_web.client.CircleWsClient`); False: a connection of its own.
    pool: bool = True

    def __post_init__(self) -> None:
        for name in ("keepalive_interval", "keepalive_timeout", "request_timeout", "connect_timeout"):
            _positive(name, getattr(self, name))
        _positive("reconnect_initial_delay", self.reconnect_initial_delay, allow_zero=True)
        _positive("reconnect_max_delay", self.reconnect_max_delay, allow_zero=True)
        _positive("reconnect_min_uptime", self.reconnect_min_uptime, allow_zero=True)
        if self.reconnect_max_delay < self.reconnect_initial_delay:
            raise ConfigError(
                f"reconnect_max_delay ({self.reconnect_max_delay}) must be >= "
                f"reconnect_initial_delay ({self.reconnect_initial_delay})"
            )
        if isinstance(self.reconnect_factor, bool) or not (
            isinstance(self.reconnect_factor, (int, float)) and self.reconnect_factor >= 1
        ):
            raise ConfigError(f"reconnect_factor must be a number >= 1, got {self.reconnect_factor!r}")
        attempts = self.reconnect_max_attempts
        if attempts is not None and (isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 0):
            raise ConfigError(f"reconnect_max_attempts must be None or an int >= 0, got {attempts!r}")
        for flag in ("lifecycle", "pool"):
            if not isinstance(getattr(self, flag), bool):
                raise ConfigError(f"{flag} must be True or False, got {getattr(self, flag)!r}")
        size = self.max_message_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 1024:
            raise ConfigError(f"max_message_size must be an int >= 1024 bytes, got {size!r}")
