"""Fixtures for tests that run circle-ws-web under Pyodide in headless Chromium, offline.

Why: the library's main target is the browser; these fixtures give each test a page (or a
dedicated Worker, as JupyterLite uses) where the freshly built wheel is installed with micropip
from a local web root, and they fail the test on any page error, console error, failed or
non-local request, or Python traceback printed to stderr.

Usage in a test (all tests here are sync and marked ``browser`` automatically)::

    def test_x(pyodide_page, run_py, upload_module):
        upload_module(pyodide_page, "scenario", "async def main():\\n    return 42\\n")
        assert run_py(pyodide_page, "import scenario\\nawait scenario.main()") == 42

``run_py`` returns the JSON-decoded value of the last expression; a Python exception in the
page raises ``PagePythonError`` (an AssertionError carrying the Python traceback).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Request,
    Response,
    WebSocket,
)

BROWSER_DIR = Path(__file__).resolve().parent
ROOT = BROWSER_DIR.parent.parent
CHROMIUM = os.environ.get("CIRCLE_WS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
BOOT_TIMEOUT_MS = 90_000
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# Lines on Python's stderr that mean an error nobody handled (asyncio's handler prints them).
PY_STDERR_ERROR_MARKERS = (
    "Traceback (most recent call last)",
    "Task exception was never retrieved",
    "Exception in callback",
    "Unhandled exception in event loop",
    "Task was destroyed but it is pending",
)
EVENTS_KEY = pytest.StashKey[list["_Watch"]]()


def _load_webroot_module() -> Any:
    """Import tools/webroot.py once (tools/ is not a package)."""
    if "_circle_webroot" in sys.modules:
        return sys.modules["_circle_webroot"]
    path = ROOT / "tools" / "webroot.py"
    spec = importlib.util.spec_from_file_location("_circle_webroot", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# --- pytest hooks --------------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "allow_console_errors(*patterns): do not fail the test on browser problems it provokes on"
        " purpose; with regex patterns, only on the problems that match one of them",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if BROWSER_DIR in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.browser)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """Fail the test itself (not only its teardown) on browser problems seen while it ran."""
    watches: list[_Watch] = item.stash.get(EVENTS_KEY, [])
    try:
        result = yield
    finally:
        for w in watches:
            w.flush()
            w.checked = len(w.events.problems)
            if w.new_problems():
                section = f"browser ({w.events.label})"
                item.add_report_section("call", section, w.events.report(w.new_problems()))
    failures = [
        f"browser problems in {w.events.label}:\n{w.events.report(bad)}"
        for w in watches
        if (bad := _not_allowed(item, w.new_problems()))
    ]
    if failures:
        raise AssertionError("\n".join(failures))
    return result


def _not_allowed(item: pytest.Item, problems: list[str]) -> list[str]:
    """The problems not excused by an `allow_console_errors` marker on the test."""
    marker = item.get_closest_marker("allow_console_errors")
    if marker is None:
        return problems
    if not marker.args:
        return []
    return [p for p in problems if not any(re.search(pat, p) for pat in marker.args)]


# --- wheel, web root, static server ----------------------------------------------------------------


@pytest.fixture(scope="session")
def circle_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The circle-ws-web wheel under test: built once per session from the current source.

    Built into a session temp dir (not dist/, which ./build_wheel.sh wipes) so that concurrent
    test sessions cannot clobber each other. CIRCLE_WS_WHEEL=<path> uses a given wheel instead.
    """
    given = os.environ.get("CIRCLE_WS_WHEEL")
    if given:
        path = Path(given).resolve()
        assert path.is_file(), f"CIRCLE_WS_WHEEL={given} does not exist"
        return path
    outdir = tmp_path_factory.mktemp("wheel")
    cmd = [sys.executable, "-m", "build", "--wheel", "--outdir", str(outdir)]
    if importlib.util.find_spec("hatchling") is not None:
        cmd.append("--no-isolation")  # offline and fast: the backend is in the dev venv
    cmd.append(str(ROOT))
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        pytest.fail(
            f"building the circle-ws-web wheel failed:\n{' '.join(cmd)}\n"
            f"{proc.stdout}\n{proc.stderr}",
            pytrace=False,
        )
    wheels = list(outdir.glob("circle_ws_web-*.whl"))
    assert len(wheels) == 1, f"expected one wheel in {outdir}, got {wheels}"
    return wheels[0]


