"""Judging a chaos soak: the driver's report (tests/chaos/soak.py), the rig's fault log and the
servers' journals in, figures and violations out.

Checked here (the driver checks the rest as it goes: deadlines, results, error types,
statuses, disconnect, leftover tasks, memory samples):

* journals: no script executed twice on a server, none executed on a server it was not sent
  to, none executed although its call was refused with NotConnectedError (never sent), and
  every call that got a result was executed exactly once where it was sent;
* recovery: for every outage of every connection (it left CONNECTED and came back), the time
  from the end of the fault that caused it to CONNECTED again, within a bound; an outage with
  no fault on its server near it is "unexplained";
* memory: the library's traced memory after the calm phase against its value after warm-up.
"""

from __future__ import annotations

import base64
import re
from collections import Counter
from typing import Any

from .soak import ALL, ANY, NOT_CONNECTED, OK, OUTCOME_NAMES

SCRIPT = re.compile(r"^'c(\d+)-n(\d+)'$")

#: Library memory may grow this much between the warm-up and the end of the calm phase. What
#: legitimately grows is bounded and small (the manager's window of round trips: ~20 KiB); a
#: 10-minute run of a client without leaks stays within +-0.1 MB.
MEMORY_BOUND_MB = 1.0
#: Recovery may take connect_timeout + reconnect_max_delay (an attempt into a broken network,
#: then the longest backoff) plus this much (handshake, authentication, a busy machine).
RECOVERY_SLACK = 3.0


def _journal_checks(report: dict[str, Any], journals: dict[str, list[dict[str, Any]]], v: Any) -> dict[str, Any]:
    names = [s["name"] for s in report["servers"]]
    outcome = base64.b64decode(report["outcome"])
    target = base64.b64decode(report["target"])
    all_calls = {int(n): {int(k): c for k, c in per.items()} for n, per in report["all_calls"].items()}
    any_where = {int(n): i for n, i in report.get("any_where", {}).items()}
    seen: list[Counter[int]] = []
    detail: list[dict[int, list[dict[str, Any]]]] = []
    foreign = torn = 0
    for name in names:
        counts: Counter[int] = Counter()
        where: dict[int, list[dict[str, Any]]] = {}
        for entry in journals.get(name, []):
            if "torn" in entry:
                torn += 1
                continue
            m = SCRIPT.match(str(entry.get("script")))
            if not m:
                foreign += 1
                continue
            n = int(m.group(2))
            counts[n] += 1
            where.setdefault(n, []).append(entry)
        seen.append(counts)
        detail.append(where)
    duplicates = misrouted = refused_but_run = result_not_run = executed_failed = 0
    for i, name in enumerate(names):
        for n, k in seen[i].items():
            if k > 1:
                duplicates += k - 1
                v(f"journal: script 'n{n}' executed {k} times on {name}: {detail[i][n][:4]}")
            if n >= len(target):
                v(f"journal: {name} executed script 'n{n}', a call number the soak never made")
                continue
            if target[n] not in (ALL, ANY) and target[n] != i:
                misrouted += 1
                v(f"journal: script 'n{n}' (sent to {names[target[n]]}) executed on {name}")
    for n in range(1, len(outcome)):
        if target[n] == ANY:  # one server of the manager's choosing, never two
            runs = {i: seen[i].get(n, 0) for i in range(len(names)) if seen[i].get(n, 0)}
            if len(runs) > 1:
                duplicates += sum(runs.values()) - 1
                v(f"journal: execute_script_any 'n{n}' ran on {', '.join(names[i] for i in runs)}")
            if outcome[n] == OK and (n not in any_where or runs.get(any_where[n], 0) == 0):
                result_not_run += 1
                said = names[any_where[n]] if n in any_where else "?"
                v(f"journal: execute_script_any 'n{n}' says it ran on {said}, whose journal has no line for it "
                  f"(ran on: {[names[i] for i in runs]})")
            elif outcome[n] == NOT_CONNECTED and runs:
                refused_but_run += 1
                v(f"journal: execute_script_any 'n{n}' failed with NotConnectedError but ran on {list(map(names.__getitem__, runs))}")
            elif outcome[n] not in (OK, NOT_CONNECTED) and runs:
                executed_failed += 1
            continue
        per = all_calls.get(n) if target[n] == ALL else {target[n]: outcome[n]}
        for i, code in (per or {}).items():
            ran = seen[i].get(n, 0)
            if code == NOT_CONNECTED and ran:
                refused_but_run += 1
                v(f"journal: 'n{n}' failed with NotConnectedError (never sent) but {names[i]} executed it")
            elif code == OK and ran == 0:
                result_not_run += 1
                v(f"journal: 'n{n}' got its result but {names[i]}'s journal has no line for it")
            elif code not in (OK, NOT_CONNECTED) and ran:
                executed_failed += 1
    return {
        "executions journaled": sum(sum(c.values()) for c in seen),
        "duplicates": duplicates,
        "misrouted": misrouted,
        "executed although refused": refused_but_run,
        "results without a journal line": result_not_run,
        "executed, caller got an error": executed_failed,
        "journal lines not from the soak / torn": f"{foreign} / {torn}",
    }


