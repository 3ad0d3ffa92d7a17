#!/usr/bin/env python3
"""Prepare an offline web root that serves Pyodide, micropip and the circle-ws-web wheel.

Why: the browser tests (and the demo) must run in headless Chromium without any CDN. The npm
package ``pyodide`` ships only the core runtime (no wheels), and its ``pyodide-lock.json`` carries
sha256 values that do not match PyPI's wheels (Pyodide rejects them through subresource
integrity). So we place the pinned PyPI wheels next to the runtime and generate our own lock file
for exactly those wheels; ``micropip.install(<wheel URL>)`` then resolves ``ecdsa`` and ``six``
from that lock, with no request leaving the machine.

Layout of the web root (``--out``, default ``.cache/webroot``)::

    pyodide/            npm package pyodide@PYODIDE_VERSION + pinned wheels + generated lock
    wheels/             the circle-ws-web wheel (exactly one)
    webroot.json        manifest: versions, lock packages, path of the circle-ws-web wheel

``pyodide/snapshot_boot.mjs`` (from tools/) boots a page from a memory snapshot when
``python tools/snapshot.py`` has put one in ``pyodide/``; one made from another wheel is deleted.

Downloads are cached in ``.cache/downloads/`` and verified against the pinned hashes below.
Idempotent: a second run reuses the cache and the extracted runtime.

Usage: ``python tools/webroot.py [--out .cache/webroot] [--wheel dist/circle_ws_web-*.whl]``
"""

from __future__ import annotations

import argparse
import base64
import email.parser
import hashlib
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

# --- Pins: the one place to change versions (and their hashes). -----------------------------
PYODIDE_VERSION = "314.0.7"
# npm's dist.integrity of pyodide-<PYODIDE_VERSION>.tgz (`npm view pyodide@314.0.7 dist.integrity`).
PYODIDE_NPM_INTEGRITY = (
    "sha512-0YvXxEhfEdpLfb/XkM2BFAeMROq0iMUX2bzzH9pOttyMcWkwq+HbE5uyuGD82LN7y2q+SNvi/6V5JEsOlD2R1A=="
)
# PyPI wheels served from the lock: name -> (version, sha256 of the PyPI wheel).
LOCK_WHEELS: dict[str, tuple[str, str]] = {
    "micropip": ("0.11.1", "768de165adb8e66906039d8fec4127a57f522dfdf8e6fbff877a4616941ecfd3"),
    "ecdsa": ("0.19.2", "840f5dc5e375c68f36c1a7a5b9caad28f95daa65185c9253c0c08dd952bb7399"),
    "six": ("1.17.0", "4721f391ed90541fddacab5acf947aa0d3dc7d27b2e1e8eda2be8970586c3274"),
}
# Python version the wheels must support (Pyodide 314.x runs CPython 3.14).
PYODIDE_PYTHON = "3.14"
# ----------------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / ".cache" / "webroot"
DOWNLOADS = ROOT / ".cache" / "downloads"
STAMP_NAME = ".webroot-stamp.json"

# Marker environment of Pyodide 314 (for evaluating Requires-Dist markers of the lock wheels).
_EMSCRIPTEN_MARKERS = {
    "sys_platform": "emscripten",
    "platform_system": "Emscripten",
    "os_name": "posix",
    "platform_machine": "wasm32",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "python_version": PYODIDE_PYTHON,
    "python_full_version": PYODIDE_PYTHON + ".0",
    "extra": "",
}


class WebrootError(RuntimeError):
    """A step of preparing the web root failed; the message names the step and the cause."""


@dataclass(frozen=True)
class LockEntry:
    """One ``packages`` entry of the generated pyodide-lock.json."""

    name: str
    version: str
    file_name: str
    sha256: str
    imports: list[str]
    depends: list[str]

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "version": self.version,
            "file_name": self.file_name,
            "install_dir": "site",
            "sha256": self.sha256,
            "package_type": "package",
            "imports": self.imports,
            "depends": self.depends,
            "unvendored_tests": False,
            "tool": {},
        }


