"""The example notebook in an offline JupyterLite site (tools/jupyterlite.py), in Chromium.

Why: JupyterLite notebooks are one of the places users run circle-ws-web, and there the
client lives in the Pyodide kernel's Web Worker across cell runs. This drives the real notebook
UI the way a user does: Run > Run All Cells (`%pip install circle-ws-web` from the site's own
wheel, connect, authenticate, `execute_script` on two servers, statuses, metrics, the "later"
cell), which must leave a working manager; then it runs the script cell again, kills and
restarts the authenticating server, lets the client reconnect in the background between cells,
runs the "later" cell (it must succeed), closes the connections with the last cell and runs the
"later" cell once more (it connects afresh). No request may leave the machine and no page
error, console error, Python traceback or stderr output may appear in the notebook.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from playwright.sync_api import Locator, Page
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from support.servers import TEST_KEY

pytestmark = pytest.mark.browser

BROWSER_DIR = Path(__file__).resolve().parent
ROOT = BROWSER_DIR.parent.parent
NOTEBOOK = ROOT / "examples" / "jupyterlite" / "circle_ws_web.ipynb"
# Chromium's own message when a reconnection attempt finds the restarted server not up yet.
SOCKET_REFUSED = r"WebSocket connection to 'ws://127\.0\.0\.1:\d+/' failed"
# What a Python error nobody handled looks like in a cell's output.
PY_ERROR_MARKERS = (
    "Traceback (most recent call last)",
    "Task exception was never retrieved",
    "Exception in callback",
    "Unhandled exception in event loop",
    "Task was destroyed but it is pending",
)
KERNEL_BOOT_TIMEOUT_MS = 120_000  # page load + kernel boot + %pip install, on a busy 2-core machine
CELL_TIMEOUT_MS = 60_000


def load_tool(name: str) -> ModuleType:
    """Import tools/<name>.py (tools/ is not a package)."""
    path = ROOT / "tools" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_circle_tool_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def notebook_cells() -> list[dict[str, Any]]:
    cells: list[dict[str, Any]] = json.loads(NOTEBOOK.read_text())["cells"]
    return cells


def code_cell_index(marker: str, *, exact: bool = False) -> int:
    """Index (among all cells, as the notebook UI counts) of the one code cell containing
    `marker` (or, with `exact`, whose whole source is `marker`)."""
    found = [
        i for i, c in enumerate(notebook_cells())
        if c["cell_type"] == "code"
        and ("".join(c["source"]).strip() == marker if exact else marker in "".join(c["source"]))
    ]
    assert len(found) == 1, f"expected one code cell with {marker!r} in {NOTEBOOK.name}, got {found}"
    return found[0]


# --- the site, built once per session -----------------------------------------------------------


@pytest.fixture(scope="session")
def jupyterlite_site(
    circle_wheel: Path, server_pool: Any, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The JupyterLite site of tools/jupyterlite.py, its notebook pointed at the test servers."""
    tool = load_tool("jupyterlite")
    t0 = time.perf_counter()
    try:
        site = tool.build_site(
            tmp_path_factory.mktemp("jupyterlite") / "site",
            circle_wheel,
            servers=[server_pool.url("auth"), server_pool.url("open")],
            key=TEST_KEY,
        )
    except tool.WebrootError as exc:
        pytest.fail(f"building the JupyterLite site failed: {exc}", pytrace=False)
    print(f"\nJupyterLite site built in {time.perf_counter() - t0:.1f} s")
    return site


@pytest.fixture(scope="session")
def jupyterlite_server(jupyterlite_site: Path, serve_folder: Any) -> str:
    """Base URL of a static server for the site (same MIME types as the harness's)."""
    return serve_folder(jupyterlite_site)


@pytest.fixture
def lite_page(watched_page: Any) -> tuple[Page, Any]:
    """A fresh page (own context), watched like the harness pages."""
    return watched_page("jupyterlite notebook", viewport={"width": 1280, "height": 1000})


# --- driving the notebook UI ------------------------------------------------------------------


def cell(page: Page, index: int) -> Locator:
    return page.locator(f'.jp-Notebook .jp-Cell[data-windowed-list-index="{index}"]')


