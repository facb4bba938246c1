"""A throwaway redis-server on a free port, for benchmarks (never the shared 6379)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def redis_server() -> Iterator[redis.Redis]:
    """Start redis-server on a free port; yield a client; stop it."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed")
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", tmp]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        client = redis.Redis(port=port)
        try:
            _wait_ready(client)
            yield client
        finally:
            client.close()
            proc.terminate()
            proc.wait(10)


def _wait_ready(client: redis.Redis) -> None:
    """Poll PING until the server answers (startup is not instantaneous)."""
    for _ in range(500):
        try:
            client.ping()
            return
        except redis.ConnectionError:
            time.sleep(0.01)
    raise RuntimeError("redis-server did not start")
