"""The Python half of the demo page, run by Pyodide in the browser.

app.js owns the DOM; this module owns the circle-ws-web objects. app.js calls the methods of
:class:`DemoApp` (the ``async`` ones return awaitables that JS can ``await``); every method
returns a JSON string and never raises, so a bad key, a bad URL, a script error or a server
that is down always reaches the page as a readable message instead of an exception.

The other way round, DemoApp tells the page about status changes and library log lines by
calling two plain JS functions on the ``ui`` object it was given (strings only: no proxies).
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from circle_ws_web import (
    CircleWsClientError,
    CircuitOpenError,
    ClientClosedError,
    ConfigError,
    ConnectionLostError,
    ConnectionStatus,
    JsonRpcError,
    NotConnectedError,
    RequestTimeoutError,
    WsManager,
    __version__,
    ws_manager,
)
from circle_ws_web.auth import generate_private_key, public_key_hex
from circle_ws_web.config import validate_url

#: JSON-RPC codes the reference server uses (SPEC section 2).
AUTH_REQUIRED = -32001
AUTH_FAILED = -32002
SCRIPT_ERROR = -32010
#: WebSocket close code "message too big": the reference server's limit on one frame is 1 MiB.
CLOSE_TOO_BIG = re.compile(r"\bcode 1009\b")
#: "connection to ws://… lost while …": the server a lost call went to.
LOST_URL = re.compile(r"connection to (wss?://\S+) lost")


def _json(**fields: Any) -> str:
    return json.dumps(fields)


def normalize_url(url: str) -> str:
    """One spelling per server: scheme and host in lower case, no bare trailing "/"
    (``WS://127.0.0.1:8701/`` is ``ws://127.0.0.1:8701``). Path and query stay as given."""
    parts = urlsplit(url)
    netloc = parts.netloc
    host = parts.hostname or ""
    if host:  # lower-case the host, keep any user info and the port as written
        user, at, hostport = netloc.rpartition("@")
        hostport = hostport.lower()
        netloc = f"{user}{at}{hostport}"
    path = "" if parts.path == "/" and not parts.query else parts.path
    return urlunsplit((parts.scheme.lower(), netloc, path, parts.query, ""))


def _failure(exc: BaseException, t0: float, **extra: Any) -> str:
    """A failed call as the page shows it; ``auth_required``: the server wants a key."""
    return _json(ok=False, error=describe(exc), kind=type(exc).__name__,
                 auth_required=isinstance(exc, JsonRpcError) and exc.code == AUTH_REQUIRED,
                 ms=round((time.perf_counter() - t0) * 1000, 1), **extra)


def describe(exc: BaseException) -> str:
    """One readable sentence for an error a person can act on."""
    if isinstance(exc, JsonRpcError):
        if exc.code == SCRIPT_ERROR:
            return f"script error: {exc.message}"
        if exc.code == AUTH_REQUIRED:
            return ("authentication required: this server runs scripts only for an authenticated "
                    "key (set a private key, then Disconnect and Connect)")
        if exc.code == AUTH_FAILED:
            return f"authentication failed: {exc.message}"
        return f"server error {exc.code}: {exc.message}"
    if isinstance(exc, CircuitOpenError):
        return (f"{exc.url} is not ready: it failed repeatedly, so its circuit breaker refuses calls "
                "for now (nothing was sent) - wait for its light to turn green")
    if isinstance(exc, NotConnectedError):
        return f"{exc} - wait for its light to turn green, or press Connect"
    if isinstance(exc, ConnectionLostError):
        if CLOSE_TOO_BIG.search(str(exc)):
            return ("the script is larger than the server accepts in one message (1 MiB): it "
                    "closed the connection (code 1009) without running it; the client reconnects")
        return f"{exc}"
    if isinstance(exc, RequestTimeoutError):
        return f"timed out: {exc}"
    if isinstance(exc, ClientClosedError):
        return "disconnected while the script was running"
    if isinstance(exc, CircleWsClientError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


class _PageLogHandler(logging.Handler):
    """Library log lines (reconnects, refused attempts...) go to the page's output log."""

    def __init__(self, ui: Any) -> None:
        super().__init__(logging.INFO)
        self.ui = ui

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.ui.log("lib", record.levelname.lower(), record.getMessage())
        except Exception:  # noqa: BLE001 - logging must never break the client
            pass


class DemoApp:
    """One WsManager at a time, built from what the page says on Connect."""

    def __init__(self, ui: Any) -> None:
        self.ui = ui
        self.manager: WsManager | None = None
        self._unsubscribe: Any = None
        self._handler = _PageLogHandler(ui)
        lib = logging.getLogger("circle_ws_web")
        lib.setLevel(logging.INFO)
        lib.addHandler(self._handler)
        lib.propagate = False  # the page shows them; no duplicate on stderr

    # -- small synchronous helpers -------------------------------------------------------

    def version(self) -> str:
        import sys

        return _json(circle_ws_web=__version__, python=sys.version.split()[0])

    def generate_key(self) -> str:
        key = generate_private_key()
        return _json(ok=True, key=key, public_key=public_key_hex(key))

    def inspect_key(self, key: str) -> str:
        """The public key of ``key``, or why it is not a private key (never echoing it)."""
        if not key.strip():
            return _json(ok=True, empty=True, public_key=None)
        try:
            return _json(ok=True, empty=False, public_key=public_key_hex(key.strip()))
        except ConfigError as exc:
            return _json(ok=False, error=str(exc))

    def check_url(self, url: str, existing_json: str) -> str:
        """The normalised URL if the library would accept it, else why not."""
        try:
            clean = normalize_url(validate_url(url))
        except ConfigError as exc:
            return _json(ok=False, error=str(exc))
        for other in json.loads(existing_json):
            try:
                same = normalize_url(other) == clean
            except ValueError:
                same = other == clean
            if same:
                also = "" if other == clean else f" (as {other})"
                return _json(ok=False, error=f"{clean} is already in the list{also}")
        return _json(ok=True, url=clean)

    def statuses(self) -> str:
        if self.manager is None:
            return _json()
        return json.dumps({url: status.value for url, status in self.manager.connection_statuses().items()})

    def paused(self) -> str:
        """Why each client makes no attempt now: ``"offline"`` (the browser says the network is
        gone), ``"page hidden"``, or null. It changes without a status change (a connected
        client goes offline too), so the page asks again on ``online``/``offline``."""
        if self.manager is None:
            return _json()
        return json.dumps({url: self.manager.get_client(url).paused for url in self.manager.urls})

    def metrics(self) -> str:
        if self.manager is None:
            return "{}"
        out = {}
        for url, m in self.manager.metrics().items():
            out[url] = {
                "calls": m.calls, "errors": m.errors, "timeouts": m.timeouts,
                "reconnects": m.reconnects, "bad_frames": m.bad_frames,
                "last_rtt_ms": None if m.last_rtt is None else round(m.last_rtt * 1000, 2),
                "avg_rtt_ms": None if m.avg_rtt is None else round(m.avg_rtt * 1000, 2),
            }
        return json.dumps(out)

    # -- connection ----------------------------------------------------------------------

    def _on_status(self, url: str, status: ConnectionStatus) -> None:
        manager = self.manager
        paused = None if manager is None else manager.get_client(url).paused
        self.ui.status(url, status.value, paused)

    async def connect(self, urls_json: str, key: str) -> str:
        """Build a manager from the page's key and URLs and connect all servers at once.

        ``started`` says whether a manager now exists (then Disconnect is needed before the
        next Connect, even if no server came up: those keep being retried in the background).
        """
        if self.manager is not None:
            return _json(ok=False, started=True, error="already connected: press Disconnect first")
        urls = json.loads(urls_json)
        if not urls:
            return _json(ok=False, started=False, error="no server URL: add one first")
        try:
            builder = ws_manager()
            if key.strip():
                builder.private_key(key.strip())
            for priority, url in enumerate(urls):  # the first listed is preferred, then the next
                builder.add_server_url(url, priority=priority)
            # A breaker per server, quick to open and to probe again in a demo.
            builder.circuit_breaker(failure_threshold=3, reset_timeout=10.0)
            # A demo should recover quickly when a server comes back (backoff capped at 5 s),
            # and show its keep-alive at work (a ping after 10 s of silence).
            builder.reconnect(initial_delay=0.25, max_delay=5.0)
            builder.keepalive(interval=10.0, timeout=5.0)
            manager = builder.build()
        except ConfigError as exc:
            return _json(ok=False, started=False, error=str(exc))
        self.manager = manager
        self._unsubscribe = manager.on_status_change(self._on_status)
        n = len(urls)
        self.ui.log("app", "info", (f"Connecting to {n} servers at once" if n > 1 else "Connecting")
                    + ("" if key.strip() else " (no private key: no authentication)") + "…")
        t0 = time.perf_counter()
        try:
            report = await manager.connect()
        except NotConnectedError as exc:
            return _json(ok=False, started=True, error=str(exc), results={u: str(exc) for u in urls},
                         ms=round((time.perf_counter() - t0) * 1000, 1))
        except Exception as exc:  # noqa: BLE001 - report, keep the page alive
            return _json(ok=False, started=True, error=describe(exc))
        return _json(
            ok=all(err is None for err in report.values()),
            started=True,
            results={u: (None if err is None else describe(err)) for u, err in report.items()},
            ms=round((time.perf_counter() - t0) * 1000, 1),
        )

    async def disconnect(self) -> str:
        manager, self.manager = self.manager, None
        if manager is None:
            return _json(ok=True, closed=0)
        try:
            await manager.disconnect_all()
        finally:
            if self._unsubscribe is not None:
                self._unsubscribe()
                self._unsubscribe = None
        return _json(ok=True, closed=len(manager.urls))

    async def drop(self, url: str) -> str:
        """Ask the server to cut this connection (``test.drop``, servers run with
        --test-controls): the client notices, reconnects and authenticates again."""
        if self.manager is None:
            return _json(ok=False, error="not connected: press Connect first")
        try:
            await self.manager.call(url, "test.drop", {}, timeout=3.0)
        except ConnectionLostError:
            return _json(ok=True)  # what test.drop does: no answer, the socket just goes
        except JsonRpcError as exc:
            if exc.code == -32601:
                return _json(ok=False, error="this server has no test controls (start it with --test-controls)")
            return _json(ok=False, error=describe(exc))
        except Exception as exc:  # noqa: BLE001
            return _json(ok=False, error=describe(exc))
        return _json(ok=True)

    # -- scripts -------------------------------------------------------------------------

    async def run(self, url: str, script: str) -> str:
        if self.manager is None:
            return _json(ok=False, error="not connected: press Connect first")
        t0 = time.perf_counter()
        try:
            result = await self.manager.execute_script(url, script)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a message
            return _failure(exc, t0)
        return _json(ok=True, output=result.output, ms=round((time.perf_counter() - t0) * 1000, 1))

    async def run_all(self, script: str) -> str:
        if self.manager is None:
            return _json(ok=False, error="not connected: press Connect first")
        t0 = time.perf_counter()
        try:
            outcomes = await self.manager.execute_script_all(script)
        except Exception as exc:  # noqa: BLE001
            return _json(ok=False, error=describe(exc))
        ms = round((time.perf_counter() - t0) * 1000, 1)
        results = {}
        for url, outcome in outcomes.items():
            if isinstance(outcome, CircleWsClientError):
                results[url] = json.loads(_failure(outcome, t0))
                del results[url]["ms"]
            else:
                results[url] = {"ok": True, "output": outcome.output}
        return _json(ok=True, results=results, ms=ms)

    # -- the fleet -----------------------------------------------------------------------

    def health(self) -> str:
        """Per server: priority, breaker state and what the manager measured (WsManager.health())."""
        if self.manager is None:
            return "{}"
        ms = lambda v: None if v is None else round(v * 1000, 2)  # noqa: E731
        return json.dumps({
            url: {"priority": h.priority, "breaker": h.breaker, "failures": h.consecutive_failures,
                  "retry_in": round(h.retry_in, 1), "in_flight": h.in_flight,
                  "p50_ms": ms(h.rtt_p50), "p95_ms": ms(h.rtt_p95), "last_error": h.last_error}
            for url, h in self.manager.health().items()
        })

    async def run_any(self, script: str) -> str:
        """``execute_script_any``: the best server runs it; ``url`` says which."""
        if self.manager is None:
            return _json(ok=False, error="not connected: press Connect first")
        manager = self.manager
        before = self._failed_calls()
        t0 = time.perf_counter()
        try:
            result = await manager.execute_script_any(script)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a message
            return _failure(exc, t0, url=self._who_failed(exc, before))
        preferred = self.manager.urls[0] if self.manager.urls else None
        return _json(ok=True, output=result.output, url=result.url, failover=result.url != preferred,
                     ms=round((time.perf_counter() - t0) * 1000, 1))

    def _failed_calls(self) -> dict[str, int]:
        if self.manager is None:
            return {}
        return {url: m.errors + m.timeouts for url, m in self.manager.metrics().items()}

    def _who_failed(self, exc: BaseException, before: dict[str, int]) -> str | None:
        """The server a failed "Run on any" went to (the error itself does not say): the one
        whose failed calls went up meanwhile, or the one a lost connection names. None when no
        server took the call (all down, breakers open)."""
        if isinstance(exc, NotConnectedError):
            return None
        lost = LOST_URL.search(str(exc)) if isinstance(exc, ConnectionLostError) else None
        if lost is not None and self.manager is not None and lost.group(1) in self.manager.urls:
            return lost.group(1)
        after = self._failed_calls()
        grew = [url for url, n in after.items() if n > before.get(url, 0)]
        return grew[0] if len(grew) == 1 else None

    async def add_server(self, url: str) -> str:
        """Add a server to the running manager (``WsManager.add_server``): it connects in the
        background, with the next priority number."""
        if self.manager is None:
            return _json(ok=False, error="not connected: press Connect first")
        try:
            await self.manager.add_server(url, priority=len(self.manager.urls))
        except ConfigError as exc:
            return _json(ok=False, error=str(exc))
        return _json(ok=True, url=url)


def create(ui: Any) -> DemoApp:
    return DemoApp(ui)
