"""ws_manager(): a fluent builder that validates everything up front and builds a WsManager."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from .auth import PrivateKey
from .config import ClientOptions, validate_url
from .errors import ConfigError
from .manager import WsManager
from .transport import TransportFactory

__all__ = ["WsManagerBuilder", "ws_manager"]


class WsManagerBuilder:
    """Collects a private key, server URLs and tuning; every method validates at once, so a
    mistake is reported where it was made, before any connection is tried."""

    def __init__(self) -> None:
        self._key: PrivateKey | None = None
        self._urls: list[str] = []
        self._options = ClientOptions()
        self._factory: TransportFactory | None = None

    def __repr__(self) -> str:
        key = "none" if self._key is None else f"{self._key.public_key_hex[:18]}…"
        return f"<WsManagerBuilder urls={self._urls!r} public_key={key}>"

    def private_key(self, key: str) -> WsManagerBuilder:
        """Authenticate with this secp256k1 key (64 hex chars, optional 0x). Without one, no
        authentication is attempted."""
        self._key = PrivateKey(key)
        return self

    def add_server_url(self, url: str) -> WsManagerBuilder:
        url = validate_url(url)
        if url in self._urls:
            raise ConfigError(f"server URL {url!r} was added twice")
        self._urls.append(url)
        return self

    def add_server_urls(self, *urls: str) -> WsManagerBuilder:
        for url in urls:
            self.add_server_url(url)
        return self

    def _tune(self, **changes: Any) -> WsManagerBuilder:
        self._options = replace(self._options, **changes)  # ClientOptions validates
        return self

    def keepalive(self, interval: float = 20.0, timeout: float = 10.0) -> WsManagerBuilder:
        return self._tune(keepalive_interval=interval, keepalive_timeout=timeout)

    def reconnect(
        self,
        initial_delay: float = 0.5,
        max_delay: float = 30.0,
        factor: float = 2.0,
        jitter: bool = True,
        max_attempts: int | None = None,
        min_uptime: float = 5.0,
    ) -> WsManagerBuilder:
        return self._tune(
            reconnect_initial_delay=initial_delay,
            reconnect_max_delay=max_delay,
            reconnect_factor=factor,
            reconnect_jitter=jitter,
            reconnect_max_attempts=max_attempts,
            reconnect_min_uptime=min_uptime,
        )

    def request_timeout(self, seconds: float = 30.0) -> WsManagerBuilder:
        return self._tune(request_timeout=seconds)

    def connect_timeout(self, seconds: float = 10.0) -> WsManagerBuilder:
        return self._tune(connect_timeout=seconds)

    def max_message_size(self, size: int = 16 * 2**20) -> WsManagerBuilder:
        return self._tune(max_message_size=size)

    def transport_factory(self, factory: TransportFactory) -> WsManagerBuilder:
        """Use another transport (advanced; the platform's own is picked by default)."""
        self._factory = factory
        return self

    def build(self) -> WsManager:
        if not self._urls:
            raise ConfigError("no server URL: call add_server_url() at least once before build()")
        return WsManager(self._urls, self._key, self._options, self._factory)


def ws_manager() -> WsManagerBuilder:
    """Start building a :class:`WsManager`."""
    return WsManagerBuilder()
