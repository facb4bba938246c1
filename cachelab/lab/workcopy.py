"""The lab in a folder the user owns: ``cachelab lab`` and ``cachelab site``.

JupyterLab saves outputs into the notebooks it serves, and the packaged ones may sit in
site-packages or a tool's cache: ``cachelab lab`` copies them into a folder of the user's
(``./cachelab-lab`` by default) and serves that, with JupyterLab's news prompt and update
check off. Its own state (which copies it wrote, JupyterLab's settings and workspaces)
lives in ``.cachelab/`` inside that folder, hidden from the file browser. A copy the
student edited is never overwritten; ``--reset NAME`` restores one from the package.
``cachelab site`` executes the notebooks into a static site, in a folder of the user's too.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from collections.abc import Sequence
from importlib.util import find_spec
from pathlib import Path
from typing import NoReturn

from cachelab.errors import CachelabError
from cachelab.lab import NOTEBOOKS
from cachelab.lab.jupyter_config import PATH as JUPYTER_CONFIG
from cachelab.lab.jupyter_config import transport

PACKAGE = NOTEBOOKS.parent.parent
"""The installed ``cachelab`` package: read-only to the lab (it may be site-packages)."""
STATE = ".cachelab"
"""The lab's own folder inside the working copy; hidden, so JupyterLab does not list it."""
QUIET_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}
"""User settings the lab starts with: no "Jupyter news?" prompt over the notebook."""
INSTALL_LAB = "pip install 'cachelab[lab]'"


class LabError(CachelabError):
    """A problem the user can fix, said in one line."""


def _digest(path: Path) -> str:
    """A file's content hash."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def own_folder(path: Path, what: str) -> Path:
    """``path`` as an existing folder outside the package, created if need be."""
    path = path.expanduser().resolve()
    if path.is_relative_to(PACKAGE):
        raise LabError(f"{path} is inside the cachelab package; choose a folder of your own")
    if path.exists() and not path.is_dir():
        raise LabError(f"{path} exists and is not a folder; choose another {what}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LabError(f"cannot create {path}: {exc.strerror or exc}") from None
    return path


class Ledger:
    """Which copies the lab wrote, by content hash: a copy that differs was edited."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / STATE / "sources.json"
        try:
            self.digests: dict[str, str] = json.loads(self.path.read_text())
        except (OSError, ValueError):  # none yet, or damaged: every copy counts as the student's
            self.digests = {}

    def copy(self, source: Path) -> None:
        """Copy ``source`` into the folder, over any copy, and remember what was written."""
        shutil.copyfile(source, self.folder / source.name)
        self.digests[source.name] = _digest(source)

    def save(self) -> None:
        """Write the ledger into the state folder."""
        self.path.parent.mkdir(exist_ok=True)
        self.path.write_text(json.dumps(self.digests, indent=1, sort_keys=True))


def _sync_one(source: Path, target: Path, ledger: Ledger) -> str | None:
    """Bring one copy up to date unless the student changed it; a note when kept."""
    copy, digest = target / source.name, _digest(source)
    recorded = ledger.digests.get(source.name)
    if not copy.exists() or (recorded not in (None, digest) and _digest(copy) == recorded):
        ledger.copy(source)  # new, or unedited and out of date
    elif recorded is None and _digest(copy) == digest:
        ledger.digests[source.name] = digest  # the same file, put there by other means
    elif recorded != digest:
        why = "changed" if recorded else "is not the lab's copy"
        return (
            f"{source.name} {why}; your copy is kept "
            f"(cachelab lab --reset {source.stem} replaces it)"
        )
    return None


def sync_copies(notebooks: Path, target: Path) -> list[str]:
    """Copy new or updated notebooks into ``target``, never over a student's edits.

    Returns a note for each copy that was kept although its source differs.
    """
    ledger = Ledger(target)
    notes = [_sync_one(source, target, ledger) for source in sorted(notebooks.glob("*.ipynb"))]
    ledger.save()
    return [note for note in notes if note]


def choose(notebooks: Path, name: str) -> Path:
    """The notebook ``name`` names: its file name, its stem, or a unique prefix."""
    paths = sorted(notebooks.glob("*.ipynb"))
    exact = [p for p in paths if name in (p.name, p.stem)]
    matches = exact or [p for p in paths if p.name.startswith(name)]
    if len(matches) == 1:
        return matches[0]
    listed = ", ".join(p.stem for p in matches or paths)
    if matches:
        raise LabError(f"{name!r} names {len(matches)} notebooks ({listed}); give more of one")
    raise LabError(f"no notebook {name!r}; choose one of: {listed}")