def _outages(report: dict[str, Any], faults: list[dict[str, Any]], v: Any) -> dict[str, Any]:
    opts = report["config"]["client"]
    names = [s["name"] for s in report["servers"]]
    chaos_started = report["timing"].get("chaos_started", 0.0)
    detect = opts["keepalive_interval"] + opts["keepalive_timeout"]
    lookback = detect + 1.0
    bound = opts["connect_timeout"] + opts["reconnect_max_delay"] + RECOVERY_SLACK
    recoveries: list[float] = []
    unexplained: list[str] = []
    worst: tuple[float, str] = (0.0, "")
    observed = 0
    for track in report["tracks"]:
        log = track["log"]
        server = names[track["server"]]
        mine = [f for f in faults if f["server"] == server]
        left: float | None = None
        seen_connected = False
        for t, status in log:
            if status == "closed":
                break
            if status == "connected":
                if left is not None:
                    observed += 1
                    near = [f for f in mine if f["start"] <= t and f["end"] >= left - lookback]
                    if not near:
                        unexplained.append(f"{track['name']}: down {left:.2f}..{t:.2f} (rig time), no fault on {server}")
                    ended = [f for f in near if f["end"] <= t]
                    # The fault that ended last before it came back (None: one still going on).
                    cause: dict[str, Any] | None = max(ended, key=lambda f: f["end"]) if ended else None
                    recovery = t - max(cause["end"], left) if cause is not None else 0.0
                    recoveries.append(recovery)
                    if cause is not None and recovery > worst[0]:
                        worst = (recovery, f"{track['name']} after {cause['kind']} ended at {cause['end']:.2f}")
                    # A half-open connection is only found out by the keep-alive.
                    limit = bound + (detect if cause is not None and cause["kind"] == "halfopen" else 0.0)
                    if recovery > limit:
                        v(f"{track['name']}: CONNECTED again {recovery:.2f}s after a {cause['kind'] if cause else '?'} "
                          f"on {server} ended at {t - recovery:.2f} (bound {limit:g}s)")
                    left = None
                seen_connected = True
            elif seen_connected and left is None and t >= chaos_started:
                left = t
    recoveries.sort()
    p95 = recoveries[int(0.95 * (len(recoveries) - 1))] if recoveries else 0.0
    return {
        "outages (left CONNECTED and came back)": observed,
        "worst recovery (fault end -> CONNECTED)": f"{worst[0]:.2f} s ({worst[1]})" if recoveries else "-",
        "p95 recovery": f"{p95:.2f} s",
        "unexplained outages": len(unexplained),
        "_unexplained": unexplained[:20],
    }


