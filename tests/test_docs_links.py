"""The documentation holds together: every relative link in README.md, docs/*.md and flysim/README.md
reaches a file of the checkout and, with a `#anchor`, a heading of that page (GitHub's anchor rules);
README.md stays a newcomer's page (under 150 lines); each page of docs/ starts by saying what it is for.
No engine, no network: it reads the files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", REPO / "flysim" / "README.md", *sorted((REPO / "docs").glob("*.md"))]
README_MAX_LINES = 150

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", flags=re.M | re.S)
CODE_SPAN = re.compile(r"(`+)(.+?)\1", flags=re.S)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.+?)[ \t#]*$", flags=re.M)


def _prose(text: str) -> str:
    """The page without its fenced code blocks (a `# comment` in a shell block is no heading)."""
    return FENCE.sub("", text)


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading: the rendered text, lowercased, with everything but letters, digits,
    `_`, `-` and spaces dropped, and each space a `-`."""
    text = CODE_SPAN.sub(lambda m: m.group(2), heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link renders as its text
    text = re.sub(r"(\*\*|__|\*)", "", text)
    text = text.strip().lower()
    text = "".join(ch for ch in text if ch.isalnum() or ch in "_- ")
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for match in HEADING.finditer(_prose(page.read_text())):
        slug = github_slug(match.group(1))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def relative_links(page: Path) -> list[str]:
    prose = CODE_SPAN.sub("", _prose(page.read_text()))
    targets = [m.group(1) for m in LINK.finditer(prose)]
    return [t for t in targets if not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", t)]  # http:, mailto:, ...


def broken_links(page: Path, root: Path = REPO) -> list[str]:
    problems = []
    for target in relative_links(page):
        path_part, _, anchor = target.partition("#")
        dest = (page.parent / path_part).resolve() if path_part else page
        where = f"{page.relative_to(root)}: ({target})"
        if root not in dest.parents and dest != root:
            problems.append(f"{where} leaves the checkout")
        elif not dest.exists():
            problems.append(f"{where}: no file {dest.relative_to(root) if root in dest.parents else dest}")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            problems.append(f"{where}: {dest.relative_to(root)} has no heading with anchor #{anchor}")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(REPO)) for p in PAGES])
def test_every_relative_link_resolves(page: Path) -> None:
    assert broken_links(page) == []


def test_readme_is_a_newcomers_page_that_links_every_topic() -> None:
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) < README_MAX_LINES, \
        f"README.md has {len(readme.splitlines())} lines: keep it under {README_MAX_LINES}, move depth to docs/"
    linked = {(REPO / t.partition("#")[0]).resolve() for t in relative_links(REPO / "README.md")}
    unlinked = [p.name for p in sorted((REPO / "docs").glob("*.md")) if p.resolve() not in linked]
    assert unlinked == [], f"README.md doesn't say where these topics live: {unlinked}"


@pytest.mark.parametrize("page", sorted((REPO / "docs").glob("*.md")), ids=lambda p: p.name)
def test_each_docs_page_starts_with_what_it_is_for(page: Path) -> None:
    paragraphs = [p for p in page.read_text().split("\n\n") if p.strip()]
    assert paragraphs[0].startswith("# "), f"{page.name} starts with its title"
    assert paragraphs[1].startswith("What this page is for:"), \
        f"{page.name}: the paragraph after the title says what the page is for ('What this page is for: ...')"


def test_the_checker_finds_a_missing_file_and_a_missing_anchor(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "topic.md").write_text(
        "# Topic\n\n## Running `pulumi up` (the real one)\n\n## Running `pulumi up` (the real one)\n\n"
        "```sh\n# not a heading\n```\n")
    page = tmp_path / "README.md"
    page.write_text(
        "[ok](docs/topic.md) [ok](docs/topic.md#running-pulumi-up-the-real-one) "
        "[ok, the second such heading](docs/topic.md#running-pulumi-up-the-real-one-1) "
        "[web](https://example.com/x.md) `[code](nowhere.md)`\n\n"
        "[gone](docs/missing.md) [no such heading](docs/topic.md#not-a-heading) [up](../outside.md)\n\n"
        "```sh\n[in a block](nowhere.md)\n```\n")
    problems = broken_links(page, root=tmp_path)
    assert len(problems) == 3, problems
    assert "no file docs/missing.md" in problems[0]
    assert "has no heading with anchor #not-a-heading" in problems[1]
    assert "leaves the checkout" in problems[2]
