"""The report: rows of figures against baselines, written as JSON, Markdown and a PNG chart.

Every row is one figure of circle-ws-web next to a baseline measured in the same run, both as
raw numbers (median of the repetitions, with min/max and the samples) and as their ratio; a
target, where there is one, is checked against the ratio or the raw value and marked met or
not. Targets live here, in the report, never in a test.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .stats import spread_pct, summary

#: Target kinds: what the limit is compared against.
TARGET_KINDS = ("ratio_max", "ratio_min", "value_max", "value_min")


def target(kind: str, limit: float, text: str) -> dict[str, Any]:
    assert kind in TARGET_KINDS, kind
    return {"kind": kind, "limit": limit, "text": text}


def row(
    id: str,
    group: str,
    figure: str,
    unit: str,
    value: list[float],
    baseline_name: str,
    baseline: list[float],
    *,
    better: str = "lower",
    goal: dict[str, Any] | None = None,
    also_required: tuple[str, bool] | None = None,
    note: str = "",
) -> dict[str, Any]:
    """One figure. ``value`` and ``baseline`` are the samples of the repetitions (same unit).

    ``also_required``: a further condition of the target (text, holds?), e.g. "no live proxy".
    """
    v, b = summary(value), summary(baseline)
    ratio = v["median"] / b["median"] if b["median"] else float("inf")
    met: bool | None = None
    if goal is not None:
        subject = ratio if goal["kind"].startswith("ratio") else v["median"]
        met = subject <= goal["limit"] if goal["kind"].endswith("max") else subject >= goal["limit"]
        if also_required is not None:
            met = met and also_required[1]
    return {
        "id": id,
        "group": group,
        "figure": figure,
        "unit": unit,
        "better": better,
        "value": v,
        "baseline": {"name": baseline_name, **b},
        "ratio": ratio,
        "target": goal,
        "also_required": None if also_required is None else {"text": also_required[0], "holds": also_required[1]},
        "met": met,
        "note": note,
    }


def _fmt(x: float) -> str:
    if x == 0:
        return "0"
    a = abs(x)
    if a >= 1000:
        return f"{x:,.0f}"
    if a >= 100:
        return f"{x:.0f}"
    if a >= 10:
        return f"{x:.1f}"
    if a >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def _cell(s: dict[str, Any], unit: str) -> str:
    return f"{_fmt(s['median'])} {unit} [{_fmt(s['min'])}–{_fmt(s['max'])}, ±{spread_pct(s):.0f}%]"


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        f"# circle-ws-web benchmarks ({report['mode']})",
        "",
        f"{report['started']} · {m['cpu']} · {m['cores']} cores · CPython {m['python']} · "
        f"Chromium {m['chromium']} · Pyodide {m['pyodide']} (Python {m.get('pyodide_python', '?')}) · "
        f"Node {m['node']} · websockets {m['websockets']} · commit {m['commit']} · "
        f"load average {m['loadavg_start']} → {m['loadavg_end']} · {report['duration_s']:.0f} s",
        "",
        "Each figure: median of the repetitions [min–max, ±interquartile range as % of the median],"
        " next to a baseline measured in the same run; ratio = circle-ws-web / baseline.",
        "",
        "| group | figure | circle-ws-web | baseline | ratio | target | met |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in report["rows"]:
        b = r["baseline"]
        goal = r["target"]["text"] if r["target"] else "—"
        if r["also_required"]:
            goal += f"; {r['also_required']['text']}"
        met = {True: "**yes**", False: "**no**", None: "—"}[r["met"]]
        lines.append(
            f"| {r['group']} | {r['figure']} | {_cell(r['value'], r['unit'])} | "
            f"{b['name']}: {_cell(b, r['unit'])} | {r['ratio']:.2f}x | {goal} | {met} |"
        )
    notes = [r for r in report["rows"] if r["note"]]
    if notes:
        lines += ["", "Notes:", ""]
        lines += [f"- **{r['figure']}** ({r['group']}): {r['note']}" for r in notes]
    if report.get("notes"):
        lines += [""] + [f"- {n}" for n in report["notes"]]
    return "\n".join(lines) + "\n"


def chart(report: dict[str, Any], path: Path) -> None:
    """Horizontal bars: each row's ratio to its baseline, its target marked, coloured by met."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["rows"]
    height = max(3.0, 0.32 * len(rows) + 1.4)
    fig, ax = plt.subplots(figsize=(13, height))
    labels, ratios, colors = [], [], []
    for r in rows:
        label = f"{r['group']}: {r['figure']}"
        labels.append(label if len(label) <= 72 else label[:71] + "…")
        ratios.append(max(r["ratio"], 1e-3))  # log scale: a zero growth still gets a bar
        colors.append({True: "#3a9a4a", False: "#c8413b", None: "#8a8f98"}[r["met"]])
    y = list(range(len(rows)))[::-1]
    ax.barh(y, ratios, color=colors, height=0.65)
    for yi, r in zip(y, rows):
        goal = r["target"]
        if goal and goal["kind"].startswith("ratio"):
            ax.plot([goal["limit"]] * 2, [yi - 0.4, yi + 0.4], color="black", linewidth=2)
        ax.text(max(r["ratio"], 1e-3), yi, f" {r['ratio']:.2f}x", va="center", fontsize=7)
    ax.axvline(1.0, color="#444", linewidth=0.8, linestyle="--")
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("circle-ws-web / baseline (log scale). Black tick: ratio target. Green: met, red: missed, grey: no target")
    ax.set_title(f"circle-ws-web benchmarks ({report['mode']}, {report['started']})", fontsize=10)
    fig.tight_layout()
    fig.subplots_adjust(left=0.38)  # room for the longest labels
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


def write(report: dict[str, Any], outdir: Path) -> dict[str, Path]:
    """latest.json, latest.md and latest.png in ``outdir`` (each written atomically). Without
    matplotlib (a bench-only dependency; ./bench.sh installs it) the chart is left out and the
    report says so."""
    from . import cap  # rows of the socket-cap benchmark, when this run took its samples

    known = {r["id"] for r in report["rows"]}
    report["rows"] += [r for r in cap.rows(report.get("samples", {})) if r["id"] not in known]
    outdir.mkdir(parents=True, exist_ok=True)
    paths = {"json": outdir / "latest.json", "md": outdir / "latest.md", "png": outdir / "latest.png"}
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        report["notes"].append("chart not drawn: matplotlib is not installed (./bench.sh installs it)")
        del paths["png"]
    for kind, text in (("json", json.dumps(report, indent=1) + "\n"), ("md", markdown(report))):
        tmp = paths[kind].with_name(paths[kind].name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, paths[kind])
    if "png" in paths:
        tmp = paths["png"].with_name("latest.png.tmp")
        chart(report, tmp)
        os.replace(tmp, paths["png"])
    return paths
