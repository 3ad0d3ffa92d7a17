"""The behaviour scenarios (tests/scenarios/circle_scenarios.py) on CPython.

tests/browser/test_scenarios_browser.py runs the very same functions in Pyodide."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "scenarios"))

import circle_scenarios  # noqa: E402
from support.servers import TEST_KEY  # noqa: E402


class CPythonEnv:
    platform = "cpython"

    def __init__(self, pool) -> None:
        self.pool = pool
        self.key = TEST_KEY

    def url(self, name: str) -> str:
        return self.pool.url(name)

    def dead_url(self) -> str:
        return self.pool.dead_url()

    def stalled_url(self) -> str:
        return self.pool.stalled_url()

    async def stop(self, name: str) -> None:
        await asyncio.to_thread(self.pool.servers[name].stop)

    async def start(self, name: str) -> None:
        await asyncio.to_thread(self.pool.servers[name].start)

    async def restart(self, name: str, down: float = 0.0) -> None:
        await asyncio.to_thread(self.pool.servers[name].restart, down)


@pytest.mark.parametrize("name", sorted(circle_scenarios.SCENARIOS))
async def test_scenario(name, servers):
    await asyncio.wait_for(circle_scenarios.SCENARIOS[name](CPythonEnv(servers)), 60)
