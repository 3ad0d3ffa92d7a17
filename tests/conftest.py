"""Shared fixtures: real reference servers on 127.0.0.1."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support.servers import ServerPool  # noqa: E402


@pytest.fixture(scope="session")
def server_pool():
    pool = ServerPool()
    pool.start()
    yield pool
    pool.close()


@pytest.fixture
def servers(server_pool):
    """The pool, with both servers up again after whatever the previous test did to them."""
    server_pool.ensure_running()
    yield server_pool
    server_pool.ensure_running()


def pytest_collection_modifyitems(config, items):
    """Run the browser tests last. Playwright's sync API keeps an event loop running in the
    main thread once the browser is up, after which pytest-asyncio cannot start its own."""
    browser_dir = Path(__file__).resolve().parent / "browser"
    items.sort(key=lambda item: browser_dir in Path(str(item.fspath)).resolve().parents)
