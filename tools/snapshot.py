#!/usr/bin/env python3
"""Make a Pyodide memory snapshot with circle-ws-web imported, and put it in a web root.

Why: most of a page's time to its first result is Pyodide starting up (~2.5 s of ~3.4 s in
bench/results/latest.md). A memory snapshot is the interpreter's heap after start-up, here with
circle-ws-web imported and its signing table built; a page restores it instead of starting
(tools/snapshot_boot.mjs, which the demo and the benchmark page use when a snapshot is there).

How: headless Chromium (the browser the pages run in, so nothing in the heap is another
runtime's) opens a page served from the web root that boots Pyodide with ``_makeSnapshot``,
imports the wheels from one zip of compiled modules, and posts back the heap
(``pyodide.makeMemorySnapshot()``) and the zip. Nothing is fetched from outside the machine.

Written to ``<web root>/pyodide/``: ``circle-snapshot.bin`` (the heap, ~31 MB; ~6 MB gzipped),
``circle-site.zip`` (the packages, which a restore writes back: files are not in the heap) and
``circle-snapshot.json`` (what it was made from; a page uses the snapshot only if the wheel and
Pyodide match, and tools/webroot.py removes one that no longer does). Made once per wheel,
Pyodide and lock: cached in ``.cache/snapshots/``.

Usage::

    python tools/snapshot.py [--webroot .cache/demo-webroot] [--wheel dist/circle_ws_web-*.whl]
                             [--force] [--remove]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_WEBROOT = ROOT / ".cache" / "demo-webroot"  # demo/serve.py's
CACHE = ROOT / ".cache" / "snapshots"
BOOT_MODULE = HERE / "snapshot_boot.mjs"
CHROMIUM = os.environ.get("CIRCLE_WS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--no-default-browser-check", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--disable-extensions",
]
#: 2: the heap file holds only the pages that are not all zeros (pack_heap); the manifest says
#: the heap's full size, so that a page can hand Pyodide a heap before the bytes arrive.
FORMAT = 2
#: The heap file: u32 little-endian magic "CSH1", page size, Pyodide's header size, page count;
#: then Pyodide's header, one u32 index per page kept, the pages (tools/snapshot_boot.mjs).
HEAP_MAGIC = b"CSH1"
HEAP_PAGE = 4096
#: Names in <web root>/pyodide/ (tools/webroot.py knows them too: webroot.json names the manifest).
MANIFEST = "circle-snapshot.json"
HEAP = "circle-snapshot.bin"
SITE = "circle-site.zip"
FILES = (MANIFEST, HEAP, SITE)

MAKER_PAGE = b"""<!doctype html><meta charset="utf-8"><link rel="icon" href="data:,">
<title>making a circle-ws-web snapshot</title>
<script type="module">
const post = (what, body) => fetch("/snapshot-maker/" + what, { method: "POST", body });
try {
  const config = await (await fetch("/snapshot-maker/config.json")).json();
  const { makeSnapshot } = await import(config.indexURL + "snapshot_boot.mjs");
  const { heap, site, info } = await makeSnapshot(config);
  await post("site", site);
  await post("heap", heap);
  await post("done", JSON.stringify(info));
} catch (err) {
  await post("error", String(err && err.stack ? err.stack : err));
}
</script>
"""


class SnapshotError(RuntimeError):
    """Making or installing the snapshot failed; the message says which step and why."""


def _webroot_module() -> ModuleType:
    """tools/webroot.py (its pins, the web root, the static handler), imported once."""
    name = "_circle_webroot"  # the name demo/serve.py and the tests use: one module object
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, HERE / "webroot.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_key(webroot: Path) -> str:
    """What the snapshot depends on: Pyodide, the lock's wheels, our wheel, the maker's code."""
    wr = _webroot_module()
    manifest = json.loads((webroot / "webroot.json").read_text())
    parts = {
        "format": FORMAT,
        "pyodide": [wr.PYODIDE_VERSION, wr.PYODIDE_NPM_INTEGRITY],
        "lock": wr.LOCK_WHEELS,
        "wheel": manifest["wheel_sha256"],
        "maker": hashlib.sha256(BOOT_MODULE.read_bytes()).hexdigest(),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def installed(webroot: Path) -> dict[str, Any] | None:
    """The manifest of the snapshot in ``webroot`` if it matches the web root's wheel, else None."""
    pyodide_dir = webroot / "pyodide"
    try:
        snap = json.loads((pyodide_dir / MANIFEST).read_text())
        root = json.loads((webroot / "webroot.json").read_text())
    except (OSError, ValueError):
        return None
    ok = (
        snap.get("wheel_sha256") == root.get("wheel_sha256")
        and snap.get("pyodide_version") == root.get("pyodide_version")
        and all((pyodide_dir / name).is_file() for name in (HEAP, SITE))
    )
    return snap if ok else None


