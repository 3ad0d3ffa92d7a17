"""The browser benchmarks: circle-ws-web in Pyodide next to the hand-written JS client, on the
same page, against the same server. Returns raw samples like bench/cpython.py does.

A page per cold start (fresh Chromium profile: nothing cached; Chromium is up on a start page
before the page is opened, as a visitor's browser is), then the same page again in that browser
(a warm visit: HTTP cache and V8's code cache); the last one stays open for the RPC, connect,
memory and signing figures.
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from typing import Any

from . import servers, web
from .browser import BenchPage
from .stats import percentile

Samples = dict[str, list[float]]


def _busy(pid: int, fn: Any) -> tuple[Any, float]:
    """Run ``fn()``; also return the CPU share (of one core) process ``pid`` used meanwhile."""
    c0, t0 = servers.cpu_seconds(pid), time.perf_counter()
    value = fn()
    return value, (servers.cpu_seconds(pid) - c0) / (time.perf_counter() - t0)


def run(cfg: dict[str, Any], out: Samples, info: dict[str, Any]) -> None:
    only = cfg["only"]
    t = time.perf_counter()
    root = web.prepare()
    info["webroot"] = json.loads((root / "webroot.json").read_text())
    _log(f"web root ready ({time.perf_counter() - t:.1f} s)")
    channel = web.Channel()
    nports = max(cfg["connect_sizes"]) if "connect" in only else 1
    with (
        servers.ping_server() as ps,
        servers.RefServer() as ref,
        servers.RefServer(nports=nports) as many,
        web.static_server(root, channel) as base,
    ):
        page = None
        try:
            # Cold starts take the install routes in turn (A, B, C, D, A, B, ...: noise hits
            # every route alike); the last boot (micropip, what the docs show) stays open for
            # the other figures.
            boots = cfg["boots"] if "cold" in only else 1
            routes = list(cfg.get("routes", ROUTES))
            if "cold" in only and not _snapshot(root, info):
                routes.remove("snapshot")
            for i in range(boots):
                if page is not None:
                    page.close()
                route = routes[(i - boots) % len(routes)]  # the last one is routes[-1]
                t = time.perf_counter()
                page = BenchPage(base, channel, ref.url, servers.TEST_KEY, install=route, start_page="cold" in only)
                if "cold" in only:
                    _keep(out, "cold" if route == "micropip" else f"cold.{route}", page.timings)
                    # The same page again in the same browser: a returning visitor (HTTP cache,
                    # V8's code cache). Its own samples; the cold ones stay first visits.
                    _keep(out, "warm" if route == "micropip" else f"warm.{route}", page.revisit())
                _log(f"page boot {i + 1} ({route}, then again warm): {time.perf_counter() - t:.1f} s")
            assert page is not None
            info["pyodide_python"] = page.py("import sys; sys.version.split()[0]")
            info["page_log"] = channel.log
            for name, fn in (
                ("rpc", lambda: _rpc(page, ps, cfg, out)),
                ("connect", lambda: _connect(page, many, cfg, out)),
                ("auth", lambda: _auth(page, cfg, out)),
                ("memory", lambda: _memory(page, ps, ref, cfg, out)),
            ):
                if name in only:
                    t = time.perf_counter()
                    fn()
                    _log(f"browser {name}: {time.perf_counter() - t:.1f} s")
            if "connect" in only and cfg["reps"] >= 7:  # full profile only (~2 min): bench/cap.py
                from . import cap

                t = time.perf_counter()
                cap.run(page, cap.N, cap.REPS, out)
                _log(f"browser cap ({cap.N} servers): {time.perf_counter() - t:.1f} s")
        finally:
            if page is not None:
                page.close()
    if channel.log:
        info["page_log"] = channel.log


def _keep(out: Samples, prefix: str, timings: dict[str, Any]) -> None:
    for name, value in timings.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[f"{prefix}.{name}"].append(value)


#: How a cold page gets circle-ws-web (bench/web/bench.js): after a boot with micropip or
#: loadPackage, fetched while Pyodide starts (loadPyodide's packages), or from a memory snapshot.
ROUTES = ("snapshot", "packages", "loadpackage", "micropip")


def _snapshot(root: Any, info: dict[str, Any]) -> bool:
    """Give the bench web root a memory snapshot of this wheel (tools/snapshot.py; cached in
    .cache/snapshots/ per wheel, so a run only makes one when the code changed). False if it
    could not be made: the run goes on without the snapshot route, and the report says why."""
    snapshot = web.snapshot_module()
    t = time.perf_counter()
    try:
        manifest, how = snapshot.ensure(root)
    except snapshot.SnapshotError as exc:
        info["snapshot_error"] = str(exc)
        _log(f"no snapshot, its route is left out: {exc}")
        return False
    info["snapshot"] = {**manifest, "how": how}
    _log(f"snapshot {how} ({time.perf_counter() - t:.1f} s; {manifest['snapshot_bytes'] / 1e6:.1f} MB, "
         f"made in {manifest['make_seconds']:.1f} s)")
    return True


def _rpc(page: BenchPage, ps: servers.Proc, cfg: dict[str, Any], out: Samples) -> None:
    url = ps.url
    pid = ps.proc.pid  # type: ignore[union-attr]
    page.py(f"await page_bench.open_client({url!r})")
    page.js(f"window.jc = await new bench.js.JsRpc({url!r}).open();")
    calls, n = cfg["calls"], cfg["sequential"]
    run = {
        "js": {
            "seq": lambda: page.js(f"return await bench.js.sequential(window.jc, {n});"),
            "tput": lambda k: page.js(f"return await bench.js.throughput(window.jc, {k}, {calls});"),
        },
        "circle": {
            "seq": lambda: page.py(f"await page_bench.sequential({n})"),
            "tput": lambda k: page.py(f"await page_bench.throughput({k}, {calls})"),
        },
    }
    for side in run.values():  # warm-up: JIT, caches, first-use allocations
        side["tput"](64)
        side["seq"]()
    for rep in range(cfg["reps"]):
        order = ["js", "circle"] if rep % 2 == 0 else ["circle", "js"]
        for name in order:
            lat = run[name]["seq"]()
            out[f"browser.{name}.p50"].append(percentile(lat, 50))
            out[f"browser.{name}.p99"].append(percentile(lat, 99))
        for k in cfg["inflight"]:
            for name in order:
                value, busy = _busy(pid, lambda: run[name]["tput"](k))
                out[f"browser.{name}.tput.{k}"].append(value)
                out[f"browser.{name}.server_busy.{k}"].append(busy)
    page.py("await page_bench.close_client()")
    page.js("await window.jc.close();")


def _connect(page: BenchPage, many: servers.Proc, cfg: dict[str, Any], out: Samples) -> None:
    sizes = cfg["connect_sizes"]
    for rep in range(cfg["reps"] + 1):  # the first round warms up
        for n in sizes if rep % 2 == 0 else sizes[::-1]:
            ms = page.py(f"await page_bench.connect_n({many.urls[:n]!r}, {servers.TEST_KEY!r})")
            if rep:
                out[f"browser.connect.{n}"].append(ms)


def _auth(page: BenchPage, cfg: dict[str, Any], out: Samples) -> None:
    costs = page.py(f"page_bench.auth_costs({servers.TEST_KEY!r}, {cfg['reps']})")
    for name, values in costs.items():
        out[f"browser.auth.{name}"].extend(values)


def _memory(page: BenchPage, ps: servers.Proc, ref: servers.Proc, cfg: dict[str, Any], out: Samples) -> None:
    calls, cycles, rounds = cfg["memory"]
    m = page.py(
        f"await page_bench.memory({ps.url!r}, {ref.url!r}, {servers.TEST_KEY!r}, {calls}, {cycles}, {rounds})",
        timeout=900,
    )
    for name, value in m.items():
        out[f"browser.memory.{name}"] = [float(v) for v in value] if isinstance(value, list) else [float(value)]


def _log(text: str) -> None:
    print(f"  {text}", file=sys.stderr, flush=True)


def collect(cfg: dict[str, Any], info: dict[str, Any]) -> Samples:
    out: Samples = defaultdict(list)
    run(cfg, out, info)
    return dict(out)
