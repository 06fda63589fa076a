"""MkDocs hooks (mkdocs.yml ``hooks:``): the site keeps the pages' links to repository files outside docs/.

docs/*.md link to files beside docs/ (``../deploy/alertmanager/haven.yml``, ``../README.md``) so that
they work where the Markdown is read in the repository. The built site holds only docs/, so each such
file that exists is copied into the site under ``repo/`` as it is (a Markdown file too: not rendered),
and the page's link is pointed at the copy. A link to a file that does not exist is left alone, and
``mkdocs build --strict`` fails on it as on any broken link.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

_LINK = re.compile(r"\]\(\.\./([^)\s#]+)(#[^)\s]*)?\)")
_PREFIX = "repo/"


class _RepositoryFile(File):
    """A repository file copied into the site as it is (never rendered, even a .md)."""

    def is_documentation_page(self) -> bool:
        return False

    def is_static_page(self) -> bool:
        return False


def _root(config: Any) -> Path:
    return Path(config["docs_dir"]).resolve().parent


def on_files(files: Files, config: Any) -> Files:
    root = _root(config)
    docs = Path(config["docs_dir"]).resolve()
    wanted: set[str] = set()
    for page in docs.glob("*.md"):  # docs/ is flat; a nested page would need its own ../ depth
        for match in _LINK.finditer(page.read_text(encoding="utf-8")):
            target = (root / match.group(1)).resolve()
            if target.is_file() and target.is_relative_to(root) and not target.is_relative_to(docs):
                wanted.add(target.relative_to(root).as_posix())
    for path in sorted(wanted):
        files.append(_RepositoryFile.generated(config, _PREFIX + path, abs_src_path=str(root / path)))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    root = _root(config)

    def point(match: re.Match[str]) -> str:
        path, fragment = match.group(1), match.group(2) or ""
        if files.get_file_from_path(_PREFIX + path) is None or not (root / path).is_file():
            return match.group(0)
        return f"]({'../' * page.file.src_uri.count('/')}{_PREFIX}{path}{fragment})"

    return _LINK.sub(point, markdown)
