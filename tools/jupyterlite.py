#!/usr/bin/env python3
"""Build an offline JupyterLite site whose Pyodide kernel can `%pip install circle-ws-web`.

Why: JupyterLite notebooks are one of the places users run circle-ws-web, and the site must
work with no network (the tests run offline; so may a lab machine). By default a JupyterLite
site loads Pyodide and the kernel's Python packages (ipython, comm, jedi...) from a CDN and PyPI.
This tool builds one with ``jupyterlite-core`` and ``jupyterlite-pyodide-kernel`` (pinned in
requirements-dev.txt) that carries everything itself:

- ``static/pyodide/``: Pyodide (npm, pinned in tools/webroot.py) and a self-generated
  ``pyodide-lock.json`` listing pinned PyPI wheels placed beside it: micropip, ecdsa and six
  (circle-ws-web's dependencies) and every pure-Python package the kernel installs at start.
  (The npm lock's hashes do not match PyPI's wheels, so it cannot be used; and
  ``--pyodide <dir>`` is broken in jupyterlite-pyodide-kernel 0.8.6.)
- ``pypi/``: the circle-ws-web wheel (``--piplite-wheels``), so ``%pip install circle-ws-web``
  works offline; ``disablePyPIFallback`` makes a missing package fail at once instead of
  trying PyPI.
- ``files/circle_ws_web.ipynb``: the example notebook (examples/jupyterlite/), optionally with
  other server URLs or key written into its settings cell (``--server``, ``--key``).

Usage::

    python tools/jupyterlite.py [--out .cache/jupyterlite] [--wheel dist/circle_ws_web-*.whl]
                                [--server ws://127.0.0.1:8701 --server ws://127.0.0.1:8702]
                                [--key <64 hex digits>]
    python -m http.server -b 127.0.0.1 -d .cache/jupyterlite 8000
    # open http://127.0.0.1:8000/notebooks/index.html?path=circle_ws_web.ipynb

Idempotent: downloads are cached in .cache/downloads (hash-checked), the sources of the build go
to ``<out>-src/`` and are rewritten only when they change, and ``jupyter lite build`` itself
skips what is up to date. Any failing step raises WebrootError (exit status 1) naming it.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any, Iterable

sys.path.insert(0, str(Path(__file__).resolve().parent))

import webroot  # noqa: E402  (tools/ is not a package)
from webroot import DOWNLOADS, ROOT, WebrootError  # noqa: E402

# --- Pins ------------------------------------------------------------------------------------
JUPYTERLITE_VERSION = "0.8.6"  # jupyterlite-core and jupyterlite-pyodide-kernel (PyPI)
# The pure-Python wheels the Pyodide kernel installs when it starts (pyodide-kernel needs
# ipython and comm, piplite adds jedi), with their dependencies under Pyodide's markers
# (pexpect is skipped on emscripten). name -> (version, sha256 of the PyPI wheel).
KERNEL_LOCK_WHEELS: dict[str, tuple[str, str]] = {
    "asttokens": ("3.0.2", "9da13157f5b28becde0bd374fc677dcd3c290614264eff096f167c469cd9f933"),
    "comm": ("0.2.3", "c615d91d75f7f04f095b30d1c1711babd43bdc6419c1be9886a85f2f4e489417"),
    "decorator": ("5.3.1", "f47fe6fdbd2edd623ecfe36875d37aba411624e2670dd395dddae1358689bb3c"),
    "executing": ("2.3.0", "736e859c9f8701f11fcf516856f26f562e04776387824b43a35a1dfe21c84122"),
    "ipython": ("9.12.0", "0f2701e8ee86e117e37f50563205d36feaa259d2e08d4a6bc6b6d74b18ce128d"),
    "ipython-pygments-lexers": (
        "1.1.1", "a9462224a505ade19a605f71f8fa63c2048833ce50abc86768a0d81d876dc81c"
    ),
    "jedi": ("0.20.1", "0fb16d86c4a4c73c37ba518c77419975e30fcc620658a8d14fbb5720cdd34142"),
    "matplotlib-inline": ("0.2.2", "3c821cf1c209f59fb2d2d64abbf5b23b67bcb2210d663f9918dd851c6da1fcf6"),
    "parso": ("0.8.7", "a8926eb2a1b915486941fdbd31e86a4baf88fe8c210f25f2f35ecec5b574ca1c"),
    "prompt-toolkit": ("3.0.53", "01c0891d7f9237d5e339f7d3e42cdae80b7534abb1c7c0e3352efba6231492f2"),
    "pure-eval": ("0.2.4", "96cae060a313cfaad51bb761278bfb0e62dc0248d9315a81173752dc546cd37a"),
    "pygments": ("2.21.0", "2363c69b61c4a97c838da3b130dcd6468f4848992b21a82f2a63ec34377137d9"),
    "stack-data": ("0.6.3", "d5558e0c25a4cb0853cddad3d77da9891a08cb85dd9f9f91b9f8cd66e511e695"),
    "traitlets": ("5.16.1", "f775618166caa0396c8e337099240f2bd3e5e917d203b2e6fbe21a58d3cb1f6b"),
    "wcwidth": ("0.9.4", "901eace6d2dd25ebb917d0ce5db18e5c537e1504c905cf32f0d006c12098b05d"),
}
# ----------------------------------------------------------------------------------------------

EXAMPLE_NOTEBOOK = ROOT / "examples" / "jupyterlite" / "circle_ws_web.ipynb"
DEFAULT_OUT = ROOT / ".cache" / "jupyterlite"
KERNEL_PLUGIN = "@jupyterlite/pyodide-kernel-extension:kernel"
STAMP_NAME = ".pyodide-stamp.json"
_KEY_RE = re.compile(r"^[0-9a-fA-F]{64}$")


def all_lock_wheels() -> dict[str, tuple[str, str]]:
    """Every wheel of the site's lock: tools/webroot.py's (micropip, ecdsa, six) + the kernel's."""
    wheels = dict(webroot.LOCK_WHEELS)
    for name, pin in KERNEL_LOCK_WHEELS.items():
        if name in wheels and wheels[name] != pin:
            raise WebrootError(f"{name} is pinned twice: {wheels[name]} (webroot) and {pin}")
        wheels[name] = pin
    return wheels


