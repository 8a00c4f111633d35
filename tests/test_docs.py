"""The user guide's links resolve, and only the results pages speak of earlier generators."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
CYCLE = re.compile(r"cycle[- ][0-9]|cycles [0-9]", re.I)


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_relative_link_of_a_page_resolves(page):
    broken = []
    for target in LINK.findall(page.read_text()):
        if "://" in target or target.startswith("mailto:"):
            continue
        if not (page.parent / target).exists():
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)} links to missing files: {broken}"


def test_a_broken_link_is_seen(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("see [x](missing.md) and [y](p.md)")
    assert [t for t in LINK.findall(page.read_text()) if not (tmp_path / t).exists()] == ["missing.md"]


def test_how_to_and_reference_pages_name_no_generator_cycle():
    pages = [p for p in PAGES if "results" not in p.relative_to(ROOT).parts]
    named = [f"{p.relative_to(ROOT)}:{i}" for p in pages for i, line in enumerate(p.read_text().splitlines(), 1)
             if CYCLE.search(line)]
    assert not named, f"earlier generators belong on the results pages (docs/results/): {named}"
