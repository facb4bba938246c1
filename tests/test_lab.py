"""``cachelab lab`` serves a working copy: in a checkout, ``make lab`` saves into ``.lab/``
and leaves the repository clean; kernels talk over IPC, without TCP's warning."""

from __future__ import annotations

import json
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cachelab.lab.jupyter_config import transport
from cachelab.lab.workcopy import STATE, prepare, sync_copies
from tests.labserver import LabServer, free_port

ROOT = Path(__file__).resolve().parent.parent
PACKAGED = Path("cachelab", "lab", "notebooks")  # where a checkout keeps the notebooks
TCP_WARNING = "Kernel is running over TCP without encryption"  # ipykernel's words


def git(repo: Path, *args: str) -> str:
    """Run git in ``repo``; its output."""
    identity = ["-c", "user.name=test", "-c", "user.email=test@example.invalid"]
    done = subprocess.run(
        ["git", *identity, "-C", str(repo), *args], check=True, capture_output=True, text=True
    )
    return done.stdout


def make_lab_folder() -> str:
    """The folder ``make lab`` serves, read off its recipe line in the Makefile."""
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^lab:.*\n\t(.*)$", makefile, re.M)
    assert recipe is not None
    words = recipe.group(1).split()
    assert words[:5] == ["$(BIN)/python", "-m", "cachelab", "lab", "--dir"], words
    return words[5]


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
    """``make lab``'s command in the snapshot: ``python -m cachelab lab --dir .lab``."""
    folder = Path(make_lab_folder())
    token = secrets.token_hex(16)
    lab = LabServer(folder, free_port(), token, tmp_path / "lab.log", cwd=repo)
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


def test_make_lab_serves_a_gitignored_folder() -> None:
    folder = make_lab_folder()
    assert folder == ".lab"
    ignored = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", f"{folder}/x.ipynb"])
    assert ignored.returncode == 0, f"{folder}/ is not gitignored"


@pytest.mark.notebook
def test_saving_through_the_lab_leaves_git_clean(repo: Path, server: LabServer) -> None:
    name = "02-watching-invalidations-propagate.ipynb"
    shipped = sorted(p.name for p in (repo / PACKAGED).glob("*.ipynb"))
    listing = sorted(item["name"] for item in server.api("contents")["content"])
    assert listing == shipped and len(listing) == 11  # the notebooks at the root, no state
    model = server.api(f"contents/{name}")
    saved = server.api(
        f"contents/{name}",
        "PUT",
        {"type": "notebook", "format": "json", "content": with_outputs(model["content"])},
    )
    assert saved["name"] == name
    copy = json.loads((repo / ".lab" / name).read_text())
    assert "saved by the lab" in json.dumps(copy)  # the save landed in the working copy
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""
    settings = repo / ".lab" / STATE / "settings" / "@jupyterlab" / "apputils-extension"
    assert json.loads((settings / "notification.jupyterlab-settings").read_text()) == {
        "fetchNews": "false",
        "checkForUpdates": False,
    }


@pytest.mark.notebook
def test_the_labs_kernels_run_over_ipc_without_the_tcp_warning(server: LabServer) -> None:
    kernel = server.api("kernels", "POST", {"name": "python3"})
    assert server.run(kernel["id"], "print(6 * 7)") == "42\n"  # through the server's websocket
    connection = json.loads((server.runtime / f"kernel-{kernel['id']}.json").read_text())
    assert connection["transport"] == "ipc"
    log = server.text()
    assert "Kernel started" in log and TCP_WARNING not in log  # the kernel's stderr is here


def test_a_students_edits_survive_a_new_version(tmp_path: Path) -> None:
    source, copies = tmp_path / "notebooks", tmp_path / "copies"
    source.mkdir()
    copies.mkdir()
    (source / "01.ipynb").write_text("first")
    assert sync_copies(source, copies) == []
    (copies / "01.ipynb").write_text("edited by the student")
    (source / "01.ipynb").write_text("second")
    notes = sync_copies(source, copies)
    assert (copies / "01.ipynb").read_text() == "edited by the student"
    assert notes == ["01.ipynb changed; your copy is kept (cachelab lab --reset 01 replaces it)"]
    (copies / "01.ipynb").unlink()
    assert sync_copies(source, copies) == [] and (copies / "01.ipynb").read_text() == "second"


def test_an_unedited_copy_follows_its_source(tmp_path: Path) -> None:
    source, copies = tmp_path / "notebooks", tmp_path / "copies"
    source.mkdir()
    copies.mkdir()
    (source / "01.ipynb").write_text("first")
    sync_copies(source, copies)
    (source / "01.ipynb").write_text("second")
    assert sync_copies(source, copies) == [] and (copies / "01.ipynb").read_text() == "second"


def test_a_file_the_lab_did_not_write_is_kept(tmp_path: Path) -> None:
    source, copies = tmp_path / "notebooks", tmp_path / "copies"
    source.mkdir()
    copies.mkdir()
    (source / "01.ipynb").write_text("shipped")
    (source / "02.ipynb").write_text("also shipped")
    (copies / "01.ipynb").write_text("the student's own")
    (copies / "02.ipynb").write_text("also shipped")  # the same file, copied by hand
    notes = sync_copies(source, copies)
    assert (copies / "01.ipynb").read_text() == "the student's own"
    assert notes == ["01.ipynb is not the lab's copy; your copy is kept "
                     "(cachelab lab --reset 01 replaces it)"]  # fmt: skip
    (source / "02.ipynb").write_text("a new version")
    assert sync_copies(source, copies)[1:] == []  # 02 was adopted, so it follows its source
    assert (copies / "02.ipynb").read_text() == "a new version"


def test_a_folder_too_deep_for_a_socket_keeps_tcp() -> None:
    deep = Path("/", *["folder"] * 12)  # 84 bytes, before the socket's name
    assert transport(deep) == "tcp"  # a kernel that starts, rather than one that cannot bind
    assert transport(Path("/tmp")) == "ipc"  # Linux's ZeroMQ has IPC


def test_the_old_working_copy_of_make_lab_is_pointed_at(tmp_path: Path) -> None:
    old = tmp_path / ".lab" / "notebooks"  # make lab served .lab/notebooks until now
    old.mkdir(parents=True)
    (old / ".sources.json").write_text("{}")
    root, notes = prepare(tmp_path / ".lab")
    assert notes == [f"an older working copy is in {old}; open it from there"]
    assert len(list(root.glob("*.ipynb"))) == 11
