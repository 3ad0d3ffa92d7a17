"""The fleet scenarios of tests/scenarios/fleet_scenarios.py, run inside Pyodide in headless
Chromium against the same three real servers: one set of scenarios, two platforms.

Chromium logs a console error for every WebSocket it cannot open; the scenarios that stop a
server provoke that on purpose, and for them (only them) exactly that message is excused.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from playwright.sync_api import Page

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "scenarios"))

import fleet_scenarios  # noqa: E402
from support.fleet import NAMES, FleetPool  # noqa: E402
from support.servers import TEST_KEY  # noqa: E402

#: Scenarios that stop a server while the page is connected to it (or dial it while down).
STOPS_SERVERS = {
    "failover_past_a_server_that_is_down",
    "failover_when_a_server_dies_mid_run",
    "a_sent_call_is_never_sent_again",
    "breaker_opens_half_opens_and_closes",
}
SOCKET_REFUSED = r"WebSocket connection to 'ws://127\.0\.0\.1:\d+/' failed"


@pytest.fixture(scope="module")
def fleet_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetPool]:
    pool = FleetPool(tmp_path_factory.mktemp("fleet-browser"))
    pool.start()
    yield pool
    pool.close()


@pytest.fixture(scope="module")
def fleet_page(_module_harness, fleet_pool: FleetPool) -> Page:  # type: ignore[no-untyped-def]
    page, _events = _module_harness
    page.expose_function("fleetEnv", fleet_pool.control)
    from conftest import upload_module  # tests/browser/conftest.py helpers

    upload_module(page, "fleet_scenarios", (HERE.parent / "scenarios" / "fleet_scenarios.py").read_text())
    upload_module(page, "fleet_env", (HERE / "fleet_env.py").read_text())
    return page


def params() -> list[Any]:
    out = []
    for name in sorted(fleet_scenarios.SCENARIOS):
        marks = [pytest.mark.allow_console_errors(SOCKET_REFUSED)] if name in STOPS_SERVERS else []
        out.append(pytest.param(name, marks=marks, id=name))
    return out


@pytest.mark.parametrize("name", params())
def test_fleet_scenario_in_pyodide(
    name: str, fleet_page: Page, shared_pyodide_page: Page, fleet_pool: FleetPool, run_py: Callable[..., Any]
) -> None:
    assert shared_pyodide_page is fleet_page
    fleet_pool.ensure_running()
    env = json.dumps({"key": TEST_KEY, "urls": {n: fleet_pool.url(n) for n in NAMES}, "dead": fleet_pool.dead_url()})
    try:
        run_py(
            fleet_page,
            f"""
import json, fleet_scenarios, fleet_env
cfg = json.loads({env!r})
await fleet_scenarios.SCENARIOS[{name!r}](fleet_env.FleetBrowserEnv(cfg["key"], cfg["urls"], cfg["dead"]))
"ok"
""",
            timeout=90,
        )
    finally:
        fleet_pool.ensure_running()


#: The garbage-collection scenario once more, with Pyodide's own accounting around it: every
#: socket proxy, timer and traced PyProxy it made is gone afterwards, the collected managers'
#: included (their sockets were closed by the clients' finalizers, not by disconnect()).
COLLECTED = """
import asyncio, gc, json, pyodide_js, fleet_scenarios, fleet_env
from circle_ws_web.transports import browser as bt
api = pyodide_js._module
cfg = json.loads(ENV)
gc.collect()
api.enable_pyproxy_allocation_tracing()
baseline = {"proxies": bt.live_proxy_count(), "timers": bt.live_timer_count(), "traced": api.pyproxy_alloc_map.size}
try:
    await fleet_scenarios.SCENARIOS["unreferenced_managers_are_collected_and_close_their_sockets"](
        fleet_env.FleetBrowserEnv(cfg["key"], cfg["urls"], cfg["dead"]))
    for _ in range(40):  # a reference held by a loop callback that has not run yet is no leak
        gc.collect()
        if bt.live_proxy_count() == 0 and bt.live_timer_count() == 0:
            break
        await asyncio.sleep(0.05)
    after = {"proxies": bt.live_proxy_count(), "timers": bt.live_timer_count(), "traced": api.pyproxy_alloc_map.size}
finally:
    api.disable_pyproxy_allocation_tracing()
{"baseline": baseline, "after": after}
"""


def test_dropped_managers_are_collected_in_pyodide_and_leave_no_js_proxy(
    fleet_page: Page, shared_pyodide_page: Page, fleet_pool: FleetPool, run_py: Callable[..., Any]
) -> None:
    assert shared_pyodide_page is fleet_page
    fleet_pool.ensure_running()
    env = json.dumps({"key": TEST_KEY, "urls": {n: fleet_pool.url(n) for n in NAMES}, "dead": fleet_pool.dead_url()})
    out = run_py(fleet_page, f"ENV = {env!r}\n" + COLLECTED, timeout=90)
    assert out["after"] == out["baseline"] == {**out["baseline"], "proxies": 0, "timers": 0}, out
