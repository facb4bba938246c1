"""The ``cachelab`` command: ``cachelab lab`` opens a working copy of the notebooks in JupyterLab.

JupyterLab saves outputs into the notebooks it serves, so it never serves the
tracked ones: ``lab`` copies them into ``.lab/notebooks`` (gitignored) and serves
that folder, with JupyterLab's news prompt and update check switched off.
``cachelab site`` executes every notebook into a static HTML site that works offline.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from cachelab.jupyter_config import PATH as JUPYTER_CONFIG

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
QUIET_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}
"""User settings the lab starts with: no "Jupyter news?" prompt over the notebook."""


def workdir(notebooks: Path) -> Path:
    """Where the lab keeps its working copy and settings: ``.lab`` beside ``notebooks``."""
    return notebooks.resolve().parent / ".lab"


def _digest(path: Path) -> str:
    """A file's content hash."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sync_copies(notebooks: Path, target: Path) -> list[str]:
    """Copy new or updated notebooks into ``target``, never over a student's edits.

    Returns a note for each copy that was kept although its source changed.
    """
    target.mkdir(parents=True, exist_ok=True)
    ledger_path = target / ".sources.json"
    ledger = json.loads(ledger_path.read_text()) if ledger_path.exists() else {}
    notes = []
    for source in sorted(notebooks.glob("*.ipynb")):
        copy, digest = target / source.name, _digest(source)
        recorded = ledger.get(source.name)
        if copy.exists() and recorded == digest:
            continue
        if copy.exists() and recorded is not None and _digest(copy) != recorded:
            notes.append(f"{source.name} changed; your edited copy is kept (delete it to refresh)")
            continue
        shutil.copyfile(source, copy)
        ledger[source.name] = digest
    ledger_path.write_text(json.dumps(ledger, indent=1, sort_keys=True))
    return notes


def write_settings(settings: Path) -> None:
    """Write the lab's user settings, keeping any the student changed since."""
    for name, values in QUIET_SETTINGS.items():
        path = settings / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values, indent=1))


def lab_command(
    root: Path, port: int | None, open_browser: bool, extra: Sequence[str] = ()
) -> list[str]:
    """The ``jupyter lab`` command line serving ``root``, news and update checks off."""
    jupyter = shutil.which("jupyter", path=str(Path(sys.executable).parent)) or "jupyter"
    command = [
        jupyter,
        "lab",
        f"--ServerApp.root_dir={root}",
        "--LabApp.news_url=",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    if port is not None:
        command.append(f"--port={port}")
    if not open_browser:
        command.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # CI and containers run as root
    return command + list(extra)


def lab_environment(lab: Path) -> dict[str, str]:
    """The environment for JupyterLab: settings and workspaces live under ``lab``.

    Its config path leads with cachelab's Jupyter config, so that an HTML export (the
    File menu's, or ``jupyter nbconvert`` in the lab's terminal) shows each widget's
    self-contained HTML: it plays offline, where a live widget view needs a CDN.
    """
    config_path = os.pathsep.join(
        p for p in (str(JUPYTER_CONFIG), os.environ.get("JUPYTER_CONFIG_PATH", "")) if p
    )
    return os.environ | {
        "JUPYTERLAB_SETTINGS_DIR": str(lab / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(lab / "workspaces"),
        "JUPYTER_CONFIG_PATH": config_path,
    }


def prepare(notebooks: Path) -> Path:
    """Refresh the working copy and the settings; return the folder to serve."""
    lab = workdir(notebooks)
    for note in sync_copies(notebooks, lab / "notebooks"):
        print("cachelab lab:", note)
    write_settings(lab / "settings")
    return lab / "notebooks"


def _lab(args: argparse.Namespace, extra: Sequence[str]) -> int:
    """Serve the working copy (replaces this process)."""
    root = prepare(args.notebooks)
    command = lab_command(root, args.port, not args.no_browser, extra)
    redis_url = os.environ.get("REDIS_URL")
    print("cachelab lab:", f"REDIS_URL={redis_url}" if redis_url else "embedded fakeredis")
    print(f"cachelab lab: serving a working copy in {root} (the tracked notebooks stay clean)")
    print("JupyterLab prints the URL to open (with its token) below.", flush=True)
    os.execve(command[0], command, lab_environment(workdir(args.notebooks)))


def _site(args: argparse.Namespace, extra: Sequence[str]) -> int:
    """Build the static site."""
    from cachelab.site import build_site

    index = build_site(args.notebooks, args.out, timeout=args.timeout, only=args.only)
    print(f"cachelab site: open {index}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run it."""
    parser = argparse.ArgumentParser(prog="cachelab", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    lab = commands.add_parser("lab", help="start JupyterLab on a working copy of the notebooks")
    lab.add_argument("--notebooks", type=Path, default=NOTEBOOKS)
    lab.add_argument("--port", type=int, default=None)
    lab.add_argument("--no-browser", action="store_true")
    site = commands.add_parser("site", help="execute every notebook into a static HTML site")
    site.add_argument("--notebooks", type=Path, default=NOTEBOOKS)
    site.add_argument("--out", type=Path, default=NOTEBOOKS.parent / "site")
    site.add_argument("--timeout", type=int, default=300, help="seconds per cell")
    site.add_argument("--only", nargs="*", default=[], help="notebook name prefixes, e.g. 02")
    args, extra = parser.parse_known_args(argv)
    if not args.notebooks.is_dir():
        parser.error(f"no notebooks folder at {args.notebooks}")
    if extra and args.command != "lab":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return {"lab": _lab, "site": _site}[args.command](args, extra)


if __name__ == "__main__":
    raise SystemExit(main())
