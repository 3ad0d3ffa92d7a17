"""The scenario environment inside Pyodide: server control goes back to pytest through a
function Playwright exposes on the page (``circleEnv``). Uploaded into the page by the tests."""

import js  # type: ignore[import-not-found]


class BrowserEnv:
    platform = "pyodide"

    def __init__(self, key, urls, dead, stalled):
        self.key = key
        self._urls = dict(urls)
        self._dead = dead
        self._stalled = stalled

    def url(self, name):
        return self._urls[name]

    def dead_url(self):
        return self._dead

    def stalled_url(self):
        return self._stalled

    async def stop(self, name):
        await js.circleEnv("stop", name, 0)

    async def start(self, name):
        await js.circleEnv("start", name, 0)

    async def restart(self, name, down=0.0):
        await js.circleEnv("restart", name, down)
