"""The chaos soak (docs/chaos.md) with the clients inside Pyodide in headless Chromium: the page
runs tests/chaos/soak.py, uploaded as a module, against the browser's own WebSocket; the chaos
proxies, the real servers and the fault schedule run in this process (tests/chaos/rig.py, on
its own thread), reached from the page through a function Playwright exposes (``chaosEnv``).

CHAOS_SECONDS (default 25), CHAOS_SEED (default: random, printed in the failure message) and
CHAOS_SLACK (default 3) tune it; ``./soak.sh --browser --minutes N`` runs it for longer.

Chromium logs a console error for every WebSocket it cannot open (refused, reset during the
handshake, a server being restarted): that message, and only that one, is excused.
"""

from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
from playwright.sync_api import Page

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from chaos.analysis import failure_message, format_figures  # noqa: E402
from chaos.rig import ChaosRig  # noqa: E402

SECONDS = float(os.environ.get("CHAOS_SECONDS", "25"))
SLACK = float(os.environ.get("CHAOS_SLACK", "3"))
SOCKET_REFUSED = r"WebSocket connection to 'ws://127\.0\.0\.1:\d+/' failed"

PAGE_ENV = """
import json, js, chaos_soak

class ChaosEnv:
    platform = "pyodide"

    def __init__(self, cfg):
        self.key = cfg["key"]
        self.servers = cfg["servers"]

    async def rig_time(self):
        return json.loads(await js.chaosEnv("rig_time", 0))

    async def begin_chaos(self, seconds):
        await js.chaosEnv("begin", seconds)

    async def chaos_state(self):
        return json.loads(await js.chaosEnv("state", 0))
"""


@pytest.mark.timeout(SECONDS + 300)
@pytest.mark.allow_console_errors(SOCKET_REFUSED)
def test_chaos_soak_in_pyodide(
    pyodide_page: Page, run_py: Callable[..., Any], upload_module: Callable[..., Any], tmp_path: Path
) -> None:
    seed = os.environ.get("CHAOS_SEED") or str(random.randrange(10**6))
    rig = ChaosRig(seed, tmp_path)
    rig.start()
    try:

        def chaos_env(action: str, arg: float) -> str:
            if action == "rig_time":
                return json.dumps(rig.now())
            if action == "begin":
                rig.begin_chaos(float(arg))
                return "null"
            if action == "state":
                return json.dumps(rig.state())
            raise ValueError(action)

        pyodide_page.expose_function("chaosEnv", chaos_env)
        upload_module(pyodide_page, "chaos_soak", (HERE.parent / "chaos" / "soak.py").read_text())
        cfg = json.dumps({"key": rig.key, "servers": rig.server_specs})
        report = run_py(
            pyodide_page,
            PAGE_ENV
            + f"""
cfg = json.loads({cfg!r})
await chaos_soak.run_soak(ChaosEnv(cfg), seconds={SECONDS!r}, seed={seed!r}, slack={SLACK!r})
""",
            timeout=SECONDS + 240,
        )
    finally:
        rig.close()
    from chaos.analysis import analyze

    figures, violations = analyze(report, rig.fault_log, rig.journals())
    report["fault_log"] = rig.fault_log
    print(f"\nchaos soak in Pyodide, seed {seed}:\n{format_figures(figures)}")
    assert not violations and figures["violations"] == 0, failure_message(figures, violations, report)
    assert figures["results (right output)"] > 0 and figures["faults injected"] > 0
