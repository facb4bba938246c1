"""The project's own promises: two-command quickstart, conda route, typed package."""

from __future__ import annotations

import re
from importlib.metadata import metadata
from pathlib import Path

import yaml

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
    assert set(extras.group(1).split(",")) == set(project.get_all("Provides-Extra") or [])


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


def test_lab_command_targets_the_notebooks() -> None:
    from cachelab.harness.cli import lab_command
    from cachelab.lab import NOTEBOOKS

    command = lab_command(NOTEBOOKS, 8899, open_browser=False)
    assert command[1] == "lab"
    assert f"--ServerApp.root_dir={NOTEBOOKS}" in command and "--port=8899" in command
    assert (NOTEBOOKS / "00-quickstart.ipynb").exists()
