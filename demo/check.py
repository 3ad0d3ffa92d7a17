"""``./demo.sh --check``: the demo tour, headless, with a verdict.

Opens the page that ``demo/serve.py`` serves in Debian's Chromium (the same executable and
launch arguments as the browser tests, from tests/browser/conftest.py), and checks, through
the page's own controls, that:

1. Pyodide boots and the wheel installs from the local web root (no request leaves the machine);
2. both servers connect (the page connects at start-up with a key it generates);
3. ``40 + 2`` gives ``42`` on each server, and on both with "Run on all";
4. after the auth server is killed and started again on the same port, its status light shows
   ``reconnecting`` and then ``connected`` again (re-authenticated), and scripts run again;
5. when the browser goes offline (Playwright's ``set_offline``), both status lights say
   "offline: waiting for the network" (the clients' ``paused``) and no attempt is made; when it
   is back, both are connected again at once and scripts run;
6. nothing went wrong in the page: no page error, no console error (except Chromium's own
   "WebSocket connection to ... failed" lines while the server is down on purpose), no Python
   traceback, no failed or foreign request.

The fleet (docs/fleet.md): "Run on any" runs on the first server (priority 0); a third server
added while the page runs connects and joins; after the first server is killed, "Run on any"
fails over to the next one at once, the page's log shows that server's circuit breaker
opening, and once the server is back "Run on any" probes it and the breaker closes.

It prints each step with its timing, writes a screenshot, and returns True only if all held.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
SOCKET_REFUSED = re.compile(r"WebSocket connection to 'ws://127\.0\.0\.1:\d+/' failed")
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
BOOT_TIMEOUT_MS = 120_000
PY_STDERR_ERROR_MARKERS = (
    "Traceback (most recent call last)",
    "Task exception was never retrieved",
    "Exception in callback",
    "Unhandled exception in event loop",
    "Task was destroyed but it is pending",
)
RUN_ENTRIES = "[data-testid=output] .entry.run"
#: What a status light says while its client waits for the network (app.js PAUSED_WORDS).
OFFLINE_WORD = "offline: waiting for the network"


class CheckFailed(AssertionError):
    pass


def browser_settings() -> tuple[str, list[str]]:
    """Chromium's path and launch args, exactly as the browser tests use them."""
    path = ROOT / "tests" / "browser" / "conftest.py"
    spec = importlib.util.spec_from_file_location("_circle_browser_conftest", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module.CHROMIUM, list(module.CHROMIUM_ARGS)


@dataclass
class PageWatch:
    """Everything the page reported that would fail the check."""

    phase: str = "start"
    problems: list[str] = field(default_factory=list)
    excused: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)

    def console_message(self, msg: Any) -> None:
        text = msg.text
        self.console.append(f"[{msg.type}] {text}")
        if msg.type == "error":
            if self.phase in ("restart", "failover") and SOCKET_REFUSED.search(text):
                self.excused.append(text)
            else:
                self.problems.append(f"console error ({self.phase}): {text}")
        elif text.startswith("[py stderr] ") and any(m in text for m in PY_STDERR_ERROR_MARKERS):
            self.problems.append(f"python stderr ({self.phase}): {text[12:]}")

    def attach(self, context: Any, page: Any) -> None:
        page.on("console", self.console_message)
        page.on("pageerror", lambda exc: self.problems.append(f"page error ({self.phase}): {exc}"))
        page.on("requestfailed", lambda req: self.problems.append(
            f"request failed ({self.phase}): {req.failure} {req.url}"))
        page.on("response", lambda resp: resp.status >= 400 and self.problems.append(
            f"HTTP {resp.status} ({self.phase}): {resp.url}"))

        def route(r: Any) -> None:
            parts = urlsplit(r.request.url)
            if parts.scheme in ("data", "blob") or parts.hostname in LOOPBACK:
                r.continue_()
            else:
                self.problems.append(f"request left the machine ({self.phase}): {r.request.url}")
                r.abort("blockedbyclient")

        context.route("**/*", route)


class Steps:
    def __init__(self) -> None:
        self.n = 0
        self.timings: list[tuple[str, float]] = []

    @contextmanager
    def step(self, name: str) -> Iterator[dict[str, str]]:
        self.n += 1
        note: dict[str, str] = {}
        t0 = time.perf_counter()
        print(f"check: [{self.n:2}] {name} ...", flush=True)
        try:
            yield note
        except Exception as exc:
            took = time.perf_counter() - t0
            print(f"check: [{self.n:2}] {name}: FAILED after {took:.2f} s: {_one_line(exc)}", flush=True)
            raise
        took = time.perf_counter() - t0
        self.timings.append((name, took))
        extra = f"  ({note['info']})" if note.get("info") else ""
        print(f"check: [{self.n:2}] {name}: ok, {took:.2f} s{extra}", flush=True)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    first = text.splitlines()[0]
    return first if len(first) < 300 else first[:297] + "..."


