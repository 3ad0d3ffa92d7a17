"""circle_ws_web.display: the notebook status tables and the live view, without a notebook.

Why: URLs, statuses and script outputs come from users and servers, so the HTML must escape
every one of them; a table must have exactly one row per server with its status class and
colour, and the live view must redraw on every status change and stop following a manager
once it is closed. IPython's ``display`` is replaced by a recorder (the notebook itself is
tests/browser/test_display_jupyterlite.py).
"""

from __future__ import annotations

import html
import re
import sys
from typing import Any

import pytest

import IPython.display
from circle_ws_web import CircleWsClient, ConnectionStatus, Metrics, PlayResult, ws_manager
from circle_ws_web.auth import generate_private_key
from circle_ws_web.display import STATUS_COLOURS, client_html, live_view, manager_html, result_html, table_html
from circle_ws_web.testing import FakeNetwork, FakeServer, VirtualClock

S = ConnectionStatus
KEY = generate_private_key()
EVIL_URL = 'ws://evil.test/"><script>alert(1)</script>&x=<b>'


def rows(markup: str) -> list[str]:
    return re.findall(r"<tr class=\"cws-row[^>]*>.*?</tr>", markup)


def test_every_url_status_and_output_is_escaped() -> None:
    markup = table_html([(EVIL_URL, 'connected" onclick="x', None)])
    assert "<script>" not in markup and "<b>" not in markup
    assert html.escape(EVIL_URL, quote=True) in markup
    assert 'onclick="x' not in markup and "cws-status-unknown" in markup  # not a status: no class from it
    output = result_html(PlayResult('</pre><img src=x onerror="alert(1)">'))
    assert "<img" not in output and output.count("</pre>") == 1
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in output
    assert PlayResult("<i>") ._repr_html_() == result_html(PlayResult("<i>"))


def test_one_row_per_server_with_its_status_class_and_colour() -> None:
    manager = ws_manager().add_server_url("ws://a.test").add_server_url(EVIL_URL).add_server_url("ws://c.test").build()
    markup = manager._repr_html_()
    found = rows(markup)
    assert len(found) == 3
    for row, url in zip(found, manager.urls, strict=True):
        assert f'data-url="{html.escape(url, quote=True)}"' in row
        assert 'class="cws-row cws-status-disconnected"' in row
        assert f"background:{STATUS_COLOURS['disconnected']}" in row and 'class="cws-light' in row
    assert "3 servers, 0 connected" in markup
    assert "<script>" not in markup


@pytest.mark.parametrize("status", list(S))
def test_each_status_has_its_own_class_and_colour(status: ConnectionStatus) -> None:
    (row,) = rows(table_html([("ws://a.test", status, Metrics())]))
    assert f"cws-status-{status.value}" in row and STATUS_COLOURS[status.value] in row
    assert f'<td class="cws-status"' in row and f">{status.value}</td>" in row
    assert len(set(STATUS_COLOURS.values())) == len(S)  # every status looks different


def test_round_trip_and_counters_are_shown() -> None:
    metrics = Metrics(calls=12, errors=3, reconnects=2, last_rtt=0.0015, avg_rtt=0.0423, rtt_samples=9)
    (row,) = rows(table_html([("ws://a.test", S.CONNECTED, metrics)]))
    assert re.search(r'class="cws-rtt"[^>]*>42\.3 ms / 1\.50 ms<', row)
    assert re.search(r'class="cws-calls"[^>]*>12<', row)
    assert re.search(r'class="cws-errors"[^>]*>3<', row)
    assert re.search(r'class="cws-reconnects"[^>]*>2<', row)
    (fresh,) = rows(table_html([("ws://a.test", S.DISCONNECTED, Metrics())]))
    assert re.search(r'class="cws-rtt"[^>]*>– / –<', fresh)  # no round trip measured yet


async def test_a_connected_client_and_manager_render_their_live_state() -> None:
    clock = VirtualClock()
    net = FakeNetwork({"ws://a.test": FakeServer(require_auth=True, clock=clock), "ws://b.test": FakeServer(clock=clock)})
    manager = ws_manager().private_key(KEY).add_server_url("ws://a.test").add_server_url("ws://b.test").transport_factory(net).clock(clock).build()
    await clock.run_until_complete(manager.connect())
    await clock.run_until_complete(manager.execute_script("ws://a.test", "1 + 1"))
    markup = manager._repr_html_()
    assert [("cws-status-connected" in r) for r in rows(markup)] == [True, True]
    assert "2 servers, 2 connected" in markup
    client = manager.get_client("ws://a.test")
    assert client._repr_html_() == client_html(client) and len(rows(client_html(client))) == 1
    assert re.search(r'class="cws-calls"[^>]*>3<', client_html(client))  # fetch_nonce, authenticate, play
    assert KEY not in markup
    await manager.disconnect_all()
    assert all("cws-status-closed" in r for r in rows(manager._repr_html_()))


