"""The documentation site (mkdocs.yml, docs/) builds with --strict, offline, and is complete.

Why: a site that quietly loses a page, links to nowhere or names an API that was renamed is
worse than none. ``mkdocs build --strict`` fails on any broken link, missing nav page or
mkdocstrings reference that no longer resolves; the checks below add what strict does not
see: the guide and API pages exist, the API really was generated from the docstrings, and
nothing is loaded from a CDN (fonts, scripts, styles), so the site works offline.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ["quickstart", "browser", "pyscript", "jupyterlite", "cli", "sync"]
API = ["builder", "manager", "client", "errors", "status", "results", "metrics", "auth", "testing", "sync", "display"]
CONTRACT = ["protocol", "lifecycle", "testing", "benchmarks", "server", "demo"]
EXTERNAL_ASSET = re.compile(r"<(?:script|link|img|iframe|source)\b[^>]*\b(?:src|href)=[\"'](?:https?:)?//", re.I)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("docs") / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "WARNING" not in done.stderr, done.stderr
    return out


def test_every_guide_contract_and_api_page_is_built(site: Path) -> None:
    assert (site / "index.html").is_file()
    for name in GUIDE:
        assert (site / "guide" / name / "index.html").is_file(), name
    for name in CONTRACT:
        assert (site / name / "index.html").is_file(), name
    for name in API:
        assert (site / "api" / name / "index.html").is_file(), name
    assert (site / "img" / "notebook-display.png").is_file() and (site / "demo" / "screenshot.png").is_file()


def test_the_api_reference_is_generated_from_the_docstrings(site: Path) -> None:
    sync = (site / "api" / "sync" / "index.html").read_text()
    assert "circle_ws_web.sync.WsManager" in sync and "execute_script_all" in sync
    assert "Ctrl-C" in sync  # from the module docstring
    manager = (site / "api" / "manager" / "index.html").read_text()
    assert "Connect to every server at once" in manager and ":class:" not in manager
    errors = (site / "api" / "errors" / "index.html").read_text()
    for name in ("ConfigError", "ConnectError", "NotConnectedError", "RequestTimeoutError", "JsonRpcError"):
        assert f"circle_ws_web.errors.{name}" in errors, name


def test_the_site_loads_nothing_from_another_host(site: Path) -> None:
    pages = list(site.rglob("*.html"))
    assert len(pages) > 20
    for page in pages:
        text = page.read_text()
        assert not EXTERNAL_ASSET.search(text), f"{page.relative_to(site)} loads an external asset"
        assert "fonts.googleapis" not in text and "fonts.gstatic" not in text, page
        assert 'class="mermaid"' not in text, page  # Material would fetch mermaid from a CDN
    for css in site.rglob("*.css"):
        text = css.read_text()
        assert not re.search(r"@import\s+(?:url\()?[\"']?(?:https?:)?//", text), css
        assert "fonts.googleapis" not in text, css


def test_the_readme_points_to_the_site() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "./docs.sh" in readme