def fetch_wheel(name: str, version: str, sha256: str, downloads: Path = DOWNLOADS) -> Path:
    """The cached, hash-checked pure-Python PyPI wheel `name==version` (pip download if absent).

    Same cache and checks as webroot.fetch_lock_wheel, for pins that are not in its table.
    """
    cache = downloads / "wheels"
    cache.mkdir(parents=True, exist_ok=True)

    def cached() -> Path | None:
        for whl in cache.glob("*.whl"):
            parts = whl.name.split("-")
            if webroot._normalize(parts[0]) == webroot._normalize(name) and parts[1] == version:
                return whl
        return None

    whl = cached()
    if whl is None:
        webroot._run(
            [
                sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                "--no-deps", "--only-binary=:all:", "--platform", "any",
                "--python-version", webroot.PYODIDE_PYTHON, "--implementation", "py",
                "--dest", str(cache), f"{name}=={version}",
            ],
            f"downloading wheel {name}=={version} from PyPI",
        )
        whl = cached()
        if whl is None:
            raise WebrootError(f"pip download {name}=={version} produced no wheel in {cache}")
    got = webroot._sha256(whl)
    if got != sha256:
        raise WebrootError(
            f"{whl}: sha256 {got} does not match the pinned {sha256} (delete it to download again)"
        )
    return whl


def prepare_static_pyodide(lite_dir: Path) -> dict[str, str]:
    """Fill ``<lite_dir>/static/pyodide`` with Pyodide, the pinned wheels and their lock.

    Returns ``{package: version}`` of the lock. The npm lock is kept beside (not inside) the
    folder, since everything inside is copied into the site.
    """
    pyodide_dir = lite_dir / "static" / "pyodide"
    stamp = {"pyodide": webroot.PYODIDE_VERSION, "integrity": webroot.PYODIDE_NPM_INTEGRITY}
    stamp_path = lite_dir / STAMP_NAME
    npm_lock_path = lite_dir / "pyodide-lock.npm.json"
    current = json.loads(stamp_path.read_text()) if stamp_path.exists() else None
    if current != stamp or not (pyodide_dir / "pyodide.asm.wasm").exists() or not npm_lock_path.exists():
        webroot._extract_pyodide(webroot.fetch_pyodide_tarball(), pyodide_dir)
        shutil.move(pyodide_dir / "pyodide-lock.json", npm_lock_path)
        stamp_path.write_text(json.dumps(stamp, indent=2) + "\n")
    npm_lock = json.loads(npm_lock_path.read_text())

    wanted = all_lock_wheels()
    entries = []
    keep = {"pyodide-lock.json"}
    for name, (version, sha) in sorted(wanted.items()):
        src = fetch_wheel(name, version, sha)
        dst = pyodide_dir / src.name
        if not dst.exists() or webroot._sha256(dst) != sha:
            shutil.copy2(src, dst)
        keep.add(dst.name)
        entries.append(webroot.lock_entry(dst))
    for stale in pyodide_dir.glob("*.whl"):  # a wheel whose pin changed
        if stale.name not in keep:
            stale.unlink()
    lock = webroot.generate_lock(npm_lock, entries)  # fails if a dependency is not pinned
    webroot._write_if_changed(pyodide_dir / "pyodide-lock.json", json.dumps(lock, indent=2) + "\n")
    return {k: v["version"] for k, v in lock["packages"].items()}  # type: ignore[union-attr,index]