def status_selector(url: str) -> str:
    return f'[data-testid="status"][data-url="{url}"]'


def wait_status(page: Any, url: str, word: str, timeout_ms: int) -> None:
    try:
        page.wait_for_function(
            "([sel, word]) => { const e = document.querySelector(sel); return e && e.textContent === word; }",
            arg=[status_selector(url), word], timeout=timeout_ms, polling=25,
        )
    except Exception:
        now = page.eval_on_selector(status_selector(url), "e => e.textContent")
        raise CheckFailed(f"{url} did not show '{word}' within {timeout_ms / 1000:g} s (it shows '{now}')") from None


def run_script(page: Any, script: str, target: str | None, expect: int) -> list[dict[str, Any]]:
    """Type `script`, press Run (on `target`) or Run on all; return the new run entries."""
    before = page.locator(RUN_ENTRIES).count()
    page.get_by_test_id("script").fill(script)
    if target is None:
        page.get_by_test_id("run-all").click()
    else:
        page.get_by_test_id("run-target").select_option(target)
        page.get_by_test_id("run").click()
    try:
        page.wait_for_function("([sel, n]) => document.querySelectorAll(sel).length >= n",
                               arg=[RUN_ENTRIES, before + expect], timeout=15_000)
    except Exception:
        raise CheckFailed(f"no result in the output log 15 s after running {script!r}") from None
    entries = page.eval_on_selector_all(
        RUN_ENTRIES,
        """els => els.map(e => ({url: e.dataset.url || null, ok: e.dataset.ok === "true",
            value: e.querySelector(".value") ? e.querySelector(".value").textContent : null,
            text: e.textContent}))""",
    )
    return entries[before:before + expect]


def run_any(page: Any, script: str) -> list[dict[str, Any]]:
    """Type `script`, press Run on any; return its run entry (its url: where it ran)."""
    before = page.locator(RUN_ENTRIES).count()
    page.get_by_test_id("script").fill(script)
    page.get_by_test_id("run-any").click()
    try:
        page.wait_for_function("([sel, n]) => document.querySelectorAll(sel).length >= n",
                               arg=[RUN_ENTRIES, before + 1], timeout=15_000)
    except Exception:
        raise CheckFailed(f"no result in the output log 15 s after Run on any {script!r}") from None
    entries = page.eval_on_selector_all(
        RUN_ENTRIES,
        """els => els.map(e => ({url: e.dataset.url || null, ok: e.dataset.ok === "true",
            value: e.querySelector(".value") ? e.querySelector(".value").textContent : null,
            text: e.textContent}))""",
    )
    return entries[before:before + 1]


def wait_log(page: Any, text: str, timeout_ms: int) -> None:
    """Wait for a line containing `text` in the page's output log."""
    try:
        page.wait_for_function("(t) => document.querySelector('[data-testid=output]').textContent.includes(t)",
                               arg=text, timeout=timeout_ms, polling=50)
    except Exception:
        raise CheckFailed(f"the log did not show {text!r} within {timeout_ms / 1000:g} s") from None


def wait_breaker(page: Any, url: str, word: str, timeout_ms: int) -> None:
    """Wait until the server's row shows its breaker as `word` (app.js renderHealth)."""
    try:
        page.wait_for_function(
            "([u, w]) => { const r = document.querySelector(`li.server[data-url=\"${u}\"]`);"
            " return r && r.dataset.breaker === w; }", arg=[url, word], timeout=timeout_ms, polling=50)
    except Exception:
        raise CheckFailed(f"{url}: the breaker did not show '{word}' within {timeout_ms / 1000:g} s") from None


def expect_42(entries: list[dict[str, Any]], urls: list[str]) -> None:
    got = {e["url"]: e for e in entries}
    for url in urls:
        entry = got.get(url)
        if entry is None or not entry["ok"] or entry["value"] != "42":
            shown = entry["text"] if entry else "no entry"
            raise CheckFailed(f"expected 42 from {url}, the log says: {shown}")


