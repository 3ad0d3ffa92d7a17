"""Memory snapshots: a page restored from one (tools/snapshot.py, tools/snapshot_boot.mjs) has
circle-ws-web imported with its browser transport and its signing table built, connects,
authenticates and runs scripts without importing anything; imports after the restore come from
the snapshot's zip; the heap file holds the heap's non-zero pages and unpacks to the heap
Pyodide made; every page draws its own random seed;
a snapshot of another wheel is never used (the page boots the ordinary way instead), and the
web root drops it. All offline: the watched pages fail on any request that leaves the machine.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page

from support.servers import TEST_KEY

ROOT = Path(__file__).resolve().parents[2]
VECTORS = json.loads((ROOT / "tests" / "auth_vectors.json").read_text(encoding="utf-8"))
sys.path.insert(0, str(ROOT / "tools"))
import snapshot as snapshot_tool  # noqa: E402  (tools/ is not a package)

PAGE = """<!doctype html><meta charset="utf-8"><link rel="icon" href="data:,">
<script type="module">
import { bootPyodide } from "/pyodide/snapshot_boot.mjs";
const params = new URLSearchParams(location.search);
window.booted = (async () => {
  const root = await (await fetch("/webroot.json")).json();
  const out = await bootPyodide({
    indexURL: "/pyodide/",
    wheelURL: new URL("/" + root.wheel, location.href).href,
    snapshot: params.get("snapshot") || "auto",
  });
  window.pyodide = out.pyodide;
  const restored = out.pyodide.runPython(`
import json, sys
json.dumps({"modules": sorted(sys.modules), "random_in_heap": "random" in sys.modules})`);
  return { route: out.route, timings: out.timings, skipped: out.snapshotSkipped, ...JSON.parse(restored) };
})().catch((err) => ({ error: String(err && err.stack ? err.stack : err) }));
</script>
"""

RUN = """async (code) => {
  const ns = window.pyodide.globals.get("dict")();
  try {
    const value = await window.pyodide.runPythonAsync(code, { globals: ns });
    return value;
  } finally {
    ns.destroy();
  }
}"""


def _copy_webroot(src: Path, dst: Path) -> Path:
    """A web root of our own (the session's is shared); Pyodide's big files hard-linked."""
    shutil.copytree(src, dst, copy_function=lambda s, d: _link_or_copy(Path(s), Path(d)))
    for name in snapshot_tool.FILES:
        (dst / "pyodide" / name).unlink(missing_ok=True)
    snapshot_tool._webroot_module().note_snapshot(dst)
    (dst / "snaptest.html").write_text(PAGE)
    return dst


def _copy_snapshot(src: Path, dst: Path) -> None:
    for name in snapshot_tool.FILES:
        shutil.copyfile(src / "pyodide" / name, dst / "pyodide" / name)
    snapshot_tool._webroot_module().note_snapshot(dst)


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        dst.hardlink_to(src)
    except OSError:
        shutil.copy2(src, dst)


@pytest.fixture(scope="module")
def made(webroot: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], Path]:
    """A copy of the session's web root with a snapshot made by tools/snapshot.py, its cache."""
    root = _copy_webroot(webroot, tmp_path_factory.mktemp("snap") / "webroot")
    cache = tmp_path_factory.mktemp("snapcache")
    manifest, how = snapshot_tool.ensure(root, cache=cache)
    assert how == "made"
    return root, manifest, cache


@pytest.fixture
def snap_root(made: tuple[Path, dict[str, Any], Path]) -> tuple[Path, dict[str, Any]]:
    root, manifest, cache = made
    snapshot_tool.ensure(root, cache=cache)  # back, if a test removed it
    return root, manifest


def _boot(open_page: Callable[..., Any], base: str, label: str, query: str = "") -> tuple[Page, dict[str, Any]]:
    page, _events = open_page(label)
    page.goto(f"{base}/snaptest.html{query}")
    booted = page.evaluate("() => window.booted")
    assert "error" not in booted, booted.get("error")
    return page, booted


def _py(page: Page, code: str) -> Any:
    return json.loads(page.evaluate(RUN, code))


def test_the_tool_writes_a_snapshot_of_the_webroot_wheel(made: tuple[Path, dict[str, Any], Path]) -> None:
    root, manifest, cache = made
    served = json.loads((root / "webroot.json").read_text())
    assert manifest["wheel_sha256"] == served["wheel_sha256"]
    assert manifest["pyodide_version"] == served["pyodide_version"]
    assert (root / "pyodide" / manifest["snapshot"]).stat().st_size == manifest["snapshot_bytes"] > 10**7
    # The file leaves out the heap's pages of zeros: well under the heap (30 MiB + a header).
    assert manifest["heap_bytes"] > 30 * 2**20 > manifest["snapshot_bytes"] * 1.3
    assert {"circle_ws_web.client", "circle_ws_web.manager", "circle_ws_web.auth",
            "circle_ws_web.transports.browser", "circle_ws_web.transports.page_events"} <= set(manifest["modules"])
    # The transports' JS helpers (run_js at their top level) travel as source, to be defined again.
    assert manifest["js_functions"] and all("=>" in source for source in manifest["js_functions"])
    assert snapshot_tool.installed(root) == manifest
    assert json.loads((root / "webroot.json").read_text())["snapshot"] == "pyodide/circle-snapshot.json"
    # Again: nothing to do. Removed: back from the cache (files copied, no browser started).
    assert snapshot_tool.ensure(root, cache=cache)[1] == "installed"
    assert snapshot_tool.remove(root) is True and snapshot_tool.installed(root) is None
    assert snapshot_tool.ensure(root, cache=cache)[1] == "cached"
    assert snapshot_tool.installed(root) == manifest


def test_a_restored_page_has_the_library_imported_and_works(
    snap_root: tuple[Path, dict[str, Any]], serve_folder: Callable[[Path], str],
    watched_page: Callable[..., Any], servers: Any,
) -> None:
    root, _ = snap_root
    page, booted = _boot(watched_page, serve_folder(root), "restored page")
    assert booted["route"] == "snapshot", booted
    # Imported before any code of ours ran: the heap came with them, the page's transport too.
    assert {"circle_ws_web.client", "circle_ws_web.builder", "circle_ws_web.keccak", "hmac",
            "circle_ws_web.transports.browser", "circle_ws_web.transports.page_events"} <= set(booted["modules"])
    vectors = json.dumps(VECTORS["eip191"])
    out = _py(page, f"""
import json, sys
before = set(sys.modules)
from circle_ws_web import auth, keccak, ws_manager
table_ready = auth._TABLE is not None  # built before the snapshot was taken
rows = [[auth.PrivateKey(v["private_key"]).sign_message(v["message"]) == v["signature"],
         auth.PrivateKey(v["private_key"]).public_key_hex == v["public_key"]] for v in json.loads({vectors!r})]
manager = ws_manager().private_key({TEST_KEY!r}).add_server_url({servers.url("auth")!r}).build()
report = await manager.connect()
result = await manager.execute_script({servers.url("auth")!r}, "40 + 2")
await manager.disconnect_all()
imported = sorted(set(sys.modules) - before)
import circle_ws_web.transports.browser as bt
import circle_ws_web.testing._clock as later
json.dumps({{"table": table_ready, "rows": rows, "output": result.output, "report": str(report),
             "keccak": keccak.KECCAK_BACKEND, "imported": imported, "transport_file": bt.__file__,
             "later_file": later.__file__, "live": bt.live_proxy_count()}})
""")
    assert out["table"] is True
    assert out["rows"] == [[True, True]] * len(VECTORS["eip191"])
    assert out["output"] == "42", out["report"]
    assert out["keccak"] == "pure"
    # Connecting, signing and the first call imported nothing: all of it came with the heap.
    assert out["imported"] == [], out["imported"]
    assert out["live"] == 0
    # Imported when the snapshot was made, from the zip a restore writes back before Python
    # resumes; so is a module imported only now.
    assert out["transport_file"].startswith("/lib/circle-site.zip/")
    assert out["later_file"].startswith("/lib/circle-site.zip/")


def test_the_heap_file_unpacks_to_the_heap(made: tuple[Path, dict[str, Any], Path]) -> None:
    root, manifest, _ = made
    packed = (root / "pyodide" / snapshot_tool.HEAP).read_bytes()
    heap = snapshot_tool.unpack_heap(packed, manifest["heap_bytes"])
    assert len(heap) == manifest["heap_bytes"]
    assert snapshot_tool.pack_heap(heap) == packed
    # Pyodide's own header first (its magic number), as makeMemorySnapshot wrote it.
    assert int.from_bytes(heap[:4], "little") == 1886286592
    with pytest.raises(snapshot_tool.SnapshotError):
        snapshot_tool.unpack_heap(packed[:-1], manifest["heap_bytes"])


def test_every_restored_page_draws_its_own_random_seed(
    snap_root: tuple[Path, dict[str, Any]], serve_folder: Callable[[Path], str], watched_page: Callable[..., Any],
) -> None:
    # The heap holds the PRNG's state: without a fresh seed every page would draw the same
    # reconnect jitter, and all clients of a restarted server would come back in step.
    root, _ = snap_root
    base = serve_folder(root)
    draws = []
    for i in range(2):
        page, booted = _boot(watched_page, base, f"restored page {i}")
        assert booted["route"] == "snapshot" and booted["random_in_heap"] is True
        draws.append(_py(page, "import json, random; json.dumps(random.getrandbits(64))"))
    assert draws[0] != draws[1]


def test_a_snapshot_of_another_wheel_is_skipped_and_the_page_boots_without_it(
    snap_root: tuple[Path, dict[str, Any]], serve_folder: Callable[[Path], str],
    watched_page: Callable[..., Any], tmp_path: Path,
) -> None:
    root, _ = snap_root
    other = _copy_webroot(root, tmp_path / "webroot")
    _copy_snapshot(root, other)
    manifest = json.loads((other / "pyodide" / snapshot_tool.MANIFEST).read_text())
    manifest["wheel_sha256"] = "0" * 64  # as if the wheel had been rebuilt from other code
    (other / "pyodide" / snapshot_tool.MANIFEST).write_text(json.dumps(manifest))
    page, booted = _boot(watched_page, serve_folder(other), "stale snapshot")
    assert booted["route"] == "packages", booted
    assert "another wheel" in booted["skipped"]
    assert "circle_ws_web.client" not in booted["modules"]
    v = VECTORS["eip191"][0]
    out = _py(page, f"""
import json
from circle_ws_web.auth import PrivateKey
json.dumps(PrivateKey({v["private_key"]!r}).sign_message({v["message"]!r}))""")
    assert out == v["signature"]
    # "require" refuses to boot without a valid snapshot rather than falling back.
    page2, _ = watched_page("required snapshot")
    page2.goto(f"{serve_folder(other)}/snaptest.html?snapshot=require")
    assert "another wheel" in page2.evaluate("() => window.booted").get("error", "")


def test_preparing_the_webroot_for_another_wheel_drops_the_snapshot(
    snap_root: tuple[Path, dict[str, Any]], tmp_path: Path,
) -> None:
    root, _ = snap_root
    other = _copy_webroot(root, tmp_path / "webroot")
    _copy_snapshot(root, other)
    wheel = next((root / "wheels").glob("*.whl"))
    wr = snapshot_tool._webroot_module()
    wr.prepare_webroot(other, wheel)  # the same wheel: the snapshot stays
    assert snapshot_tool.installed(other) is not None
    rebuilt = tmp_path / "dist" / wheel.name
    rebuilt.parent.mkdir()
    rebuilt.write_bytes(wheel.read_bytes() + b"\0")  # another wheel under the same name
    wr.prepare_webroot(other, rebuilt)
    assert not any((other / "pyodide" / name).exists() for name in snapshot_tool.FILES)
    assert json.loads((other / "webroot.json").read_text())["snapshot"] is None  # no 404 for pages
