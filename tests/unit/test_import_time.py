"""``import circle_ws_web`` loads no signing or hashing library, and everything works after.

Why: a page pays for every module it imports at each load, in WebAssembly (ecdsa alone was
about half of the library's 136 ms import in Pyodide), so the package imports its public names
on first use (PEP 562) and the signing layer imports coincurve, pycryptodome and ecdsa only
when a key is used. Each check runs in a fresh interpreter, where ``sys.modules`` shows what an
import really loaded; the timings themselves are the benchmark's business (bench/), not a test's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
VECTORS = json.loads((ROOT / "tests" / "auth_vectors.json").read_text(encoding="utf-8"))
#: Imported by nothing until a key signs (coincurve, pycryptodome) or verifies (ecdsa).
HEAVY = ("ecdsa", "six", "coincurve", "cffi", "Crypto")
#: The public names of the package (README, docs/api): all of them must stay importable.
PUBLIC = {
    "AuthError", "CircleWsClient", "CircleWsClientError", "CircuitOpenError", "ClientClosedError",
    "ConfigError", "ConnectError", "ConnectionLostError", "ConnectionStatus", "JsonRpcError",
    "Metrics", "NotConnectedError", "PlayResult", "ProtocolError", "RequestTimeoutError",
    "WsManager", "WsManagerBuilder", "__version__", "ws_manager",
}

PRELUDE = """
import json, sys
def loaded(*prefixes):
    return sorted(m for m, v in sys.modules.items() if v is not None and m.split(".")[0] in prefixes)
HEAVY = {heavy!r}
out = {{}}
"""


def run(body: str, *, block_native: bool = False) -> dict[str, Any]:
    """Run ``body`` in a fresh CPython with the checkout's src/ first; it fills ``out``.

    ``block_native``: coincurve and pycryptodome made unimportable, as in Pyodide.
    """
    block = (
        'sys.modules.update({"coincurve": None, "Crypto": None, "Crypto.Hash": None})\n'
        if block_native else ""
    )
    script = PRELUDE.format(heavy=HEAVY) + block + textwrap.dedent(body) + "\nprint(json.dumps(out))\n"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_import_loads_no_signing_hashing_or_client_module() -> None:
    out = run("""
        import circle_ws_web
        out["heavy"] = loaded(*HEAVY)
        out["ours"] = loaded("circle_ws_web")
        out["asyncio"] = "asyncio" in sys.modules
    """)
    assert out["heavy"] == []
    assert out["ours"] == ["circle_ws_web", "circle_ws_web.errors"]
    assert out["asyncio"] is False  # the client (and asyncio with it) comes with ws_manager


def test_what_an_application_imports_still_loads_no_signing_library() -> None:
    # The client needs auth.py (PrivateKey) at import; auth.py must not drag ecdsa, coincurve
    # or pycryptodome in with it.
    out = run("""
        from circle_ws_web import CircleWsClient, WsManager, ws_manager
        from circle_ws_web import auth, keccak
        out["heavy"] = loaded(*HEAVY)
        out["client"] = "circle_ws_web.client" in sys.modules
    """)
    assert out["client"] is True
    assert out["heavy"] == []


@pytest.mark.parametrize("block_native", [False, True], ids=["cpython", "like-pyodide"])
def test_signing_works_after_a_lazy_import_and_imports_only_what_it_uses(block_native: bool) -> None:
    vector = VECTORS["eip191"][0]
    out = run(f"""
        from circle_ws_web import ws_manager
        from circle_ws_web.auth import PrivateKey, available_backends, verify_signature
        from circle_ws_web import keccak
        manager = ws_manager().private_key({vector["private_key"]!r}).add_server_url("ws://127.0.0.1:1").build()
        key = PrivateKey({vector["private_key"]!r})
        out["backends"] = available_backends()
        out["keccak"] = keccak.KECCAK_BACKEND
        out["signature"] = key.sign_message({vector["message"]!r})
        out["pure_signature"] = PrivateKey({vector["private_key"]!r}, backend="ecdsa").sign_message({vector["message"]!r})
        out["public_key"] = key.public_key_hex
        out["after_signing"] = loaded(*HEAVY)
        out["verified"] = verify_signature(key.public_key_hex, {vector["message"]!r}, out["signature"], backend="ecdsa")
        out["after_verifying"] = loaded("ecdsa")
    """, block_native=block_native)
    assert out["signature"] == out["pure_signature"] == vector["signature"]
    assert out["public_key"] == vector["public_key"]
    assert out["verified"] is True
    # The pure signer needs no ecdsa: only verification imports it.
    assert not any(m.startswith("ecdsa") for m in out["after_signing"]), out["after_signing"]
    assert "ecdsa" in out["after_verifying"]
    if block_native:
        assert out["backends"] == ["ecdsa"] and out["keccak"] == "pure"
        assert out["after_signing"] == []
    else:  # the dev environment has both native libraries: found on first use
        assert out["backends"] == ["coincurve", "ecdsa"] and out["keccak"] == "pycryptodome"
        assert "coincurve" in out["after_signing"] and "Crypto" in out["after_signing"]


def test_every_public_name_resolves_lazily_and_all_is_intact() -> None:
    out = run("""
        import importlib
        import circle_ws_web as pkg
        out["all"] = sorted(pkg.__all__)
        out["dir_has_all"] = set(pkg.__all__) <= set(dir(pkg))
        out["same_objects"] = {
            name: getattr(pkg, name) is getattr(importlib.import_module(f"circle_ws_web.{mod}"), name)
            for name, mod in pkg._LAZY.items()
        }
        ns = {}
        exec("from circle_ws_web import *", ns)
        out["star"] = sorted(k for k in ns if not k.startswith("__") or k == "__version__")
        try:
            pkg.no_such_name
        except AttributeError as exc:
            out["missing"] = str(exc)
        out["client_submodule"] = pkg.client.CircleWsClient is pkg.CircleWsClient
    """)
    assert set(out["all"]) == PUBLIC
    assert out["dir_has_all"] is True
    assert out["same_objects"] and all(out["same_objects"].values()), out["same_objects"]
    assert set(out["star"]) == PUBLIC
    assert "no_such_name" in out["missing"]
    assert out["client_submodule"] is True  # submodules imported for a name stay attributes


def test_lazy_names_match_the_type_checking_imports() -> None:
    # _LAZY (what runs) and the TYPE_CHECKING imports (what mypy and the API reference see)
    # must name the same modules, or one of them lies.
    import ast

    tree = ast.parse((SRC / "circle_ws_web" / "__init__.py").read_text())
    typed: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom)
                typed.update({a.name: str(imp.module) for a in imp.names})
    import circle_ws_web

    assert typed == circle_ws_web._LAZY
