"""The notebook display (circle_ws_web.display) in a real JupyterLite notebook, in Chromium.

Why: `_repr_html_` and `manager.display()` are for notebooks, and the one that matters most
runs the kernel in a Web Worker (JupyterLite): the table must render there with a status
light per server, and the live view must redraw *in place* while no cell runs, when a server
goes away and comes back. A small notebook is built into an offline site (tools/jupyterlite.py,
two real servers); a MutationObserver in the page records every status the live table showed
for the restarted server, so a short-lived status is not missed between two polls.

CIRCLE_WS_DOCS_IMG=1 also writes the screenshot used by the documentation
(docs/img/notebook-display.png).
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from support.servers import TEST_KEY
from test_jupyterlite import (  # the generic notebook-driving helpers
    CELL_TIMEOUT_MS,
    KERNEL_BOOT_TIMEOUT_MS,
    PY_ERROR_MARKERS,
    SOCKET_REFUSED,
    cell,
    load_tool,
    output_text,
    wait_cell_done,
)

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
DOCS_IMG = ROOT / "docs" / "img" / "notebook-display.png"
NOTEBOOK_NAME = "circle_ws_display.ipynb"


def code(source: str, **metadata: Any) -> dict[str, Any]:
    return {"cell_type": "code", "execution_count": None, "metadata": metadata, "outputs": [], "source": source}


def notebook(auth: str, open_: str) -> tuple[dict[str, Any], dict[str, int]]:
    """The notebook and {name: cell index} of its code cells."""
    cells = [
        {"cell_type": "markdown", "metadata": {}, "source": "# Status at a glance\n\nThe manager as a table, and a live view."},
        code(f"SERVERS = [\n    {json.dumps(auth)},\n    {json.dumps(open_)},\n]\nPRIVATE_KEY = \"{TEST_KEY}\"", tags=["parameters"]),
        code("%pip install circle-ws-web"),
        code(
            "from circle_ws_web import ws_manager\n\n"
            "manager = (ws_manager().private_key(PRIVATE_KEY)\n"
            "    .add_server_url(SERVERS[0]).add_server_url(SERVERS[1])\n"
            "    .reconnect(initial_delay=0.2, max_delay=1)\n"
            "    .build())\n"
            "await manager.connect()\n"
            "(await manager.execute_script(SERVERS[0], \"40 + 2\")).output"
        ),
        code("manager"),
        code("view = manager.display()"),
        code(
            "try:\n    import circle_ws_web.sync\nexcept ImportError as exc:\n"
            "    print('sync:', exc)"
        ),
    ]
    nb = {
        "cells": cells,
        "metadata": {
            "kernelspec": {"display_name": "Python (Pyodide)", "language": "python", "name": "python"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    index = {"settings": 1, "pip": 2, "connect": 3, "table": 4, "live": 5, "sync": 6}
    return nb, index


@pytest.fixture(scope="module")
def display_site(circle_wheel: Path, server_pool: Any, tmp_path_factory: pytest.TempPathFactory, serve_folder: Any) -> tuple[str, dict[str, int]]:
    tool = load_tool("jupyterlite")
    nb, index = notebook(server_pool.url("auth"), server_pool.url("open"))
    src = tmp_path_factory.mktemp("display-notebook") / NOTEBOOK_NAME
    src.write_text(json.dumps(nb, indent=1))
    try:
        site = tool.build_site(tmp_path_factory.mktemp("jupyterlite-display") / "site", circle_wheel, notebook=src)
    except tool.WebrootError as exc:
        pytest.fail(f"building the JupyterLite site failed: {exc}", pytrace=False)
    return serve_folder(site), index


def run_all(page: Page, first_code: int) -> None:
    """Run > Run All Cells, from the menu, as a user does (again if the UI was not ready)."""
    prompt = f'.jp-Notebook .jp-Cell[data-windowed-list-index="{first_code}"] .jp-InputPrompt'
    for _ in range(3):
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
        try:
            page.wait_for_function(
                f"() => /\\[[*\\d]+\\]/.test(document.querySelector('{prompt}')?.textContent ?? '')", timeout=5_000
            )
            return
        except PlaywrightTimeoutError:
            page.keyboard.press("Escape")
    raise AssertionError("Run > Run All Cells did not start")


# Records, on every DOM change of the live cell, the status its table shows for one server.
_OBSERVE_JS = """([index, url]) => {
    const root = document.querySelector(`.jp-Notebook .jp-Cell[data-windowed-list-index="${index}"]`);
    window.__cwsSeen = [];
    window.__cwsOutputs = [];
    const look = () => {
        const row = [...root.querySelectorAll('tr.cws-row')].find((r) => r.dataset.url === url);
        const text = row ? row.querySelector('td.cws-status').innerText.trim() : null;
        const seen = window.__cwsSeen;
        if (text && seen[seen.length - 1] !== text) seen.push(text);
        window.__cwsOutputs.push(root.querySelectorAll('.jp-OutputArea-output').length);
    };
    look();
    new MutationObserver(look).observe(root, {childList: true, subtree: true, characterData: true, attributes: true});
}"""


@pytest.mark.timeout(500)
@pytest.mark.allow_console_errors(SOCKET_REFUSED)
def test_the_manager_renders_a_table_and_the_live_view_follows_a_restart(
    watched_page: Any, display_site: tuple[str, dict[str, int]], servers: Any, tmp_path: Path
) -> None:
    base, index = display_site
    auth, open_ = servers.url("auth"), servers.url("open")
    page, events = watched_page("jupyterlite display", viewport={"width": 1100, "height": 760})
    page.goto(f"{base}/notebooks/index.html?path={NOTEBOOK_NAME}")
    cell(page, index["sync"]).wait_for(state="attached", timeout=60_000)
    run_all(page, index["settings"])
    wait_cell_done(page, index["settings"], KERNEL_BOOT_TIMEOUT_MS)
    for name in ("pip", "connect", "table", "live", "sync"):
        wait_cell_done(page, index[name], KERNEL_BOOT_TIMEOUT_MS if name == "pip" else CELL_TIMEOUT_MS)
    for name in index:
        text = output_text(page, index[name])
        assert not [m for m in PY_ERROR_MARKERS if m in text], f"cell {name}:\n{text}"
    assert "42" in output_text(page, index["connect"])

    # The last expression `manager` renders as the table: a row and a light per server.
    table = cell(page, index["table"]).locator("table.cws-table")
    assert table.count() == 1
    rows = table.locator("tr.cws-row")
    assert rows.count() == 2
    assert [rows.nth(i).get_attribute("data-url") for i in range(2)] == [auth, open_]
    for i in range(2):
        assert rows.nth(i).locator(".cws-light.cws-status-connected").count() == 1
        assert rows.nth(i).locator("td.cws-status").inner_text().strip() == "connected"
    colour = rows.nth(0).locator(".cws-light").evaluate("(e) => getComputedStyle(e).backgroundColor")
    assert colour == "rgb(22, 163, 74)"  # the green of "connected"
    assert "2 servers, 2 connected" in table.inner_text()

    # The sync API refuses to load in the browser, and says why.
    sync_out = output_text(page, index["sync"])
    assert "sync: circle_ws_web.sync is not available in the browser" in sync_out and "nothing may block" in sync_out

    # The live view: kill and restart the auth server while no cell runs.
    live = cell(page, index["live"])
    assert live.locator("tr.cws-row").count() == 2
    page.evaluate(_OBSERVE_JS, [index["live"], auth])
    servers.servers["auth"].restart()
    t0 = time.perf_counter()
    page.wait_for_function(
        """() => { const s = window.__cwsSeen; const r = s.indexOf('reconnecting');
                   return r >= 0 && s.slice(r).includes('connected'); }""",
        timeout=60_000,
    )
    seen = page.evaluate("() => window.__cwsSeen")
    print(f"\nlive view of {auth} after the restart ({time.perf_counter() - t0:.1f} s): {seen}")
    assert seen[0] == "connected" and seen[-1] == "connected" and "reconnecting" in seen
    assert set(seen) <= {"connected", "reconnecting", "connecting", "authenticating"}
    # Redrawn in place: one output, in the same cell, the whole time; the other server untouched.
    assert set(page.evaluate("() => window.__cwsOutputs")) == {1}
    row = live.locator(f'tr.cws-row[data-url="{auth}"]')
    assert row.locator("td.cws-reconnects").inner_text().strip() == "1"
    assert row.locator(".cws-light.cws-status-connected").count() == 1
    other = live.locator(f'tr.cws-row[data-url="{open_}"]')
    assert other.locator("td.cws-status").inner_text().strip() == "connected"
    assert other.locator("td.cws-reconnects").inner_text().strip() == "0"

    live.scroll_into_view_if_needed()
    shot = tmp_path / "notebook-display.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    if os.environ.get("CIRCLE_WS_DOCS_IMG"):
        DOCS_IMG.parent.mkdir(parents=True, exist_ok=True)
        DOCS_IMG.write_bytes(shot.read_bytes())
    assert not events.foreign_requests()