@pytest.fixture(scope="session")
def webroot(circle_wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Offline web root (Pyodide, lock wheels, our wheel), one per session: tools/webroot.py."""
    webroot_mod = _load_webroot_module()
    try:
        return webroot_mod.prepare_webroot(tmp_path_factory.mktemp("webroot"), circle_wheel)
    except webroot_mod.WebrootError as exc:
        pytest.fail(f"preparing the web root failed: {exc}", pytrace=False)


def _start_static_server(folder: Path, name: str) -> tuple[str, Callable[[], None]]:
    webroot_mod = _load_webroot_module()
    handler = type("Handler", (webroot_mod.StaticHandler,), {"mounts": {"/browser/": BROWSER_DIR, "/": folder}})
    server = webroot_mod.QuietHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    return f"http://127.0.0.1:{server.server_address[1]}", stop


@pytest.fixture(scope="session")
def static_server(webroot: Path) -> Iterator[str]:
    """Base URL (http://127.0.0.1:<port>) of a static server: web root at /, tests/browser at /browser/."""
    url, stop = _start_static_server(webroot, "static-server")
    try:
        yield url
    finally:
        stop()


@pytest.fixture(scope="session")
def serve_folder() -> Iterator[Callable[[Path], str]]:
    """`serve_folder(path) -> base URL`: a static server for another folder (same MIME types
    and quiet logs as the harness's), stopped at the end of the session."""
    stops: list[Callable[[], None]] = []

    def serve(folder: Path) -> str:
        url, stop = _start_static_server(folder, f"static-server-{folder.name}")
        stops.append(stop)
        return url

    try:
        yield serve
    finally:
        for stop in stops:
            stop()


# --- browser -------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    """Debian's Chromium, never a Playwright-downloaded one (`playwright install` needs the net)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} not found: `apt-get install -y chromium` (or set CIRCLE_WS_CHROMIUM)",
            pytrace=False,
        )
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@dataclass
class PageEvents:
    """Everything a harness page reported. `problems` (chronological) is what fails a test."""

    label: str
    base_url: str
    console: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    websockets: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def is_local(self, url: str) -> bool:
        """Loopback only (data:/blob: URLs never reach the network)."""
        parts = urlsplit(url)
        return parts.scheme in ("data", "blob") or parts.hostname in LOOPBACK_HOSTS

    def foreign_requests(self) -> list[str]:
        return [u for u in self.requests if not self.is_local(u)]

    def report(self, problems: list[str] | None = None) -> str:
        lines = self.problems if problems is None else problems
        tail = self.console[-40:]
        return "\n".join(
            [*(lines or ["(no problems)"]), "--- last console messages ---", *tail]
        )

    def attach(self, page: Page) -> None:
        """Record the page's (and its workers') console, errors and requests."""

        def on_console(msg: ConsoleMessage) -> None:
            self.console.append(f"[{msg.type}] {msg.text}")
            if msg.type == "error":
                self.problems.append(f"console.error: {msg.text}")
            elif msg.text.startswith("[py stderr] ") and any(
                m in msg.text for m in PY_STDERR_ERROR_MARKERS
            ):
                self.problems.append(f"python stderr: {msg.text[len('[py stderr] '):]}")

        def on_websocket(ws: WebSocket) -> None:
            self.websockets.append(ws.url)
            if not self.is_local(ws.url):
                self.problems.append(f"websocket left the machine: {ws.url}")

        def on_request(req: Request) -> None:
            self.requests.append(req.url)
            if not self.is_local(req.url):
                self.problems.append(f"request left the machine: {req.method} {req.url}")

        def on_response(resp: Response) -> None:
            if resp.status >= 400:
                self.problems.append(f"request failed: HTTP {resp.status} {resp.url}")

        def on_failed(req: Request) -> None:
            self.problems.append(f"request failed: {req.failure} {req.url}")

        def on_pageerror(exc: Any) -> None:
            self.problems.append(f"pageerror: {exc.name}: {exc.message}\n{exc.stack}")

        page.on("pageerror", on_pageerror)
        page.on("console", on_console)
        page.on("request", on_request)
        page.on("websocket", on_websocket)
        page.on("requestfailed", on_failed)
        page.on("response", on_response)


@dataclass
class _Watch:
    """The slice of a page's problems that belongs to one test (pages may outlive a test)."""

    events: PageEvents
    page: Page
    start: int
    checked: int = -1

    def flush(self) -> None:
        """Let queued browser events reach us: sync Playwright dispatches them only during a call."""
        try:
            self.page.wait_for_timeout(20)  # driver-side wait: works even if the page's JS is stuck
        except Exception:  # noqa: BLE001 - page crashed/closed: its events are what we have
            pass

    def new_problems(self, since: int | None = None) -> list[str]:
        return self.events.problems[self.start if since is None else since :]


def _watch(request: pytest.FixtureRequest, page: Page, events: PageEvents) -> _Watch:
    watch = _Watch(events, page, start=len(events.problems))
    request.node.stash.setdefault(EVENTS_KEY, []).append(watch)
    return watch


def _block_foreign_requests(context: BrowserContext, events: PageEvents) -> None:
    """Abort any request not addressed to our server (PageEvents records it as a problem)."""

    def handle(route: Any) -> None:
        if events.is_local(route.request.url):
            route.continue_()
        else:
            events.blocked.append(route.request.url)
            route.abort("blockedbyclient")

    context.route("**/*", handle)


def _open_harness(
    context: BrowserContext, static_server: str, query: str, label: str
) -> tuple[Page, PageEvents]:
    """Open harness.html in `context`, wait for boot; fail if boot failed or was not clean."""
    events = PageEvents(label=label, base_url=static_server)
    _block_foreign_requests(context, events)
    page = context.new_page()
    events.attach(page)
    _PAGE_EVENTS[id(page)] = events
    t0 = time.perf_counter()
    page.goto(f"{static_server}/browser/harness.html{query}")
    page.wait_for_function(
        "() => window.harness && (window.harness.info || window.harness.error)",
        timeout=BOOT_TIMEOUT_MS,
    )
    error = page.evaluate("() => window.harness.error")
    if error:
        pytest.fail(f"harness boot failed ({label}): {error}\n{events.report()}", pytrace=False)
    timings = page.evaluate("() => window.harness.timings")
    timings["playwright_goto_to_ready_ms"] = round((time.perf_counter() - t0) * 1000, 1)
    events.timings = timings
    if events.problems:
        pytest.fail(f"harness boot was not clean ({label}):\n{events.report()}", pytrace=False)
    return page, events


_PAGE_EVENTS: dict[int, PageEvents] = {}


def _check_late_problems(request: pytest.FixtureRequest, watch: _Watch) -> None:
    """Teardown check for problems that arrived after the test body had finished."""
    watch.flush()
    late = _not_allowed(request.node, watch.new_problems(since=max(watch.checked, watch.start)))
    if late:
        pytest.fail(
            f"browser problems after the test ({watch.events.label}):\n" + "\n".join(late),
            pytrace=False,
        )


def _page_fixture(
    new_context: Callable[..., BrowserContext],
    static_server: str,
    request: pytest.FixtureRequest,
    worker: bool,
) -> Iterator[Page]:
    label = "worker" if worker else "page"
    page, events = _open_harness(new_context(), static_server, "?worker=1" if worker else "", label)
    watch = _watch(request, page, events)
    try:
        yield page
    finally:
        _PAGE_EVENTS.pop(id(page), None)
    _check_late_problems(request, watch)


@pytest.fixture
def watched_page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Callable[[str], tuple[Page, PageEvents]]]:
    """`watched_page(label, **context_options) -> (page, events)`: a fresh page in its own context, for pages other
    than the harness (PyScript, JupyterLite, the demo), watched like the harness pages: any page
    error, console error, failed or non-local request fails the test."""
    opened: list[tuple[BrowserContext, _Watch]] = []

    def open_page(label: str, **context_options: Any) -> tuple[Page, PageEvents]:
        context = browser.new_context(**context_options)
        events = PageEvents(label=label, base_url="")
        _block_foreign_requests(context, events)
        page = context.new_page()
        events.attach(page)
        opened.append((context, _watch(request, page, events)))
        return page, events

    try:
        yield open_page
        for _context, watch in opened:
            _check_late_problems(request, watch)
    finally:
        for context, _ in opened:
            context.close()


