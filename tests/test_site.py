"""The static site: ``cachelab site`` builds it from the packaged notebooks in a folder of
the user's, pages load offline and the viewer steps, and its kernels run quietly over IPC."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from cachelab.lab import NOTEBOOKS
from cachelab.lab.site import execute
from tests.test_browser import offline_page
from tests.test_lab import TCP_WARNING

PAGES = ("00", "02", "04")  # the quickstart, the panels, the side-by-side viewer


def package_files() -> list[str]:
    """The packaged notebooks' folder, and the files beside it (Python's caches aside)."""
    lab = NOTEBOOKS.parent
    names = [*NOTEBOOKS.rglob("*"), *lab.iterdir()]
    return sorted(str(p.relative_to(lab)) for p in names if p.name != "__pycache__")


@dataclass
class Built:
    """One run of ``cachelab site``: where, what it printed, the package before and after."""

    cwd: Path
    done: subprocess.CompletedProcess[str]
    before: list[str]
    after: list[str]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """``cachelab site --only 00 02 04`` run in an empty folder, as a user of an install would
    (``make site`` builds every notebook)."""
    cwd = tmp_path_factory.mktemp("user")
    before = package_files()
    done = subprocess.run([sys.executable, "-m", "cachelab", "site", "--only", *PAGES],
                          cwd=cwd, capture_output=True, text=True, timeout=900)  # fmt: skip
    return Built(cwd, done, before, package_files())


@pytest.fixture(scope="module")
def site(built: Built) -> Path:
    """The site ``cachelab site`` wrote into ``./cachelab-site``."""
    assert built.done.returncode == 0, built.done.stderr
    return built.cwd / "cachelab-site"


@pytest.mark.notebook
def test_cachelab_site_writes_into_the_current_folder_only(built: Built, site: Path) -> None:
    assert built.done.stdout.splitlines()[-1] == f"cachelab site: open {site / 'index.html'}"
    assert [p.name for p in built.cwd.iterdir()] == ["cachelab-site"]
    assert built.after == built.before  # nothing executed in or written into the package
    assert TCP_WARNING not in built.done.stderr  # its kernels' stderr is the command's


def one_cell(code: str, folder: Path) -> Path:
    """A notebook of one code cell, written into ``folder``."""
    path = folder / "one.ipynb"
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    nbformat.write(notebook, path)
    return path


@pytest.mark.notebook
def test_the_sites_kernel_runs_over_ipc_and_elsewhere(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    path = one_cell("import os; print(6 * 7, os.getcwd())", tmp_path)
    notebook, _ = execute(path, timeout=60)
    answer, cwd = notebook.cells[0].outputs[0]["text"].split()
    assert answer == "42" and Path(cwd) != tmp_path and not Path(cwd).exists()  # a scratch cwd
    assert TCP_WARNING not in capfd.readouterr().err  # a kernel's stderr is this process's


@pytest.mark.notebook
def test_over_tcp_the_same_kernel_warns(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """The control: the check above sees the warning when it is there."""
    notebook = nbformat.read(one_cell("print(6 * 7)", tmp_path), as_version=4)
    NotebookClient(notebook, timeout=60, kernel_name="python3").execute()
    assert notebook.cells[0].outputs[0]["text"] == "42\n"
    assert TCP_WARNING in capfd.readouterr().err


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
