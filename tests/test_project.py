"""The project's own promises: two-command quickstart, conda route, typed package, a version,
and a lab that works from an install: ``cachelab lab`` copies the packaged notebooks into a
folder of the user's and never writes into the package."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from importlib.metadata import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml

import cachelab
from cachelab.harness import cli
from cachelab.lab import NOTEBOOKS
from cachelab.lab.workcopy import STATE

ROOT = Path(__file__).resolve().parent.parent


def test_environment_yml_agrees_with_pyproject() -> None:
    project = metadata("cachelab")  # built from pyproject.toml at install time
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    python = next(d for d in deps if isinstance(d, str) and d.startswith("python"))
    assert python == "python" + project["Requires-Python"]
    assert "pip" in deps
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    assert len(pip) == 1
    extras = re.fullmatch(r"-e \.\[(.*)\]", pip[0])
    assert extras is not None, pip
    assert extras.group(1).split(",") == ["lab"]  # a student's: the lab, no developer tools
    assert "lab" in (project.get_all("Provides-Extra") or [])


def test_readme_quickstart_is_exactly_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    quickstart = readme.split("## Quickstart", 1)[1].split("```", 2)[1]
    assert quickstart.strip().splitlines() == ["make lab", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^lab:", makefile, re.M) and re.search(r"^test:", makefile, re.M)


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci and "CI=true" in ci


def test_package_is_typed() -> None:
    assert (ROOT / "cachelab" / "py.typed").exists()




class Exec(Exception):
    """Raised in place of ``os.execve``: the command that would have replaced pytest."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        super().__init__(command[0])
        self.command, self.env = command, env


@pytest.fixture(autouse=True)
def no_exec(monkeypatch: pytest.MonkeyPatch) -> None:
    """``cachelab lab`` would replace this process with JupyterLab; record it instead."""

    def record(path: str, command: list[str], env: dict[str, str]) -> None:
        raise Exec(command, env)

    monkeypatch.setattr(os, "execve", record)
    # A short runtime folder (not created): the kernels' IPC sockets fit under it.
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(Path(tempfile.gettempdir(), "cachelab-rt")))


