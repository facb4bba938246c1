"""A JupyterLab server started through ``cachelab lab``, for the tests that need one."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import websocket

STARTUP_TIMEOUT = 90.0
KERNEL_TIMEOUT = 90.0


def free_port() -> int:
    """A TCP port nobody listens on right now, on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LabServer:
    """``cachelab lab --dir folder`` on 127.0.0.1, run in ``cwd``, stopped by ``stop()``."""

    def __init__(
        self, folder: Path, port: int, token: str, log: Path, *, cwd: Path | None = None
    ) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.token = token
        command = [
            sys.executable,
            "-m",
            "cachelab",
            "lab",
            f"--dir={folder}",
            f"--port={port}",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--IdentityProvider.token={token}",
            "--LabApp.expose_app_in_browser=True",
        ]
        # A short runtime folder: the kernels' IPC sockets live there, and a socket's path
        # must stay under about 100 bytes (pytest's own temporary paths can be longer).
        self.runtime = Path(tempfile.mkdtemp(prefix="cachelab-rt-"))
        env = dict(os.environ)
        env.pop("MPLBACKEND", None)  # the kernel keeps its inline backend
        env["JUPYTER_RUNTIME_DIR"] = str(self.runtime)
        self.log_path = log
        self.log = log.open("wb")
        self.process = subprocess.Popen(
            command, stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=cwd
        )

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

    def run(self, kernel_id: str, code: str) -> str:
        """Execute ``code`` in a kernel through the server's websocket; its stdout."""
        url = f"ws://{self.url.removeprefix('http://')}/api/kernels/{kernel_id}/channels"
        ws = websocket.create_connection(
            url, header=[f"Authorization: token {self.token}"], timeout=KERNEL_TIMEOUT
        )
        try:
            msg_id = uuid.uuid4().hex
            ws.send(json.dumps(execute_request(msg_id, code)))
            return _stdout_until_idle(ws, msg_id)
        finally:
            ws.close()

    def text(self) -> str:
        """What the server (and the kernels it started) printed so far."""
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """Stop the server this test started, and only it."""
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
        shutil.rmtree(self.runtime, ignore_errors=True)


def execute_request(msg_id: str, code: str) -> dict[str, Any]:
    """A Jupyter ``execute_request`` in the websocket's JSON form."""
    header = {"msg_id": msg_id, "msg_type": "execute_request", "username": "test",
              "session": msg_id, "version": "5.3", "date": ""}  # fmt: skip
    content = {"code": code, "silent": False, "store_history": False,
               "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}  # fmt: skip
    return {"header": header, "parent_header": {}, "metadata": {}, "content": content,
            "channel": "shell", "buffers": []}  # fmt: skip


def _stdout_until_idle(ws: websocket.WebSocket, msg_id: str) -> str:
    """The stdout of request ``msg_id``, read until the kernel goes idle after it."""
    out = []
    while True:  # each recv is bounded by the socket's timeout
        message = json.loads(ws.recv())
        if message.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind, content = message["msg_type"], message["content"]
        if kind == "stream" and content["name"] == "stdout":
            out.append(content["text"])
        elif kind == "error":
            raise RuntimeError(f"{content['ename']}: {content['evalue']}")
        elif kind == "status" and content["execution_state"] == "idle":
            return "".join(out)