def _normalize(name: str) -> str:
    """PEP 503 name, as used for the keys of pyodide-lock.json."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _run(cmd: list[str], what: str, cwd: Path | None = None) -> str:
    """Run a command; on failure raise WebrootError naming `what` with the command's output."""
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise WebrootError(f"{what}: cannot run {cmd[0]!r}: {exc}") from exc
    if proc.returncode != 0:
        raise WebrootError(
            f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{proc.stdout}{proc.stderr}"
        )
    return proc.stdout


# --- Pyodide runtime (npm) ---------------------------------------------------------------------


def _check_integrity(path: Path, integrity: str) -> None:
    algo, _, expected = integrity.partition("-")
    digest = base64.b64encode(hashlib.new(algo, path.read_bytes()).digest()).decode()
    if digest != expected:
        raise WebrootError(f"{path.name}: integrity mismatch: got {algo}-{digest}, pinned {integrity}")


def fetch_npm_tarball(spec: str, filename: str, integrity: str, downloads: Path = DOWNLOADS) -> Path:
    """Return the cached npm tarball `filename` of `spec` (e.g. "pyodide@314.0.7"), fetching it
    with `npm pack` when absent; checked against npm's pinned `integrity` either way."""
    downloads.mkdir(parents=True, exist_ok=True)
    tgz = downloads / filename
    if not tgz.exists():
        with tempfile.TemporaryDirectory(dir=downloads) as tmp:
            _run(["npm", "pack", spec, "--pack-destination", tmp], f"downloading npm package {spec}")
            got = Path(tmp) / tgz.name
            if not got.exists():
                raise WebrootError(f"npm pack {spec} produced no {tgz.name}")
            _check_integrity(got, integrity)
            os.replace(got, tgz)
    try:
        _check_integrity(tgz, integrity)
    except WebrootError as exc:
        raise WebrootError(f"{exc} (cached at {tgz}: delete it to download again)") from None
    return tgz


def fetch_pyodide_tarball(downloads: Path = DOWNLOADS) -> Path:
    """Return the cached npm tarball of pyodide@PYODIDE_VERSION, fetching it with `npm pack`."""
    return fetch_npm_tarball(
        f"pyodide@{PYODIDE_VERSION}", f"pyodide-{PYODIDE_VERSION}.tgz", PYODIDE_NPM_INTEGRITY, downloads
    )


def extract_npm_folder(tgz: Path, dest: Path, folder: str, must_have: str) -> None:
    """Extract `folder` (e.g. "package/") of an npm tarball into `dest`, replaced atomically;
    fails unless the result contains `must_have`."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}-"))
    try:
        with tarfile.open(tgz) as tar:
            for member in tar.getmembers():
                if not (member.isfile() and member.name.startswith(folder)):
                    continue
                rel = Path(member.name).relative_to(folder)
                if ".." in rel.parts or rel.is_absolute():
                    raise WebrootError(f"{tgz.name}: unsafe path {member.name!r}")
                target = tmp / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(member)
                assert src is not None
                with src, target.open("wb") as out:
                    shutil.copyfileobj(src, out)
        if not (tmp / must_have).exists():
            raise WebrootError(f"{tgz.name}: no {folder}{must_have} in the package")
        tmp.chmod(0o755)  # mkdtemp makes it 0700; the web root is meant to be served
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _extract_pyodide(tgz: Path, dest: Path) -> None:
    """Extract the tarball's ``package/`` into `dest` (replaced atomically)."""
    extract_npm_folder(tgz, dest, "package/", "pyodide.mjs")


# --- PyPI wheels for the lock ------------------------------------------------------------------


