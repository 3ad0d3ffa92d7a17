"""The PyScript example (examples/pyscript) in headless Chromium, fully offline.

Why: PyScript pages are one of the places users run circle-ws-web. This proves that the page,
served with @pyscript/core 0.7.31 and the local Pyodide by tools/pyscript.py, installs the
wheel, connects to real reference servers, authenticates, runs a script and shows the output,
without a single request leaving the machine and without any page error.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlencode

import pytest
from playwright.sync_api import Page

from support.servers import TEST_KEY

pytestmark = pytest.mark.browser

BROWSER_DIR = Path(__file__).resolve().parent
ROOT = BROWSER_DIR.parent.parent
READY_TIMEOUT_MS = 90_000


def load_tool(name: str) -> ModuleType:
    """Import tools/<name>.py (tools/ is not a package)."""
    path = ROOT / "tools" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_circle_tool_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def pyscript_site(circle_wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The served folder of tools/pyscript.py (PyScript core, example page, Pyodide, wheel)."""
    tool = load_tool("pyscript")
    try:
        return tool.prepare_pyscript_site(tmp_path_factory.mktemp("pyscript-site"), circle_wheel)
    except tool.WebrootError as exc:
        pytest.fail(f"preparing the PyScript site failed: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def pyscript_server(pyscript_site: Path, serve_folder: Any) -> str:
    """Base URL of a static server for the PyScript site (same MIME types as the harness's)."""
    return serve_folder(pyscript_site)


@pytest.fixture
def pyscript_page(watched_page: Any) -> tuple[Page, Any]:
    """A fresh page (own context) watched like the harness pages: any page error, console
    error, failed or non-local request fails the test."""
    return watched_page("pyscript page")


def open_example(page: Page, base_url: str, query: dict[str, Any]) -> float:
    """Open the example page and wait until its script has finished; returns the seconds from
    `goto` to that point."""
    t0 = time.perf_counter()
    page.goto(f"{base_url}/index.html?{urlencode(query, doseq=True)}")
    page.wait_for_function(
        "() => ['ready', 'error'].includes(document.body.dataset.state)", timeout=READY_TIMEOUT_MS
    )
    return time.perf_counter() - t0


def test_pyscript_page_authenticates_and_shows_the_output(
    pyscript_page: tuple[Page, Any], pyscript_server: str, servers: Any
) -> None:
    page, events = pyscript_page
    auth_url, open_url = servers.url("auth"), servers.url("open")
    elapsed = open_example(
        page, pyscript_server, {"server": [auth_url, open_url], "key": TEST_KEY, "script": "40 + 2"}
    )
    state = page.evaluate("() => document.body.dataset.state")
    assert state == "ready", f"{page.text_content('#message')}\n{events.report()}"
    # The auth server answers `play` only after a successful authentication: 42 proves it.
    assert page.text_content("#output-0") == "42"
    assert page.text_content("#output-1") == "42"
    assert page.text_content("#status-0") == "connected"
    assert page.text_content("#status-1") == "connected"
    assert page.get_attribute("#servers tr:nth-child(1)", "data-url") == auth_url
    assert page.text_content("#message") == "ran '40 + 2' on 2 of 2 servers"
    first_result_ms = int(page.evaluate("() => document.body.dataset.firstResultMs"))
    print(
        f"\nPyScript: page load to first result {first_result_ms} ms (in-page clock),"
        f" {elapsed * 1000:.0f} ms from Playwright's goto to the page being ready"
    )
    assert first_result_ms < READY_TIMEOUT_MS

    # The page's own Run button: the clients stayed connected after the script finished.
    page.fill("#script", "2 ** 10")
    page.select_option("#target", auth_url)
    page.click("#run")
    page.wait_for_function("() => document.querySelector('#output-0').textContent === '1024'")
    assert page.text_content("#output-1") == "42"
    assert not events.foreign_requests()
    assert sorted(events.websockets) == sorted([auth_url + "/", open_url + "/"])  # one socket each


def test_pyscript_page_reports_bad_settings_in_the_page(
    pyscript_page: tuple[Page, Any], pyscript_server: str
) -> None:
    """A key that is not 64 hex digits is refused by the builder before any connection; the page
    says so (and no error escapes into the page)."""
    page, events = pyscript_page
    open_example(page, pyscript_server, {"server": "ws://127.0.0.1:1", "key": "not-a-key"})
    assert page.evaluate("() => document.body.dataset.state") == "error"
    assert page.text_content("#message").startswith("bad settings: ")
    assert "not-a-key" not in page.text_content("#message")  # keys never appear in messages
    assert events.websockets == []