def run_check(page_url: str, servers: dict[str, Any], screenshot: Path, *, started: float | None = None) -> bool:
    """The tour; True when every step held. `servers` maps "open"/"auth" to demo.serve.ServerProcess."""
    from playwright.sync_api import sync_playwright

    steps = Steps()
    watch = PageWatch()
    open_url, auth_url = servers["open"].url, servers["auth"].url
    screenshot = Path(screenshot).resolve()
    ok = False
    t_all = time.perf_counter()
    with sync_playwright() as pw:
        browser = context = page = None
        try:
            with steps.step("launch Chromium") as note:
                executable, args = browser_settings()
                if not Path(executable).exists():
                    raise CheckFailed(f"{executable} not found: apt-get install -y chromium")
                browser = pw.chromium.launch(executable_path=executable, args=args)
                note["info"] = f"{executable} {browser.version}"
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            watch.attach(context, page)

            with steps.step("open the page, boot Pyodide, install the wheel") as note:
                watch.phase = "boot"
                page.goto(page_url)
                page.wait_for_function(
                    "() => { const s = document.querySelector('[data-testid=boot-status]');"
                    " return s && (s.textContent === 'ready' || s.textContent === 'error'); }",
                    timeout=BOOT_TIMEOUT_MS,
                )
                error = page.evaluate("() => window.demo.bootError")
                if error:
                    raise CheckFailed(f"the page failed to start: {error}")
                timings = page.evaluate("() => window.demo.timings")
                source = page.evaluate("() => window.demo.config.source")
                if source != "local":
                    raise CheckFailed(f"the page uses Pyodide from '{source}', not the local web root")
                note["info"] = f"Pyodide {timings.get('pyodide_ms')} ms, install {timings.get('install_ms')} ms, local"

            with steps.step("both servers connected (key generated in the page)") as note:
                watch.phase = "connect"
                for url in (open_url, auth_url):
                    wait_status(page, url, "connected", 30_000)
                pub = page.get_by_test_id("public-key").text_content() or ""
                if not (len(pub) == 130 and pub.startswith("04")):
                    raise CheckFailed(f"no public key shown for the generated key (got {pub!r})")
                note["info"] = f"public key {pub[:12]}…"

            watch.phase = "run"
            with steps.step(f"40 + 2 on {open_url} (no auth)"):
                expect_42(run_script(page, "40 + 2", open_url, 1), [open_url])
            with steps.step(f"40 + 2 on {auth_url} (auth required)"):
                expect_42(run_script(page, "40 + 2", auth_url, 1), [auth_url])
            with steps.step("40 + 2 on all servers"):
                expect_42(run_script(page, "40 + 2", None, 2), [open_url, auth_url])

            with steps.step(f"kill the auth server: page shows '{auth_url}' reconnecting"):
                watch.phase = "restart"
                mark = len(page.evaluate("() => window.demo.statusHistory"))
                servers["auth"].kill()
                wait_status(page, auth_url, "reconnecting", 15_000)
            with steps.step("start it again on the same port: reconnecting -> connected") as note:
                t0 = time.perf_counter()
                servers["auth"].start()
                started_in = time.perf_counter() - t0
                wait_status(page, auth_url, "connected", 30_000)
                history = page.evaluate("() => window.demo.statusHistory")[mark:]
                words = [h["status"] for h in history if h["url"] == auth_url]
                if "reconnecting" not in words or "authenticating" not in words or words[-1] != "connected":
                    raise CheckFailed(f"unexpected status sequence for {auth_url}: {words}")
                note["info"] = f"server up in {started_in:.2f} s; statuses: {' -> '.join(_squash(words))}"
            watch.phase = "run"
            with steps.step(f"40 + 2 on {auth_url} after the restart"):
                expect_42(run_script(page, "40 + 2", auth_url, 1), [auth_url])
            with steps.step("40 + 2 on all servers after the restart"):
                expect_42(run_script(page, "40 + 2", None, 2), [open_url, auth_url])

            with steps.step(f"the browser goes offline: both lights say '{OFFLINE_WORD}'"):
                watch.phase = "offline"
                mark = len(page.evaluate("() => window.demo.statusHistory"))
                context.set_offline(True)
                for url in (open_url, auth_url):
                    wait_status(page, url, OFFLINE_WORD, 10_000)
            with steps.step("offline for 2 s: no attempt to connect") as note:
                page.wait_for_timeout(2000)
                history = page.evaluate("() => window.demo.statusHistory")[mark:]
                tried = [h for h in history if h["status"] == "connecting"]
                if tried:
                    raise CheckFailed(f"attempts while offline: {tried}")
                for url in (open_url, auth_url):
                    wait_status(page, url, OFFLINE_WORD, 1_000)
                offline_shot = screenshot.with_name(screenshot.stem + "-offline.png")
                offline_shot.parent.mkdir(parents=True, exist_ok=True)
                page.locator("#servers").screenshot(path=str(offline_shot))
                note["info"] = (f"status changes meanwhile: {[h['status'] for h in history] or 'none'}; "
                                f"the lights: {offline_shot}")
            with steps.step("back online: both connected again at once") as note:
                t0 = time.perf_counter()
                context.set_offline(False)
                for url in (open_url, auth_url):
                    wait_status(page, url, "connected", 15_000)
                note["info"] = f"{(time.perf_counter() - t0) * 1000:.0f} ms from set_offline(False) to both lights green"
            watch.phase = "run"
            with steps.step("40 + 2 on all servers after the network came back"):
                expect_42(run_script(page, "40 + 2", None, 2), [open_url, auth_url])

            watch.phase = "run"
            with steps.step(f"Run on any: {open_url} (priority 0) runs it"):
                expect_42(run_any(page, "40 + 2"), [open_url])
                wait_breaker(page, open_url, "closed", 5_000)
            if "third" in servers:
                third_url = servers["third"].url
                with steps.step(f"add {third_url} while connected: it joins the running manager"):
                    page.get_by_test_id("server-url").fill(third_url)
                    page.get_by_test_id("add-server").click()
                    wait_status(page, third_url, "connected", 30_000)
            with steps.step(f"kill {open_url}: Run on any fails over to {auth_url} at once"):
                watch.phase = "failover"
                servers["open"].kill()
                wait_status(page, open_url, "reconnecting", 15_000)
                expect_42(run_any(page, "40 + 2"), [auth_url])
            with steps.step(f"{open_url}: its breaker opens after 3 failures, and the log says so"):
                wait_log(page, f"{open_url}: circuit open", 15_000)
                wait_breaker(page, open_url, "open", 5_000)
            with steps.step("start it again: Run on any probes it, the breaker closes") as note:
                servers["open"].start()
                wait_status(page, open_url, "connected", 30_000)
                expect_42(run_any(page, "40 + 2"), [open_url])
                wait_log(page, f"{open_url}: circuit closed", 5_000)
                wait_breaker(page, open_url, "closed", 5_000)
                note["info"] = "open -> half-open (reconnected) -> closed (the probe answered)"
            watch.phase = "run"

            with steps.step(f"screenshot {screenshot}") as note:
                page.wait_for_timeout(1100)  # one metrics refresh after the last run
                page.mouse.move(0, 0)
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(screenshot), full_page=True)
                data = screenshot.read_bytes()
                if not data.startswith(b"\x89PNG\r\n\x1a\n"):
                    raise CheckFailed(f"{screenshot} is not a PNG")
                note["info"] = f"{len(data) // 1024} KiB"

            with steps.step("no page error, console error or failed request") as note:
                page.wait_for_timeout(200)
                if watch.problems:
                    raise CheckFailed(f"{len(watch.problems)} problem(s):\n  " + "\n  ".join(watch.problems))
                note["info"] = f"{len(watch.excused)} expected 'WebSocket connection failed' line(s) during the restart"
            ok = True
        except Exception as exc:  # noqa: BLE001 - every failure ends the check with a message
            if not isinstance(exc, CheckFailed):
                print(f"check: error: {type(exc).__name__}: {exc}", flush=True)
            if watch.problems:
                print("check: problems seen in the page:\n  " + "\n  ".join(watch.problems), flush=True)
            if watch.console:
                print("check: last console lines:\n  " + "\n  ".join(watch.console[-15:]), flush=True)
            if page is not None:
                try:
                    screenshot.parent.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(screenshot), full_page=True)
                    print(f"check: screenshot of the failure: {screenshot}", flush=True)
                except Exception:  # noqa: BLE001
                    pass
        finally:
            if context is not None:
                context.close()
            if browser is not None:
                browser.close()
    total = time.perf_counter() - (started if started is not None else t_all)
    if ok:
        print(f"check: PASSED in {total:.1f} s; screenshot: {screenshot}", flush=True)
    else:
        print(f"check: FAILED after {total:.1f} s", flush=True)
    return ok


def _squash(words: list[str]) -> list[str]:
    out: list[str] = []
    for w in words:
        if not out or out[-1] != w:
            out.append(w)
    if len(out) > 8:
        out = out[:3] + ["…"] + out[-4:]
    return out


if __name__ == "__main__":
    sys.exit("run ./demo.sh --check (or python demo/serve.py --check)")
