"""The documentation holds together: every relative link of the README and of
docs/ leads to a file or directory of the repository, and every anchor to a
heading of the page it names (as GitHub and mkdocs make anchors of headings);
every page of docs/ is reachable from the README through the index."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.M | re.S)


def links(page: Path) -> list[str]:
    text = FENCE.sub("", page.read_text())  # code is not prose: its brackets are not links
    text = re.sub(r"`[^`\n]*`", "", text)
    return LINK.findall(text)


def slug(heading: str) -> str:
    """A heading's anchor: lower case, punctuation dropped, spaces as hyphens."""
    text = unicodedata.normalize("NFKD", heading.strip()).lower()
    text = re.sub(r"[^\w\s-]", "", text)
    return re.sub(r"[\s]+", "-", text.strip())


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {slug(m.group(1).replace("`", "")) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*$", text, re.M)}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ... not ours to check
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading for #{anchor} in {dest.name}")
    assert not broken, broken


def test_every_page_is_reached_from_the_readme() -> None:
    seen: set[Path] = set()
    todo = [ROOT / "README.md"]
    while todo:
        page = todo.pop()
        if page in seen or page.suffix != ".md" or not page.exists():
            continue
        seen.add(page)
        todo += [(page.parent / t.partition("#")[0]).resolve() for t in links(page) if not t.startswith("#")]
    missing = [p.name for p in PAGES if p not in seen]
    assert not missing, f"not linked from the README or the pages it links to: {missing}"


def test_the_anchor_rule_is_the_one_headings_get() -> None:
    assert slug("C-MOVE: the PACS sends to trolleyfs") == "c-move-the-pacs-sends-to-trolleyfs"
    assert slug("Warming a folder: trolleyfs prefetch") == "warming-a-folder-trolleyfs-prefetch"
