"""The ``cachelab`` command: ``cachelab lab`` opens the notebooks in JupyterLab."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def lab_command(notebooks: Path, port: int | None, open_browser: bool) -> list[str]:
    """The ``jupyter lab`` command line for the notebooks folder."""
    jupyter = shutil.which("jupyter", path=str(Path(sys.executable).parent)) or "jupyter"
    command = [jupyter, "lab", f"--ServerApp.root_dir={notebooks}"]
    if port is not None:
        command.append(f"--port={port}")
    if not open_browser:
        command.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # CI and containers run as root
    return command


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run it."""
    parser = argparse.ArgumentParser(prog="cachelab", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    lab = commands.add_parser("lab", help="start JupyterLab on the notebooks")
    lab.add_argument("--notebooks", type=Path, default=NOTEBOOKS)
    lab.add_argument("--port", type=int, default=None)
    lab.add_argument("--no-browser", action="store_true")
    args = parser.parse_args(argv)
    if not args.notebooks.is_dir():
        parser.error(f"no notebooks folder at {args.notebooks}")
    command = lab_command(args.notebooks, args.port, not args.no_browser)
    redis_url = os.environ.get("REDIS_URL")
    print("cachelab lab:", f"REDIS_URL={redis_url}" if redis_url else "embedded fakeredis")
    print("JupyterLab prints the URL to open (with its token) below.", flush=True)
    os.execv(command[0], command)  # replaces this process; never returns


if __name__ == "__main__":
    raise SystemExit(main())