_PROMPT_JS = """(index) => {
    const p = document.querySelector(
        `.jp-Notebook .jp-Cell[data-windowed-list-index="${index}"] .jp-InputPrompt`);
    return p ? p.textContent.trim() : null;
}"""


def prompt_text(page: Page, index: int) -> str | None:
    return page.evaluate(_PROMPT_JS, index)


def run_cell(page: Page, index: int, timeout_ms: int = CELL_TIMEOUT_MS) -> str:
    """Run code cell `index` the way a user does (select it, Shift+Enter); wait until it has
    finished; return the text of its outputs. Fails on a Python error in the output."""
    target = cell(page, index)
    before = prompt_text(page, index)
    for attempt in range(3):
        target.locator(".jp-InputPrompt").click()  # selects the cell in command mode
        page.keyboard.press("Shift+Enter")
        try:  # queued ("[*]:") or already done: the prompt changed
            page.wait_for_function(
                f"([i, before]) => ({_PROMPT_JS})(i) !== before", arg=[index, before], timeout=5_000
            )
            break
        except PlaywrightTimeoutError:  # the key press went nowhere (UI still settling): again
            print(f"cell {index}: Shift+Enter did not queue it (prompt {before!r}), attempt {attempt + 2}")
    else:
        raise AssertionError(f"cell {index} could not be started (prompt stays {before!r})")
    try:
        page.wait_for_function(
            f"([i, before]) => {{ const t = ({_PROMPT_JS})(i); return /^\\[\\d+\\]:?$/.test(t) && t !== before; }}",
            arg=[index, before],
            timeout=timeout_ms,
        )
    except PlaywrightTimeoutError:
        raise AssertionError(
            f"cell {index} did not finish within {timeout_ms / 1000:g} s (prompt {prompt_text(page, index)!r});"
            f" output so far:\n{output_text(page, index)}"
        ) from None
    text = output_text(page, index)
    bad = [m for m in PY_ERROR_MARKERS if m in text]
    errors = target.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')
    assert not bad and errors.count() == 0, f"cell {index} failed:\n{text}"
    return text


def output_text(page: Page, index: int) -> str:
    outputs = cell(page, index).locator(".jp-OutputArea-output")
    return "\n".join(outputs.nth(i).inner_text() for i in range(outputs.count()))


def literal_output(page: Page, index: int) -> Any:
    """The cell's result (a dict of str/int/float/None) parsed back from IPython's repr."""
    return ast.literal_eval(output_text(page, index).strip())


_EXEC_COUNTS_JS = """() => Array.from(document.querySelectorAll('.jp-Notebook .jp-CodeCell')).map(
    (c) => [Number(c.dataset.windowedListIndex), c.querySelector('.jp-InputPrompt')?.textContent.trim() ?? null])"""


def execution_prompts(page: Page) -> dict[int, str | None]:
    """{cell index: input prompt text} of every code cell the notebook has rendered."""
    return {int(i): p for i, p in page.evaluate(_EXEC_COUNTS_JS)}


def run_all_cells(page: Page) -> None:
    """Run > Run All Cells, from the menu bar, as a user does; checked to have queued cells."""
    first = min(i for i, c in enumerate(notebook_cells()) if c["cell_type"] == "code")
    for attempt in range(3):
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
        try:  # the first code cell is queued ("[*]:") or done
            page.wait_for_function(
                f"(i) => {{ const t = ({_PROMPT_JS})(i); return t !== null && /\\[[*\\d]+\\]/.test(t); }}",
                arg=first, timeout=5_000,
            )
            return
        except PlaywrightTimeoutError:  # the menu went nowhere (UI still settling): again
            page.keyboard.press("Escape")
            print(f"Run All Cells did not queue the cells, attempt {attempt + 2}")
    raise AssertionError(f"Run > Run All Cells did not start (prompts {execution_prompts(page)})")


