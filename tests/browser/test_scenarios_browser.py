"""The behaviour scenarios of tests/scenarios/circle_scenarios.py, run inside Pyodide in
headless Chromium against the same real servers: one set of scenarios, two platforms.

Chromium itself logs a console error for every WebSocket it cannot open. Scenarios that stop
servers or dial a dead port provoke that on purpose; for them (and only them) exactly that
message is excused. Any other console error or page error fails the test.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
from playwright.sync_api import Page

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "scenarios"))

import circle_scenarios  # noqa: E402
from support.servers import TEST_KEY  # noqa: E402

#: Scenarios that make the browser fail to open a socket (server down or a dead port).
DIALS_DEAD_SERVERS = {
    "connect_failure_raises_connect_error",
    "calls_while_reconnecting_fail_fast",
    "late_server_joins_manager",
    "manager_with_no_server_up_raises",
    "max_attempts_ends_disconnected",
    "server_restart_reconnects_and_reauthenticates",
    "private_key_never_leaks",
    "connect_while_reconnecting_waits_for_that_attempt",
    "disconnect_never_raises_in_any_state",
}
SOCKET_REFUSED = r"WebSocket connection to 'ws://127\.0\.0\.1:\d+/' failed"


@pytest.fixture(scope="module")
def scenario_page(_module_harness, server_pool):  # type: ignore[no-untyped-def]
    page, _events = _module_harness

    def control(action: str, name: str, down: float) -> bool:
        server = server_pool.servers[name]
        {"stop": server.stop, "start": server.start, "restart": lambda: server.restart(down)}[action]()
        return True

    page.expose_function("circleEnv", control)
    from conftest import upload_module  # tests/browser/conftest.py helpers

    upload_module(page, "circle_scenarios", (HERE.parent / "scenarios" / "circle_scenarios.py").read_text())
    upload_module(page, "browser_env", (HERE / "browser_env.py").read_text())
    return page


def params() -> list[Any]:
    out = []
    for name in sorted(circle_scenarios.SCENARIOS):
        marks = [pytest.mark.allow_console_errors(SOCKET_REFUSED)] if name in DIALS_DEAD_SERVERS else []
        out.append(pytest.param(name, marks=marks, id=name))
    return out


@pytest.mark.parametrize("name", params())
def test_scenario_in_pyodide(
    name: str, scenario_page: Page, shared_pyodide_page: Page, servers: Any, run_py: Callable[..., Any]
) -> None:
    assert shared_pyodide_page is scenario_page
    env = json.dumps({"key": TEST_KEY, "urls": {n: servers.url(n) for n in ("auth", "open")}, "dead": servers.dead_url(), "stalled": servers.stalled_url()})
    run_py(
        scenario_page,
        f"""
import json, circle_scenarios, browser_env
cfg = json.loads({env!r})
await circle_scenarios.SCENARIOS[{name!r}](browser_env.BrowserEnv(cfg["key"], cfg["urls"], cfg["dead"], cfg["stalled"]))
"ok"
""",
        timeout=90,
    )
