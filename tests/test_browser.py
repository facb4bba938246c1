"""A real browser: JupyterLab in headless Chromium runs notebook 02 and clicks its write button.

Uses Debian's chromium (never a downloaded browser). Without /usr/bin/chromium the
test skips, except under CI=true where it fails.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import IN_CI

CHROMIUM = Path("/usr/bin/chromium")
NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOK = "02-watching-invalidations-propagate.ipynb"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
STARTUP_TIMEOUT = 90.0


def require_chromium() -> None:
    """Skip without Debian's chromium, or fail under CI, which installs it."""
    if CHROMIUM.exists():
        return
    reason = f"{CHROMIUM} is not installed (apt-get install chromium); the browser test needs it"
    if IN_CI:
        pytest.fail(reason + " (and CI=true makes it mandatory)")
    pytest.skip(reason)


def free_port() -> int:
    """A TCP port nobody listens on right now, on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Lab:
    """A JupyterLab server on 127.0.0.1, serving a copy of the notebooks."""

    def __init__(self, root: Path, port: int, token: str, log: Path) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.token = token
        command = [
            str(Path(sys.executable).parent / "jupyter"),
            "lab",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={port}",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}",
            "--LabApp.expose_app_in_browser=True",
            "--LabApp.news_url=",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ]
        if os.geteuid() == 0:
            command.append("--allow-root")
        settings = root / ".settings" / "@jupyterlab" / "apputils-extension"
        settings.mkdir(parents=True)
        # no "get notified about Jupyter news?" prompt over the page, and nothing fetched
        notification = '{"fetchNews": "false", "checkForUpdates": false}'
        (settings / "notification.jupyterlab-settings").write_text(notification)
        env = os.environ | {
            "JUPYTERLAB_SETTINGS_DIR": str(root / ".settings"),
            "JUPYTER_CONFIG_DIR": str(root / ".jupyter"),
            "JUPYTERLAB_WORKSPACES_DIR": str(root / ".workspaces"),
            "JUPYTER_RUNTIME_DIR": str(root / ".runtime"),
        }
        env.pop("MPLBACKEND", None)  # the kernel keeps its inline backend
        self.log = log.open("wb")
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def wait_ready(self) -> None:
        """Poll the status API until the server answers (it takes a few seconds to start)."""
        deadline = time.monotonic() + STARTUP_TIMEOUT
        status = f"{self.url}/api/status?token={self.token}"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {self.process.returncode}")
            try:
                with urllib.request.urlopen(status, timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.25)
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


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    """JupyterLab over a temporary copy of the notebooks."""
    root = tmp_path / "lab"
    shutil.copytree(NOTEBOOKS, root, ignore=shutil.ignore_patterns("src", ".ipynb_checkpoints"))
    server = Lab(root, free_port(), secrets.token_hex(16), tmp_path / "jupyter.log")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.mark.browser
@pytest.mark.notebook
def test_write_button_updates_the_peers_in_jupyterlab(lab: Lab, tmp_path: Path) -> None:
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{lab.url}/lab/tree/{NOTEBOOK}?token={lab.token}")
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
            page.wait_for_function(
                "() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                " && window.jupyterapp.shell.currentWidget.sessionContext"
                " && window.jupyterapp.shell.currentWidget.sessionContext.session",
                timeout=60_000,
            )
            page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
            write = page.locator(".cachelab-write").first
            write.wait_for(state="visible", timeout=120_000)
            table = page.locator(".cachelab-table").first
            table.locator("tr[data-node='c']").wait_for(timeout=60_000)
            assert "v1" not in table.inner_text()
            write.scroll_into_view_if_needed()
            write.click()
            for peer in ("b", "c"):
                cell = table.locator(f"tr[data-node='{peer}'] td.cache")
                cell.filter(has_text="user:1 = 'value 1' v1").wait_for(timeout=60_000)
            text = table.inner_text()
            page.screenshot(path=str(tmp_path / "notebook-02.png"), full_page=False)
        finally:
            browser.close()
    assert "stale" not in text
    assert (tmp_path / "notebook-02.png").stat().st_size > 10_000
