"""An HTML export from the lab's environment plays offline: ``jupyter nbconvert`` itself,
with the config ``cachelab lab`` puts on the Jupyter config path."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from nbconvert import HTMLExporter

from cachelab.lab import NOTEBOOKS
from cachelab.lab.jupyter_config import PATH, PRIORITY
from cachelab.lab.workcopy import lab_environment
from tests.labserver import LabServer, free_port
from tests.test_browser import offline_page

NOTEBOOK = "02-watching-invalidations-propagate.ipynb"


@pytest.fixture(scope="module")
def notebook(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of notebook 02, as committed (no outputs)."""
    path = tmp_path_factory.mktemp("export") / NOTEBOOK
    path.write_bytes((NOTEBOOKS / NOTEBOOK).read_bytes())
    return path


@pytest.fixture(scope="module")
def executed(notebook: Path) -> Path:
    """``jupyter nbconvert --execute``: the notebook run, with its widgets' state stored."""
    command = [sys.executable, "-m", "jupyter", "nbconvert", "--execute", "--to", "notebook"]
    folder = notebook.parent / "executed"
    subprocess.run([*command, str(notebook), "--output-dir", str(folder)], check=True,
                   capture_output=True)  # fmt: skip
    return folder / notebook.name


@pytest.fixture(scope="module")
def exports(executed: Path) -> dict[str, str]:
    """The run exported by Jupyter's defaults, and by ``jupyter nbconvert`` in the lab's
    environment. With the widgets' state stored, Jupyter's own priority picks their live
    view, whose renderer comes from a CDN."""
    plain, _ = HTMLExporter().from_filename(str(executed))
    command = [sys.executable, "-m", "jupyter", "nbconvert", "--to", "html", str(executed)]
    folder = executed.parent / "lab"
    env = lab_environment(executed.parent)
    subprocess.run([*command, "--output-dir", str(folder)], env=env, check=True,
                   capture_output=True)  # fmt: skip
    return {"plain": str(plain), "lab": (folder / executed.with_suffix(".html").name).read_text()}


def test_every_jupyter_tool_the_lab_starts_gets_the_same_export_priority(tmp_path: Path) -> None:
    env = lab_environment(tmp_path)
    assert env["JUPYTER_CONFIG_PATH"].split(":")[0] == str(PATH)
    for name in ("jupyter_server_config.json", "jupyter_nbconvert_config.json"):
        config = json.loads((PATH / name).read_text())
        assert config["NbConvertBase"]["display_data_priority"] == PRIORITY
    assert PRIORITY[0] == "text/html"


def test_a_plain_export_needs_the_internet_and_the_labs_does_not(exports: dict[str, str]) -> None:
    plain, ours = exports["plain"], exports["lab"]
    view = '<script type="application/vnd.jupyter.widget-view+json">'  # a CDN renderer's job
    assert view in plain
    assert ours.count("cachelab-viewer") >= 2 and "needs a running kernel" in ours
    assert view not in ours


@pytest.mark.notebook
def test_the_labs_file_menu_export_is_the_offline_one(executed: Path, tmp_path: Path) -> None:
    """What JupyterLab's File > Save and Export Notebook As > HTML asks the server for."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    (folder / NOTEBOOK).write_bytes(executed.read_bytes())
    lab = LabServer(folder, free_port(), secrets.token_hex(16), tmp_path / "lab.log")
    try:
        lab.wait_ready()
        request = urllib.request.Request(
            f"{lab.url}/nbconvert/html/{NOTEBOOK}?download=false",
            headers={"Authorization": f"token {lab.token}"},
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            exported = response.read().decode()
    finally:
        lab.stop()
    assert exported.count("cachelab-viewer") >= 2 and "needs a running kernel" in exported
    assert '<script type="application/vnd.jupyter.widget-view+json">' not in exported


@pytest.mark.browser
def test_the_labs_export_plays_with_the_network_refused(
    exports: dict[str, str], tmp_path: Path
) -> None:
    export = tmp_path / "02.html"
    export.write_text(exports["lab"])
    with offline_page() as (page, refused):
        page.goto(export.as_uri())
        viewer = page.locator(".clv").first
        viewer.wait_for(timeout=30_000)
        first = int(viewer.get_attribute("data-step") or 0)
        viewer.locator(".clv-step").click()
        viewer.locator(".clv-step").click()
        assert int(viewer.get_attribute("data-step") or 0) == first + 2
        assert page.get_by_text("needs a running kernel").first.is_visible()
        page.screenshot(path=str(tmp_path / "export-02.png"))
    assert all(not url.startswith("blob:") for url in refused)
