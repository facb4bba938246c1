"""The declared lower bounds, proven: cachelab with its oldest allowed dependencies.

A throwaway venv outside the checkout gets this project installed with uv's
``--resolution lowest-direct``, so redis, fakeredis and tqdm are exactly their lower bounds
(everything else at the dev lock's versions), then runs a fast fakeredis-only subset of the
suite against that installed copy. ``make test-lowest`` runs this test alone.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from tests.uvenv import (
    DEV_LOCK,
    ROOT,
    canonical,
    clean_env,
    installed,
    make_venv,
    run,
    uv,
    write_build_constraints,
    write_constraints,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # the dev lock brings tomli on 3.10
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

pytestmark = pytest.mark.lowest

# The protocol core, the wire, both shells on fakeredis, and the README's own example.
SUBSET = ("test_core.py", "test_messages.py", "test_node.py", "test_async.py", "test_readme.py")
TOOLS = ("pytest", "pytest-timeout", "hypothesis")  # what SUBSET imports, at the dev lock's pins
SUPPORT = ("__init__.py", "conftest.py")


def runtime_requirements() -> list[Requirement]:
    """The project's runtime dependencies as pyproject.toml declares them."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(text) for text in project["dependencies"]]


def lower_bound(requirement: Requirement) -> Version:
    """The version after ``>=`` in ``requirement`` (every runtime dependency declares one)."""
    bounds = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
    assert len(bounds) == 1, f"{requirement} declares no single lower bound"
    return bounds[0]


def copy_subset(folder: Path) -> Path:
    """SUBSET with its support files and pytest's settings, away from the checkout's cachelab."""
    (folder / "tests").mkdir(parents=True)
    for name in SUBSET + SUPPORT:
        shutil.copy(ROOT / "tests" / name, folder / "tests" / name)
    for name in ("pyproject.toml", "README.md"):  # pytest's settings; the README example
        shutil.copy(ROOT / name, folder / name)
    return folder


def test_every_runtime_dependency_declares_a_lower_bound() -> None:
    bounds = {canonical(r.name): lower_bound(r) for r in runtime_requirements()}
    assert {"redis", "fakeredis", "tqdm"} <= set(bounds)


def test_the_subset_passes_with_every_runtime_dependency_at_its_lower_bound(
    tmp_path: Path,
) -> None:
    python = make_venv(tmp_path / "venv")
    requirements = runtime_requirements()
    constraints = write_constraints(
        DEV_LOCK, tmp_path / "constraints.txt", leave_out=[r.name for r in requirements]
    )
    run(
        [
            uv(),
            "pip",
            "install",
            "--quiet",
            "--python",
            python,
            "--resolution",
            "lowest-direct",
            "-c",
            constraints,
            "--build-constraints",
            write_build_constraints(DEV_LOCK, tmp_path / "b.txt"),
            ROOT,
            *TOOLS,
        ],
        tmp_path,
        clean_env(),
        300,
    )
    versions = installed(python)
    for requirement in requirements:
        assert Version(versions[canonical(requirement.name)]) == lower_bound(requirement)
    tree = copy_subset(tmp_path / "suite")
    out = run(
        [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not real_redis"],
        tree,
        clean_env(),
        300,
    )
    summary = out.strip().splitlines()[-1]
    assert re.search(r"\d+ passed", summary) and "skipped" not in summary, summary
    assert "failed" not in summary and "error" not in summary, summary
