"""``python -m bench.cap [--n 255] [--reps 3]``: as many servers as Chromium allows in one page.

circle-ws-web's manager connects to N servers (255: Chromium's cap per renderer process, see
docs/browser-limits.md), authenticated and not, plays on all and disconnects; a hand-written
JS page (bench/web/cap_js.js, same page) opens the same N servers the same way (6 connecting
at a time) and all at once. The servers are one reference server process listening on N
ports (``--max-connections`` raised). ``./bench.sh`` runs it with the connect benchmarks in the
full profile (:func:`run`, rows from :func:`rows`); standalone it prints the table and writes
``bench/results/cap.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from . import servers, web
from .browser import BenchPage
from .report import row, target

HERE = Path(__file__).resolve().parent
#: Servers (Chromium's cap per renderer process) and repetitions in the suite's full profile.
N = 255
REPS = 3
Samples = dict[str, list[float]]
MB = 1 / 2**20


def _server(require_auth: bool, n: int) -> servers.Proc:
    """One reference server process listening on ``n`` ports: ``n`` servers to a client.
    (Distinct ports, not paths: Chromium opens sockets to one host:port one at a time.)"""
    args = [sys.executable, "-m", "circle_ws_web.server", *["--port", "0"] * n, "--max-connections", "2000"]
    if require_auth:
        args.append("--require-auth")
    env = {**os.environ, "PYTHONPATH": str(servers.SRC)}
    return servers.Proc(args, n, "reference server", env)


def _upload(page: BenchPage) -> None:
    """Put cap_page.py into the page's Pyodide (next to page_bench) and import it."""
    page.js(
        "const src = await (await fetch('./cap_page.py', {cache: 'no-store'})).text();"
        " bench.pyodide.FS.writeFile('/tmp/bench/cap_page.py', src); return true;"
    )
    page.py("import cap_page")


def run(page: BenchPage, n: int, reps: int, out: Samples) -> None:
    """Alternate circle-ws-web (authenticated, open) and the JS page (6 at a time, all at once)."""
    _upload(page)
    with _server(True, n) as auth, _server(False, n) as open_:
        auth_urls, open_urls = auth.urls, open_.urls
        sides = {
            "circle.auth": lambda: page.py(f"await cap_page.run({auth_urls!r}, {servers.TEST_KEY!r})", timeout=300),
            "circle.open": lambda: page.py(f"await cap_page.run({open_urls!r}, None)", timeout=300),
            "js.6": lambda: page.js(f"const m = await import('./cap_js.js'); return await m.run({json.dumps(open_urls)}, 6);", timeout=300),
            "js.all": lambda: page.js(f"const m = await import('./cap_js.js'); return await m.run({json.dumps(open_urls)}, Infinity);", timeout=300),
        }
        names = list(sides)
        for rep in range(reps + 1):  # the first round warms up
            for name in names if rep % 2 == 0 else names[::-1]:
                m = sides[name]()
                if m["bad_results"] or m["peak_sockets"] != n:
                    raise RuntimeError(f"cap benchmark {name}: {m}")
                if rep:
                    for key in ("connect_ms", "play_ms", "disconnect_ms"):
                        out[f"browser.cap.{name}.{key}"].append(m[key])
                    out[f"browser.cap.{name}.heap_mb"].append((m["heap_connected"] - m["heap_before"]) * MB)
                    out[f"browser.cap.{name}.heap_left_mb"].append((m["heap_after"] - m["heap_before"]) * MB)
                    if name.startswith("circle"):
                        out[f"browser.cap.{name}.left"].append(m["live_proxies"] + m["live_timers"] + m["live_sockets"])
    out["browser.cap.n"] = [float(n)]


def rows(s: Samples) -> list[dict[str, Any]]:
    """The report's rows for the samples :func:`run` took (none if it did not run)."""
    if "browser.cap.n" not in s:
        return []
    n = int(s["browser.cap.n"][0])
    p = "browser.cap."
    left = max(s.get(p + "circle.auth.left", [0]) + s.get(p + "circle.open.left", [0]))
    group = f"browser, {n} servers"
    js6 = "JS page, 6 connecting at a time, no auth"
    out = [
        row("cap.connect.auth", group, f"manager.connect(), {n} servers, authenticated", "ms",
            s[p + "circle.auth.connect_ms"], js6, s[p + "js.6.connect_ms"],
            note="the JS page cannot sign (no secp256k1 in the page); the library signs once per server "
                 "in pure-Python ecdsa (~1.4 ms each in Pyodide)"),
        row("cap.connect.open", group, f"manager.connect(), {n} servers, no auth", "ms",
            s[p + "circle.open.connect_ms"], js6, s[p + "js.6.connect_ms"]),
        row("cap.connect.js_all", group, f"JS page, {n} sockets opened all at once", "ms",
            s[p + "js.all.connect_ms"], js6, s[p + "js.6.connect_ms"],
            note="why the transport opens 6 at a time: Chromium delays each new socket by up to "
                 "5 s * 2**min(connecting, 16) / 65536"),
        row("cap.play", group, f"execute_script_all on {n} authenticated servers", "ms",
            s[p + "circle.auth.play_ms"], "JS page: play on all at once", s[p + "js.6.play_ms"]),
        row("cap.heap", group, f"JS heap while {n} servers are connected (growth)", "MB",
            s[p + "circle.auth.heap_mb"], "JS page, same sockets", s[p + "js.6.heap_mb"],
            goal=target("value_max", 0.01 * n, f"< {0.01 * n:g} MB (10 KB per server)"),
            also_required=("nothing left after disconnect_all (proxies, timers, sockets)", left == 0),
            note=f"JS heap left after disconnect_all: "
                 f"{max(s[p + 'circle.auth.heap_left_mb']):.2f} MB at most; proxies + timers + sockets left: {left:.0f}"),
    ]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cap", description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=N, help="servers (default: 255, Chromium's cap)")
    parser.add_argument("--reps", type=int, default=REPS)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "cap.json")
    args = parser.parse_args(argv)
    from . import report

    started = time.perf_counter()
    root = web.prepare()
    channel = web.Channel()
    out: Samples = defaultdict(list)
    with servers.RefServer() as ref, web.static_server(root, channel) as base:
        with BenchPage(base, channel, ref.url, servers.TEST_KEY) as page:
            run(page, args.n, args.reps, out)
    result = {"rows": rows(out), "samples": dict(out), "duration_s": time.perf_counter() - started}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    for r in result["rows"]:
        b = r["baseline"]
        print(f"| {r['figure']} | {report._cell(r['value'], r['unit'])} | {b['name']}: "
              f"{report._cell(b, r['unit'])} | {r['ratio']:.2f}x | {r['met']} |")
    print(f"wrote {args.out} in {result['duration_s']:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
