"""Imports flow one way: the plain-code core never imports a transport, the client, the
manager, the builder, the server or asyncio; transports import only the core."""

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "src" / "circle_ws_web"
CORE = [
    "errors", "status", "results", "rpc", "backoff", "auth_flow", "auth", "keccak", "config", "metrics", "transport",
    "lifecycle", "breaker", "routing",
]
ABOVE_CORE = {"client", "manager", "builder", "transports", "server"}


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                names.update(f"circle_ws_web.{base}".rstrip(".") + f".{a.name}" for a in node.names)
                names.add(f"circle_ws_web.{base}".rstrip("."))
            else:
                names.add(base)
    return names


@pytest.mark.parametrize("module", CORE)
def test_core_module_imports_nothing_above_it(module):
    names = imported_modules(PKG / f"{module}.py")
    for name in names:
        parts = name.split(".")
        assert not (parts[0] == "circle_ws_web" and len(parts) > 1 and parts[1] in ABOVE_CORE), name
        assert parts[0] not in {"asyncio", "websockets", "js", "pyodide", "socket"}, name


@pytest.mark.parametrize("path", sorted((PKG / "transports").glob("*.py")), ids=lambda p: p.name)
def test_transports_import_only_the_core(path):
    for name in imported_modules(path):
        parts = name.split(".")
        if parts[0] == "circle_ws_web" and len(parts) > 1:
            assert parts[1] not in {"client", "manager", "builder", "server"}, name