def reset(folder: Path, name: str, notebooks: Path = NOTEBOOKS) -> str:
    """Restore one notebook in ``folder`` from the package; what was done, in a line."""
    source = choose(notebooks, name)
    target = own_folder(folder, "--dir")
    copy = target / source.name
    before = _digest(copy) if copy.is_file() else None
    try:
        ledger = Ledger(target)
        ledger.copy(source)
        ledger.save()
    except OSError as exc:
        raise LabError(f"cannot write in {target}: {exc.strerror or exc}") from None
    if before is None:
        return f"restored {copy} from the package"
    was = "was already as shipped" if before == _digest(source) else "had edits, now discarded"
    return f"restored {copy} from the package (your copy {was})"


def write_settings(settings: Path) -> None:
    """Write the lab's user settings, keeping any the student changed since."""
    for name, values in QUIET_SETTINGS.items():
        path = settings / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values, indent=1))


def prepare(folder: Path, notebooks: Path = NOTEBOOKS) -> tuple[Path, list[str]]:
    """Make ``folder`` the working copy: the notebooks, the settings; it and the notes."""
    root = own_folder(folder, "--dir")
    try:
        notes = sync_copies(notebooks, root)
        write_settings(root / STATE / "settings")
    except OSError as exc:
        raise LabError(f"cannot write in {root}: {exc.strerror or exc}") from None
    if (root / "notebooks" / ".sources.json").is_file():  # where make lab used to copy them
        notes.append(f"an older working copy is in {root / 'notebooks'}; open it from there")
    return root, notes


def lab_command(
    root: Path, port: int | None, open_browser: bool, extra: Sequence[str] = ()
) -> list[str]:
    """The ``jupyter lab`` command line serving ``root``, news and update checks off."""
    command = [
        sys.executable,  # JupyterLab from the environment cachelab runs in
        "-m",
        "jupyterlab",
        f"--ServerApp.root_dir={root}",
        "--LabApp.news_url=",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    chosen = any(arg.startswith("--KernelManager.transport") for arg in extra)
    if not chosen and transport(_runtime_dir()) == "ipc":  # traitlets refuses a repeat
        command.append("--KernelManager.transport=ipc")  # no unencrypted-TCP warning
    if port is not None:
        command.append(f"--port={port}")
    if not open_browser:
        command.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # CI and containers run as root
    return command + list(extra)


def _runtime_dir() -> Path:
    """Where the server writes its kernels' connection files (and so their sockets)."""
    from jupyter_core.paths import jupyter_runtime_dir

    return Path(jupyter_runtime_dir())


def lab_environment(state: Path) -> dict[str, str]:
    """The environment for JupyterLab: settings and workspaces live under ``state``.

    Its config path leads with cachelab's Jupyter config, so that an HTML export (the
    File menu's, or ``jupyter nbconvert`` in the lab's terminal) shows each widget's
    self-contained HTML: it plays offline, where a live widget view needs a CDN.
    """
    config_path = os.pathsep.join(
        p for p in (str(JUPYTER_CONFIG), os.environ.get("JUPYTER_CONFIG_PATH", "")) if p
    )
    return os.environ | {
        "JUPYTERLAB_SETTINGS_DIR": str(state / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(state / "workspaces"),
        "JUPYTER_CONFIG_PATH": config_path,
    }


def serve(folder: Path, port: int | None, open_browser: bool, extra: Sequence[str]) -> NoReturn:
    """Refresh the working copy in ``folder`` and serve it (replaces this process)."""
    if find_spec("jupyterlab") is None:
        raise LabError(f"JupyterLab is not installed here; {INSTALL_LAB}")
    root, notes = prepare(folder)
    for note in notes:
        print("cachelab lab:", note)
    command = lab_command(root, port, open_browser, extra)
    redis_url = os.environ.get("REDIS_URL")
    print("cachelab lab:", f"REDIS_URL={redis_url}" if redis_url else "embedded fakeredis")
    print(f"cachelab lab: serving your copy of the notebooks in {root}")
    print("JupyterLab prints the URL to open (with its token) below.", flush=True)
    os.execve(command[0], command, lab_environment(root / STATE))


def run_site(
    out: Path, only: Sequence[str], timeout: int, notebooks: Path | None = None
) -> Path:
    """Execute the notebooks into a static site in ``out``; its index page."""
    notebooks = (notebooks or NOTEBOOKS).expanduser().resolve()
    if not notebooks.is_dir() or not any(notebooks.glob("*.ipynb")):
        raise LabError(f"no notebooks in {notebooks}")
    try:
        from cachelab.lab import site as builder
    except ModuleNotFoundError as exc:
        raise LabError(f"{exc.name} is not installed here; {INSTALL_LAB}") from None
    try:
        builder.select(notebooks, only)
    except ValueError as exc:
        raise LabError(exc) from None
    return builder.build_site(notebooks, own_folder(out, "--out"), timeout=timeout, only=only)
