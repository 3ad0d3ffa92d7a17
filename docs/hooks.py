"""MkDocs hooks (mkdocs.yml ``hooks:``): serve images that live outside docs/ at the paths the
pages link to, so the repository keeps one copy of each (demo/screenshot.png for demo.md)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]
#: site path -> file in the repository
EXTRA = {"demo/screenshot.png": ROOT / "demo" / "screenshot.png"}


def on_files(files: Files, config: Any) -> Files:
    for src_uri, path in EXTRA.items():
        if path.is_file() and files.get_file_from_path(src_uri) is None:
            files.append(File.generated(config, src_uri, abs_src_path=str(path)))
    return files


_ROLE = re.compile(r":(?:class|func|meth|data|mod|attr|exc|obj):(?=<code>)")


def on_page_content(html: str, **kwargs: Any) -> str:
    """The docstrings use Sphinx roles (:class:`X`); show them as the plain code they wrap."""
    return _ROLE.sub("", html)
