"""Run one chaos soak with the clients on this process's asyncio loop (tests/test_chaos_soak.py
and ``./soak.sh`` use this)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from .analysis import analyze
from .rig import ChaosRig, RigEnv
from .soak import run_soak


async def run(seconds: float, seed: Any, workdir: Path, **config: Any) -> tuple[dict[str, Any], list[str], dict[str, Any]]:
    """(figures, violations, report). Starts and stops its own servers and proxies."""
    rig = ChaosRig(seed, workdir)
    await asyncio.to_thread(rig.start)
    try:
        report = await run_soak(RigEnv(rig), seconds=seconds, seed=seed, **config)
    finally:
        await asyncio.to_thread(rig.close)
    figures, violations = analyze(report, rig.fault_log, rig.journals())
    report["fault_log"] = rig.fault_log
    report["server_output"] = rig.server_output()
    return figures, violations, report
