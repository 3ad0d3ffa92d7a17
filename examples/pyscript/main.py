"""circle-ws-web in a PyScript page: connect, authenticate, run a script, show the output.

Settings come from the page's query string, with the demo's defaults:

    index.html?server=ws://127.0.0.1:8701&server=ws://127.0.0.1:8702&key=<hex>&script=40%2B2

(`server` may be repeated; `key` is the secp256k1 private key as 64 hex digits.) Putting a key
in a URL is only for a demo with a test key: a real page gets it from its user or its backend.

Everything here runs on the browser's event loop (Pyodide's WebLoop): every network step is
awaited, nothing blocks, and the clients keep their connections alive (keep-alive, reconnect,
re-authenticate) in the background after this script has finished.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs

from pyscript import document, when, window

import circle_ws_web
from circle_ws_web import CircleWsClientError, ws_manager

DEFAULT_SERVERS = ["ws://127.0.0.1:8701", "ws://127.0.0.1:8702"]
# SPEC test vector 1: a public test key, never a real one.
DEFAULT_KEY = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
DEFAULT_SCRIPT = "40 + 2"


def settings() -> tuple[list[str], str, str]:
    """(server URLs, private key, first script) from the query string, else the defaults."""
    query = parse_qs(str(window.location.search).lstrip("?"))
    servers = [u.strip() for u in query.get("server", []) if u.strip()] or DEFAULT_SERVERS
    key = (query.get("key") or [DEFAULT_KEY])[0].strip()
    script = (query.get("script") or [DEFAULT_SCRIPT])[0]
    return servers, key, script


def el(element_id: str):
    return document.getElementById(element_id)


def show_message(text: str, state: str) -> None:
    """The line at the top of the page, and `data-state` on <body> (tests wait for it)."""
    el("message").textContent = text
    document.body.dataset.state = state


def build_table(servers: list[str]) -> None:
    """One row per server: URL, connection status, last output."""
    body = el("servers")
    body.replaceChildren()
    select = el("target")
    for i, url in enumerate(servers):
        row = document.createElement("tr")
        row.dataset.url = url
        for cls, text in (("url", url), ("status", "disconnected"), ("output", "")):
            cell = document.createElement("td")
            cell.className = cls
            cell.id = f"{cls}-{i}"
            cell.textContent = text
            row.appendChild(cell)
        body.appendChild(row)
        option = document.createElement("option")
        option.value = url
        option.textContent = url
        select.appendChild(option)


def show_result(servers: list[str], url: str, outcome: object) -> None:
    cell = el(f"output-{servers.index(url)}")
    if isinstance(outcome, CircleWsClientError):
        cell.textContent = f"{type(outcome).__name__}: {outcome}"
        cell.dataset.error = "1"
    else:
        cell.textContent = outcome.output  # type: ignore[attr-defined]
        cell.dataset.error = ""


def show_metrics(manager) -> None:
    el("metrics").textContent = json.dumps(
        {url: m.as_dict() for url, m in manager.metrics().items()}, indent=2
    )


servers, key, first_script = settings()
build_table(servers)
el("script").value = first_script
el("version").textContent = circle_ws_web.__version__

try:
    manager = ws_manager().private_key(key)
    for url in servers:
        manager = manager.add_server_url(url)
    manager = manager.build()
except ValueError as exc:  # ConfigError: a bad URL or key in the query string
    manager = None
    show_message(f"bad settings: {exc}", "error")

if manager is not None:

    def on_status(url: str, status) -> None:
        el(f"status-{servers.index(url)}").textContent = status.value

    manager.on_status_change(on_status)
    show_message("connecting and authenticating…", "connecting")
    try:
        errors = await manager.connect()  # noqa: F704 - PyScript runs this file with top-level await
    except CircleWsClientError as exc:  # no server came up; the clients keep retrying
        errors = {url: exc for url in servers}
    for url, error in errors.items():
        if error is not None:
            show_result(servers, url, error)

    outcomes = await manager.execute_script_all(first_script)  # noqa: F704
    for url, outcome in outcomes.items():
        show_result(servers, url, outcome)
    # Milliseconds since navigation start: how long this page took to its first result.
    document.body.dataset.firstResultMs = str(round(window.performance.now()))
    show_metrics(manager)
    ok = sum(not isinstance(o, CircleWsClientError) for o in outcomes.values())
    show_message(f"ran {first_script!r} on {ok} of {len(servers)} servers", "ready")
    el("run").disabled = False

    @when("click", "#run")
    async def run_clicked(event) -> None:
        """Run the typed script on the chosen server. Every error is shown, none escapes:
        an exception leaving an event handler would be an unhandled error in the page."""
        url = el("target").value
        script = el("script").value
        el("run").disabled = True
        try:
            result = await manager.execute_script(url, script)
        except CircleWsClientError as exc:  # e.g. NotConnectedError while it reconnects
            show_result(servers, url, exc)
        else:
            show_result(servers, url, result)
        finally:
            el("run").disabled = False
            show_metrics(manager)
