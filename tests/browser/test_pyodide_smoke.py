"""Smoke tests: the wheel installs with micropip under Pyodide in Chromium, fully offline.

Why: every browser test builds on this; if the install, the offline lock or the harness breaks,
these fail first and say which part broke.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import pytest
from playwright.sync_api import Page

pytestmark = pytest.mark.browser


def test_wheel_installs_and_imports(
    pyodide_page: Page, run_py: Callable[..., Any], package_version: str
) -> None:
    info = run_py(
        pyodide_page,
        """
import importlib.metadata, sys
import circle_ws_web, circle_ws_web.errors, circle_ws_web.status
{
    "version": circle_ws_web.__version__,
    "dist_version": importlib.metadata.version("circle-ws-web"),
    "installer": importlib.metadata.distribution("circle-ws-web").read_text("INSTALLER"),
    "file": circle_ws_web.__file__,
    "platform": sys.platform,
}
""",
    )
    assert info["version"] == package_version
    assert info["dist_version"] == package_version
    assert (info["installer"] or "").strip() == "micropip"
    assert "site-packages/circle_ws_web/" in info["file"]
    assert info["platform"] == "emscripten"


def test_sys_platform_is_emscripten(shared_pyodide_page: Page, run_py: Callable[..., Any]) -> None:
    assert run_py(shared_pyodide_page, "import sys\nsys.platform") == "emscripten"


def test_dependencies_come_from_the_local_lock(
    shared_pyodide_page: Page, run_py: Callable[..., Any], webroot: Path
) -> None:
    """ecdsa and six resolve from our generated pyodide-lock.json; websockets is skipped (marker)."""
    pins = json.loads((webroot / "webroot.json").read_text())["lock_packages"]
    got = run_py(
        shared_pyodide_page,
        """
import importlib.util, micropip
import ecdsa, six
from ecdsa import SECP256k1, SigningKey
sk = SigningKey.generate(curve=SECP256k1)
sig = sk.sign(b"circle")
installed = micropip.list()
{
    "ecdsa": ecdsa.__version__,
    "six": six.__version__,
    "verified": sk.get_verifying_key().verify(sig, b"circle"),
    "sources": {n: installed[n].source for n in ("ecdsa", "six", "micropip", "circle-ws-web")},
    "websockets": importlib.util.find_spec("websockets") is not None,
}
""",
    )
    assert got["ecdsa"] == pins["ecdsa"]
    assert got["six"] == pins["six"]
    assert got["verified"] is True
    # micropip reports packages loaded from the lock as "pyodide"; ours came from a URL.
    assert got["sources"]["ecdsa"] == got["sources"]["six"] == "pyodide"
    assert got["sources"]["circle-ws-web"] != "pyodide"
    assert got["websockets"] is False


def test_no_request_left_the_machine(pyodide_page: Page, page_events: Callable[..., Any]) -> None:
    events = page_events(pyodide_page)
    assert events.requests, "no request was recorded at all"
    assert events.foreign_requests() == []
    assert events.blocked == []
    paths = {u.split("/", 3)[3] for u in events.requests}
    for needed in (
        "pyodide/pyodide.mjs",
        "pyodide/pyodide.asm.wasm",
        "pyodide/pyodide-lock.json",
        "pyodide/micropip-0.11.1-py3-none-any.whl",
        "pyodide/ecdsa-0.19.2-py2.py3-none-any.whl",
        "pyodide/six-1.17.0-py2.py3-none-any.whl",
    ):
        assert needed in paths, f"{needed} was not loaded from the local server: {sorted(paths)}"
    assert any(p.startswith("wheels/circle_ws_web-") for p in paths)


def test_worker_mode(
    worker_page: Page, run_py: Callable[..., Any], page_events: Callable[..., Any], package_version: str
) -> None:
    got = run_py(
        worker_page,
        """
import js, sys
import circle_ws_web, circle_ws_web.errors, circle_ws_web.status
{
    "scope": js.self.constructor.name,
    "has_document": hasattr(js, "document"),
    "version": circle_ws_web.__version__,
    "platform": sys.platform,
}
""",
    )
    assert got == {
        "scope": "DedicatedWorkerGlobalScope",
        "has_document": False,
        "version": package_version,
        "platform": "emscripten",
    }
    events = page_events(worker_page)
    assert any(u.endswith("/browser/worker.js") for u in events.requests)
    assert events.foreign_requests() == []


@pytest.mark.parametrize("mode", ["pyodide_page", "worker_page"])
def test_harness_runs_async_python_and_uploads_modules(
    mode: str,
    request: pytest.FixtureRequest,
    run_py: Callable[..., Any],
    upload_module: Callable[[Page, str, str], str],
    write_file: Callable[[Page, str, str | bytes], str],
) -> None:
    page: Page = request.getfixturevalue(mode)
    assert run_py(page, "import asyncio\nawait asyncio.sleep(0.01)\n[1, 'a', None]") == [1, "a", None]
    # State persists between calls (one __main__ per page).
    run_py(page, "counter = 41")
    assert run_py(page, "counter + 1") == 42
    # Uploaded modules import at once, and a re-upload is picked up.
    upload_module(page, "scenario_mod", "async def main():\n    return 'v1'\n")
    assert run_py(page, "import scenario_mod\nawait scenario_mod.main()") == "v1"
    upload_module(page, "scenario_mod", "async def main():\n    return 'v2'\n")
    assert run_py(page, "import scenario_mod\nawait scenario_mod.main()") == "v2"
    write_file(page, "/tmp/data/blob.bin", b"\x00\xffcircle")
    assert run_py(page, "open('/tmp/data/blob.bin', 'rb').read().hex()") == "00ff636972636c65"
    # A Python exception surfaces with its traceback.
    with pytest.raises(run_py.Error) as exc_info:  # type: ignore[attr-defined]
        run_py(page, "def f():\n    raise KeyError('nope')\nf()")
    assert exc_info.value.type == "KeyError"
    assert 'line 2, in f' in exc_info.value.traceback


def test_boot_timings(
    pyodide_page: Page,
    page_events: Callable[..., Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Print page load -> harness ready and the per-step boot timings (not asserted tightly)."""
    timings = page_events(pyodide_page).timings
    round_trips = []
    for _ in range(20):
        t0 = time.perf_counter()
        pyodide_page.evaluate("() => window.harness.pyodide.runPythonAsync('1')")
        round_trips.append((time.perf_counter() - t0) * 1000)
    with capsys.disabled():
        print(
            "\n[boot] goto->ready {playwright_goto_to_ready_ms} ms (in page: ready at {ready_at_ms} ms);"
            " pyodide boot {pyodide_boot_ms} ms, micropip {micropip_load_ms} ms,"
            " wheel install {wheel_install_ms} ms, import check {import_check_ms} ms".format(**timings)
        )
        print(f"[boot] runPythonAsync('1') round trip: median {statistics.median(round_trips):.2f} ms")
    assert timings["ready_at_ms"] < 60_000
