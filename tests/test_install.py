"""cachelab as a user gets it: the wheel and the sdist, each installed into a fresh venv.

The artifacts are built once (``python -m build`` with the dev lock's hatchling), checked
with ``twine check``, and each is installed with its ``lab`` extra into a venv outside the
checkout, the lab lock as constraints (so the versions are the tested ones). Every command
then runs in a temporary folder, without PYTHONPATH and with a home of its own, so nothing
of the checkout can stand in for what the artifact lacks.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.labserver import free_port
from tests.test_readme import run_example
from tests.uvenv import (
    LAB_LOCK,
    ROOT,
    Arg,
    clean_env,
    make_venv,
    run,
    uv,
    write_build_constraints,
)

# one worker builds the artifacts once for every test of the module (make test: --dist loadgroup)
pytestmark = [pytest.mark.install, pytest.mark.xdist_group("install")]

NOTEBOOKS = sorted(p.name for p in (ROOT / "cachelab" / "lab" / "notebooks").glob("*.ipynb"))
_VERSION = re.search(
    r'^__version__ = "([^"]+)"', (ROOT / "cachelab" / "__init__.py").read_text(), re.M
)
assert _VERSION is not None
VERSION = _VERSION.group(1)
LAB_START = 120.0  # seconds for a first JupyterLab start on a busy 2-core machine


@dataclass(frozen=True)
class Installed:
    """A venv with one artifact installed, and the home its commands run with."""

    kind: str
    folder: Path

    @property
    def bin(self) -> Path:
        """The venv's scripts."""
        return self.folder / "venv" / "bin"

    def env(self) -> dict[str, str]:
        """A user's environment: this venv first on PATH, a fresh home, no CI or PYTHONPATH."""
        home = self.folder / "home"
        home.mkdir(exist_ok=True)
        env = clean_env(HOME=str(home), PATH=f"{self.bin}{os.pathsep}{os.environ['PATH']}")
        for name in [k for k in env if k.startswith(("XDG_", "JUPYTER", "MPL", "IPYTHON"))]:
            del env[name]  # the outer run's Jupyter and matplotlib settings stay out
        return env


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The sdist and the wheel, built once for the module."""
    out = tmp_path_factory.mktemp("dist")
    run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", out, ROOT],
        out,
        clean_env(),
        300,
    )
    wheels, sdists = list(out.glob("*.whl")), list(out.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, list(out.iterdir())
    return {"wheel": wheels[0], "sdist": sdists[0]}


@pytest.fixture(scope="module", params=["wheel", "sdist"])
def installed(
    request: pytest.FixtureRequest, dist: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Installed:
    """A fresh venv with ``cachelab[lab]`` from one artifact, at the lab lock's versions."""
    kind: str = request.param
    folder = tmp_path_factory.mktemp(kind)
    python = make_venv(folder / "venv")
    build = write_build_constraints(LAB_LOCK, folder / "build-constraints.txt")
    run(
        [
            uv(),
            "pip",
            "install",
            "--quiet",
            "--python",
            python,
            "-c",
            LAB_LOCK,
            "--build-constraints",
            build,
            f"cachelab[lab] @ {dist[kind].as_uri()}",
        ],
        folder,
        clean_env(),
        600,
    )
    return Installed(kind, folder)


@pytest.fixture
def user_dir(tmp_path: Path) -> Path:
    """A working folder of the user's, outside the checkout and the venv."""
    folder = tmp_path / "user"
    folder.mkdir()
    return folder


def test_twine_accepts_both_artifacts(dist: dict[str, Path]) -> None:
    out = run(
        [sys.executable, "-m", "twine", "check", "--strict", dist["wheel"], dist["sdist"]],
        ROOT,
        clean_env(),
        120,
    )
    assert out.count("PASSED") == 2, out


def test_the_wheel_carries_the_lab_the_calibration_and_the_license(dist: dict[str, Path]) -> None:
    names = set(zipfile.ZipFile(dist["wheel"]).namelist())
    shipped = sorted(n.rsplit("/", 1)[1] for n in names if n.startswith("cachelab/lab/notebooks/"))
    assert shipped == NOTEBOOKS and len(NOTEBOOKS) == 11
    for name in (
        "cachelab/sim/scaling.json",
        "cachelab/py.typed",
        "cachelab/lab/viz/static/viewer.js",
    ):
        assert name in names
    assert f"cachelab-{VERSION}.dist-info/licenses/LICENSE" in names


