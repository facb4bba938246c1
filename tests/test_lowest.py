"""The declared lower bounds, proven: cachelab with its oldest allowed dependencies.

A throwaway venv outside the checkout gets ``cachelab[lab]`` installed with uv's
``--resolution lowest-direct``, so redis, fakeredis, tqdm and the lab extra's packages are
exactly their lower bounds (everything else at the dev lock's versions). A fast
fakeredis-only subset of the suite then runs against that installed copy, and two
notebooks are executed into the static site. ``make test-lowest`` runs this file alone.
"""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Iterator
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

pytestmark = [pytest.mark.lowest, pytest.mark.xdist_group("lowest")]  # one venv, one worker

# The protocol core, the wire, both shells, blips and repair, the stream, the README example:
# each on fakeredis, in about twenty seconds.
SUBSET = (
    "test_core.py",
    "test_messages.py",
    "test_node.py",
    "test_async.py",
    "test_failures.py",
    "test_stream.py",
    "test_repair.py",
    "test_readme.py",
)
TOOLS = ("pytest", "pytest-timeout", "hypothesis")  # what SUBSET imports, at the dev lock's pins
SUPPORT = ("__init__.py", "conftest.py", "helpers.py")
# Left to the resolver too: matplotlib's oldest release sets numpy's range (below 2).
UNPINNED = ("numpy",)
NOTEBOOKS = ("01", "02")  # CLIENT KILL on the embedded server; the trace viewer and panels


def declared_requirements() -> list[Requirement]:
    """The runtime dependencies and the lab extra's, as pyproject.toml declares them."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    texts = project["dependencies"] + project["optional-dependencies"]["lab"]
    return [Requirement(text) for text in texts]


def lower_bound(requirement: Requirement) -> Version:
    """The version after ``>=`` in ``requirement`` (every declared dependency has one)."""
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


@pytest.fixture(scope="module")
def lowest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A venv with ``cachelab[lab]`` at its lower bounds and the test tools; its python."""
    folder = tmp_path_factory.mktemp("lowest")
    python = make_venv(folder / "venv")
    left_out = [r.name for r in declared_requirements()] + list(UNPINNED)
    run(
        [uv(), "pip", "install", "--quiet", "--python", python, "--resolution", "lowest-direct",
         "-c", write_constraints(DEV_LOCK, folder / "constraints.txt", left_out),
         "--build-constraints", write_build_constraints(DEV_LOCK, folder / "build.txt"),
         f"cachelab[lab] @ {ROOT.as_uri()}", *TOOLS],
        folder, clean_env(), 300,
    )  # fmt: skip
    yield python
    shutil.rmtree(folder, ignore_errors=True)  # a venv of about 300 MB


def test_every_declared_dependency_is_installed_at_its_lower_bound(lowest: Path) -> None:
    versions = installed(lowest)
    wrong = [
        f"{r.name} {versions[canonical(r.name)]}"
        for r in declared_requirements()
        if Version(versions[canonical(r.name)]) != lower_bound(r)
    ]
    assert wrong == []
    assert {"redis", "fakeredis", "tqdm", "jupyterlab", "nbconvert"} <= set(versions)


def test_the_fakeredis_subset_passes_at_the_lower_bounds(lowest: Path, tmp_path: Path) -> None:
    tree = copy_subset(tmp_path / "suite")
    out = run([lowest, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not real_redis"],
              tree, clean_env(), 300)  # fmt: skip
    summary = out.strip().splitlines()[-1]
    assert re.search(r"\d+ passed", summary) and "skipped" not in summary, summary
    assert "failed" not in summary and "error" not in summary, summary


def test_the_lab_runs_its_notebooks_at_the_lower_bounds(lowest: Path, tmp_path: Path) -> None:
    env = clean_env(HOME=str(tmp_path), PATH=f"{lowest.parent}:{clean_env()['PATH']}")
    site = tmp_path / "site"
    run([lowest.parent / "cachelab", "site", "--only", *NOTEBOOKS, "--out", site],
        tmp_path, env, 300)  # fmt: skip
    pages = sorted(p.name for p in site.glob("*.html") if p.name != "index.html")
    assert [page[:2] for page in pages] == list(NOTEBOOKS)
