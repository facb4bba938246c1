"""Config for the Jupyter tools the lab starts: HTML exports that work offline, quiet kernels.

A widget's live view needs a kernel, and its renderer comes from a CDN; each of the lab's
widgets also carries a self-contained HTML view. These config files make nbconvert (the
File menu's export, ``jupyter nbconvert``) prefer that HTML, so an export plays offline.
``cachelab lab`` puts this folder first on ``JUPYTER_CONFIG_PATH``.

Kernels talk to the lab over ZeroMQ. Over TCP, ipykernel warns on every start that the
traffic is unencrypted; over IPC (Unix sockets, readable by this user only) it does not,
which is the transport Jupyter recommends for a kernel on the same machine.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

PATH = Path(__file__).resolve().parent
PRIORITY: list[str] = json.loads((PATH / "jupyter_nbconvert_config.json").read_text())[
    "NbConvertBase"
]["display_data_priority"]
"""Output types an export shows, best first: a widget's static HTML wins over its live view."""

SOCKET_PATH_LIMIT = 100
"""Bytes a Unix socket's path may take: 104 on macOS and 108 on Linux, less a margin."""

_LONGEST_SOCKET = "kernel-00000000-0000-0000-0000-000000000000-ipc-99"
"""The longest name Jupyter gives a kernel's socket beside its connection file."""


def transport(folder: Path) -> str:
    """The kernels' transport for connection files in ``folder``: IPC where it works, else TCP."""
    # IPC needs Unix sockets (not every Windows build of ZeroMQ has them), and their paths are
    # short: a deep folder keeps TCP rather than a kernel that cannot bind.
    import zmq  # pyzmq comes with Jupyter; only the lab's commands need it

    socket = os.fsencode(folder.resolve() / _LONGEST_SOCKET)
    return "ipc" if zmq.has("ipc") and len(socket) <= SOCKET_PATH_LIMIT else "tcp"


def kernel_config(folder: Path) -> dict[str, dict[str, str]]:
    """Config for one kernel whose connection file and sockets live in ``folder``."""
    # Named, because an IPC socket's path is otherwise relative, and the kernel (started in
    # the notebook's folder) and its client would look for it in two places.
    return {
        "KernelManager": {
            "transport": transport(folder),
            "connection_file": str(folder.resolve() / "kernel.json"),
        }
    }