def remove(webroot: Path) -> bool:
    """Delete the snapshot from ``webroot`` (pages then boot without one); True if one was there."""
    found = False
    for name in FILES:
        path = webroot / "pyodide" / name
        if path.exists():
            path.unlink()
            found = True
    if (webroot / "webroot.json").exists():
        _webroot_module().note_snapshot(webroot)
    return found


# --- making one in Chromium ------------------------------------------------------------------


def pack_heap(snapshot: bytes) -> bytes:
    """Pyodide's memory snapshot (its header, then the whole 30 MiB heap) without the heap's
    pages of zeros: about half of it. tools/snapshot_boot.mjs unpacks it into a zeroed heap."""
    if len(snapshot) < 16:
        raise SnapshotError("the page sent no snapshot")
    header = int.from_bytes(snapshot[4:8], "little")  # Pyodide's: where the heap starts
    heap = memoryview(snapshot)[header:]
    if header % 16 or len(heap) % HEAP_PAGE:
        raise SnapshotError(f"unexpected snapshot layout: header {header} bytes, heap {len(heap)} bytes")
    zero = bytes(HEAP_PAGE)
    kept = [i for i in range(len(heap) // HEAP_PAGE) if heap[i * HEAP_PAGE : (i + 1) * HEAP_PAGE] != zero]
    parts = [HEAP_MAGIC, HEAP_PAGE.to_bytes(4, "little"), header.to_bytes(4, "little"),
             len(kept).to_bytes(4, "little"), snapshot[:header], b"".join(i.to_bytes(4, "little") for i in kept)]
    parts.extend(heap[i * HEAP_PAGE : (i + 1) * HEAP_PAGE] for i in kept)
    return b"".join(parts)


def unpack_heap(packed: bytes, size: int) -> bytes:
    """pack_heap's inverse (the page does this in JS; here for the tests)."""
    if packed[:4] != HEAP_MAGIC:
        raise SnapshotError("not a packed heap")
    page, header, count = (int.from_bytes(packed[i : i + 4], "little") for i in (4, 8, 12))
    out = bytearray(size)
    out[:header] = packed[16 : 16 + header]
    pos = 16 + header
    index = [int.from_bytes(packed[pos + 4 * k : pos + 4 * k + 4], "little") for k in range(count)]
    pos += 4 * count
    for i in index:
        out[header + i * page : header + (i + 1) * page] = packed[pos : pos + page]
        pos += page
    if pos != len(packed):
        raise SnapshotError("packed heap truncated or corrupt")
    return bytes(out)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(10)


def make(webroot: Path, out: Path, timeout: float = 300) -> dict[str, Any]:
    """Make the snapshot of ``webroot``'s wheel in headless Chromium; files go to ``out``.

    Returns the manifest (also written to ``out``). Raises SnapshotError with the page's own
    error if it fails, or if nothing came back within ``timeout`` seconds.
    """
    wr = _webroot_module()
    root = json.loads((webroot / "webroot.json").read_text())
    lock = json.loads((webroot / "pyodide" / "pyodide-lock.json").read_text())
    wheels = ["/" + root["wheel"]] + [
        "/pyodide/" + entry["file_name"] for key, entry in sorted(lock["packages"].items()) if key != "micropip"
    ]
    config = json.dumps({"indexURL": "/pyodide/", "lockFileURL": "/pyodide/pyodide-lock.json", "wheelURLs": wheels})
    out.mkdir(parents=True, exist_ok=True)
    done = threading.Event()
    result: dict[str, Any] = {}

    class Handler(wr.StaticHandler):  # type: ignore[misc,name-defined]
        mounts = {"/": webroot}

        def do_GET(self) -> None:  # noqa: N802 - stdlib name
            if self.path == "/snapshot-maker/":
                self._send(MAKER_PAGE, "text/html; charset=utf-8")
            elif self.path == "/snapshot-maker/config.json":
                self._send(config.encode(), "application/json")
            else:
                super().do_GET()

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            what = self.path.rsplit("/", 1)[-1]
            if what == "heap":
                result["heap_bytes"] = len(body)
                (out / HEAP).write_bytes(pack_heap(body))
            elif what == "site":
                (out / SITE).write_bytes(body)
            elif what == "done":
                result["info"] = json.loads(body)
                done.set()
            elif what == "error":
                result["error"] = body.decode(errors="replace")
                done.set()
            self._send(b"{}", "application/json")

        def _send(self, data: bytes, ctype: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    if not Path(CHROMIUM).exists():
        raise SnapshotError(f"{CHROMIUM} not found: apt-get install -y chromium (or set CIRCLE_WS_CHROMIUM)")
    server = wr.QuietHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, name="snapshot-web", daemon=True).start()
    profile = tempfile.mkdtemp(prefix="circle-snapshot-chromium-")
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [CHROMIUM, *CHROMIUM_ARGS, f"--user-data-dir={profile}",
         f"http://127.0.0.1:{server.server_address[1]}/snapshot-maker/"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + timeout
        while not done.wait(0.5):
            if proc.poll() is not None:
                raise SnapshotError(f"chromium exited ({proc.returncode}) before the snapshot was made")
            if time.monotonic() > deadline:
                raise SnapshotError(f"no snapshot from the page within {timeout:g} s")
    finally:
        _kill_group(proc)
        server.shutdown()
        server.server_close()
        shutil.rmtree(profile, ignore_errors=True)
    if "error" in result:
        raise SnapshotError(f"the page failed to make the snapshot:\n{result['error']}")
    manifest = {
        "format": FORMAT,
        "pyodide_version": wr.PYODIDE_VERSION,
        "python": result["info"]["python"],
        "wheel": root["wheel"],
        "wheel_sha256": root["wheel_sha256"],
        "lock_packages": root["lock_packages"],
        "snapshot": HEAP,
        "snapshot_bytes": (out / HEAP).stat().st_size,  # the file: the heap's pages that are not zeros
        "heap_bytes": result["heap_bytes"],  # Pyodide's snapshot, unpacked (its header + the heap)
        "site_zip": SITE,
        "site_zip_bytes": (out / SITE).stat().st_size,
        "modules": result["info"]["modules"],
        "js_functions": result["info"]["js_functions"],  # their source: a restore defines them again
        "page_boot_ms": result["info"]["boot_ms"],
        "page_make_ms": result["info"]["make_ms"],
        "make_seconds": round(time.perf_counter() - t0, 2),  # with Chromium's start and the upload
        "made": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "cache_key": cache_key(webroot),
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _place(src: Path, dst: Path) -> None:
    """``dst`` becomes ``src``'s content: a hard link when possible (31 MB), else a copy."""
    tmp = dst.with_name(dst.name + ".tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def ensure(webroot: Path, *, force: bool = False, cache: Path = CACHE) -> tuple[dict[str, Any], str]:
    """Give ``webroot`` a snapshot of its wheel: the installed one, the cached one, or a new one.

    Returns (manifest, how): how is "installed", "cached" or "made".
    """
    webroot = Path(webroot).resolve()
    if not force and (snap := installed(webroot)) is not None and snap.get("cache_key") == cache_key(webroot):
        return snap, "installed"
    entry = cache / cache_key(webroot)
    how = "cached"
    if force or not all((entry / name).is_file() for name in FILES):
        shutil.rmtree(entry, ignore_errors=True)
        cache.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=cache, prefix=".making-"))
        try:
            make(webroot, tmp)
            try:
                os.replace(tmp, entry)
            except OSError:  # another process (a concurrent test run) made the same one first
                if not all((entry / name).is_file() for name in FILES):
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        how = "made"
    remove(webroot)
    for name in (HEAP, SITE, MANIFEST):  # the manifest last: a page never sees a half snapshot
        _place(entry / name, webroot / "pyodide" / name)
    _webroot_module().note_snapshot(webroot)  # webroot.json names it: pages look there first
    return json.loads((entry / MANIFEST).read_text()), how


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--webroot", type=Path, default=DEFAULT_WEBROOT, help="web root (default: the demo's)")
    parser.add_argument("--wheel", type=Path, default=None, help="circle-ws-web wheel (default: newest in dist/)")
    parser.add_argument("--force", action="store_true", help="make a new one even if one is cached")
    parser.add_argument("--remove", action="store_true", help="delete the web root's snapshot instead")
    args = parser.parse_args(argv)
    if args.remove:
        print("snapshot removed" if remove(args.webroot) else "no snapshot there")
        return 0
    wr = _webroot_module()
    try:
        webroot = wr.prepare_webroot(args.webroot, args.wheel)
        t0 = time.perf_counter()
        manifest, how = ensure(webroot, force=args.force)
    except (wr.WebrootError, SnapshotError) as exc:
        print(f"snapshot: ERROR: {exc}", file=sys.stderr)
        return 1
    mb = manifest["snapshot_bytes"] / 1e6
    print(f"snapshot {how} ({time.perf_counter() - t0:.1f} s): {webroot / 'pyodide' / HEAP}")
    print(f"  {mb:.1f} MB heap + {manifest['site_zip_bytes'] / 1e6:.2f} MB packages, made in "
          f"{manifest['make_seconds']:.1f} s, for {manifest['wheel']} on Pyodide {manifest['pyodide_version']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
