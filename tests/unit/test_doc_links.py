"""Relative links and #anchors in the README, docs/ and the charts' and clients' READMEs lead
somewhere: pages move, headings get reworded, and a link that silently points nowhere is the
first thing a newcomer trips on. Anchors follow GitHub's heading slugs."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = ("README.md", "docs/*.md", "charts/*/README.md", "clients/*/README.md")

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_INLINE_LINK = re.compile(
    r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
_HTML_ANCHOR = re.compile(r"<a\s+(?:[^>]*\s)?(?:id|name)=\"([^\"]+)\"")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def pages() -> list[Path]:
    found = {path for pattern in PAGES for path in REPO.glob(pattern)}
    return sorted(found)


def _prose(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) of the text outside fenced code blocks."""
    fence: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        match = _FENCE.match(line)
        if fence is None and match:
            fence = match.group(1)[0] * 3
        elif fence is not None and line.lstrip().startswith(fence):
            fence = None
        elif fence is None:
            yield number, line


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its visible text lower-cased, punctuation dropped (but
    `-` and `_`), each space a hyphen."""
    text = _CODE_SPAN.sub(lambda m: m.group(2), heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"<[^>]+>", "", text)
    text = "".join(ch for ch in text.lower() if ch.isalnum() or ch in " -_")
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every anchor a page offers: heading slugs (a repeated one numbered -1, -2, ... as
    GitHub does) and explicit <a id/name> anchors."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for _, line in _prose(text):
        found.update(_HTML_ANCHOR.findall(line))
        match = _HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(text: str) -> Iterator[tuple[int, str]]:
    """(line number, target) of every inline, image and reference link outside code."""
    for number, line in _prose(text):
        line = _CODE_SPAN.sub("", line)
        for match in _INLINE_LINK.finditer(line):
            yield number, match.group(1)
        if reference := _REFERENCE.match(line):
            yield number, reference.group(1)


def broken_links(page: Path, root: Path = REPO) -> list[str]:
    """The relative links of one page that point nowhere, as `page:line: target (why)`."""
    text = page.read_text()
    problems = []
    for number, target in links(text):
        if not target or _SCHEME.match(target) or target.startswith("//"):
            continue
        path_part, _, anchor = target.partition("#")
        where = f"{page.relative_to(root)}:{number}: {target}"
        destination = (page.parent / unquote(path_part)).resolve() if path_part else page
        if path_part.startswith("/"):
            problems.append(f"{where} (an absolute path: write it relative to the page)")
            continue
        if not destination.is_relative_to(root.resolve()):
            problems.append(f"{where} (outside the repository)")
            continue
        if not destination.exists():
            problems.append(f"{where} (no such file)")
            continue
        if anchor and destination.suffix == ".md":
            if unquote(anchor) not in anchors(destination.read_text()):
                problems.append(f"{where} (no heading with this anchor)")
        elif anchor:
            problems.append(f"{where} (an anchor into a file that is not markdown)")
    return problems


def test_the_pages_are_found() -> None:
    """The glob sees the README, the docs and the chart's README, so the test below is not
    vacuous."""
    names = {str(page.relative_to(REPO)) for page in pages()}
    assert {"README.md", "docs/design.md", "charts/reel-reconciler/README.md"} <= names


@pytest.mark.parametrize("page", pages(), ids=lambda page: str(page.relative_to(REPO)))
def test_every_relative_link_resolves(page: Path) -> None:
    assert broken_links(page) == []


def test_github_slugs() -> None:
    assert slug("5a. The change log") == "5a-the-change-log"
    assert slug("The reconcile endpoint: the seed's contract, served safely") == (
        "the-reconcile-endpoint-the-seeds-contract-served-safely")
    assert slug("`watch`: the reconciler without Kubernetes") == (
        "watch-the-reconciler-without-kubernetes")
    assert slug("[Image](#image) and **more**") == "image-and-more"
    assert anchors("# A\n## A\n```sh\n# not a heading\n```\n## A\n") == {"a", "a-1", "a-2"}


def test_a_broken_link_is_caught(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text("# Page\n\n## Real heading\n")
    readme = tmp_path / "README.md"
    readme.write_text(
        "# Title\n\n"
        "[fine](docs/page.md#real-heading) [fine too](#title) [web](https://example.com)\n"
        "[gone](docs/missing.md) [no anchor](docs/page.md#reworded-heading)\n"
        "[own anchor](#nowhere) `[in code](nowhere.md)`\n"
        "```\n[in a fence](nowhere.md)\n```\n"
        "[ref]: ../outside.md\n")
    assert broken_links(readme, tmp_path) == [
        "README.md:4: docs/missing.md (no such file)",
        "README.md:4: docs/page.md#reworded-heading (no heading with this anchor)",
        "README.md:5: #nowhere (no heading with this anchor)",
        "README.md:9: ../outside.md (outside the repository)",
    ]