def test_the_sdist_carries_the_license_and_the_notebooks(dist: dict[str, Path]) -> None:
    with tarfile.open(dist["sdist"]) as sdist:
        names = set(sdist.getnames())
    top = f"cachelab-{VERSION}"
    assert f"{top}/LICENSE" in names
    assert {f"{top}/cachelab/lab/notebooks/{n}" for n in NOTEBOOKS} <= names


def test_the_readme_example_runs_from_an_install(installed: Installed, user_dir: Path) -> None:
    python = installed.bin / "python"
    where = run(
        [python, "-c", "import cachelab; print(cachelab.__file__)"], user_dir, installed.env(), 60
    )
    assert Path(where.strip()).is_relative_to(installed.folder / "venv")
    hit_rate, invalidations = run_example(str(python), user_dir, installed.env())
    assert hit_rate == 1 / 3 and 0 <= invalidations <= 2


def test_cachelab_version_prints_the_package_version(installed: Installed, user_dir: Path) -> None:
    out = run([installed.bin / "cachelab", "--version"], user_dir, installed.env(), 60)
    assert out.strip() == f"cachelab {VERSION}"


def test_cachelab_site_builds_one_notebook(installed: Installed, user_dir: Path) -> None:
    out = user_dir / "site"
    run(
        [installed.bin / "cachelab", "site", "--only", "00", "--out", out],
        user_dir,
        installed.env(),
        240,
    )
    page = out / "00-quickstart.html"
    assert page.stat().st_size > 10_000
    assert not (out / "01-the-naive-recipe.html").exists()


def package_files(installed: Installed) -> set[str]:
    """Every file of the installed package, bytecode aside."""
    package = next((installed.folder / "venv" / "lib").glob("python*/site-packages/cachelab"))
    return {str(p.relative_to(package)) for p in package.rglob("*") if "__pycache__" not in p.parts}


def get(url: str) -> tuple[int, bytes]:
    """GET ``url``: the status and the body, an HTTP error's included."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), bytes(error.read())


def wait_for_contents(lab: subprocess.Popen[bytes], url: str, log: Path) -> list[str]:
    """Poll the contents API until the server answers; the notebooks it lists."""
    deadline = time.monotonic() + LAB_START
    while time.monotonic() < deadline:
        assert lab.poll() is None, f"cachelab lab exited {lab.returncode}:\n{log.read_text()}"
        try:
            status, body = get(url)
        except OSError:
            time.sleep(0.25)  # polling a starting server; no result depends on the delay
            continue
        assert status == 200, (status, body[:500])
        listing = json.loads(body)["content"]
        return sorted(item["name"] for item in listing if item["type"] == "notebook")
    raise AssertionError(f"no answer from the lab in {LAB_START} s:\n{log.read_text()}")


@contextlib.contextmanager
def serving(
    installed: Installed, user_dir: Path
) -> Iterator[tuple[subprocess.Popen[bytes], str, str]]:
    """``cachelab lab`` serving ``user_dir/lab``; its process, base URL and token, ended after."""
    port, token = free_port(), secrets.token_hex(16)
    command: list[Arg] = [
        installed.bin / "cachelab",
        "lab",
        "--no-browser",
        "--dir",
        user_dir / "lab",
        "--port",
        str(port),
        f"--IdentityProvider.token={token}",
    ]
    with (user_dir / "lab.log").open("wb") as sink:
        lab = subprocess.Popen(
            command,
            cwd=user_dir,
            env=installed.env(),
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield lab, f"http://127.0.0.1:{port}", token
    finally:
        if lab.poll() is None:  # a failed test: end the session this test started
            os.killpg(lab.pid, signal.SIGTERM)
            try:
                lab.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(lab.pid, signal.SIGKILL)
                lab.wait()


def test_cachelab_lab_serves_the_eleven_notebooks_from_a_folder_of_the_users(
    installed: Installed, user_dir: Path
) -> None:
    before = package_files(installed)
    with serving(installed, user_dir) as (lab, url, token):
        listed = wait_for_contents(lab, f"{url}/api/contents?token={token}", user_dir / "lab.log")
        assert listed == NOTEBOOKS
        assert sorted(p.name for p in (user_dir / "lab").glob("*.ipynb")) == NOTEBOOKS
        assert get(f"{url}/api/contents")[0] == 403  # the token given on the command line holds
        shutdown = urllib.request.Request(f"{url}/api/shutdown?token={token}", method="POST")
        with urllib.request.urlopen(shutdown, timeout=10) as response:
            assert response.status == 200
        assert lab.wait(timeout=30) == 0  # a clean stop
    assert package_files(installed) == before  # nothing written into site-packages