def wait_cell_done(page: Page, index: int, timeout_ms: int) -> int:
    """Wait until code cell `index` shows an execution count; return it."""
    try:  # the predicate returns the prompt it matched: reading it again later races the
        # notebook's windowing, which may have unmounted the cell in between
        done = page.wait_for_function(
            f"(i) => {{ const t = ({_PROMPT_JS})(i) ?? ''; return /^\\[\\d+\\]:?$/.test(t) && t; }}",
            arg=index, timeout=timeout_ms,
        )
    except PlaywrightTimeoutError:
        raise AssertionError(
            f"cell {index} did not run within {timeout_ms / 1000:g} s (prompts {execution_prompts(page)});"
            f" output so far:\n{output_text(page, index)}"
        ) from None
    return int(re.sub(r"\D", "", done.json_value()))


def uncomment_cell(page: Page, index: int) -> str:
    """Uncomment every line of cell `index` as the notebook tells users to (click into it,
    Ctrl+A, Ctrl+/); return the editor's text afterwards."""
    editor = cell(page, index).locator(".cm-content")
    editor.click()
    page.keyboard.press("Control+a")
    page.keyboard.press("Control+Slash")
    page.keyboard.press("Escape")  # back to command mode
    return editor.inner_text()


def assert_no_error_output(page: Page, indexes: list[int]) -> None:
    for index in indexes:
        text = output_text(page, index)
        assert not [m for m in PY_ERROR_MARKERS if m in text], f"cell {index}:\n{text}"
        stderr = cell(page, index).locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')
        assert stderr.count() == 0, f"cell {index} shows stderr output:\n{text}"


# --- the tests ------------------------------------------------------------------------------


def test_run_all_leaves_the_connections_open() -> None:
    # The closing cell is the last one and all comment, so Run All Cells never closes the
    # manager that the cells above (and the user, afterwards) go on using.
    cells = notebook_cells()
    last = max(i for i, c in enumerate(cells) if c["cell_type"] == "code")
    closing = code_cell_index("# await manager.disconnect_all()")
    assert closing == last
    lines = [line.strip() for line in "".join(cells[closing]["source"]).splitlines() if line.strip()]
    assert lines == ["# await manager.disconnect_all()", "# manager.connection_statuses()"]
    for i, c in enumerate(cells):
        if c["cell_type"] == "code" and i != closing:
            code = "\n".join(line for line in "".join(c["source"]).splitlines() if not line.lstrip().startswith("#"))
            if "disconnect_all()" in code:  # only to replace a manager the same cell builds again
                assert "manager = build_manager()" in code, f"cell {i} closes the manager for good"
    assert "Run All" in "".join(cells[closing - 1]["source"])  # the markdown before it says why


