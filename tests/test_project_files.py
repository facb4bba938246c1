"""The project's own files keep their word: paths they name exist, the changelog's form,
the targets CONTRIBUTING.md explains, the license, and a student's conda environment."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

import cachelab

if sys.version_info >= (3, 11):
    import tomllib
else:  # the dev lock brings tomli on 3.10
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROSE = ["README.md", "CONTRIBUTING.md", *(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md"))]
# A path into the repository, as prose names it; the HMAC label "cachelab/v2" is no path, and
# CONTRIBUTING.md's NN-name is the pattern of a notebook's name.
PATH = re.compile(r"(?<![\w/.-])((?:cachelab|notebooks|docs|tests|benchmarks|examples|requirements)"
                  r"/[\w./*-]*[\w*/])")  # fmt: skip
NOT_PATHS = {"cachelab/v2", "notebooks/src/NN-name.py", "cachelab/lab/notebooks/NN-name.ipynb"}
SECTIONS = {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}


def test_every_path_the_prose_names_exists() -> None:
    missing = [
        f"{name}: {path}"
        for name in PROSE
        for path in PATH.findall((ROOT / name).read_text())
        if path not in NOT_PATHS and not list(ROOT.glob(path.rstrip("/")))
    ]
    assert missing == []


def test_the_changelog_keeps_a_changelog_form_and_ends_at_this_version() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    headings = re.findall(r"^## (.+)$", text, re.M)
    assert headings[0] == "[Unreleased]"
    releases = [re.fullmatch(r"\[(\d+\.\d+\.\d+)\] - \d{4}-\d{2}-\d{2}", h) for h in headings[1:]]
    assert all(releases), headings
    versions = [m.group(1) for m in releases if m]
    assert versions[0] == cachelab.__version__ and versions[-1] == "0.1.0"
    assert set(re.findall(r"^### (.+)$", text, re.M)) <= SECTIONS


def test_contributing_explains_every_make_target() -> None:
    targets = re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), re.M)
    contributing = (ROOT / "CONTRIBUTING.md").read_text()
    assert {"lab", "test", "test-lowest", "upgrade"} <= set(targets)
    assert [t for t in targets if f"`make {t}`" not in contributing] == []


def test_the_license_is_the_one_the_metadata_declares() -> None:
    project = PYPROJECT["project"]
    license_text = (ROOT / "LICENSE").read_text()
    assert project["license"] == "MIT" and license_text.startswith("MIT License")
    assert project["license-files"] == ["LICENSE"]
    assert f"Copyright (c) 2026 {project['authors'][0]['name']}" in license_text


def test_the_lowest_and_install_runs_are_registered_and_reachable() -> None:
    markers = PYPROJECT["tool"]["pytest"]["ini_options"]["markers"]
    assert {m.split(":")[0] for m in markers} >= {"lowest", "install"}
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\ntest-lowest:", 1)[1].split("\n\n", 1)[0]
    assert "-m lowest" in recipe


def test_a_students_conda_environment_is_the_lab_alone() -> None:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    assert "python" + PYPROJECT["project"]["requires-python"] in deps
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    assert pip == ["-e .[lab]"]
    assert "lab" in PYPROJECT["project"]["optional-dependencies"]