@pytest.fixture
def pyodide_page(
    new_context: Callable[..., BrowserContext], static_server: str, request: pytest.FixtureRequest
) -> Iterator[Page]:
    """A fresh page (own browser context) with Pyodide booted and circle-ws-web installed.

    Costs one Pyodide boot (~3-6 s). Recorded events and boot timings: `page_events(page)`.
    """
    yield from _page_fixture(new_context, static_server, request, worker=False)


@pytest.fixture
def worker_page(
    new_context: Callable[..., BrowserContext], static_server: str, request: pytest.FixtureRequest
) -> Iterator[Page]:
    """Like `pyodide_page`, but Pyodide runs in a dedicated Worker (harness.html?worker=1)."""
    yield from _page_fixture(new_context, static_server, request, worker=True)


@pytest.fixture(scope="module")
def _module_harness(browser: Browser, static_server: str) -> Iterator[tuple[Page, PageEvents]]:
    context = browser.new_context()
    try:
        page, events = _open_harness(context, static_server, "", "shared page")
        yield page, events
        _PAGE_EVENTS.pop(id(page), None)
    finally:
        context.close()


@pytest.fixture
def shared_pyodide_page(
    _module_harness: tuple[Page, PageEvents], request: pytest.FixtureRequest
) -> Iterator[Page]:
    """One booted page shared by all tests of a module (saves a boot per test).

    Python state (globals, imported modules, running tasks) carries over between tests; each
    test still fails on the problems recorded while it ran.
    """
    page, events = _module_harness
    watch = _watch(request, page, events)
    yield page
    _check_late_problems(request, watch)


