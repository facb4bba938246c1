"""A real browser: ``cachelab lab`` in headless Chromium runs notebook 02, clicks write,
then steps the simulator panel's trace viewer.

Uses Debian's chromium (never a downloaded browser). Without /usr/bin/chromium the
test skips, except under CI=true where it fails.
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from cachelab.lab import NOTEBOOKS
from tests.helpers import IN_CI
from tests.labserver import LabServer, free_port

CHROMIUM = Path("/usr/bin/chromium")

NOTEBOOK = "02-watching-invalidations-propagate.ipynb"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def require_chromium() -> None:
    """Skip without Debian's chromium, or fail under CI, which installs it."""
    if CHROMIUM.exists():
        return
    reason = f"{CHROMIUM} is not installed (apt-get install chromium); the browser test needs it"
    if IN_CI:
        pytest.fail(reason + " (and CI=true makes it mandatory)")
    pytest.skip(reason)


@contextmanager
def offline_page() -> Iterator[tuple[Any, list[str]]]:
    """A Chromium page that may read files only: every other request is refused and noted."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    refused: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})

            def route(r: Any) -> None:
                if r.request.url.startswith(("file:", "blob:", "data:")):
                    r.continue_()
                else:
                    refused.append(r.request.url)
                    r.abort()

            context.route("**/*", route)
            yield context.new_page(), refused
        finally:
            browser.close()


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[LabServer]:
    """``cachelab lab`` over a temporary copy of the notebooks (and their sources)."""
    root = tmp_path / "repo" / "notebooks"
    shutil.copytree(NOTEBOOKS, root, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    server = LabServer(root, free_port(), secrets.token_hex(16), tmp_path / "jupyter.log")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.mark.browser
@pytest.mark.notebook
def test_write_button_updates_the_peers_in_jupyterlab(lab: LabServer, tmp_path: Path) -> None:
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{lab.url}/lab/tree/{NOTEBOOK}?token={lab.token}")
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
            page.wait_for_function(
                "() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                " && window.jupyterapp.shell.currentWidget.sessionContext"
                " && window.jupyterapp.shell.currentWidget.sessionContext.session",
                timeout=60_000,
            )
            page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
            write = page.locator(".cachelab-write").first
            write.wait_for(state="visible", timeout=120_000)
            table = page.locator(".cachelab-table").first
            table.locator("tr[data-node='c']").wait_for(timeout=60_000)
            assert "v1" not in table.inner_text()
            write.scroll_into_view_if_needed()
            write.click()
            for peer in ("b", "c"):
                cell = table.locator(f"tr[data-node='{peer}'] td.cache")
                cell.filter(has_text="user:1 = 'value 1' v1").wait_for(timeout=60_000)
            text = table.inner_text()
            page.screenshot(path=str(tmp_path / "notebook-02.png"), full_page=False)
            steps, drawn = drive_the_sim_panels_viewer(page, tmp_path)
            news = page.get_by_text("notified about official Jupyter news").count()
        finally:
            browser.close()
    assert "stale" not in text
    assert (tmp_path / "notebook-02.png").stat().st_size > 10_000
    assert steps == [steps[0] + i for i in range(len(steps))] and len(steps) == 4
    assert drawn["nodes"] == 3 and "a: write user:1" in drawn["log"]
    assert news == 0  # the news prompt is off


def drive_the_sim_panels_viewer(page: Any, tmp_path: Path) -> tuple[list[int], dict[str, Any]]:
    """Write on the simulator panel, then step its trace viewer (an anywidget) by hand."""
    panel = page.locator(".cachelab-write").nth(1)
    panel.scroll_into_view_if_needed()
    viewer = page.locator(".cachelab-viewer .clv").first
    viewer.wait_for(timeout=60_000)
    before = viewer.locator(".clv-log li").count()
    panel.click()
    page.wait_for_function(
        "([el, n]) => el.querySelectorAll('.clv-log li').length > n",
        arg=[viewer.element_handle(), before],
        timeout=60_000,
    )
    viewer.locator(".clv-start").click()
    steps = []
    for _ in range(4):
        viewer.locator(".clv-step").click()
        steps.append(int(viewer.get_attribute("data-step") or 0))
    viewer.scroll_into_view_if_needed()
    page.screenshot(path=str(tmp_path / "viewer-jupyterlab.png"), full_page=False)
    drawn = {
        "nodes": viewer.locator(".clv-node").count(),
        "log": viewer.locator(".clv-log").inner_text(),
    }
    return steps, drawn
