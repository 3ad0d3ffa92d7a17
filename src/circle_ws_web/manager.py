"""WsManager: one CircleWsClient per server, connected all at once, calls routed by URL.

The manager does not keep connections alive: each client does that itself. The manager only
starts them together, routes calls to the right one, and reports on all of them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Iterable

from .auth import PrivateKey
from .client import CircleWsClient
from .config import ClientOptions, validate_url
from .errors import CircleWsClientError, ClientClosedError, ConfigError, NotConnectedError
from .metrics import Metrics
from .results import PlayResult
from .status import ConnectionStatus
from .transport import Clock, PageEvents, TransportFactory

__all__ = ["WsManager"]

logger = logging.getLogger("circle_ws_web")


class WsManager:
    """Holds one client per configured server URL. Build it with :func:`ws_manager`."""

    def __init__(
        self,
        urls: Iterable[str],
        private_key: PrivateKey | str | None = None,
        options: ClientOptions | None = None,
        transport_factory: TransportFactory | None = None,
        clock: Clock | None = None,
        page_events: PageEvents | None = None,
    ) -> None:
        """Validate everything here, as the builder does, so a manager built directly fails
        at once with a ``ConfigError`` naming the problem instead of later, mid-connect.

        ``private_key``: a :class:`PrivateKey`, or its hex text (parsed with ``PrivateKey``).
        """
        if isinstance(urls, (str, bytes)) or not isinstance(urls, Iterable):
            raise ConfigError(
                f"urls must be an iterable of URL strings (a list, say), got {type(urls).__name__}"
            )
        checked: list[str] = []
        for raw in urls:
            url = validate_url(raw)
            if url in checked:
                raise ConfigError(f"server URL {url!r} was given twice")
            checked.append(url)
        if not checked:
            raise ConfigError("a WsManager needs at least one server URL")
        if isinstance(private_key, str):
            private_key = PrivateKey(private_key)  # ConfigError naming the problem, never the key
        elif private_key is not None and not isinstance(private_key, PrivateKey):
            # Only the type is named: the value might be the key in another form (bytes, int).
            raise ConfigError(
                f"private_key must be a PrivateKey or a hex str, got {type(private_key).__name__}"
            )
        if options is None:
            options = ClientOptions()
        elif not isinstance(options, ClientOptions):
            raise ConfigError(f"options must be a ClientOptions, got {type(options).__name__}")
        if transport_factory is not None and not callable(transport_factory):
            raise ConfigError(f"transport_factory must be callable, got {type(transport_factory).__name__}")
        if clock is not None and not (callable(getattr(clock, "now", None)) and callable(getattr(clock, "call_later", None))):
            raise ConfigError(f"clock must have now() and call_later(), got {type(clock).__name__}")
        self._clients: dict[str, CircleWsClient] = {
            url: CircleWsClient._from_options(url, private_key, options, transport_factory, clock, page_events)
            for url in checked
        }

    def __repr__(self) -> str:
        statuses = ", ".join(f"{u}: {c.status.value}" for u, c in self._clients.items())
        return f"<WsManager {len(self._clients)} servers ({statuses})>"

    def _repr_html_(self) -> str:  # notebooks: a status table (circle_ws_web.display)
        from .display import manager_html; return manager_html(self)  # noqa: E702

    def display(self) -> Any:
        """In a notebook: the status table, redrawn in place on each status change; returns the handle."""
        from .display import live_view; return live_view(self)  # noqa: E702

    @property
    def urls(self) -> list[str]:
        """Every configured URL, in the order they were added."""
        return list(self._clients)

    async def connect(self) -> dict[str, CircleWsClientError | None]:
        """Connect to every server at once (never one after another).

        Returns ``{url: None or the error of its first attempt}``. A server that was down keeps
        being retried in the background by its client and joins when it comes up. Raises
        :class:`NotConnectedError` only if no server came up (the retries go on all the same;
        ``disconnect_all()`` stops them).
        """
        clients = list(self._clients.values())
        outcomes = await asyncio.gather(
            *(client.connect(keep_trying=True) for client in clients), return_exceptions=True
        )
        report: dict[str, CircleWsClientError | None] = {}
        for client, outcome in zip(clients, outcomes, strict=True):
            if isinstance(outcome, ClientClosedError):
                report[client.url] = outcome  # disconnected meanwhile: nothing retries
            elif isinstance(outcome, CircleWsClientError):
                logger.info("%s: not connected yet (%s); retrying in the background", client.url, outcome)
                report[client.url] = outcome
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                report[client.url] = None
        if all(error is not None for error in report.values()):
            detail = "; ".join(f"{url}: {error}" for url, error in report.items())
            raise NotConnectedError(f"none of the {len(report)} servers could be reached ({detail})")
        return report

    def get_client(self, url: str) -> CircleWsClient:
        """The client for ``url``; ``ConfigError`` if that URL is not configured."""
        client = self._clients.get(url.strip() if isinstance(url, str) else url)  # type: ignore[arg-type]
        if client is None:
            known = ", ".join(self._clients)
            raise ConfigError(f"{url!r} is not a configured server (configured: {known})")
        return client

    async def execute_script(self, url: str, script: str, *, timeout: float | None = None) -> PlayResult:
        """Run ``script`` on the server at ``url``. Raises at once, without waiting, if that URL
        is not configured (``ConfigError``) or not ready (``NotConnectedError``)."""
        return await self.get_client(url).play(script, timeout=timeout)

    async def execute_script_all(
        self, script: str, *, timeout: float | None = None
    ) -> dict[str, PlayResult | CircleWsClientError]:
        """Run ``script`` on every server at once; each URL maps to its result or its error."""
        urls = list(self._clients)
        outcomes = await asyncio.gather(
            *(self._clients[u].play(script, timeout=timeout) for u in urls), return_exceptions=True
        )
        out: dict[str, PlayResult | CircleWsClientError] = {}
        for url, outcome in zip(urls, outcomes, strict=True):
            if isinstance(outcome, (PlayResult, CircleWsClientError)):
                out[url] = outcome
            else:
                raise outcome  # a bug or a cancellation, not a server's answer
        return out

    async def call(self, url: str, method: str, params: Any = None, *, timeout: float | None = None) -> Any:
        """Any JSON-RPC method on the server at ``url``."""
        return await self.get_client(url).call(method, params, timeout=timeout)

    def connected_urls(self) -> list[str]:
        return [url for url, client in self._clients.items() if client.is_connected]

    def connection_statuses(self) -> dict[str, ConnectionStatus]:
        return {url: client.status for url, client in self._clients.items()}

    def is_connected(self, url: str) -> bool:
        return self.get_client(url).is_connected

    def metrics(self) -> dict[str, Metrics]:
        return {url: client.metrics for url, client in self._clients.items()}

    def on_status_change(self, callback: Callable[[str, ConnectionStatus], None]) -> Callable[[], None]:
        """Call ``callback(url, status)`` whenever any client's status changes; returns an
        unsubscribe function."""
        def for_url(url: str) -> Callable[[ConnectionStatus], None]:
            return lambda status: callback(url, status)

        unsubscribers = [client.on_status_change(for_url(url)) for url, client in self._clients.items()]

        def unsubscribe() -> None:
            for undo in unsubscribers:
                undo()

        return unsubscribe

    async def disconnect(self, url: str) -> None:
        await self.get_client(url).disconnect()

    async def disconnect_all(self) -> None:
        """Close every client, all at once. Idempotent; never raises (``disconnect()`` never does)."""
        await asyncio.gather(*(client.disconnect() for client in self._clients.values()))

    async def __aenter__(self) -> WsManager:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.disconnect_all()
