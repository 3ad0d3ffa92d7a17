"""The fleet scenarios (tests/scenarios/fleet_scenarios.py) on CPython, against three real
reference servers with request journals.

tests/browser/test_fleet_scenarios_browser.py runs the very same functions in Pyodide."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "scenarios"))

import fleet_scenarios  # noqa: E402
from support.fleet import FleetPool  # noqa: E402
from support.servers import TEST_KEY  # noqa: E402


@pytest.fixture(scope="module")
def fleet_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetPool]:
    pool = FleetPool(tmp_path_factory.mktemp("fleet"))
    pool.start()
    yield pool
    pool.close()


class CPythonFleetEnv:
    platform = "cpython"

    def __init__(self, pool: FleetPool) -> None:
        self.pool = pool
        self.key = TEST_KEY

    def url(self, name: str) -> str:
        return self.pool.url(name)

    def dead_url(self) -> str:
        return self.pool.dead_url()

    async def stop(self, name: str) -> None:
        await asyncio.to_thread(self.pool.control, "stop", name)

    async def start(self, name: str) -> None:
        await asyncio.to_thread(self.pool.control, "start", name)

    async def restart(self, name: str, down: float = 0.0) -> None:
        await asyncio.to_thread(self.pool.control, "restart", name, down)

    async def journal(self, name: str) -> list[dict[str, Any]]:
        return json.loads(await asyncio.to_thread(self.pool.control, "journal", name))


@pytest.mark.parametrize("name", sorted(fleet_scenarios.SCENARIOS))
async def test_fleet_scenario(name: str, fleet_pool: FleetPool) -> None:
    fleet_pool.ensure_running()
    try:
        await asyncio.wait_for(fleet_scenarios.SCENARIOS[name](CPythonFleetEnv(fleet_pool)), 60)
    finally:
        fleet_pool.ensure_running()
