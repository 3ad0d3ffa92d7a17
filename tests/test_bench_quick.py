"""`python -m bench --smoke` (every benchmark, 2 repetitions, few calls) runs end to end and writes a well-formed report.

Why: the benchmarks are only worth something if every figure stands next to a baseline
measured in the same run, as raw numbers (median of several repetitions, spread shown) and as
a ratio, with its target checked in the report. This test checks that structure. It asserts
nothing about the numbers themselves: timings on a shared machine are not pass/fail material,
which is why the targets live in the report.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Rows every report must have (a subset: the ones the issue names).
EXPECTED_ROWS = {
    "browser.p50", "browser.p99", "browser.tput.1", "browser.tput.16", "browser.tput.64", "browser.tput.256",
    "rpc.p50", "rpc.p99", "rpc.tput.1", "rpc.tput.16", "rpc.tput.64", "rpc.tput.256",
    "capacity.ref", "connect.10", "connect.50", "browser.connect.10", "browser.connect.50",
    "recovery", "silence", "auth.sign.cpython", "auth.keccak.cpython", "auth.sign.pyodide", "auth.keccak.pyodide",
    "cold.page_load_ms", "cold.pyodide_ready_ms", "cold.wheel_install_ms", "cold.connect_auth_ms",
    "cold.first_result_ms", "cold.first_result_at_ms", "memory.browser", "memory.cpython",
}
#: The issue's targets: row id -> target kind.
EXPECTED_TARGETS = {
    "browser.tput.64": "ratio_min", "browser.p50": "ratio_max", "rpc.tput.64": "ratio_min", "rpc.p50": "ratio_max",
    "connect.50": "ratio_max", "browser.connect.50": "ratio_max", "recovery": "value_max", "silence": "value_max",
    "cold.wheel_install_ms": "value_max", "memory.browser": "value_max",
}


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("bench")
    out = tmp / "results"
    env = {**os.environ, "CIRCLE_BENCH_WEBROOT": str(tmp / "webroot")}
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, f"python -m bench --smoke failed:\n{proc.stderr[-6000:]}"
    return out, json.loads((out / "latest.json").read_text())


@pytest.mark.timeout(600)
def test_quick_run_writes_json_markdown_and_chart(quick: tuple[Path, dict[str, Any]]) -> None:
    out, report = quick
    md = (out / "latest.md").read_text()
    assert md.startswith("# circle-ws-web benchmarks (smoke)")
    assert "| group | figure | circle-ws-web | baseline | ratio | target | met |" in md
    for r in report["rows"]:
        assert f"| {r['group']} | {r['figure']} |" in md, r["id"]
    if importlib.util.find_spec("matplotlib") is not None:
        assert (out / "latest.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob("*.tmp"))


@pytest.mark.timeout(600)
def test_report_records_the_machine(quick: tuple[Path, dict[str, Any]]) -> None:
    _, report = quick
    m = report["machine"]
    for key in ("cpu", "cores", "python", "chromium", "pyodide", "pyodide_python", "node", "websockets", "commit"):
        assert m.get(key) not in (None, "", "?"), key
    assert re.fullmatch(r"[0-9a-f]{4,40}(\+dirty)?|unknown", m["commit"]), m["commit"]
    assert report["mode"] == "smoke" and report["duration_s"] > 0


# --- the commit, in and outside a git checkout -----------------------------------------------
# Why: a source tarball (no .git) or a machine without git must run the benchmarks too, and the
# report must then say "unknown" instead of an empty commit. These run bench's own code in a
# temporary copy of bench/ and tools/, so they hold whether or not this tree is a checkout.


def _project_copy(where: Path) -> Path:
    """bench/ and tools/ (what `python -m bench` imports) copied to `where`, with no .git."""
    ignore = shutil.ignore_patterns("__pycache__", "results")
    for name in ("bench", "tools"):
        shutil.copytree(ROOT / name, where / name, ignore=ignore)
    (where / "src").mkdir()
    (where / "src" / "lib.py").write_text("x = 1\n")
    return where


def _bench_commit(project: Path, path: str | None = None) -> str:
    env = {**os.environ, "GIT_CEILING_DIRECTORIES": ""}
    if path is not None:
        env["PATH"] = path
    proc = subprocess.run(
        [sys.executable, "-c", "from bench.__main__ import _git_commit; print(_git_commit())"],
        cwd=project, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def _git(cwd: Path, *args: str) -> str:
    git = shutil.which("git")
    assert git is not None, "these tests need git to build a checkout"
    ident = ["-c", "user.name=bench test", "-c", "user.email=bench@example.invalid", "-c", "commit.gpgsign=false"]
    proc = subprocess.run([git, *ident, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=True)
    return proc.stdout.strip()


def test_commit_is_unknown_outside_a_checkout(tmp_path: Path) -> None:
    project = _project_copy(tmp_path / "circle-ws-web-0.1.0")
    assert not (project / ".git").exists()
    assert _bench_commit(project) == "unknown"


def test_commit_is_unknown_for_a_copy_unpacked_inside_another_repository(tmp_path: Path) -> None:
    outer = tmp_path / "home"
    outer.mkdir()
    _git(outer, "init", "-q")
    _git(outer, "commit", "-q", "--allow-empty", "-m", "someone else's repository")
    project = _project_copy(outer / "circle-ws-web-0.1.0")
    assert _bench_commit(project) == "unknown"  # not the outer repository's commit


def test_commit_of_a_checkout_and_of_a_dirty_one(tmp_path: Path) -> None:
    project = _project_copy(tmp_path / "checkout")
    _git(project, "init", "-q")
    _git(project, "add", "-A")
    _git(project, "commit", "-q", "-m", "a commit")
    head = _git(project, "rev-parse", "--short", "HEAD")
    assert _bench_commit(project) == head
    (project / "src" / "lib.py").write_text("x = 2\n")
    assert _bench_commit(project) == head + "+dirty"


def test_commit_is_unknown_without_git_even_in_a_checkout(tmp_path: Path) -> None:
    project = _project_copy(tmp_path / "checkout")
    _git(project, "init", "-q")
    _git(project, "add", "-A")
    _git(project, "commit", "-q", "-m", "a commit")
    no_git = tmp_path / "empty-bin"
    no_git.mkdir()
    assert _bench_commit(project, path=str(no_git)) == "unknown"


def test_commit_is_unknown_in_a_repository_without_commits(tmp_path: Path) -> None:
    project = _project_copy(tmp_path / "fresh")
    _git(project, "init", "-q")  # a checkout with no commit yet: HEAD names nothing
    assert _bench_commit(project) == "unknown"


def _check_summary(s: dict[str, Any], what: str) -> None:
    assert s["reps"] >= 2 and len(s["samples"]) == s["reps"], what  # several repetitions
    assert s["min"] <= s["p25"] <= s["median"] <= s["p75"] <= s["max"], what  # spread shown
    assert s["median"] == pytest.approx(statistics.median(s["samples"]), rel=1e-4, abs=1e-6), what


@pytest.mark.timeout(600)
def test_every_figure_is_a_ratio_against_a_baseline_of_the_same_run(quick: tuple[Path, dict[str, Any]]) -> None:
    _, report = quick
    rows = {r["id"]: r for r in report["rows"]}
    assert EXPECTED_ROWS <= set(rows), sorted(EXPECTED_ROWS - set(rows))
    for rid, r in rows.items():
        _check_summary(r["value"], f"{rid} value")
        _check_summary(r["baseline"], f"{rid} baseline")
        assert r["baseline"]["name"], rid
        assert r["baseline"]["median"] > 0, rid
        assert r["ratio"] == pytest.approx(r["value"]["median"] / r["baseline"]["median"]), rid
        assert r["unit"] and r["better"] in ("lower", "higher"), rid
        # The raw samples behind each figure are in the report too.
        assert report["samples"], rid


@pytest.mark.timeout(600)
def test_targets_are_checked_in_the_report(quick: tuple[Path, dict[str, Any]]) -> None:
    _, report = quick
    rows = {r["id"]: r for r in report["rows"]}
    for rid, kind in EXPECTED_TARGETS.items():
        assert rows[rid]["target"]["kind"] == kind, rid
    for rid, r in rows.items():
        goal = r["target"]
        if goal is None:
            assert r["met"] is None, rid
            continue
        assert goal["text"] and isinstance(goal["limit"], (int, float)), rid
        subject = r["ratio"] if goal["kind"].startswith("ratio") else r["value"]["median"]
        holds = subject <= goal["limit"] if goal["kind"].endswith("max") else subject >= goal["limit"]
        if r["also_required"] is not None:
            holds = holds and r["also_required"]["holds"]
        assert r["met"] is holds, rid