def fetch_lock_wheel(name: str, downloads: Path = DOWNLOADS) -> Path:
    """Return the cached, hash-checked PyPI wheel for the pinned `name` (pip download if absent)."""
    version, sha = LOCK_WHEELS[name]
    cache = downloads / "wheels"
    cache.mkdir(parents=True, exist_ok=True)

    def cached() -> Path | None:
        for whl in cache.glob("*.whl"):
            parts = whl.name.split("-")
            if _normalize(parts[0]) == _normalize(name) and parts[1] == version:
                return whl
        return None

    whl = cached()
    if whl is None:
        _run(
            [
                sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                "--no-deps", "--only-binary=:all:", "--platform", "any",
                "--python-version", PYODIDE_PYTHON, "--implementation", "py",
                "--dest", str(cache), f"{name}=={version}",
            ],
            f"downloading wheel {name}=={version} from PyPI",
        )
        whl = cached()
        if whl is None:
            raise WebrootError(f"pip download {name}=={version} produced no wheel in {cache}")
    got = _sha256(whl)
    if got != sha:
        raise WebrootError(
            f"{whl}: sha256 {got} does not match the pinned {sha} (delete it to download again)"
        )
    return whl


def _wheel_metadata(whl: Path) -> tuple[email.message.Message, list[str]]:
    with zipfile.ZipFile(whl) as zf:
        names = zf.namelist()
        meta_name = next((n for n in names if n.endswith(".dist-info/METADATA")), None)
        if meta_name is None:
            raise WebrootError(f"{whl.name}: no .dist-info/METADATA")
        meta = email.parser.BytesParser().parsebytes(zf.read(meta_name))
    return meta, names


def _top_level_imports(names: list[str]) -> list[str]:
    """Importable top-level names of a wheel: packages with __init__.py and plain modules."""
    tops: set[str] = set()
    for n in names:
        first, _, rest = n.partition("/")
        if first.endswith((".dist-info", ".data")):
            continue
        if not rest and n.endswith(".py"):
            tops.add(n[:-3])
        elif rest == "__init__.py":
            tops.add(first)
    return sorted(tops)


def _marker_applies(marker: str) -> bool:
    """Evaluate a Requires-Dist marker in Pyodide's environment (extras never apply)."""
    try:
        from packaging.markers import Marker
    except ImportError:  # pragma: no cover - fallback without packaging
        if "extra" in marker:
            return False
        raise WebrootError(f"cannot evaluate marker {marker!r}: install 'packaging'") from None
    return Marker(marker).evaluate(dict(_EMSCRIPTEN_MARKERS))


def lock_entry(whl: Path) -> LockEntry:
    """Describe `whl` for pyodide-lock.json from its own metadata and file list."""
    meta, names = _wheel_metadata(whl)
    depends: list[str] = []
    for req in meta.get_all("Requires-Dist") or []:
        spec, _, marker = req.partition(";")
        if marker.strip() and not _marker_applies(marker.strip()):
            continue
        m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec)
        if m is None:
            raise WebrootError(f"{whl.name}: cannot parse Requires-Dist {req!r}")
        depends.append(_normalize(m.group(1)))
    imports = _top_level_imports(names)
    if not imports:
        raise WebrootError(f"{whl.name}: found no importable top-level module")
    return LockEntry(
        name=str(meta["Name"]),
        version=str(meta["Version"]),
        file_name=whl.name,
        sha256=_sha256(whl),
        imports=imports,
        depends=sorted(set(depends)),
    )


def generate_lock(npm_lock: dict[str, object], entries: list[LockEntry]) -> dict[str, object]:
    """Lock for our wheels: the npm lock's top level (``info``...) with only our ``packages``."""
    packages = {_normalize(e.name): e.as_json() for e in sorted(entries, key=lambda e: e.name)}
    for key, entry in packages.items():
        missing = [d for d in entry["depends"] if d not in packages]  # type: ignore[union-attr]
        if missing:
            raise WebrootError(
                f"lock: {key} depends on {missing}, which are not pinned in LOCK_WHEELS"
            )
    lock = {k: v for k, v in npm_lock.items() if k != "packages"}
    lock["packages"] = packages
    return lock


# --- The circle-ws-web wheel -------------------------------------------------------------------


