"""Three real reference servers for the fleet scenarios (tests/scenarios/fleet_scenarios.py),
each with a request journal, so a scenario can prove where a ``play`` ran and that it never
ran twice."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .servers import ProcessPool, ServerProcess, free_port

#: The fleet's servers: all require authentication and have the test controls.
NAMES = ("a", "b", "c")


class FleetPool(ProcessPool):
    """``a``, ``b`` and ``c`` on free ports, journals under ``folder``, plus a dead port."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.journals = {name: folder / f"journal-{name}.jsonl" for name in NAMES}
        super().__init__({
            name: ServerProcess(free_port(), require_auth=True, extra=("--journal", str(self.journals[name])))
            for name in NAMES
        })

    def journal(self, name: str) -> list[dict[str, Any]]:
        """Every play server ``name`` started, across its restarts (one JSON object each)."""
        path = self.journals[name]
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]

    def control(self, action: str, name: str, down: float = 0.0) -> Any:
        """What a scenario's env asks for: stop, start, restart or journal."""
        server = self.servers[name]
        if action == "stop":
            server.stop()
        elif action == "start":
            server.start()
        elif action == "restart":
            server.restart(down)
        elif action == "journal":
            return json.dumps(self.journal(name))
        else:
            raise ValueError(f"unknown action {action!r}")
        return True
