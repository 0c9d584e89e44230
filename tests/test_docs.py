"""The README and the pages in docs/: short enough to read, and no relative link that leads nowhere.

Links are read with markdown-it (what rich renders Markdown with), so links inside code blocks and code spans are
not links, as on GitHub. An anchor (``page.md#heading``) must name a heading of that page, slugged as GitHub does.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from markdown_it import MarkdownIt

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 250  # issue 31: a newcomer reads it in one screen, then follows links


def _tokens(path: Path):
    for token in MarkdownIt("commonmark").enable("table").parse(path.read_text(encoding="utf-8")):
        yield token
        yield from token.children or ()


def relative_links(path: Path) -> list[str]:
    """The link and image targets of ``path`` that point inside the repository (no scheme, no host)."""
    targets = []
    for token in _tokens(path):
        target = token.attrGet("href") if token.type == "link_open" else token.attrGet("src")
        if token.type in ("link_open", "image") and target:
            parts = urlsplit(target)
            if not parts.scheme and not parts.netloc:
                targets.append(target)
    return targets


def heading_anchors(path: Path) -> set[str]:
    """GitHub's anchors for the headings of ``path``: lower case, punctuation dropped, spaces as hyphens; a repeated
    heading gets -1, -2, ..."""
    anchors: set[str] = set()
    tokens = list(MarkdownIt("commonmark").parse(path.read_text(encoding="utf-8")))
    for opening, inline in zip(tokens, tokens[1:], strict=False):
        if opening.type != "heading_open":
            continue
        text = "".join(child.content for child in inline.children or () if child.type in ("text", "code_inline"))
        slug = re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")
        anchor, n = slug, 0
        while anchor in anchors:
            n += 1
            anchor = f"{slug}-{n}"
        anchors.add(anchor)
    return anchors


def broken_links(path: Path) -> list[str]:
    broken = []
    for target in relative_links(path):
        parts = urlsplit(target)
        linked = (path.parent / unquote(parts.path)).resolve() if parts.path else path
        if not linked.exists():
            broken.append(f"{target} (no such file)")
        elif parts.fragment and linked.suffix == ".md" and parts.fragment not in heading_anchors(linked):
            broken.append(f"{target} (no heading #{parts.fragment} in {linked.name})")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_leads_to_a_file_and_heading_that_exist(page):
    assert broken_links(page) == []


def test_the_link_check_finds_a_missing_file_and_a_missing_heading(tmp_path):
    (tmp_path / "other.md").write_text("# Other page\n\n## What `--overwrite` may delete\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](other.md) [ok](other.md#what---overwrite-may-delete) [ok](#here) [web](https://example.com/x.md)\n"
        "![gone](figures/gone.png) [gone](nowhere.md) [no heading](other.md#elsewhere)\n\n"
        "## Here\n\n```\n[in code](not-a-link.md)\n```\n"
    )
    assert broken_links(page) == [
        "figures/gone.png (no such file)",
        "nowhere.md (no such file)",
        "other.md#elsewhere (no heading #elsewhere in other.md)",
    ]


def test_the_readme_fits_a_short_read_and_links_every_docs_page():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= README_MAX_LINES
    linked = {(ROOT / urlsplit(t).path).resolve() for t in relative_links(README)}
    unlinked = [p.name for p in PAGES[1:] if p.resolve() not in linked]
    assert unlinked == []