def default_wheel(dist: Path = ROOT / "dist") -> Path:
    """Newest circle_ws_web wheel in dist/, building one with ./build_wheel.sh if there is none."""
    wheels = sorted(dist.glob("circle_ws_web-*.whl"), key=lambda p: p.stat().st_mtime)
    if not wheels:
        _run([str(ROOT / "build_wheel.sh")], "building the circle-ws-web wheel", cwd=ROOT)
        wheels = sorted(dist.glob("circle_ws_web-*.whl"), key=lambda p: p.stat().st_mtime)
        if not wheels:
            raise WebrootError("./build_wheel.sh produced no dist/circle_ws_web-*.whl")
    return wheels[-1]


# --- Putting it together -----------------------------------------------------------------------


def _write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)


def prepare_webroot(out: Path = DEFAULT_OUT, wheel: Path | None = None) -> Path:
    """Build (or refresh) the offline web root in `out` and return `out`.

    `wheel` is the circle-ws-web wheel to serve (default: newest in dist/, built if missing).
    Raises WebrootError, naming the failed step, if a download, hash check or build fails.
    """
    out = Path(out).resolve()
    wheel = Path(wheel).resolve() if wheel is not None else default_wheel()
    if not wheel.is_file():
        raise WebrootError(f"circle-ws-web wheel not found: {wheel}")
    out.mkdir(parents=True, exist_ok=True)
    pyodide_dir = out / "pyodide"

    # 1. Runtime: extract only when the pinned version is not already there.
    stamp = {"pyodide": PYODIDE_VERSION, "integrity": PYODIDE_NPM_INTEGRITY}
    stamp_path = pyodide_dir / STAMP_NAME
    current = json.loads(stamp_path.read_text()) if stamp_path.exists() else None
    if current != stamp or not (pyodide_dir / "pyodide.asm.wasm").exists():
        _extract_pyodide(fetch_pyodide_tarball(), pyodide_dir)
        npm_lock_text = (pyodide_dir / "pyodide-lock.json").read_text()
        (pyodide_dir / "pyodide-lock.npm.json").write_text(npm_lock_text)
        stamp_path.write_text(json.dumps(stamp, indent=2) + "\n")
    npm_lock = json.loads((pyodide_dir / "pyodide-lock.npm.json").read_text())

    # 2. Pinned PyPI wheels next to the runtime, and the lock that describes them.
    entries = []
    for name in LOCK_WHEELS:
        src = fetch_lock_wheel(name)
        dst = pyodide_dir / src.name
        if not dst.exists() or _sha256(dst) != _sha256(src):
            shutil.copy2(src, dst)
        entries.append(lock_entry(dst))
    lock = generate_lock(npm_lock, entries)
    _write_if_changed(pyodide_dir / "pyodide-lock.json", json.dumps(lock, indent=2) + "\n")

    # 3. The circle-ws-web wheel: exactly one, the one asked for.
    wheels_dir = out / "wheels"
    wheels_dir.mkdir(exist_ok=True)
    for old in wheels_dir.glob("*.whl"):
        if old.name != wheel.name:
            old.unlink()
    target = wheels_dir / wheel.name
    if not target.exists() or _sha256(target) != _sha256(wheel):
        shutil.copy2(wheel, target)

    manifest = {
        "pyodide_version": PYODIDE_VERSION,
        "python": lock.get("info", {}).get("python"),  # type: ignore[union-attr]
        "lock_packages": {k: v["version"] for k, v in lock["packages"].items()},  # type: ignore[union-attr,index]
        "wheel": f"wheels/{wheel.name}",
        "wheel_sha256": _sha256(target),
    }

    # 4. The page-side loader of memory snapshots (tools/snapshot.py makes them), and no
    #    snapshot of another wheel: a page must never run code other than the wheel's.
    _write_if_changed(pyodide_dir / "snapshot_boot.mjs", (Path(__file__).resolve().parent / "snapshot_boot.mjs").read_text())
    _drop_stale_snapshot(pyodide_dir, manifest)
    manifest["snapshot"] = _snapshot_entry(pyodide_dir)
    _write_if_changed(out / "webroot.json", json.dumps(manifest, indent=2) + "\n")
    return out


