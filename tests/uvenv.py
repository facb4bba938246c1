"""Throwaway venvs made by uv, for the tests that install cachelab as a user would."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from tests.helpers import skip_or_fail

ROOT = Path(__file__).resolve().parent.parent
DEV_LOCK = ROOT / "requirements" / "dev.txt"
LAB_LOCK = ROOT / "requirements" / "lab.txt"
BUILD_TOOLS = ("hatchling", "editables")  # requirements/build.in, locked in both files
# Variables of the outer run that must not reach a nested one: CI makes real servers
# mandatory, and the others would point the nested Python at this checkout or this venv.
_DROPPED = ("CI", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTEST_ADDOPTS")


def uv() -> str:
    """The uv the Makefile installs (.venv/uv), else one on PATH."""
    found = ROOT / ".venv" / "uv" / "bin" / "uv"
    if found.exists():
        return str(found)
    on_path = shutil.which("uv")
    if on_path is None:
        skip_or_fail("no uv: make test installs it into .venv/uv")
        raise AssertionError("unreachable")  # skip_or_fail raises
    return on_path


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without CI and without any path into this checkout."""
    env = {k: v for k, v in os.environ.items() if k not in _DROPPED}
    env["UV_PYTHON_DOWNLOADS"] = "never"  # the interpreter is the one running the tests
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # nothing written into the checkout
    return env | extra


Arg = str | os.PathLike[str]


def run(command: Sequence[Arg], cwd: Path, env: dict[str, str], timeout: float) -> str:
    """Run ``command``; its output, or an AssertionError that shows it."""
    done = subprocess.run(
        [str(c) for c in command],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"{command} exited {done.returncode}:\n{done.stdout[-6000:]}"
    return done.stdout


def make_venv(folder: Path) -> Path:
    """A fresh venv in ``folder`` on the interpreter running the tests; its python."""
    run(
        [uv(), "venv", "--quiet", "--python", sys.executable, folder],
        folder.parent,
        clean_env(),
        60,
    )
    return folder / "bin" / "python"


def lock_blocks(lock: Path) -> dict[str, list[str]]:
    """Each package of a compiled lock, by name: its lines (pins, markers and hashes)."""
    blocks: dict[str, list[str]] = {}
    name = ""
    for line in lock.read_text().splitlines():
        if line.startswith((" ", "#")) or not line.strip():
            if name and line.strip().startswith("--hash"):
                blocks[name].append(line)
            continue
        name = canonical(re.split(r"[=<>!~; \[]", line, maxsplit=1)[0])
        blocks.setdefault(name, []).append(line)
    return blocks


def write_constraints(lock: Path, out: Path, leave_out: Iterable[str] = ()) -> Path:
    """``lock`` as a constraints file, hashes kept, without the packages in ``leave_out``."""
    dropped = {canonical(name) for name in leave_out}
    kept = [lines for name, lines in lock_blocks(lock).items() if name not in dropped]
    out.write_text("\n".join(line for lines in kept for line in lines) + "\n")
    return out


def write_build_constraints(lock: Path, out: Path) -> Path:
    """The build backend's pins from ``lock``, so an isolated build uses the tested hatchling."""
    blocks = lock_blocks(lock)
    out.write_text("\n".join(line for name in BUILD_TOOLS for line in blocks[name]) + "\n")
    return out


def canonical(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def installed(python: Path) -> dict[str, str]:
    """The distributions in ``python``'s venv, by canonical name: their versions."""
    out = run([uv(), "pip", "freeze", "--python", python], python.parent, clean_env(), 60)
    pins = (line.split("==", 1) for line in out.splitlines() if "==" in line)
    return {canonical(name): version for name, version in pins}