@pytest.mark.timeout(500)
@pytest.mark.allow_console_errors(SOCKET_REFUSED)
def test_notebook_run_all_then_survives_a_server_restart_and_a_close(
    lite_page: tuple[Page, Any], jupyterlite_server: str, servers: Any
) -> None:
    page, events = lite_page
    auth_url, open_url = servers.url("auth"), servers.url("open")
    settings = code_cell_index("PRIVATE_KEY = ")
    pip = code_cell_index("%pip install circle-ws-web")
    connect = code_cell_index("errors = await manager.connect()")
    play = code_cell_index('execute_script(url, "40 + 2")')
    statuses = code_cell_index("manager.connection_statuses()", exact=True)
    metrics = code_cell_index("m.as_dict()")
    later = code_cell_index("before the call:")
    closing = code_cell_index("# await manager.disconnect_all()")
    code_cells = [i for i, c in enumerate(notebook_cells()) if c["cell_type"] == "code"]

    t0 = time.perf_counter()
    page.goto(f"{jupyterlite_server}/notebooks/index.html?path=circle_ws_web.ipynb")
    cell(page, closing).wait_for(state="attached", timeout=60_000)
    assert auth_url in cell(page, settings).inner_text()  # the site's notebook names the test servers

    run_all_cells(page)  # queued until the kernel has booted
    wait_cell_done(page, settings, KERNEL_BOOT_TIMEOUT_MS)
    t_kernel = time.perf_counter()
    wait_cell_done(page, pip, KERNEL_BOOT_TIMEOUT_MS)
    t_pip = time.perf_counter()
    wait_cell_done(page, connect, CELL_TIMEOUT_MS)
    t_connect = time.perf_counter()
    wait_cell_done(page, play, CELL_TIMEOUT_MS)
    t_first = time.perf_counter()
    ms = lambda a, b: f"{(b - a) * 1000:.0f} ms"  # noqa: E731
    print(
        f"\nJupyterLite (Run All): page load to first result {ms(t0, t_first)}: notebook shown +"
        f" kernel booted {ms(t0, t_kernel)}, %pip install {ms(t_kernel, t_pip)}, connect +"
        f" authenticate {ms(t_pip, t_connect)}, execute_script on both {ms(t_connect, t_first)}"
    )
    counts = [wait_cell_done(page, i, CELL_TIMEOUT_MS) for i in code_cells]
    assert counts == sorted(counts) and len(set(counts)) == len(counts), counts  # every cell, in order

    connect_out = output_text(page, connect)
    assert f"{auth_url} -> connected and authenticated" in connect_out, connect_out
    assert f"{open_url} -> connected and authenticated" in connect_out, connect_out
    # The auth server runs `play` only after a successful authentication: 42 proves it.
    play_out = output_text(page, play)
    assert f"{auth_url} -> 42" in play_out and f"{open_url} -> 42" in play_out, play_out
    # Statuses shown as IPython shows the dict: the words, exactly as a dict of str would be.
    status_out = output_text(page, statuses)
    assert "ConnectionStatus" not in status_out, status_out
    assert literal_output(page, statuses) == {auth_url: "connected", open_url: "connected"}
    later_out = output_text(page, later)
    assert "before the call: connected | reconnects so far: 0" in later_out, later_out
    assert f"{auth_url} -> 42" in later_out, later_out
    assert output_text(page, closing).strip() == ""  # ran, and closed nothing
    assert_no_error_output(page, code_cells)

    # Run All left a working manager: the script cell runs again.
    again_out = run_cell(page, play)
    assert f"{auth_url} -> 42" in again_out and f"{open_url} -> 42" in again_out, again_out
    before = literal_output(page, metrics)
    assert before[auth_url]["reconnects"] == 0 and before[auth_url]["errors"] == 0

    # Kill the authenticating server (no close frame) and start it again on the same port. The
    # client notices, reconnects with backoff and authenticates again, in the background: no
    # cell is running meanwhile. We only look (cheap cells) until it has.
    servers.servers["auth"].restart()
    t_restart = time.perf_counter()
    deadline = t_restart + 30
    while True:
        run_cell(page, statuses)
        run_cell(page, metrics)
        status, metric = literal_output(page, statuses), literal_output(page, metrics)
        if status[auth_url] == "connected" and metric[auth_url]["reconnects"] >= 1:
            break
        assert time.perf_counter() < deadline, f"no reconnection within 30 s: {status} {metric}"
        page.wait_for_timeout(300)
    print(f"JupyterLite: reconnected in the background {time.perf_counter() - t_restart:.1f} s after the restart")
    assert status[open_url] == "connected" and metric[open_url]["reconnects"] == 0

    later_out = run_cell(page, later)
    assert "before the call: connected | reconnects so far: 1" in later_out, later_out
    assert f"{auth_url} -> 42" in later_out, later_out

    # Done: uncomment the closing cell as its markdown says, and run it.
    source = uncomment_cell(page, closing)
    assert source.splitlines() == ["await manager.disconnect_all()", "manager.connection_statuses()"], source
    run_cell(page, closing)
    assert literal_output(page, closing) == {auth_url: "closed", open_url: "closed"}
    # ...and the "later" cell after that starts afresh instead of failing with ClientClosedError.
    later_out = run_cell(page, later)
    assert "the connections were closed: connecting again" in later_out, later_out
    assert "before the call: connected | reconnects so far: 0" in later_out, later_out
    assert f"{auth_url} -> 42" in later_out, later_out

    assert_no_error_output(page, code_cells)
    assert not events.foreign_requests()
    assert not re.search(r"pypi\.org|cdn\.jsdelivr", "\n".join(events.requests))
