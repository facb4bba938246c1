"""The static site: pages built from executed notebooks load offline and the viewer steps."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cachelab.lab import NOTEBOOKS
from cachelab.lab.site import build_site
from tests.test_browser import offline_page

PAGES = ("00", "02", "04")  # the quickstart, the panels, the side-by-side viewer


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A site of three executed notebooks (``make site`` builds all of them)."""
    out = tmp_path_factory.mktemp("site")
    build_site(NOTEBOOKS, out, only=PAGES)
    return out


@pytest.fixture
def offline(site: Path) -> Iterator[tuple[Any, list[str]]]:
    """An offline page, once the site is built."""
    with offline_page() as pair:
        yield pair


def test_the_site_has_every_page_and_nothing_from_outside(site: Path) -> None:
    names = sorted(p.name for p in site.glob("*.html"))
    assert names == [
        "00-quickstart.html",
        "02-watching-invalidations-propagate.html",
        "04-races-and-their-fixes.html",
        "index.html",
    ]
    for page in site.glob("*.html"):
        fetched = re.findall(r'(?:src=|<link[^>]*href=)"(https?:[^"]*)"', page.read_text())
        assert fetched == [], page.name
    panels = (site / "02-watching-invalidations-propagate.html").read_text()
    assert "needs a running kernel" in panels and 'href="03-hit-rates.html"' in panels


@pytest.mark.browser
def test_site_pages_load_offline_and_the_viewer_steps(
    site: Path, offline: tuple[Any, list[str]], tmp_path: Path
) -> None:
    page, refused = offline
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto((site / "index.html").as_uri())
    assert page.locator("li a").count() == 3
    page.locator("li a", has_text="04").click()
    viewer = page.locator(".clv").first
    viewer.wait_for(timeout=30_000)
    panes = viewer.locator(".clv-pane")
    assert panes.count() == 2
    assert "BROKEN" in panes.nth(0).inner_text() and "FIXED" in panes.nth(1).inner_text()
    first = int(viewer.get_attribute("data-step") or 0)
    steps = []
    for _ in range(8):
        viewer.locator(".clv-step").click()
        steps.append(int(viewer.get_attribute("data-step") or 0))
    assert steps == list(range(first + 1, first + 9))  # one event per click
    viewer.locator(".clv-scrub").fill("1000")
    stale = panes.nth(0).locator(".clv-node[data-node='b']")
    assert stale.locator(".clv-entry").first.text_content() == "k v1"  # the stale set stayed
    fixed = panes.nth(1).locator(".clv-node[data-node='b'] .clv-entry")
    assert fixed.first.text_content() == "k v2"
    panes.nth(1).locator(".clv-log li", has_text="fill rejected").click()  # click an event
    rejected = panes.nth(1).locator(".clv-mark[data-kind='fill_rejected']")
    assert rejected.count() == 1 and "fill rejected k v1" in (rejected.text_content() or "")
    assert "safeguard: fill_guard" in panes.nth(1).locator(".clv-caption").inner_text()
    viewer.locator(".clv-start").click()
    viewer.locator(".clv-play").click()
    page.wait_for_function(
        "el => Number(el.dataset.step) > 3", arg=viewer.element_handle(), timeout=30_000
    )
    page.screenshot(path=str(tmp_path / "site-04.png"), full_page=False)
    assert errors == [] and refused == []
