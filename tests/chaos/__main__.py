"""``python -m chaos --seconds N [--seed S]`` (with tests/ on sys.path; ``./soak.sh`` wraps it):
one CPython chaos soak, the figures table at the end; exit 1 on any violation."""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
from pathlib import Path

from .analysis import failure_message, format_figures
from .cpython import run


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos")
    parser.add_argument("--seconds", type=float, default=60.0, help="chaos duration (default 60)")
    parser.add_argument("--seed", default=None, help="fault and client seed (default: random)")
    parser.add_argument("--slack", type=float, default=3.0, help="a call must end within timeout + slack")
    parser.add_argument("--no-tracemalloc", action="store_true", help="do not trace memory (faster)")
    parser.add_argument("--report", type=Path, help="write the full JSON report here")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else str(random.randrange(10**6))
    print(f"chaos soak: {args.seconds:g} s of faults, seed {seed}", flush=True)
    with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
        figures, violations, report = asyncio.run(
            run(args.seconds, seed, Path(tmp), slack=args.slack, tracemalloc=not args.no_tracemalloc)
        )
    if args.report:
        args.report.write_text(json.dumps({"figures": figures, "violations": violations, "report": report}, indent=1))
    if violations or figures["violations"]:
        print(failure_message(figures, violations, report))
        return 1
    print(format_figures(figures))
    if figures.get("_memory_growth"):
        print("\nwhere the library's memory grew since the warm-up (tracemalloc):")
        print("\n".join(f"  {line}" for line in figures["_memory_growth"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
