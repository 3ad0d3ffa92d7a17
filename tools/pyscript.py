#!/usr/bin/env python3
"""Prepare an offline folder that serves the PyScript example (examples/pyscript).

Why: a PyScript page normally loads ``@pyscript/core`` and Pyodide from a CDN. The example and
its browser test must work with no network: this tool puts the pinned ``@pyscript/core`` (from
the npm registry, with ``npm pack``), the local Pyodide web root of tools/webroot.py (Pyodide
314.0.7 + a lock holding micropip, ecdsa and six) and the circle-ws-web wheel next to the
example page, and points the page's PyScript config at them.

Layout of the folder (``--out``, default ``.cache/pyscript-site``)::

    index.html, main.py     copied from examples/pyscript/
    pyscript.json           examples/pyscript/pyscript.json, with the circle-ws-web entry of
                            "packages" naming the wheel actually served
    pyscript/               @pyscript/core@PYSCRIPT_VERSION: its dist/ folder (core.js, core.css...)
    pyodide/, wheels/       the web root of tools/webroot.py
    webroot.json            its manifest

Serve the folder with any static server (``python -m http.server -d .cache/pyscript-site``) and
open ``index.html?server=ws://127.0.0.1:8701&server=ws://127.0.0.1:8702``.

Usage: ``python tools/pyscript.py [--out .cache/pyscript-site] [--wheel dist/circle_ws_web-*.whl]``
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import webroot  # noqa: E402  (tools/ is not a package)
from webroot import DOWNLOADS, ROOT, WebrootError  # noqa: E402

# --- Pins ------------------------------------------------------------------------------------
PYSCRIPT_VERSION = "0.7.31"
# npm's dist.integrity of pyscript-core-<version>.tgz (`npm view @pyscript/core@0.7.31 dist.integrity`).
PYSCRIPT_NPM_INTEGRITY = (
    "sha512-GqM1aonc1N4RTkNZ1zJ8jJk8+i2cqeztZslPsAiQtn+wHHkUX9Z1FgIg4HjCvhBylB68UKmbTVTzOobpgPIMVQ=="
)
# ----------------------------------------------------------------------------------------------

EXAMPLE_DIR = ROOT / "examples" / "pyscript"
DEFAULT_OUT = ROOT / ".cache" / "pyscript-site"
STAMP_NAME = ".pyscript-stamp.json"


def fetch_pyscript_tarball(downloads: Path = DOWNLOADS) -> Path:
    """Return the cached npm tarball of @pyscript/core@PYSCRIPT_VERSION (`npm pack` if absent)."""
    return webroot.fetch_npm_tarball(
        f"@pyscript/core@{PYSCRIPT_VERSION}", f"pyscript-core-{PYSCRIPT_VERSION}.tgz", PYSCRIPT_NPM_INTEGRITY, downloads
    )


def _extract_dist(tgz: Path, dest: Path) -> None:
    """Extract ``package/dist/`` of the tarball into `dest` (replaced atomically)."""
    webroot.extract_npm_folder(tgz, dest, "package/dist/", "core.js")


def site_config(example_config: dict, wheel_name: str) -> dict:
    """The example's PyScript config with its circle-ws-web package entry naming `wheel_name`.

    The checked-in config names the wheel of the current version; the served wheel may have
    another file name (another version, a local build), and micropip needs the exact one.
    """
    config = dict(example_config)
    packages = list(config.get("packages", []))
    ours = [i for i, p in enumerate(packages) if "circle_ws_web-" in p and p.endswith(".whl")]
    if len(ours) != 1:
        raise WebrootError(
            f"{EXAMPLE_DIR / 'pyscript.json'}: expected one circle_ws_web wheel in \"packages\","
            f" found {len(ours)}"
        )
    packages[ours[0]] = f"./wheels/{wheel_name}"
    config["packages"] = packages
    return config


def prepare_pyscript_site(out: Path = DEFAULT_OUT, wheel: Path | None = None) -> Path:
    """Build (or refresh) the served PyScript folder in `out` and return `out`.

    Idempotent: downloads are cached in .cache/downloads, the extracted @pyscript/core is kept
    while its pin is unchanged. Raises WebrootError naming the failed step.
    """
    out = webroot.prepare_webroot(out, wheel)
    manifest = json.loads((out / "webroot.json").read_text())
    wheel_name = Path(manifest["wheel"]).name

    core_dir = out / "pyscript"
    stamp = {"pyscript": PYSCRIPT_VERSION, "integrity": PYSCRIPT_NPM_INTEGRITY}
    stamp_path = core_dir / STAMP_NAME
    current = json.loads(stamp_path.read_text()) if stamp_path.exists() else None
    if current != stamp or not (core_dir / "core.js").exists():
        _extract_dist(fetch_pyscript_tarball(), core_dir)
        stamp_path.write_text(json.dumps(stamp, indent=2) + "\n")

    for name in ("index.html", "main.py"):
        src = EXAMPLE_DIR / name
        if not src.is_file():
            raise WebrootError(f"missing example file {src}")
        webroot._write_if_changed(out / name, src.read_text())
    config = site_config(json.loads((EXAMPLE_DIR / "pyscript.json").read_text()), wheel_name)
    webroot._write_if_changed(out / "pyscript.json", json.dumps(config, indent=2) + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder to serve")
    parser.add_argument("--wheel", type=Path, default=None, help="circle-ws-web wheel to serve")
    args = parser.parse_args(argv)
    try:
        out = prepare_pyscript_site(args.out, args.wheel)
    except WebrootError as exc:
        print(f"pyscript: ERROR: {exc}", file=sys.stderr)
        return 1
    print(f"PyScript site ready: {out}")
    print(f"  @pyscript/core {PYSCRIPT_VERSION}, Pyodide {webroot.PYODIDE_VERSION}")
    print(f"  serve it: python -m http.server -b 127.0.0.1 -d {out} 8000")
    print("  open: http://127.0.0.1:8000/index.html?server=ws://127.0.0.1:8701&server=ws://127.0.0.1:8702")
    return 0


if __name__ == "__main__":
    sys.exit(main())
