"""A benchmark page in headless Chromium, driven without DevTools.

Why not Playwright (which the tests use): a DevTools client enables network instrumentation,
and Chromium then reports every WebSocket frame to it, which slows down and blurs exactly the
per-message path being measured. Here Chromium is started directly on bench/web/bench.html;
the page boots (timing each cold-start step), then runs the commands the driver sends through
a long-polled HTTP channel (:class:`bench.web.Channel`): JavaScript with ``page.js(code)``,
Python in Pyodide with ``page.py(code)``; each returns the JSON value of its result.

Flags: ``--enable-precise-memory-info`` (``performance.memory`` unrounded) and
``--js-flags=--expose-gc`` (``gc()``) for the memory figures; the rest as in the tests.
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import tempfile
import time
from typing import Any
from urllib.parse import urlencode

from .web import Channel

CHROMIUM = os.environ.get("CIRCLE_WS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--enable-precise-memory-info",
    "--js-flags=--expose-gc",
]


def _pids_with_arg(arg: str) -> list[int]:
    """Processes with exactly ``arg`` on their command line (ours: the path is unique)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if arg.encode() in args:
            found.append(int(entry))
    return found


class PageError(RuntimeError):
    """Code run in the page failed; the message carries the JS stack or Python traceback."""


class BenchPage:
    """One Chromium process (fresh profile: a cold cache) showing the benchmark page."""

    def __init__(
        self, base_url: str, channel: Channel, auth_url: str, key: str, install: str = "micropip",
        boot_timeout: float = 180, start_page: bool = False,
    ) -> None:
        self.channel = channel
        self.profile = tempfile.mkdtemp(prefix="circle-bench-chromium-")
        url = f"{base_url}/bench/bench.html?" + urlencode({"auth": auth_url, "key": key, "install": install})
        if start_page:  # the browser up first, then the page (bench/web/start.html says why)
            url = f"{base_url}/bench/start.html?" + urlencode({"next": url})
        self.proc = subprocess.Popen(
            [CHROMIUM, *CHROMIUM_ARGS, f"--user-data-dir={self.profile}", url],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: close() ends every Chromium process
        )
        try:
            #: Cold-start timings of this page's boot (ms; ``*_at_ms`` since navigation start).
            self.timings: dict[str, float] = self._result(0, boot_timeout)
        except BaseException:
            self.close()
            raise

    def revisit(self, boot_timeout: float = 180) -> dict[str, float]:
        """Open the page again in this browser, as a returning visitor: the HTTP cache and
        V8's code cache hold what the last visit left. Returns (and keeps) its boot timings."""
        self._result(self.channel.send("js", "return bench.revisit();"), 30)
        self.timings = self._result(0, boot_timeout)
        return self.timings

    def _result(self, want: int, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise PageError(f"chromium exited ({self.proc.returncode}); page log: {self.channel.log}")
            try:
                msg = self.channel.results.get(timeout=min(1.0, max(0.01, deadline - time.monotonic())))
            except queue.Empty:
                if time.monotonic() > deadline:
                    raise PageError(f"no result from the page within {timeout:g}s; page log: {self.channel.log}")
                continue
            if msg.get("id") != want:
                continue  # a late answer to an abandoned command
            if not msg.get("ok"):
                raise PageError(msg.get("error", "unknown error"))
            return msg.get("value")

    def js(self, code: str, timeout: float = 120) -> Any:
        """Run the body of an async JS function (``bench`` in scope); its JSON return value."""
        return self._result(self.channel.send("js", code), timeout)

    def py(self, code: str, timeout: float = 120) -> Any:
        """Run async Python in Pyodide (``page_bench`` imported); its last expression's value."""
        return self._result(self.channel.send("py", code), timeout)

    def close(self) -> None:
        self.channel.quit()
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(10)
        # Chromium may have left our process group (a relaunch starts a new session): end
        # whatever still runs with this page's own profile directory.
        for pid in _pids_with_arg(f"--user-data-dir={self.profile}"):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        # Drop what the closed page may not have fetched or answered.
        for q in (self.channel.commands, self.channel.results):
            while not q.empty():
                q.get_nowait()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> BenchPage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