class FakeHandle:
    def __init__(self, first: Any) -> None:
        self.shown = [first.data]

    def update(self, obj: Any) -> None:
        self.shown.append(obj.data)


@pytest.fixture
def recorded_display(monkeypatch: pytest.MonkeyPatch) -> list[FakeHandle]:
    handles: list[FakeHandle] = []

    def display(obj: Any, display_id: bool = False) -> FakeHandle:
        assert display_id is True  # a handle that can be updated in place
        handles.append(FakeHandle(obj))
        return handles[-1]

    monkeypatch.setattr(IPython.display, "display", display)
    return handles


def status_of(markup: str, url: str) -> str:
    (row,) = [r for r in rows(markup) if f'data-url="{url}"' in r]
    found = re.search(r'data-status="([^"]+)"', row)
    assert found is not None
    return found.group(1)


async def test_the_live_view_redraws_on_every_status_change_and_stops_when_closed(
    recorded_display: list[FakeHandle],
) -> None:
    clock = VirtualClock()
    server = FakeServer(require_auth=True, clock=clock)
    net = FakeNetwork({"ws://a.test": server, "ws://b.test": FakeServer(clock=clock)})
    manager = (
        ws_manager().private_key(KEY).add_server_url("ws://a.test").add_server_url("ws://b.test")
        .reconnect(initial_delay=1, jitter=False).transport_factory(net).clock(clock).build()
    )
    await clock.run_until_complete(manager.connect())
    handle = manager.display()
    assert recorded_display == [handle] and len(handle.shown) == 1
    assert status_of(handle.shown[0], "ws://a.test") == "connected"

    server.faults.drop()
    client = manager.get_client("ws://a.test")
    await clock.run_until(lambda: client.status is S.RECONNECTING)
    await clock.run_until(lambda: client.status is S.CONNECTED)
    seen = [status_of(markup, "ws://a.test") for markup in handle.shown[1:]]
    assert seen == ["reconnecting", "connecting", "authenticating", "connected"]
    assert all(status_of(markup, "ws://b.test") == "connected" for markup in handle.shown)
    assert re.search(r'class="cws-reconnects"[^>]*>1<', handle.shown[-1])

    listeners = [len(manager.get_client(u)._engine.status_listeners) for u in manager.urls]
    await manager.disconnect_all()
    assert status_of(handle.shown[-1], "ws://a.test") == "closed" and status_of(handle.shown[-1], "ws://b.test") == "closed"
    assert listeners == [1, 1]
    assert [len(manager.get_client(u)._engine.status_listeners) for u in manager.urls] == [0, 0]  # unsubscribed


class ListeningManager:
    """Just what the live view uses. Its listeners live elsewhere, as a connected client's do
    (its socket's callbacks keep them), so only the view could keep the manager alive."""

    def __init__(self, listeners: list[Any]) -> None:
        self.listeners = listeners

    def connection_statuses(self) -> dict[str, ConnectionStatus]:
        return {"ws://a.test": S.CONNECTED}

    def metrics(self) -> dict[str, Metrics]:
        return {"ws://a.test": Metrics()}

    def on_status_change(self, callback: Any) -> Any:
        listeners = self.listeners
        listeners.append(callback)
        return lambda: listeners.remove(callback)


def test_the_live_view_does_not_keep_a_manager_alive(recorded_display: list[FakeHandle]) -> None:
    import gc
    import weakref

    listeners: list[Any] = []
    manager = ListeningManager(listeners)
    handle = live_view(manager)
    (redraw,) = listeners
    redraw("ws://a.test", S.CONNECTED)
    assert len(handle.shown) == 2  # it follows the manager...
    ref = weakref.ref(manager)
    del manager
    gc.collect()
    assert ref() is None  # ...without holding it: its listener (kept by the clients) refers to it weakly
    redraw("ws://a.test", S.RECONNECTING)  # a late change after the manager went: ignored
    assert len(handle.shown) == 2


def test_without_ipython_the_html_still_works_and_display_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "IPython.display", None)  # what `import` sees without IPython
    monkeypatch.setitem(sys.modules, "IPython", None)
    manager = ws_manager().add_server_url("ws://a.test").build()
    assert len(rows(manager._repr_html_())) == 1
    with pytest.raises(ImportError, match="needs IPython"):
        manager.display()
    with pytest.raises(ImportError, match="needs IPython"):
        live_view(manager)


def test_a_client_built_alone_renders_too() -> None:
    client = CircleWsClient("ws://a.test")
    (row,) = rows(client._repr_html_())
    assert "cws-status-disconnected" in row and 'data-url="ws://a.test"' in row
    assert manager_html(ws_manager().add_server_url("ws://a.test").build()).count("<tr class=\"cws-row") == 1
