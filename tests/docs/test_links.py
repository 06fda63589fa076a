"""Every relative link in README.md and docs/*.md leads to a file that exists (and, for a link with a
`#fragment` into a Markdown file, to a heading of that file, as GitHub names its anchors).

The README was cut into docs/ pages (issue 16); a page renamed or a heading reworded breaks links that no
reader would report. Links to the web (http, https, mailto) are not checked here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_LINK = re.compile(r"(?<!\!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^(```|~~~)")


def _prose(text: str) -> str:
    """The page without its fenced code blocks and inline code (links there are not links)."""
    kept: list[str] = []
    fenced = False
    for line in text.splitlines():
        if _FENCE.match(line.lstrip()):
            fenced = not fenced
            continue
        if not fenced:
            kept.append(re.sub(r"`[^`]*`", "", line))
    return "\n".join(kept)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    anchors: set[str] = set()
    fenced = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if _FENCE.match(line.lstrip()):
            fenced = not fenced
        elif not fenced and (m := re.match(r"^#{1,6} (.+)$", line)):
            anchors.add(_slug(m.group(1)))
    return anchors


def _links(page: Path) -> list[str]:
    found = []
    for m in _LINK.finditer(_prose(page.read_text(encoding="utf-8"))):
        target = m.group(1) or m.group(2)
        if not re.match(r"^[a-z][a-z0-9+.-]*:", target):
            found.append(target)
    return found


def test_the_pages_exist() -> None:
    assert (ROOT / "docs" / "README.md").is_file()
    assert len(PAGES) > 2


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for target in _links(page):
        path_part, _, fragment = target.partition("#")
        dest = (page.parent / path_part).resolve() if path_part else page
        if not dest.exists():
            broken.append(
                f"{target}: no file {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest}"
            )
        elif fragment and dest.suffix == ".md" and fragment not in _anchors(dest):
            broken.append(f"{target}: no heading with anchor #{fragment} in {dest.name}")
    assert not broken, f"{page.relative_to(ROOT)} has broken links:\n" + "\n".join(broken)


def test_the_link_checker_sees_a_broken_link(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("[a](missing.md) [b](#nowhere) `[c](code.md)`\n\n```\n[d](fenced.md)\n```\n# Here\n")
    assert _links(page) == ["missing.md", "#nowhere"]
    assert _anchors(page) == {"here"}
    assert _slug("Masakari behaviour → haven") == "masakari-behaviour--haven"
    assert _slug("Soak: 50 power losses back to back (`bench/lab_soak.py`, issue 17)") == (
        "soak-50-power-losses-back-to-back-benchlab_soakpy-issue-17"
    )
