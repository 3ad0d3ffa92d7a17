"""``python bench/web/cap_probe.py``: where Chromium's 255-WebSockets cap applies.

Plain JS pages (cap_probe.html / cap_probe.js, no library) in headless Chromium (Debian's,
through Playwright) open sockets one at a time to a local websockets echo server that accepts
any path, in several layouts: one page; two pages of one context; a page and a window.open
popup; a page and a same-origin iframe; a page and a dedicated Worker; a Worker alone; two
browser contexts; many pages of one context. Each layout runs in a fresh browser. Prints one
JSON line per layout; docs/browser-limits.md reads them. Renderer processes are counted with
CDP's SystemInfo.getProcessInfo (the whole browser, including a spare renderer).
"""

from __future__ import annotations

import asyncio
import functools
import http.server
import json
import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, sync_playwright
from websockets.asyncio.server import serve

HERE = Path(__file__).resolve().parent
CHROMIUM = os.environ.get("CIRCLE_WS_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
logger = logging.getLogger("cap_probe")


def echo_server(ports: int = 1) -> list[str]:
    """A websockets echo server on ``ports`` ports of 127.0.0.1 in a daemon thread; any path
    is accepted."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    urls: list[str] = []

    async def echo(ws: Any) -> None:
        async for message in ws:
            await ws.send(message)

    async def main() -> None:
        servers = [await serve(echo, "127.0.0.1", 0, ping_interval=None) for _ in range(ports)]
        urls.extend(f"ws://127.0.0.1:{srv.sockets[0].getsockname()[1]}" for srv in servers)
        ready.set()
        await asyncio.Future()

    threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True).start()
    ready.wait(30)
    return urls


def static_server() -> str:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(HERE))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    logging.getLogger("websockets").setLevel(logging.WARNING)
    (ws_url,), base = echo_server(), static_server()
    many_ports = echo_server(100)
    page_url = f"{base}/cap_probe.html"

    def open_many(page: Page, n: int, tag: str) -> dict[str, Any]:
        return page.evaluate("([u, n, t]) => openMany(u, n, t)", [ws_url, n, tag])

    def in_worker(page: Page, n: int) -> dict[str, Any]:
        return page.evaluate(
            """([u, n]) => new Promise((resolve) => {
                 const w = new Worker('./cap_probe.js');
                 w.onmessage = (e) => resolve(e.data);
                 w.postMessage({url: u, n, tag: 'w'});
               })""",
            [ws_url, n],
        )

    def other_context(b: Any) -> Page:
        page = b.new_context().new_page()
        page.goto(page_url)
        return page

    def timing(page: Page) -> dict[str, Any]:
        """100 sockets, 6 connecting at a time: to one port (distinct paths) and to 100 ports."""
        code = """async (urls) => {
            const t0 = performance.now(); let next = 0; const held = [];
            const worker = async () => { while (next < urls.length) { const u = urls[next++];
              await new Promise((ok, bad) => { const ws = new WebSocket(u); held.push(ws);
                ws.onopen = ok; ws.onclose = bad; }); } };
            await Promise.all(Array.from({length: 6}, worker));
            const ms = performance.now() - t0; for (const ws of held) ws.close(); return ms; }"""
        one = page.evaluate(code, [f"{many_ports[0]}/t{i}" for i in range(100)])
        page.wait_for_timeout(500)
        spread = page.evaluate(code, many_ports)
        return {"one_port_ms": round(one), "hundred_ports_ms": round(spread)}

    layouts = {
        "one page, 300": lambda b, c: {"page": open_many(c(), 300, "a")},
        "one page, 255 then slot release": lambda b, c: (lambda p: {
            "page": open_many(p, 255, "a"),
            "release": p.evaluate("(u) => slotRelease(u)", ws_url)})(c()),
        "two pages of one context, 200 each": lambda b, c: {"a": open_many(c(), 200, "a"), "b": open_many(c(), 200, "b")},
        "page + window.open popup, 200 each": lambda b, c: popup(c()),
        "page + same-origin iframe, 200 each": lambda b, c: iframe(c()),
        "page + dedicated Worker, 200 each": lambda b, c: (lambda p: {"page": open_many(p, 200, "a"), "worker": in_worker(p, 200)})(c()),
        "dedicated Worker alone, 300": lambda b, c: {"worker": in_worker(c(), 300)},
        "two contexts, 200 each": lambda b, c: {"a": open_many(c(), 200, "a"), "b": open_many(other_context(b), 200, "b")},
        "four pages of one context, 250 each": lambda b, c: {f"p{k}": open_many(c(), 250, f"p{k}-") for k in range(4)},
        "four contexts, 250 each": lambda b, c: {f"c{k}": open_many(other_context(b), 250, f"c{k}-") for k in range(4)},
        "opening time, 100 sockets, 6 at a time": lambda b, c: timing(c()),
    }

    def popup(page: Page) -> dict[str, Any]:
        first = open_many(page, 200, "a")
        with page.context.expect_page() as info:
            page.evaluate("() => { window.other = window.open('./cap_probe.html'); }")
        other = info.value
        other.wait_for_load_state()
        return {"page": first, "popup": open_many(other, 200, "b")}

    def iframe(page: Page) -> dict[str, Any]:
        first = open_many(page, 200, "a")
        page.evaluate("""() => new Promise((resolve) => {
            const f = document.createElement('iframe'); f.src = './cap_probe.html'; f.onload = resolve;
            document.body.appendChild(f); })""")
        return {"page": first, "iframe": page.frames[1].evaluate("([u, n, t]) => openMany(u, n, t)", [ws_url, 200, "f"])}

    with sync_playwright() as pw:
        for name, layout in layouts.items():
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                context = browser.new_context()
                errors: list[str] = []

                def new_page() -> Page:
                    page = context.new_page()
                    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                    page.goto(page_url)
                    return page

                result = layout(browser, new_page)
                procs = browser.new_browser_cdp_session().send("SystemInfo.getProcessInfo")["processInfo"]
                result["renderers"] = sum(1 for p in procs if p["type"] == "renderer")
                insufficient = [e for e in errors if "Insufficient resources" in e]
                result["console_insufficient_resources"] = len(insufficient)
                if insufficient:
                    result["console_example"] = insufficient[0]
            finally:
                browser.close()
            print(json.dumps({"layout": name, **result}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
