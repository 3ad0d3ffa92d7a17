"""The browser-lifecycle benchmarks: how soon a client acts on what the browser says.

* ``online -> connected``: a client that is waiting out a 30 s backoff (the server dropped it)
  when the browser goes offline and comes back; timed from the page's ``online`` event to the
  client being connected and authenticated again. Baseline, same page and server, each round:
  a fresh client's connect + authentication. Target: at most that + 50 ms.
* ``visible -> dead connection detected``: the server went silent while the tab was hidden
  (keep-alive at 60 + 10 s would take 70 s); timed from ``visibilitychange`` (visible) to the
  client declaring the connection lost. Baseline: ``asyncio.sleep`` for the 3 s liveness
  deadline in the same page. Target: the deadline + 10 %.

Why Playwright here (bench/browser.py avoids DevTools for the RPC figures): going offline and
hiding a tab need it, and these figures are about one connection, not per-frame costs. Why a
Chromium started here and joined over CDP with ``no_defaults=True``: pages Playwright creates
itself never become hidden (focus emulation), see tests/browser/test_page_lifecycle_browser.py.

``./bench.sh`` runs it with the others (``--only lifecycle`` alone); standalone:
``python -m bench.lifecycle [--quick]`` prints the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import servers, web
from .browser import CHROMIUM
from .report import row, target

Samples = dict[str, list[float]]

#: Chromium's switches as in the tests (no DevTools-hostile extras needed here).
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
GROUP = "browser lifecycle"
#: Allowed over the baseline connect for "online -> connected" (the issue's target).
ONLINE_SLACK_MS = 50.0


@contextmanager
def tab_browser(playwright: Any) -> Iterator[Any]:
    """Chromium with real tabs, joined over CDP (see the module doc)."""
    profile = tempfile.mkdtemp(prefix="circle-bench-tabs-")
    proc = subprocess.Popen(
        [CHROMIUM, *ARGS, f"--user-data-dir={profile}", "--remote-debugging-port=0", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        port_file = Path(profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and len(port_file.read_text().split()) >= 2):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("chromium did not start its DevTools endpoint")
            time.sleep(0.05)
        port, path = port_file.read_text().split()[:2]
        browser = playwright.chromium.connect_over_cdp(f"ws://127.0.0.1:{port}{path}", no_defaults=True)
        try:
            yield browser
        finally:
            browser.close()
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        shutil.rmtree(profile, ignore_errors=True)


class LifecyclePage:
    """bench/web/lifecycle_bench.html in a tab, with the tab that hides it."""

    def __init__(self, browser: Any, base: str) -> None:
        context = browser.contexts[0]
        self.cover = context.pages[0]
        self.page = context.new_page()
        self.context = context
        self.problems: list[str] = []
        self.page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))
        self.page.goto(f"{base}/bench/lifecycle_bench.html")
        self.page.wait_for_function("() => window.lifebench && (window.lifebench.py || window.lifebench.error)",
                                    timeout=180_000)
        error = self.page.evaluate("() => window.lifebench.error")
        if error:
            raise RuntimeError(f"lifecycle page failed to boot: {error}")

    def py(self, code: str, timeout: float = 60) -> Any:
        raw = self.page.evaluate(
            """async ([code, ms]) => {
              let timer;
              const late = new Promise((_, no) => { timer = setTimeout(() => no(new Error("timed out")), ms); });
              try { return await Promise.race([window.lifebench.py(code), late]); } finally { clearTimeout(timer); }
            }""",
            [code, int(timeout * 1000)],
        )
        out = json.loads(raw)
        if not out["ok"]:
            raise RuntimeError(out["error"])
        return out["value"]

    def event(self, kind: str, detail: Any, after: int) -> float:
        """The time (ms) of the first ``kind`` event logged after index ``after``."""
        self.page.wait_for_function(
            "([k, d, n]) => window.lifebench.events.slice(n).some(e => e[1] === k && e[2] === d)",
            arg=[kind, detail, after], timeout=15_000, polling=10,
        )
        return next(e[0] for e in self.page.evaluate("window.lifebench.events")[after:] if e[1] == kind and e[2] == detail)

    def mark(self) -> int:
        return self.page.evaluate("window.lifebench.events.length")


def _online(lp: LifecyclePage, url: str, out: Samples) -> None:
    q = f"{url!r}, {servers.TEST_KEY!r}"
    out["lifecycle.online.baseline"].append(lp.py(f"await lifecycle_bench.connect_ms({q})"))
    assert lp.py(f"await lifecycle_bench.open_client({q})") == "connected"
    assert lp.py("await lifecycle_bench.drop()") == ["reconnecting", None]
    n = lp.mark()
    try:
        lp.context.set_offline(True)
        lp.event("offline", False, n)
        lp.py("await lifecycle_bench.until(lambda: lifecycle_bench.paused() == 'offline', 5)")
        n = lp.mark()
    finally:
        lp.context.set_offline(False)
    online = lp.event("online", True, n)
    connected = lp.py(f"await lifecycle_bench.wait_status('connected', after={online})")
    if connected is None:
        raise RuntimeError("the client did not reconnect after online")
    out["lifecycle.online"].append(connected - online)


def _visible(lp: LifecyclePage, url: str, out: Samples) -> None:
    q = f"{url!r}, {servers.TEST_KEY!r}"
    deadline = lp.py("lifecycle_bench.liveness_timeout()")
    out["lifecycle.visible.baseline"].append(lp.py(f"await lifecycle_bench.sleep_ms({deadline})"))
    assert lp.py(f"await lifecycle_bench.open_client({q})") == "connected"
    assert lp.py("await lifecycle_bench.silence(60)") == {"ok": True}
    lp.cover.bring_to_front()
    lp.page.wait_for_function("document.visibilityState === 'hidden'", polling=10)
    lp.cover.wait_for_timeout(500)
    n = lp.mark()
    lp.page.bring_to_front()
    visible = lp.event("visibilitychange", "visible", n)
    detected = lp.py(f"await lifecycle_bench.wait_status('reconnecting', after={visible})")
    if detected is None:
        raise RuntimeError("the silent connection was not detected after visible")
    out["lifecycle.visible"].append(detected - visible)


def run(cfg: dict[str, Any], out: Samples, info: dict[str, Any]) -> None:
    from playwright.sync_api import sync_playwright

    t = time.perf_counter()
    root = web.prepare()
    info.setdefault("webroot", json.loads((root / "webroot.json").read_text()))
    _log(f"lifecycle: web root ready ({time.perf_counter() - t:.1f} s)")
    with servers.RefServer() as ref, web.static_server(root, web.Channel()) as base, sync_playwright() as pw:
        with tab_browser(pw) as browser:
            t = time.perf_counter()
            lp = LifecyclePage(browser, base)
            _log(f"lifecycle: page booted ({time.perf_counter() - t:.1f} s)")
            info.setdefault("pyodide_python", lp.py("import sys; sys.version.split()[0]"))
            lp.py(f"await lifecycle_bench.connect_ms({ref.url!r}, {servers.TEST_KEY!r})")  # warm-up
            warm: Samples = defaultdict(list)
            _online(lp, ref.url, warm)
            _visible(lp, ref.url, warm)
            t = time.perf_counter()
            for _ in range(cfg.get("lifecycle_reps", 5)):
                _online(lp, ref.url, out)
                _visible(lp, ref.url, out)
            left = lp.py("await lifecycle_bench.close_client()")
            out["lifecycle.left"].append(float(left["proxies"] + left["timers"] + left["listening"]))
            _log(f"lifecycle: {cfg.get('lifecycle_reps', 5)} rounds ({time.perf_counter() - t:.1f} s)")
            if lp.problems:
                raise RuntimeError("lifecycle page problems: " + "; ".join(lp.problems))


def collect(cfg: dict[str, Any], info: dict[str, Any]) -> Samples:
    out: Samples = defaultdict(list)
    run(cfg, out, info)
    return dict(out)


def rows(s: Samples) -> list[dict[str, Any]]:
    """The report's rows (bench/__main__.py adds them)."""
    out = []
    if "lifecycle.online" in s and "lifecycle.online.baseline" in s:
        limit = statistics.median(s["lifecycle.online.baseline"]) + ONLINE_SLACK_MS
        out.append(row("lifecycle.online", GROUP, "online -> connected + authenticated (was waiting out a 30 s backoff)",
                       "ms", s["lifecycle.online"], "a fresh connect + authentication, same page",
                       s["lifecycle.online.baseline"],
                       goal=target("value_max", limit, f"<= connect + {ONLINE_SLACK_MS:.0f} ms ({limit:.0f} ms)"),
                       note="timed from the page's online event; keep-alive 60 + 10 s, so nothing else acts"))
    if "lifecycle.visible" in s and "lifecycle.visible.baseline" in s:
        base = statistics.median(s["lifecycle.visible.baseline"])
        out.append(row("lifecycle.visible", GROUP,
                       "visible -> dead connection detected (server silent; keep-alive 60 + 10 s would take 70 s)",
                       "ms", s["lifecycle.visible"], "asyncio.sleep(3 s liveness deadline), same page",
                       s["lifecycle.visible.baseline"],
                       goal=target("value_max", base * 1.1, f"<= {base * 1.1:.0f} ms (deadline + 10 %)"),
                       note=f"live proxies + timers + listeners left after: {max(s.get('lifecycle.left', [0])):.0f}"))
    return out


def _log(text: str) -> None:
    print(f"  {text}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.lifecycle", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds instead of 7")
    args = parser.parse_args(argv)
    samples = collect({"lifecycle_reps": 2 if args.quick else 7}, {})
    for r in rows(samples):
        print(json.dumps({"id": r["id"], "median_ms": round(r["value"]["median"], 1),
                          "baseline_ms": round(r["baseline"]["median"], 1), "ratio": round(r["ratio"], 2),
                          "target": r["target"]["text"], "met": r["met"], "samples": r["value"]["samples"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