@pytest.fixture
def page_events(request: pytest.FixtureRequest) -> Callable[..., PageEvents]:
    """`page_events(page=None) -> PageEvents`: console, requests, problems, boot timings."""

    def get(page: Page | None = None) -> PageEvents:
        watches: list[_Watch] = request.node.stash.get(EVENTS_KEY, [])
        assert watches, "no harness page fixture is used by this test"
        if page is None:
            return watches[-1].events
        return next(w.events for w in watches if w.events is _PAGE_EVENTS.get(id(page)))

    return get


# --- running Python in the page ----------------------------------------------------------------


class PagePythonError(AssertionError):
    """A Python exception raised by code run in the page; str() includes the Python traceback."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.type: str = data.get("type", "?")
        self.message: str = data.get("message", "")
        self.traceback: str = data.get("traceback", "")
        super().__init__(f"Python {self.type} in the page: {self.message}\n{self.traceback}")


_RUN_JS = """async ([code, timeoutMs]) => {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`run_py timed out after ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    return await Promise.race([window.harness.runPython(code), timeout]);
  } finally {
    clearTimeout(timer);
  }
}"""


def run_py(page: Page, code: str, timeout: float = 30.0) -> Any:
    """Run Python `code` in the harness page or worker; return its last expression's value.

    Top-level `await` works. The value travels as JSON, so it must be JSON-serialisable.
    A Python exception raises PagePythonError; `timeout` (s) bounds the wait.
    """
    raw = page.evaluate(_RUN_JS, [code, int(timeout * 1000)])
    data = json.loads(raw)
    if not data["ok"]:
        raise PagePythonError(data)
    return data["value"]


run_py.Error = PagePythonError  # type: ignore[attr-defined]  # for pytest.raises(run_py.Error)


def upload_module(page: Page, name: str, source: str) -> str:
    """Write module `name` (dots -> dirs) into Pyodide's FS on sys.path; returns the FS path."""
    return page.evaluate("([n, s]) => window.harness.uploadModule(n, s)", [name, source])


def write_file(page: Page, path: str, data: str | bytes) -> str:
    """Write a file into Pyodide's FS (str as UTF-8, bytes as-is); returns the path."""
    if isinstance(data, bytes):
        import base64

        return page.evaluate(
            "([p, d]) => window.harness.writeFile(p, d, 'base64')",
            [path, base64.b64encode(data).decode()],
        )
    return page.evaluate("([p, d]) => window.harness.writeFile(p, d)", [path, data])


#: Module ``transport_sink``: an owner for a bare BrowserTransport that records every event, in
#: order, as JSON-ready lists (what the transport tests compare), with the names they use.
TRANSPORT_SINK = '''
from circle_ws_web.transport import TransportOptions
from circle_ws_web.transports import browser as bt

class Sink:
    """Records every transport event, in order."""
    def __init__(self):
        self.events = []
    def on_open(self):
        self.events.append(["open"])
    def on_message(self, data):
        self.events.append(["message", data])
    def on_error(self, message):
        self.events.append(["error", message])
    def on_close(self, code, reason):
        self.events.append(["close", code, reason])
'''


@pytest.fixture(name="transport_sink")
def transport_sink_fixture() -> Callable[[Page], None]:
    """`transport_sink(page)`: after it, code run in that page can `from transport_sink import
    Sink, TransportOptions, bt`, one recording owner for every test of the bare transport."""

    def install(page: Page) -> None:
        upload_module(page, "transport_sink", TRANSPORT_SINK)

    return install


@pytest.fixture(name="run_py")
def run_py_fixture() -> Callable[..., Any]:
    """`run_py(page, code, timeout=30.0) -> Any`; raises `run_py.Error` (PagePythonError)."""
    return run_py


@pytest.fixture(name="upload_module")
def upload_module_fixture() -> Callable[[Page, str, str], str]:
    """`upload_module(page, name, source) -> path`; `import name` works right after."""
    return upload_module


@pytest.fixture(name="write_file")
def write_file_fixture() -> Callable[[Page, str, str | bytes], str]:
    """`write_file(page, path, data) -> path` into Pyodide's FS."""
    return write_file


@pytest.fixture(scope="session")
def package_version() -> str:
    """circle-ws-web's version, read from pyproject.toml (the source of truth for the wheel)."""
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


