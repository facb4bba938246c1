"""``make lab`` serves a working copy: saving through JupyterLab leaves the repository clean."""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cachelab.harness.cli import lab_command, sync_copies, workdir
from tests.labserver import LabServer, free_port

ROOT = Path(__file__).resolve().parent.parent
PACKAGED = Path("cachelab", "lab", "notebooks")  # where a checkout keeps the notebooks


def git(repo: Path, *args: str) -> str:
    """Run git in ``repo``; its output."""
    identity = ["-c", "user.name=test", "-c", "user.email=test@example.invalid"]
    done = subprocess.run(
        ["git", *identity, "-C", str(repo), *args], check=True, capture_output=True, text=True
    )
    return done.stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A fresh repository holding this checkout's tracked files as they are now."""
    target = tmp_path / "repo"
    for name in git(ROOT, "ls-files").splitlines():
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    git(target, "init", "-q")
    git(target, "add", "-A")
    git(target, "commit", "-q", "-m", "snapshot")
    return target


@pytest.fixture
def server(repo: Path, tmp_path: Path) -> Iterator[LabServer]:
    """``cachelab lab`` over the snapshot's notebooks."""
    lab = LabServer(repo / PACKAGED, free_port(), secrets.token_hex(16), tmp_path / "lab.log")
    try:
        lab.wait_ready()
        yield lab
    finally:
        lab.stop()


def with_outputs(notebook: dict[str, object]) -> dict[str, object]:
    """The notebook with an output and an execution count in its first code cell."""
    cells = notebook["cells"]
    assert isinstance(cells, list)
    cell = next(c for c in cells if c["cell_type"] == "code")
    cell["execution_count"] = 1
    cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "saved by the lab\n"}]
    return notebook


@pytest.mark.notebook
def test_saving_through_the_lab_leaves_git_clean(repo: Path, server: LabServer) -> None:
    name = "02-watching-invalidations-propagate.ipynb"
    listing = {item["name"] for item in server.api("contents")["content"]}
    assert name in listing and "src" not in listing  # the sources are not in the file browser
    model = server.api(f"contents/{name}")
    saved = server.api(
        f"contents/{name}",
        "PUT",
        {"type": "notebook", "format": "json", "content": with_outputs(model["content"])},
    )
    assert saved["name"] == name
    copy = json.loads((workdir(repo / PACKAGED) / "notebooks" / name).read_text())
    assert "saved by the lab" in json.dumps(copy)  # the save landed in the working copy
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""
    settings = workdir(repo / PACKAGED) / "settings" / "@jupyterlab" / "apputils-extension"
    assert json.loads((settings / "notification.jupyterlab-settings").read_text()) == {
        "fetchNews": "false",
        "checkForUpdates": False,
    }


def test_a_students_edits_survive_a_new_version(tmp_path: Path) -> None:
    source, copies = tmp_path / "notebooks", tmp_path / "copies"
    source.mkdir()
    (source / "01.ipynb").write_text("first")
    assert sync_copies(source, copies) == []
    (copies / "01.ipynb").write_text("edited by the student")
    (source / "01.ipynb").write_text("second")
    notes = sync_copies(source, copies)
    assert (copies / "01.ipynb").read_text() == "edited by the student"
    assert notes and "01.ipynb" in notes[0]
    (copies / "01.ipynb").unlink()
    assert sync_copies(source, copies) == [] and (copies / "01.ipynb").read_text() == "second"


def test_lab_command_turns_the_news_off(tmp_path: Path) -> None:
    command = lab_command(tmp_path, 8899, open_browser=False, extra=["--ip=127.0.0.1"])
    assert command[1] == "lab" and command[-1] == "--ip=127.0.0.1"
    assert f"--ServerApp.root_dir={tmp_path}" in command and "--LabApp.news_url=" in command
