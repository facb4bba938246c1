"""examples/fastapi_app.py as two processes on a private redis-server, driven with httpx."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cachelab.harness.servers import ServerProcess
from tests.helpers import require_server

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ready(url: str) -> bool:
    try:
        return bool(httpx.get(f"{url}/health", timeout=1.0).json()["coherent"])
    except (httpx.HTTPError, KeyError, ValueError):
        return False


@pytest.fixture
def two_apps(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two instances of the example app: one Redis, one database file."""
    require_server("redis")
    with ServerProcess("redis") as server:
        env = {
            **os.environ,
            "REDIS_URL": server.url,
            "CACHELAB_DB": str(tmp_path / "items.db"),
            "CACHELAB_DB_DELAY": "0.05",
        }
        urls, procs = [], []
        for name in ("api-a", "api-b"):
            port = _free_port()
            cmd = [sys.executable, "-m", "uvicorn", "examples.fastapi_app:app", "--port", str(port)]
            procs.append(
                subprocess.Popen(
                    cmd,
                    cwd=ROOT,
                    env={**env, "CACHELAB_NODE": name},
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
            )
            urls.append(f"http://127.0.0.1:{port}")
        try:
            for _ in range(600):
                if all(_ready(url) for url in urls):
                    break
                time.sleep(0.05)
            else:
                raise AssertionError("the two app processes never became ready")
            yield urls[0], urls[1]
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                _, err = proc.communicate(timeout=10)
                assert b"Traceback" not in err, err.decode(errors="replace")


def test_a_write_through_one_instance_is_seen_by_the_other(two_apps: tuple[str, str]) -> None:
    a, b = two_apps
    with httpx.Client(timeout=5.0) as http:
        assert http.put(f"{a}/items/1", json="apple").status_code == 200
        assert http.get(f"{b}/items/1").json() == "apple"  # loaded from the database
        assert http.get(f"{b}/items/1").json() == "apple"  # a local hit
        assert http.get(f"{b}/stats").json()["hits"] >= 1
        delays = [_propagation(http, a, b, f"v{i}") for i in range(20)]
        delays.sort()
        print(
            f"\nb applied a's invalidation within {delays[len(delays) // 2] * 1000:.1f} ms "
            f"(median of {len(delays)}; max {delays[-1] * 1000:.1f} ms) after a's PUT returned, "
            "one /stats poll included"
        )
        assert http.get(f"{b}/items/404").status_code == 404


def _propagation(http: httpx.Client, a: str, b: str, value: str) -> float:
    """Seconds from a's PUT returning until b has applied the invalidation (polling b)."""
    assert http.get(f"{b}/items/1").status_code == 200  # b holds the key
    before = http.get(f"{b}/stats").json()["invalidations_received"]
    assert http.put(f"{a}/items/1", json=value).status_code == 200
    returned = time.monotonic()
    for _ in range(2000):
        if http.get(f"{b}/stats").json()["invalidations_received"] > before:
            seen = time.monotonic() - returned
            assert http.get(f"{b}/items/1").json() == value  # and b serves the new value
            return seen
    raise AssertionError("b never applied a's invalidation")