# --- the example notebook --------------------------------------------------------------------


def _settings_cell(nb: dict[str, Any]) -> dict[str, Any]:
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            return cell
    raise WebrootError("the example notebook has no code cell tagged 'parameters' (its settings)")


def notebook_with_settings(
    nb: dict[str, Any], servers: Iterable[str] | None = None, key: str | None = None
) -> dict[str, Any]:
    """A copy of notebook `nb` whose settings cell names `servers` and `key` (when given)."""
    nb = json.loads(json.dumps(nb))
    cell = _settings_cell(nb)
    source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
    if servers is not None:
        servers = list(servers)
        for url in servers:
            if not re.match(r"^wss?://[^\s\"'\\]+$", url):
                raise WebrootError(f"not a ws:// or wss:// URL: {url!r}")
        new = "SERVERS = [\n" + "".join(f"    {json.dumps(u)},\n" for u in servers) + "]"
        source, n = re.subn(r"(?ms)^SERVERS = \[.*?^\]", lambda _: new, source)
        if n != 1:
            raise WebrootError("the settings cell has no multi-line `SERVERS = [...]` to replace")
    if key is not None:
        if not _KEY_RE.match(key):
            raise WebrootError("the private key must be 64 hex digits")
        source, n = re.subn(r'(?m)^PRIVATE_KEY = "[0-9a-fA-F]*"', lambda _: f'PRIVATE_KEY = "{key}"', source)
        if n != 1:
            raise WebrootError('the settings cell has no `PRIVATE_KEY = "..."` to replace')
    cell["source"] = source.splitlines(keepends=True)
    return nb


# --- the site --------------------------------------------------------------------------------


def lite_config() -> dict[str, Any]:
    """``jupyter-lite.json`` of the sources: no PyPI fallback for piplite."""
    return {
        "jupyter-lite-schema-version": 0,
        "jupyter-config-data": {
            "litePluginSettings": {KERNEL_PLUGIN: {"disablePyPIFallback": True}},
        },
    }


