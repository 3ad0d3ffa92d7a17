"""``python -m bench [--quick | --smoke] [--out DIR] [--only NAMES]``: run the benchmarks, write the report.

Runs the CPython benchmarks in a subprocess (bench/cpython.py), then the browser ones
(bench/browser_suite.py), and writes ``latest.json``, ``latest.md`` and ``latest.png`` to
``--out`` (default bench/results/). Every figure is a ratio against a baseline measured in the
same run (see bench/report.py); targets are checked in the report only.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from . import browser, report, servers
from .report import row, target

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

NAMES = ("rpc", "capacity", "connect", "recovery", "silence", "auth", "memory", "fleet", "lifecycle", "cold")
BROWSER_NAMES = {"rpc", "connect", "auth", "memory", "cold"}

PROFILES: dict[str, dict[str, Any]] = {
    "quick": {
        "reps": 3,
        "sequential": 300,
        "calls": 2000,
        "inflight": [1, 16, 64, 256],
        "connect_sizes": [1, 10, 50],
        "recovery_reps": 4,
        "recovery_delay": 0.2,
        "keepalive": [0.3, 0.2],
        "silence_reps": 3,
        "memory": [3000, 5, 3],
        "boots": 4,  # 2 per install route
        "routes": ["snapshot", "micropip"],  # bench/browser_suite.py ROUTES: the new and the usual
        "lifecycle_reps": 2,
    },
    "full": {
        "reps": 7,
        "sequential": 2000,
        "calls": 10000,
        "inflight": [1, 16, 64, 256],
        "connect_sizes": [1, 10, 50],
        "recovery_reps": 8,
        "recovery_delay": 0.2,
        "keepalive": [0.5, 0.3],
        "silence_reps": 5,
        "memory": [20000, 50, 3],
        "boots": 12,  # 3 per install route (bench/browser_suite.py ROUTES)
        "lifecycle_reps": 7,
    },
}
# Every benchmark with the fewest repetitions and calls a report allows (2 of each): for
# tests/test_bench_quick.py, which checks that the benchmarks run and the report is whole;
# its figures are too few to read.
PROFILES["smoke"] = {
    **PROFILES["quick"],
    "reps": 2, "sequential": 100, "calls": 500, "recovery_reps": 2, "silence_reps": 2, "memory": [1000, 3, 2],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="fewer repetitions and calls (under 2 minutes)")
    size.add_argument("--smoke", action="store_true", help="2 repetitions, few calls: checks that everything runs")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="output directory")
    parser.add_argument("--only", default=",".join(NAMES), help=f"comma-separated subset of {','.join(NAMES)}")
    parser.add_argument("--report", type=Path, metavar="JSON",
                        help="measure nothing: rebuild the rows (targets) of an earlier run's latest.json into --out")
    args = parser.parse_args(argv)
    only = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = set(only) - set(NAMES)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    if args.report is not None:  # e.g. after the targets changed: same samples, rows rebuilt
        earlier = json.loads(args.report.read_text())
        earlier["rows"] = build_rows(earlier["samples"], earlier["config"])
        paths = report.write(earlier, args.out)
        _log(f"rebuilt {', '.join(str(p) for p in paths.values())} from {args.report}")
        return 0
    mode = "quick" if args.quick else "smoke" if args.smoke else "full"
    cfg = {**PROFILES[mode], "only": only}

    started = time.perf_counter()
    machine = machine_info()
    samples: dict[str, list[float]] = {}
    info: dict[str, Any] = {}
    cpython_only = [n for n in only if n not in ("cold", "lifecycle")]
    if cpython_only:
        _log(f"CPython benchmarks: {', '.join(cpython_only)}")
        samples.update(run_cpython({**cfg, "only": cpython_only}))
    browser_only = [n for n in only if n in BROWSER_NAMES]
    if browser_only:
        from . import browser_suite

        _log(f"browser benchmarks: {', '.join(browser_only)}")
        samples.update(browser_suite.collect({**cfg, "only": browser_only}, info))
    if "lifecycle" in only:  # bench/lifecycle.py: online -> connected, visible -> dead connection found
        from . import lifecycle

        _log("browser lifecycle benchmarks")
        samples.update(lifecycle.collect(cfg, info))
    machine["pyodide"] = info.get("webroot", {}).get("pyodide_version", "?")
    machine["pyodide_python"] = info.get("pyodide_python", "?")
    machine["loadavg_end"] = _loadavg()
    result = {
        "mode": mode,
        "started": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "duration_s": time.perf_counter() - started,
        "machine": machine,
        "config": cfg,
        "rows": build_rows(samples, cfg),
        "notes": notes(samples, info),
        "samples": samples,
    }
    paths = report.write(result, args.out)
    print(report.markdown(result))
    _log(f"wrote {', '.join(str(p) for p in paths.values())} in {result['duration_s']:.0f} s")
    return 0


def run_cpython(cfg: dict[str, Any]) -> dict[str, list[float]]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-m", "bench.cpython", json.dumps(cfg)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True, check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"the CPython benchmarks failed (exit {proc.returncode})")
    return json.loads(proc.stdout)


# --- rows ------------------------------------------------------------------------------------


def build_rows(s: dict[str, list[float]], cfg: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    def add(key: str, baseline_key: str, *a: Any, scale: float = 1.0, **kw: Any) -> None:
        if key in s and baseline_key in s:
            rows.append(row(*a[:4], [v * scale for v in s[key]], a[4], [v * scale for v in s[baseline_key]], **kw))

    # Issue 12's targets: the browser client at 16, 64, 256 in flight >= 0.8x the JS client, p50
    # <= 1.2x, p99 <= 1.5x; CPython at least 1.0x raw websockets (p50 at most 1.1x).
    for prefix, group, base, p50_goal, p99_goal, tput_goal, tput_at in (
        ("browser", "browser RPC", "JS client", 1.2, 1.5, 0.8, (16, 64, 256)),
        ("rpc", "CPython RPC", "raw websockets", 1.1, None, 1.0, (1, 16, 64, 256)),
    ):
        add(f"{prefix}.circle.p50", f"{prefix}.js.p50" if prefix == "browser" else f"{prefix}.raw.p50",
            f"{prefix}.p50", group, "round trip p50 (sequential)", "ms", base,
            goal=target("ratio_max", p50_goal, f"<= {p50_goal}x"))
        other = "js" if prefix == "browser" else "raw"
        add(f"{prefix}.circle.p99", f"{prefix}.{other}.p99", f"{prefix}.p99", group, "round trip p99 (sequential)", "ms", base,
            goal=None if p99_goal is None else target("ratio_max", p99_goal, f"<= {p99_goal}x"))
        for k in cfg["inflight"]:
            goal = target("ratio_min", tput_goal, f">= {tput_goal}x") if k in tput_at else None
            add(f"{prefix}.circle.tput.{k}", f"{prefix}.{other}.tput.{k}", f"{prefix}.tput.{k}", group,
                f"throughput, {k} in flight", "calls/s", base, better="higher", goal=goal)

    add("capacity.ref", "capacity.node", "capacity.ref", "servers", "reference server (ping), raw client, 64 in flight",
        "calls/s", "Node ping server", better="higher",
        note="the RPC figures use the Node ping server (bench/ping_server.mjs) so that the server is not what is measured")
    add("capacity.pyping", "capacity.node", "capacity.pyping", "servers", "Python ping server (websockets), raw client, 64 in flight",
        "calls/s", "Node ping server", better="higher")

    sizes = cfg["connect_sizes"]
    for prefix, group in (("connect", "CPython connect"), ("browser.connect", "browser connect")):
        for n in sizes[1:]:
            goal = target("ratio_max", 2.0, "<= 2x one server") if n == max(sizes) else None
            add(f"{prefix}.{n}", f"{prefix}.{sizes[0]}", f"{prefix}.{n}", group,
                f"manager.connect(), {n} servers, authenticated", "ms", f"{sizes[0]} server", goal=goal)

    d = cfg["recovery_delay"]
    add("recovery.circle", "recovery.raw", "recovery", "CPython recovery",
        f"server restart -> first answered call (reconnect delay {d * 1000:.0f} ms)", "ms",
        "raw client, same retry delay", goal=target("value_max", d * 1000 + 100, f"<= {d * 1000 + 100:.0f} ms (delay + 100 ms)"))
    i, t = cfg["keepalive"]
    limit = (i + t) * 1.1 * 1000
    add("silence.detect", "silence.sleep", "silence", "CPython recovery",
        f"silent server detected (keep-alive {i * 1000:.0f} + {t * 1000:.0f} ms)", "ms",
        "asyncio.sleep(interval + timeout)", goal=target("value_max", limit, f"<= {limit:.0f} ms (+10 %)"))

    add("fleet.any.p50", "fleet.direct.p50", "fleet.any", "CPython fleet",
        "execute_script_any round trip p50 (two servers, the preferred one up)", "ms",
        "execute_script on the same connection", goal=target("ratio_max", 1.1, "<= 1.1x"))
    add("fleet.any_down.p50", "fleet.next.p50", "fleet.down", "CPython fleet",
        "execute_script_any p50, preferred server known down (breaker open)", "ms",
        "execute_script on the next server: one round trip", goal=target("ratio_max", 1.1, "<= 1.1x"),
        note="no timeout is waited: the down server is passed over before anything is sent")
    add("auth.sign.ecdsa", "auth.sign.coincurve", "auth.sign.cpython", "signing", "EIP-191 sign, ecdsa backend, CPython",
        "ms", "coincurve, CPython")
    add("auth.sign.ecdsa", "auth.sign.ecdsa_package", "auth.sign.cpython.package", "signing",
        "EIP-191 sign, ecdsa backend (own fixed-base table), CPython", "ms",
        "the ecdsa package's sign_digest_deterministic + keccak, CPython")
    add("auth.keccak.pure", "auth.keccak.native", "auth.keccak.cpython", "signing", "keccak256, pure Python, CPython",
        "ms", "pycryptodome, CPython")
    add("browser.auth.sign_ecdsa", "browser.auth.sign_ecdsa_package", "auth.sign.pyodide", "signing",
        "EIP-191 sign, ecdsa backend, Pyodide", "ms",
        "the ecdsa package's sign_digest_deterministic + keccak, same page", goal=target("value_max", 0.7, "<= 0.7 ms"))
    add("browser.auth.keccak_pure", "auth.keccak.pure", "auth.keccak.pyodide", "signing", "keccak256, pure Python, Pyodide",
        "ms", "pure, CPython")
    add("browser.auth.sign_digest_ecdsa", "browser.auth.sign_ecdsa", "auth.sign_digest.pyodide", "signing",
        "EIP-191 sign without its keccak (k*G, RFC 6979, inverse), Pyodide", "ms", "the whole signature, same page",
        note="what a signature would cost in the browser with keccak free: the floor of the pure-Python signer")
    add("auth.sign.ecdsa_digest", "auth.sign.ecdsa", "auth.sign_digest.cpython", "signing",
        "EIP-191 sign without its keccak, ecdsa backend, CPython", "ms", "the whole signature")
    add("browser.auth.table_build_w7", "browser.auth.table_build_w8", "auth.table.pyodide", "signing",
        "signer table build, w=7 (a first signature without a snapshot), Pyodide", "ms", "w=8 (the snapshot's)")
    add("auth.table_build.w7", "auth.table_build.w8", "auth.table.cpython", "signing",
        "signer table build, w=7, CPython", "ms", "w=8")

    js_total = "cold.js_first_result_at_ms"
    for key, figure, base_key, base, goal in (
        ("page_load_ms", "page load (navigation -> load event)", js_total, None, None),
        ("pyodide_ready_ms", "Pyodide ready (import + loadPyodide)", js_total, None, None),
        ("micropip_load_ms", "micropip loaded", js_total, None, None),
        ("wheel_install_ms", "wheel installed (micropip.install, with ecdsa + six)", js_total, None,
         target("value_max", 300, "<= 300 ms")),
        ("import_ms", "import circle_ws_web", js_total, None, target("value_max", 50, "<= 50 ms")),
        ("import_app_ms", "then from circle_ws_web import CircleWsClient, ws_manager", js_total, None, None),
        ("connect_auth_ms", "connected and authenticated (manager.connect)", "cold.js_connect_ms", "JS client: WebSocket open", None),
        ("first_result_ms", "first result (execute_script)", "cold.js_first_call_ms", "JS client: first call", None),
        ("first_result_at_ms", "total: navigation -> first result", js_total, None, None),
    ):
        add(f"cold.{key}", base_key, f"cold.{key}", "browser cold start", figure, "ms",
            base or "JS client: navigation -> first result", goal=goal)
    add("cold.loadpackage.wheel_install_ms", js_total, "cold.loadpackage.wheel_install_ms", "browser cold start",
        "wheel installed without micropip (pyodide.loadPackage: wheel URL + ecdsa, six)", "ms",
        "JS client: navigation -> first result", goal=target("value_max", 300, "<= 300 ms"),
        note="no micropip to load either: saves the 'micropip loaded' step too")
    add("cold.loadpackage.first_result_at_ms", js_total, "cold.loadpackage.first_result_at_ms", "browser cold start",
        "total without micropip: navigation -> first result", "ms", "JS client: navigation -> first result")
    # The cheaper routes against the ordinary one (micropip after the boot), boot for boot.
    for route, how in (("loadpackage", "loadPackage after the boot"), ("packages", "fetched while Pyodide starts"),
                       ("snapshot", "from a memory snapshot")):
        add(f"cold.{route}.installed_at_ms", "cold.installed_at_ms", f"cold.{route}.installed_at_ms", "browser cold start",
            f"navigation -> circle-ws-web installed, {how}", "ms", "micropip route")
    add("cold.snapshot.pyodide_ready_ms", "cold.pyodide_ready_ms", "cold.snapshot.pyodide_ready_ms", "browser cold start",
        "Pyodide ready, restored from the snapshot (with circle-ws-web imported)", "ms", "Pyodide's own start")
    add("cold.packages.first_result_at_ms", "cold.first_result_at_ms", "cold.packages.first_result_at_ms",
        "browser cold start", "total, wheel fetched while Pyodide starts: navigation -> first result", "ms",
        "micropip route")
    add("cold.snapshot.first_result_at_ms", "cold.first_result_at_ms", "cold.snapshot.first_result_at_ms",
        "browser cold start", "total from a memory snapshot: navigation -> first result", "ms", "micropip route",
        goal=target("value_max", 1500, "<= 1500 ms"),
        note="what the demo does when ./demo.sh (python tools/snapshot.py) has made a snapshot")
    # The snapshot route step by step (tools/snapshot_boot.mjs's timeline, since navigation).
    for key, figure in (
        ("tl_manifests_at_ms", "manifests read (webroot.json, circle-snapshot.json)"),
        ("tl_module_start_at_ms", "Pyodide's module starts (pyodide.asm.mjs imported)"),
        ("res_pyodide_asm_wasm_end_at_ms", "pyodide.asm.wasm arrived (9.6 MB)"),
        ("tl_wasm_ready_at_ms", "wasm compiled and instantiated (streamed while it arrived)"),
        ("tl_heap_arrived_at_ms", "heap file arrived (its non-zero pages, fetched in a worker)"),
        ("tl_fs_ready_at_ms", "heap unpacked, packages' zip written"),
        ("tl_restored_at_ms", "heap restored, Pyodide's bootstrap done (loadPyodide returns)"),
        ("tl_ready_at_ms", "fresh random seed drawn: Python ready"),
        ("connect_auth_at_ms", "connected and authenticated (manager.connect)"),
        ("first_result_at_ms", "first result (execute_script)"),
    ):
        add(f"cold.snapshot.{key}", js_total, f"cold.snapshot.{key}", "browser cold start: snapshot timeline",
            f"navigation -> {figure}", "ms", "JS client: navigation -> first result")
    # A returning visitor: the same page again in the same browser (HTTP cache, V8's code cache).
    for route, name in (("snapshot", "from a memory snapshot"), ("micropip", "micropip route")):
        key = "first_result_at_ms" if route == "micropip" else f"{route}.first_result_at_ms"
        add(f"warm.{key}", f"cold.{key}", f"warm.{key}", "browser warm visit",
            f"total, second visit, {name}: navigation -> first result", "ms", "first visit (cold cache)",
            goal=target("value_max", 1500, "<= 1500 ms") if route == "snapshot" else None)

    mb = 1 / 2**20
    calls, cycles, rounds = cfg["memory"]
    what = f"{calls} calls + {cycles} reconnect cycles (per round, {rounds} rounds)"
    if "browser.memory.heap_after" in s:
        growth = [(a - b) * mb for a, b in zip(s["browser.memory.heap_after"], s["browser.memory.heap_before"])]
        left = max(s["browser.memory.live_proxies"]) + max(s["browser.memory.live_timers"])
        rows.append(row("memory.browser", "memory", f"JS heap growth, {what}", "MB", growth,
                        "JS heap before", [b * mb for b in s["browser.memory.heap_before"]],
                        goal=target("value_max", 2.0, "< 2 MB"),
                        also_required=("every round < 2 MB; no live JS proxy or timer left",
                                       max(growth) < 2.0 and left == 0),
                        note=f"heap after gc() on both sides; live proxies + timers left: {left:.0f}; "
                             f"reconnects done: {sum(s.get('browser.memory.reconnects', [0])):.0f}"))
    if "memory.after" in s:
        growth = [(a - b) * mb for a, b in zip(s["memory.after"], s["memory.before"])]
        rows.append(row("memory.cpython", "memory", f"CPython traced memory growth, {what}", "MB", growth,
                        "traced before", [b * mb for b in s["memory.before"]],
                        goal=target("value_max", 2.0, "< 2 MB"),
                        also_required=("every round < 2 MB", max(growth) < 2.0)))
    from . import lifecycle

    rows.extend(lifecycle.rows(s))
    return rows


def notes(s: dict[str, list[float]], info: dict[str, Any]) -> list[str]:
    out = []
    for k in (64, 256):
        js, py = s.get(f"browser.js.server_busy.{k}"), s.get(f"browser.circle.server_busy.{k}")
        if js and py:
            out.append(
                f"Node ping server CPU while the browser clients ran at {k} in flight: JS client "
                f"{max(js):.0%}, circle-ws-web {max(py):.0%} of one core at most: not the bottleneck."
            )
    snap = info.get("snapshot")
    if snap:
        out.append(
            f"memory snapshot (tools/snapshot.py, {snap['how']} this run): {snap['snapshot_bytes'] / 1e6:.1f} MB heap file "
            f"(the non-zero pages of {snap.get('heap_bytes', snap['snapshot_bytes']) / 1e6:.1f} MB) + "
            f"{snap['site_zip_bytes'] / 1e6:.2f} MB packages zip, made in {snap['make_seconds']:.1f} s "
            f"(in the page: Pyodide boot {snap['page_boot_ms'] / 1000:.1f} s of {snap['page_make_ms'] / 1000:.1f} s)."
        )
    if info.get("snapshot_error"):
        out.append(f"no memory snapshot this run (its route left out): {info['snapshot_error'][:500]}")
    if info.get("page_log"):
        out.append("page log: " + "; ".join(info["page_log"])[:2000])
    return out


# --- machine -----------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    import websockets

    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "chromium": _version([browser.CHROMIUM, "--version"], "Chromium"),
        "node": _version([servers.node(), "--version"], "v").lstrip("v"),
        "websockets": websockets.__version__,
        "commit": _git_commit(),
        "loadavg_start": _loadavg(),
    }


def _version(cmd: list[str], marker: str) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    for line in out.splitlines():
        if marker in line:
            words = line.split()
            return next((w for w in words if w[:1].isdigit() or w.startswith("v")), line.strip())
    return out.strip() or "?"


#: What the report records as the commit when there is none to name.
UNKNOWN_COMMIT = "unknown"


def _git_commit(root: Path = ROOT) -> str:
    """The checkout's short commit (``+dirty`` when src/ has changes), or ``"unknown"``.

    Why "unknown" rather than failing: a source tarball, or a machine without git, must run the
    benchmarks too. Git is told not to look above ``root``, so a tarball unpacked inside some
    other repository does not report that repository's commit.
    """
    env = {**os.environ, "GIT_CEILING_DIRECTORIES": str(root.resolve().parent)}

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", *args], cwd=root, env=env, capture_output=True, text=True, timeout=30)

    try:
        rev = git("rev-parse", "--short", "HEAD")
        if rev.returncode != 0 or not rev.stdout.strip():
            return UNKNOWN_COMMIT  # not a checkout, or one without any commit yet
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", "src")
    except (OSError, subprocess.TimeoutExpired):  # no git on this machine
        return UNKNOWN_COMMIT
    return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