def analyze(
    report: dict[str, Any], faults: list[dict[str, Any]], journals: dict[str, list[dict[str, Any]]] | None
) -> tuple[dict[str, Any], list[str]]:
    """Return (figures, violations): the driver's violations plus those found here."""
    violations = list(report["violations"])
    extra = 0

    def v(text: str) -> None:
        nonlocal extra
        extra += 1
        if len(violations) < 120:
            violations.append(text)

    for fault in faults:
        if "error" in fault:
            v(f"rig: the {fault['kind']} on {fault['server']} at {fault['at']}s failed: {fault['error']}")
    counts = report["counts"]
    figures: dict[str, Any] = {
        "platform": report["platform"],
        "seed": report["config"]["seed"],
        "chaos duration": f"{report['config']['seconds']:g} s",
        "faults injected": len(faults),
        "faults by kind": ", ".join(f"{k} {n}" for k, n in sorted(Counter(f["kind"] for f in faults).items())),
        "calls (play + ping)": counts.get("calls", 0),
        "results (right output)": counts.get("results", 0),
        "errors by type": ", ".join(f"{k} {n}" for k, n in sorted(report["errors"].items(), key=lambda kv: -kv[1])) or "none",
        "hangs (no end by timeout + slack)": counts.get("hangs", 0),
        "late (> timeout + 0.5 s)": counts.get("late (over timeout + 0.5 s)", 0),
        "short (< 1 s) timeouts expired with no fault": counts.get("short timeouts expired on a healthy network", 0),
        "worst overshoot past a call's timeout": f"{report['worst_overshoot']} s ({report.get('worst_overshoot_what', '')})",
        "reconnects (client metrics, per connection)": sum(m.get("reconnects", 0) for m in report["metrics"].values()),
        "churned clients (connect, calls, disconnect)": counts.get("churn clients", 0),
        "manager: execute_script_all / execute_script_any": (
            f"{counts.get('execute_script_all', 0)} / {counts.get('execute_script_any', 0)}"),
        "fleet: remove_server / add_server / health()": (
            f"{counts.get('fleet remove_server', 0)} / {counts.get('fleet add_server', 0)} / {counts.get('fleet health', 0)}"),
        "calls abandoned by their caller (wait_for)": counts.get("abandoned by the caller", 0),
        "bursts (10-40 plays at once) / garbage calls": f"{counts.get('bursts', 0)} / {counts.get('garbage calls', 0)}",
        "churn: disconnect() while": ", ".join(
            f"{k[len('churn disconnect while '):]} {n}" for k, n in sorted(counts.items()) if k.startswith("churn disconnect while ")),
        "connect() / wait_connected() while not ready": (
            f"{counts.get('connect() while not ready', 0)} / {counts.get('wait_connected()', 0)}"),
        "worst connect() / disconnect()": f"{report['worst_connect']} s / {report['worst_disconnect']} s",
    }
    figures.update(_outages(report, faults, v))
    final = report["timing"].get("final_recovery")
    figures["all CONNECTED after the rig healed"] = "never" if final is None else f"{final:.2f} s"
    if journals is None:
        figures["duplicates"] = "n/a (server has no --journal)"
    else:
        figures.update(_journal_checks(report, journals, v))
    warm, calm = report["memory"].get("warm"), report["memory"].get("calm")
    if warm and calm:
        growth = calm["library_mb"] - warm["library_mb"]
        figures["library memory, warm -> end (tracemalloc)"] = (
            f"{warm['library_mb']:.2f} -> {calm['library_mb']:.2f} MB ({growth:+.2f})")
        figures["all traced memory, warm -> end"] = f"{warm['traced_mb']:.2f} -> {calm['traced_mb']:.2f} MB"
        figures["_memory_growth"] = calm.get("top_growth", [])
        if growth > MEMORY_BOUND_MB:
            v(f"memory: the library's traced memory grew {growth:.2f} MB (bound {MEMORY_BOUND_MB:g} MB)")
    else:
        figures["library memory"] = "not measured"
    outcome = base64.b64decode(report["outcome"])
    figures["play outcomes"] = ", ".join(
        f"{OUTCOME_NAMES[c]} {n}" for c, n in sorted(Counter(outcome[1:]).items()))
    figures["violations"] = report["violation_count"] + extra
    return figures, violations


def format_figures(figures: dict[str, Any]) -> str:
    rows = [(k, str(v)) for k, v in figures.items() if not k.startswith("_")]
    width = max(len(k) for k, _ in rows)
    lines = [f"| {'figure'.ljust(width)} | value |", f"| {'-' * width} | ----- |"]
    lines += [f"| {k.ljust(width)} | {v} |" for k, v in rows]
    return "\n".join(lines)


def failure_message(figures: dict[str, Any], violations: list[str], report: dict[str, Any] | None = None) -> str:
    seed = figures.get("seed")
    parts = [
        f"chaos soak failed: {figures.get('violations')} violation(s); seed {seed!r} "
        f"(rerun: ./soak.sh --seed {seed} ...)",
        *[f"  - {text}" for text in violations[:60]],
        "",
        format_figures(figures),
    ]
    if figures.get("_memory_growth"):
        parts += ["", "where the library's memory grew since the warm-up:", *[f"  {g}" for g in figures["_memory_growth"]]]
    if figures.get("_unexplained"):
        parts += ["", "unexplained outages:", *[f"  {u}" for u in figures["_unexplained"]]]
    if report is not None and violations:
        parts += _context(report, violations[0])
    return "\n".join(parts)


def _context(report: dict[str, Any], first: str) -> list[str]:
    """What the connection named in the first violation went through, and the faults on its server."""
    track = next((t for t in report["tracks"] if t["name"] in first), None)
    track = track or next((t for t in report["tracks"] if t["url"] in first), None)
    if track is None:
        return []
    server = report["servers"][track["server"]]["name"]
    out = ["", f"{track['name']} ({track['url']}), last status changes (rig time):"]
    out += [f"  {t:.3f} {s}" for t, s in track["log"][-12:]]
    since = track["log"][-12][0] if len(track["log"]) >= 12 else 0.0
    out.append(f"faults on {server} since {since:.3f}:")
    out += [f"  {f}" for f in report.get("fault_log", []) if f["server"] == server and f["end"] >= since - 5]
    lines = [f"  {t:.3f} {line}" for t, line in report.get("log_tail", []) if track["url"] in line and t >= since - 5]
    out += [f"library log about {track['url']} (last {min(len(lines), 30)}):", *lines[-30:]]
    return out