def shipped() -> dict[str, str]:
    """Every file in the package's notebooks folder, with its content hash."""
    return {
        str(p.relative_to(NOTEBOOKS)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(NOTEBOOKS.rglob("*"))
        if p.is_file()
    }


def lab(*argv: str) -> Exec:
    """``cachelab lab ARGV`` up to the point where JupyterLab would start."""
    with pytest.raises(Exec) as started:
        cli.main(["lab", *argv])
    return started.value


def test_the_package_carries_the_eleven_notebooks() -> None:
    assert NOTEBOOKS.parent == Path(cachelab.__file__).resolve().parent / "lab"
    assert len(list(NOTEBOOKS.glob("*.ipynb"))) == 11


def test_version_prints_the_packages_version() -> None:
    done = subprocess.run([sys.executable, "-m", "cachelab", "--version"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0 and done.stdout == f"cachelab {cachelab.__version__}\n"
    assert re.fullmatch(r"\d+\.\d+\.\d+", cachelab.__version__)


def test_lab_copies_the_notebooks_into_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    before = shipped()
    monkeypatch.chdir(tmp_path)
    started = lab("--port", "8899", "--no-browser", "--IdentityProvider.token=T")
    folder = tmp_path / "cachelab-lab"
    copies = {p.name: p.read_bytes() for p in folder.glob("*.ipynb")}
    assert copies == {p.name: p.read_bytes() for p in NOTEBOOKS.glob("*.ipynb")}
    command = started.command
    assert command[:3] == [sys.executable, "-m", "jupyterlab"]
    assert f"--ServerApp.root_dir={folder}" in command and "--port=8899" in command
    assert "--no-browser" in command and command[-1] == "--IdentityProvider.token=T"
    assert "--KernelManager.transport=ipc" in command  # no unencrypted-TCP warning
    assert started.env["JUPYTERLAB_SETTINGS_DIR"] == str(folder / STATE / "settings")
    assert started.env["JUPYTERLAB_WORKSPACES_DIR"] == str(folder / STATE / "workspaces")
    assert f"serving your copy of the notebooks in {folder}" in capsys.readouterr().out
    assert shipped() == before  # nothing written beside the packaged notebooks


def test_an_edited_copy_is_kept_until_reset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "mine"
    lab("--dir", str(folder))
    name = "04-races-and-their-fixes.ipynb"
    (folder / name).write_text("the student's work")
    (folder / "00-quickstart.ipynb").unlink()
    lab("--dir", str(folder))
    assert (folder / name).read_text() == "the student's work"
    assert (folder / "00-quickstart.ipynb").read_bytes() == (NOTEBOOKS / "00-quickstart.ipynb"
                                                             ).read_bytes()  # fmt: skip
    capsys.readouterr()
    assert cli.main(["lab", "--dir", str(folder), "--reset", "04"]) == 0
    assert (folder / name).read_bytes() == (NOTEBOOKS / name).read_bytes()
    said = capsys.readouterr().out
    assert said == f"cachelab lab: restored {folder / name} from the package " \
                   "(your copy had edits, now discarded)\n"  # fmt: skip


@pytest.mark.parametrize("name", ["04-races-and-their-fixes.ipynb", "04-races-and-their-fixes",
                                  "04", "04-r"])  # fmt: skip
def test_reset_takes_a_file_name_a_stem_or_a_unique_prefix(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "new"
    assert cli.main(["lab", "--dir", str(folder), "--reset", name]) == 0  # no JupyterLab
    assert [p.name for p in folder.glob("*.ipynb")] == ["04-races-and-their-fixes.ipynb"]
    assert capsys.readouterr().out.startswith("cachelab lab: restored ")


def _file(tmp_path: Path) -> Path:
    """A regular file where a folder is wanted."""
    path = tmp_path / "a-file"
    path.write_text("not a folder")
    return path


def _state_is_a_file(tmp_path: Path) -> Path:
    """A folder whose ``.cachelab`` is a file, so the lab cannot write its state."""
    (tmp_path / "lab").mkdir()
    (tmp_path / "lab" / STATE).write_text("in the way")
    return tmp_path / "lab"


FolderMaker = Callable[[Path], Any]
ERRORS: list[tuple[str, FolderMaker, list[str], str]] = [
    ("lab", _file, ["--dir", "{}"], "exists and is not a folder; choose another --dir"),
    ("lab", lambda t: _file(t) / "sub", ["--dir", "{}"], "cannot create"),
    ("lab", _state_is_a_file, ["--dir", "{}"], "cannot write in"),
    ("lab", lambda t: NOTEBOOKS, ["--dir", "{}"], "is inside the cachelab package"),
    ("lab", lambda t: t, ["--dir", "{}", "--reset", "zz"],
     "no notebook 'zz'; choose one of: 00-quickstart, 01-the-naive-recipe,"),
    ("lab", lambda t: t, ["--dir", "{}", "--reset", "0"],
     "'0' names 10 notebooks (00-quickstart, 01-the-naive-recipe,"),
    ("site", lambda t: t / "none", ["--notebooks", "{}"], "no notebooks in"),
    ("site", lambda t: t, ["--out", "{}", "--only", "99"], "no notebook starts with '99'"),
    ("site", _file, ["--out", "{}", "--only", "00"], "exists and is not a folder"),
]  # fmt: skip


@pytest.mark.parametrize(("command", "make", "args", "says"), ERRORS,
                         ids=[f"{c} {s[:30]}" for c, _, _, s in ERRORS])  # fmt: skip
def test_a_bad_folder_or_name_is_one_line_and_exit_2(
    command: str, make: FolderMaker, args: list[str], says: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    before = shipped()
    folder = make(tmp_path)
    argv = [command, *(a.format(folder) for a in args)]
    assert cli.main(argv) == 2  # and no Exec: JupyterLab never starts
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.startswith(f"cachelab {command}: error: "), err
    assert says in err and out == ""
    assert shipped() == before
