"""Rich display in notebooks: status tables for managers and clients, and a live view.

Why: in Jupyter (JupyterLite included) the last expression of a cell is shown with its
``_repr_html_``; a manager then shows as a table with a status light per server, its round
trip and counters, instead of ``<WsManager 2 servers (...)>``. ``manager.display()`` shows the
same table and redraws it in place on every status change, so a notebook shows a server going
*reconnecting* and *connected* again while no cell runs.

Everything here is plain string building (no IPython needed) except :func:`live_view`, which
imports IPython when called. Every URL, status and output is HTML-escaped: they come from
users and servers and are not trusted.
"""

from __future__ import annotations

import html
import logging
import weakref
from typing import Any, Callable, Iterable, Protocol

from .metrics import Metrics
from .status import ConnectionStatus

__all__ = ["STATUS_COLOURS", "client_html", "live_view", "manager_html", "result_html", "table_html"]

logger = logging.getLogger("circle_ws_web")

#: The light's colour per status (the demo page's palette).
STATUS_COLOURS: dict[str, str] = {
    "disconnected": "#94a3b8",
    "connecting": "#d97706",
    "authenticating": "#7c3aed",
    "connected": "#16a34a",
    "reconnecting": "#ea580c",
    "closed": "#64748b",
}
_UNKNOWN_COLOUR = "#dc2626"

_TABLE_STYLE = "border-collapse:collapse;font-family:system-ui,sans-serif;font-size:13px"
_CELL_STYLE = "padding:3px 10px;text-align:left;border-bottom:1px solid #e2e8f0"
_NUM_STYLE = "padding:3px 10px;text-align:right;border-bottom:1px solid #e2e8f0;font-variant-numeric:tabular-nums"
_LIGHT_STYLE = "display:inline-block;width:0.8em;height:0.8em;border-radius:50%;margin-right:0.5em;vertical-align:-0.05em"


class _StatusSource(Protocol):
    """What a table is drawn from: the async or the sync manager."""

    def connection_statuses(self) -> dict[str, ConnectionStatus]: ...

    def metrics(self) -> dict[str, Metrics]: ...


class _Subscribable(_StatusSource, Protocol):
    def on_status_change(self, callback: Callable[[str, ConnectionStatus], None]) -> Callable[[], None]: ...


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    ms = seconds * 1000
    return f"{ms:.2f} ms" if ms < 10 else f"{ms:.1f} ms"


def _status_word(status: object) -> str:
    return status.value if isinstance(status, ConnectionStatus) else str(status)


def _row(url: str, status: object, metrics: Metrics | None) -> str:
    word = _status_word(status)
    known = word in STATUS_COLOURS
    css = f"cws-status-{word}" if known else "cws-status-unknown"
    colour = STATUS_COLOURS.get(word, _UNKNOWN_COLOUR)
    if metrics is None:
        rtt = calls = errors = reconnects = "–"
    else:
        rtt = f"{_ms(metrics.avg_rtt)} / {_ms(metrics.last_rtt)}"
        calls, errors, reconnects = str(metrics.calls), str(metrics.errors), str(metrics.reconnects)
    return (
        f'<tr class="cws-row {css}" data-url="{_esc(url)}" data-status="{_esc(word)}">'
        f'<td style="{_CELL_STYLE}"><span class="cws-light {css}" title="{_esc(word)}" '
        f'style="{_LIGHT_STYLE};background:{colour}"></span><code>{_esc(url)}</code></td>'
        f'<td class="cws-status" style="{_CELL_STYLE};color:{colour};font-weight:600">{_esc(word)}</td>'
        f'<td class="cws-rtt" style="{_NUM_STYLE}">{_esc(rtt)}</td>'
        f'<td class="cws-calls" style="{_NUM_STYLE}">{_esc(calls)}</td>'
        f'<td class="cws-errors" style="{_NUM_STYLE}">{_esc(errors)}</td>'
        f'<td class="cws-reconnects" style="{_NUM_STYLE}">{_esc(reconnects)}</td>'
        "</tr>"
    )


def table_html(rows: Iterable[tuple[str, object, Metrics | None]], caption: str | None = None) -> str:
    """A status table: one row per ``(url, status, metrics)``, with a coloured light."""
    head = "".join(
        f'<th style="{_CELL_STYLE if i < 2 else _NUM_STYLE}">{name}</th>'
        for i, name in enumerate(("server", "status", "round trip (avg / last)", "calls", "errors", "reconnects"))
    )
    body = "".join(_row(url, status, metrics) for url, status, metrics in rows)
    cap = "" if caption is None else f'<caption style="text-align:left;padding:2px 10px">{_esc(caption)}</caption>'
    return f'<table class="cws-table" style="{_TABLE_STYLE}">{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def manager_html(manager: _StatusSource) -> str:
    """The table of a manager (``WsManager``, async or sync): one row per server."""
    statuses = manager.connection_statuses()
    metrics = manager.metrics()
    ready = sum(1 for s in statuses.values() if s is ConnectionStatus.CONNECTED)
    caption = f"{len(statuses)} server{'s' if len(statuses) != 1 else ''}, {ready} connected"
    return table_html(((url, status, metrics.get(url)) for url, status in statuses.items()), caption)


def client_html(client: Any) -> str:
    """The one-row table of a client (``CircleWsClient``, async or sync)."""
    return table_html([(client.url, client.status, client.metrics)])


def result_html(result: Any) -> str:
    """A ``PlayResult``: its output, escaped, as preformatted text."""
    return f'<pre class="cws-output" style="margin:0">{_esc(result.output)}</pre>'


def live_view(manager: _Subscribable) -> Any:
    """Show ``manager``'s table in the notebook and redraw it in place on every status change.

    Returns IPython's ``DisplayHandle``. The view stops following the manager once every
    client is closed (``disconnect_all()``, or the sync manager's ``close()``). Like any status
    callback, it keeps the manager alive until then (a view of a collected manager would
    freeze): close the manager to let it go.
    """
    try:
        from IPython.display import HTML, display
    except ImportError as exc:
        raise ImportError(
            "manager.display() needs IPython (run it in a Jupyter notebook); "
            "elsewhere use manager.connection_statuses()"
        ) from exc

    handle = display(HTML(manager_html(manager)), display_id=True)
    if all(s is ConnectionStatus.CLOSED for s in manager.connection_statuses().values()):
        return handle  # nothing will change any more
    ref = weakref.ref(manager)
    unsubscribe: Callable[[], None] | None = None
    done = False

    def redraw(url: str, status: ConnectionStatus) -> None:
        nonlocal done
        current = ref()
        if current is None or done:
            return
        try:
            handle.update(HTML(manager_html(current)))
        except Exception as exc:  # a closed notebook or kernel must not break the client
            logger.debug("live view of %s: update failed: %s", url, exc)
        if all(s is ConnectionStatus.CLOSED for s in current.connection_statuses().values()):
            done = True
            if unsubscribe is not None:
                unsubscribe()

    unsubscribe = manager.on_status_change(redraw)
    return handle