def _check_build_tools() -> None:
    missing = []
    for module in ("jupyterlite_core", "jupyterlite_pyodide_kernel", "jupyter_server"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise WebrootError(
            f"missing Python packages {missing}: install requirements-dev.txt "
            f"(jupyterlite-core=={JUPYTERLITE_VERSION}, jupyterlite-pyodide-kernel=="
            f"{JUPYTERLITE_VERSION}, jupyter-server; the latter indexes the notebooks)"
        )
    import jupyterlite_core
    import jupyterlite_pyodide_kernel

    for mod in (jupyterlite_core, jupyterlite_pyodide_kernel):
        if mod.__version__ != JUPYTERLITE_VERSION:
            raise WebrootError(
                f"{mod.__name__} {mod.__version__} is installed; this tool is tested with {JUPYTERLITE_VERSION}"
            )


def build_site(
    out: Path = DEFAULT_OUT,
    wheel: Path | None = None,
    servers: Iterable[str] | None = None,
    key: str | None = None,
    notebook: Path = EXAMPLE_NOTEBOOK,
) -> Path:
    """Build (or refresh) the JupyterLite site in `out` and return `out`.

    `wheel`: the circle-ws-web wheel to carry (default: newest in dist/, built if missing).
    `servers`, `key`: written into the notebook's settings cell (default: as in the example).
    """
    _check_build_tools()
    out = Path(out).resolve()
    lite_dir = out.with_name(out.name + "-src")
    wheel = Path(wheel).resolve() if wheel is not None else webroot.default_wheel()
    if not wheel.is_file():
        raise WebrootError(f"circle-ws-web wheel not found: {wheel}")
    lite_dir.mkdir(parents=True, exist_ok=True)

    lock_packages = prepare_static_pyodide(lite_dir)
    webroot._write_if_changed(lite_dir / "jupyter-lite.json", json.dumps(lite_config(), indent=2) + "\n")

    # The wheel and the notebook: only the ones asked for this time.
    wheels_dir = lite_dir / "wheels"
    shutil.rmtree(wheels_dir, ignore_errors=True)
    wheels_dir.mkdir()
    shutil.copy2(wheel, wheels_dir / wheel.name)
    contents = lite_dir / "contents"
    contents.mkdir(exist_ok=True)
    nb = notebook_with_settings(json.loads(Path(notebook).read_text()), servers, key)
    for old in contents.iterdir():
        if old.name != notebook.name:
            shutil.rmtree(old) if old.is_dir() else old.unlink()
    webroot._write_if_changed(contents / notebook.name, json.dumps(nb, indent=1) + "\n")
    # A wheel left in the output by an earlier build with another file name would still be
    # listed in the piplite index: start that part over.
    shutil.rmtree(out / "pypi", ignore_errors=True)

    webroot._run(
        [
            sys.executable, "-m", "jupyterlite_core", "build",
            "--lite-dir", str(lite_dir),
            "--output-dir", str(out),
            "--contents", str(contents),
            "--piplite-wheels", str(wheels_dir / wheel.name),
            "--no-sourcemaps",
        ],
        "jupyter lite build",
        cwd=lite_dir,
    )
    # Browsers ask for /favicon.ico before the app sets its own icon: answer it, not a 404.
    favicon = out / "lab" / "favicon.ico"
    if favicon.is_file() and not (out / "favicon.ico").exists():
        shutil.copy2(favicon, out / "favicon.ico")
    _check_site(out, wheel.name, notebook.name)
    manifest = {
        "jupyterlite": JUPYTERLITE_VERSION,
        "pyodide_version": webroot.PYODIDE_VERSION,
        "lock_packages": lock_packages,
        "wheel": f"pypi/{wheel.name}",
        "notebook": notebook.name,
    }
    webroot._write_if_changed(out / "site.json", json.dumps(manifest, indent=2) + "\n")
    return out


def _check_site(out: Path, wheel_name: str, notebook_name: str) -> None:
    """Fail loudly if the build did not produce what the offline site needs."""
    config = json.loads((out / "jupyter-lite.json").read_text())["jupyter-config-data"]
    kernel = config.get("litePluginSettings", {}).get(KERNEL_PLUGIN, {})
    problems = []
    if kernel.get("pyodideUrl") != "./static/pyodide/pyodide.mjs":
        problems.append(f"pyodideUrl is {kernel.get('pyodideUrl')!r}, not the local Pyodide")
    if kernel.get("disablePyPIFallback") is not True:
        problems.append("disablePyPIFallback is not set")
    if not any("pypi/all.json" in u for u in kernel.get("pipliteUrls", [])):
        problems.append(f"pipliteUrls {kernel.get('pipliteUrls')} lack ./pypi/all.json")
    if not (out / "pypi" / wheel_name).is_file():
        problems.append(f"pypi/{wheel_name} is missing")
    if not (out / "files" / notebook_name).is_file():
        problems.append(f"files/{notebook_name} is missing")
    if not (out / "static" / "pyodide" / "pyodide-lock.json").is_file():
        problems.append("static/pyodide/pyodide-lock.json is missing")
    if problems:
        raise WebrootError("the JupyterLite build is incomplete: " + "; ".join(problems))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="site directory (default: %(default)s)")
    parser.add_argument("--wheel", type=Path, default=None, help="circle-ws-web wheel to carry")
    parser.add_argument(
        "--server", action="append", default=None, metavar="URL",
        help="server URL for the notebook's settings cell (repeatable; default: as in the example)",
    )
    parser.add_argument("--key", default=None, help="private key (64 hex) for the settings cell")
    args = parser.parse_args(argv)
    try:
        out = build_site(args.out, args.wheel, args.server, args.key)
    except WebrootError as exc:
        print(f"jupyterlite: ERROR: {exc}", file=sys.stderr)
        return 1
    manifest = json.loads((out / "site.json").read_text())
    print(f"JupyterLite site ready: {out}")
    print(f"  jupyterlite {JUPYTERLITE_VERSION}, Pyodide {manifest['pyodide_version']}, wheel {manifest['wheel']}")
    print(f"  serve it: python -m http.server -b 127.0.0.1 -d {out} 8000")
    print(f"  open: http://127.0.0.1:8000/notebooks/index.html?path={manifest['notebook']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