#: The files of a memory snapshot in ``pyodide/`` (tools/snapshot.py writes them).
SNAPSHOT_FILES = ("circle-snapshot.json", "circle-snapshot.bin", "circle-site.zip")


def _drop_stale_snapshot(pyodide_dir: Path, manifest: dict[str, Any]) -> None:
    """Delete the snapshot if it was made from another wheel or Pyodide than the one served."""
    path = pyodide_dir / SNAPSHOT_FILES[0]
    if not path.exists():
        return
    try:
        snap = json.loads(path.read_text())
    except ValueError:
        snap = {}
    if (snap.get("wheel_sha256"), snap.get("pyodide_version")) != (manifest["wheel_sha256"], PYODIDE_VERSION):
        for name in SNAPSHOT_FILES:
            (pyodide_dir / name).unlink(missing_ok=True)


def _snapshot_entry(pyodide_dir: Path) -> str | None:
    """webroot.json's ``snapshot``: the snapshot manifest's path, or None. Pages look here
    first, so that a web root without a snapshot costs them no 404."""
    if all((pyodide_dir / name).is_file() for name in SNAPSHOT_FILES):
        return f"pyodide/{SNAPSHOT_FILES[0]}"
    return None


def note_snapshot(out: Path) -> None:
    """Update webroot.json's ``snapshot`` after tools/snapshot.py added or removed one."""
    path = Path(out) / "webroot.json"
    manifest = json.loads(path.read_text())
    manifest["snapshot"] = _snapshot_entry(Path(out) / "pyodide")
    _write_if_changed(path, json.dumps(manifest, indent=2) + "\n")


# --- serving a web root -------------------------------------------------------------------------

#: What a Pyodide page needs served right: ES modules as JavaScript, wasm as application/wasm
#: (streaming compilation), wheels and the lock as downloads the loader accepts.
MIME_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".py": "text/x-python; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".wasm": "application/wasm",
    ".whl": "application/zip",
    ".zip": "application/zip",
    ".png": "image/png",
}


def safe_path(base: Path, rel: str) -> str:
    """``base / rel`` resolved, or a path that 404s if ``rel`` climbs out of ``base``."""
    target = (base / rel.lstrip("/")).resolve()
    if target != base and base not in target.parents:
        return str(base / "__not_served__")
    return str(target)


class StaticHandler(http.server.SimpleHTTPRequestHandler):
    """Serves folders mounted at URL prefixes (``mounts = {"/browser/": d1, "/": d2}``, the
    longest prefix wins) with :data:`MIME_TYPES`, no caching and no access log. The tests, the
    demo and the benchmarks all serve Pyodide through it."""

    mounts: dict[str, Path] = {}
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, **MIME_TYPES}

    def translate_path(self, path: str) -> str:
        rel = unquote(urlsplit(path).path)
        for prefix in sorted(self.mounts, key=len, reverse=True):
            if rel.startswith(prefix):
                base = self.mounts[prefix].resolve()
                return safe_path(base, rel[len(prefix) :])
        return str(Path("/") / "__not_served__")

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass


class QuietHTTPServer(http.server.ThreadingHTTPServer):
    """A threaded server that does not print a traceback when a browser drops a connection."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return  # the browser closed a connection early: not our problem
        super().handle_error(request, client_address)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="web root directory")
    parser.add_argument("--wheel", type=Path, default=None, help="circle-ws-web wheel to serve")
    args = parser.parse_args(argv)
    try:
        out = prepare_webroot(args.out, args.wheel)
    except WebrootError as exc:
        print(f"webroot: ERROR: {exc}", file=sys.stderr)
        return 1
    manifest = json.loads((out / "webroot.json").read_text())
    print(f"webroot ready: {out}")
    print(f"  pyodide {manifest['pyodide_version']} (Python {manifest['python']})")
    print(f"  lock: {manifest['lock_packages']}")
    print(f"  wheel: {manifest['wheel']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
