"""A JupyterLab server started through ``cachelab lab``, for the tests that need one."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

STARTUP_TIMEOUT = 90.0


def free_port() -> int:
    """A TCP port nobody listens on right now, on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LabServer:
    """``cachelab lab`` over ``notebooks``, on 127.0.0.1, stopped by ``stop()``."""

    def __init__(self, notebooks: Path, port: int, token: str, log: Path) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.token = token
        command = [
            sys.executable,
            "-m",
            "cachelab.harness.cli",
            "lab",
            f"--notebooks={notebooks}",
            f"--port={port}",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--IdentityProvider.token={token}",
            "--LabApp.expose_app_in_browser=True",
        ]
        env = dict(os.environ)
        env.pop("MPLBACKEND", None)  # the kernel keeps its inline backend
        env["JUPYTER_RUNTIME_DIR"] = str(log.parent / "runtime")
        self.log = log.open("wb")
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def api(self, path: str, method: str = "GET", body: Any = None) -> Any:
        """Call the server's REST API; the decoded JSON answer."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.url}/api/{path}",
            data=data,
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")

    def wait_ready(self) -> None:
        """Poll the status API until the server answers (it takes a few seconds to start)."""
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"cachelab lab exited with {self.process.returncode}")
            try:
                self.api("status")
                return
            except OSError:
                time.sleep(0.25)  # polling a starting server; no result depends on the delay
        raise TimeoutError("jupyter lab did not start")

    def stop(self) -> None:
        """Stop the server this test started, and only it."""
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
