"""The markdown the repository ships links only to files and headings that exist.

The README, docs/ and the committed tables point at result pages, figures and each other by relative
path; a renamed figure or heading would otherwise leave a dead link that nothing reports.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = sorted([REPO / "README.md", *(REPO / "docs").rglob("*.md"), *(REPO / "metrics").rglob("*.md")])
LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"#{1,6} (.+)")
EXTERNAL = re.compile(r"[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # http:, https:, mailto:


def github_anchor(heading: str) -> str:
    """The fragment GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@functools.cache  # README.md is the target of links from several pages: parse each page once
def anchors(page: Path) -> frozenset[str]:
    found, in_code = set(), False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and (match := HEADING.match(line)):
            found.add(github_anchor(match.group(1)))
    return frozenset(found)


def relative_links(page: Path) -> list[str]:
    return [target for target in LINK.findall(page.read_text(encoding="utf-8")) if not EXTERNAL.match(target)]


def test_github_anchor_follows_githubs_rule():
    assert github_anchor("Training cost of JARN against 7-step PGD adversarial training (JARN Table 4)") == (
        "training-cost-of-jarn-against-7-step-pgd-adversarial-training-jarn-table-4")
    assert github_anchor("What has been reproduced, at what scale") == "what-has-been-reproduced-at-what-scale"


def test_pages_are_found():
    names = {page.relative_to(REPO).as_posix() for page in PAGES}
    assert {"README.md", "metrics/tables/README.md", "docs/results/chan2020.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_relative_links_resolve(page):
    dead = []
    for target in relative_links(page):
        path, _, fragment = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            dead.append(f"{target} (no such file)")
        elif fragment and linked.suffix == ".md" and fragment not in anchors(linked):
            dead.append(f"{target} (no heading #{fragment})")
    assert not dead, f"{page.relative_to(REPO)}: dead links: {dead}"
