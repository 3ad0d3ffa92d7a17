"""The fleet scenarios' environment inside Pyodide: server control and journals go back to
pytest through a function Playwright exposes on the page (``fleetEnv``). Uploaded into the
page by tests/browser/test_fleet_scenarios_browser.py."""

import json

import js  # type: ignore[import-not-found]


class FleetBrowserEnv:
    platform = "pyodide"

    def __init__(self, key, urls, dead):
        self.key = key
        self._urls = dict(urls)
        self._dead = dead

    def url(self, name):
        return self._urls[name]

    def dead_url(self):
        return self._dead

    async def stop(self, name):
        await js.fleetEnv("stop", name, 0)

    async def start(self, name):
        await js.fleetEnv("start", name, 0)

    async def restart(self, name, down=0.0):
        await js.fleetEnv("restart", name, down)

    async def journal(self, name):
        return json.loads(await js.fleetEnv("journal", name, 0))
