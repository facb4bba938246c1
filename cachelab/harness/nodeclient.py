"""Talking to nodes through the line protocol: a ``cachelab node`` process, or one in-process.

The runner and the demo drive both kinds the same way, ``call({"cmd": ...})``: a
``NodeProcess`` over a socket to a child process it started, a ``LocalNode`` straight
into a ``NodeHandler`` in this process (for the embedded fakeredis, which no other
process can reach).
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any, Protocol

from cachelab.backends import Client, connect
from cachelab.errors import CachelabError
from cachelab.harness.nodeproc import BANNER, MAX_LINE, NodeHandler, Reply
from cachelab.history import Recorder
from cachelab.node import CacheNode
from cachelab.stripes import StripedNode, make_node

START_TIMEOUT = 20.0
"""Seconds a node process may take to print its banner (importing cachelab included)."""
CALL_TIMEOUT = 60.0
"""Seconds a reply may take (a long history is one line)."""


class NodeError(CachelabError, RuntimeError):
    """A node would not start, died, or answered a request with an error."""


class NodeLink(Protocol):
    """What the runner and the demo need of a node, wherever it runs."""

    name: str

    def call(self, request: dict[str, Any]) -> Reply:
        """Send one request; the reply, or ``NodeError`` for an error reply."""
        ...

    def close(self) -> int | None:
        """Quit the node and free what it holds; its exit code, if a process."""
        ...


def node_options(
    name: str,
    namespace: str,
    strategy: str,
    stripes: int = 1,
    heartbeat: float | None = None,
    cluster: bool = False,
    strict: bool = False,
) -> dict[str, Any]:
    """A node's keyword arguments for these options; ``cluster``: a Redis Cluster's node."""
    options: dict[str, Any] = {"name": name, "namespace": namespace, "strategy": strategy}
    if stripes != 1 or cluster:
        options["stripes"] = stripes
    if cluster:
        options["cluster"] = True
    if heartbeat is not None:
        options["heartbeat"] = heartbeat
    if strict:
        options["strict"] = True
    return options


def build_node(client: Client, options: dict[str, Any]) -> tuple[CacheNode | StripedNode, Recorder]:
    """A recording node with ``options``: striped when it has stripes (see ``make_node``)."""
    recorder = Recorder()
    given = {key: value for key, value in options.items() if key != "cluster"}
    return make_node(client, recorder=recorder, **given), recorder


class LocalNode:
    """A node in this process, on a client of its own, driven through the protocol."""

    def __init__(self, url: str | None, options: dict[str, Any]) -> None:
        self.name: str = options["name"]
        self.client: Client = (
            connect(url, cluster=True) if options.get("cluster") and url else connect(url)
        )
        try:
            node, recorder = build_node(self.client, options)
        except BaseException:
            self.client.close()
            raise
        self.handler = NodeHandler(node, recorder)

    def call(self, request: dict[str, Any]) -> Reply:
        """Through JSON both ways, as over a socket: the same types come back."""
        return _checked(self.name, json.loads(self.handler.handle_line(json.dumps(request))))

    def close(self) -> int | None:
        """Stop its workload, close the node and its client."""
        self.handler.close()
        self.handler.node.close()
        self.client.close()
        return None


class NodeProcess:
    """A ``cachelab node`` child process and a connection to its port.

    The child runs in a session of its own (a Ctrl-C reaches the runner only, which then
    quits its nodes in order) and watches its stdin, which we hold: if this process dies
    without closing it, the child sees the end of file and quits too.
    """

    def __init__(self, url: str, options: dict[str, Any]) -> None:
        self.name: str = options["name"]
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (closed by close())
        self.proc = subprocess.Popen(
            command(url, options),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            start_new_session=True,
            env=child_environment(),
        )
        self._sock: socket.socket | None = None
        self._reader: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self.proc.pid

    def connect(self, timeout: float = START_TIMEOUT) -> NodeProcess:
        """Wait for the banner, then connect to the port it names."""
        path = self._banner(timeout).removeprefix(BANNER).strip()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(CALL_TIMEOUT)
        try:
            self._sock.connect(path)
        except OSError as exc:
            raise NodeError(f"node {self.name} is unreachable at {path}: {exc}") from None
        self._reader = self._sock.makefile("rb")
        return self

    def call(self, request: dict[str, Any]) -> Reply:
        """One request, one reply line."""
        if self._sock is None or self._reader is None:
            raise NodeError(f"node {self.name} is not connected")
        data = json.dumps(request).encode() + b"\n"
        if len(data) > MAX_LINE:  # the node would refuse it; never send what it cannot take
            raise NodeError(f"a {request.get('cmd')!r} request of {len(data)} bytes is over "
                            f"the node's line limit of {MAX_LINE} bytes")
        try:
            self._sock.sendall(data)
            line = self._reader.readline()
        except OSError as exc:
            raise NodeError(f"node {self.name} is unreachable: {exc}{self._tail()}") from None
        if not line:
            raise NodeError(f"node {self.name} closed the connection{self._tail()}")
        return _checked(self.name, json.loads(line))

    def close(self, timeout: float = 10.0) -> int | None:
        """Ask it to quit; SIGTERM, then SIGKILL, if it does not; its exit code."""
        with contextlib.suppress(NodeError, ValueError):
            if self.proc.poll() is None and self._sock is not None:
                self.call({"cmd": "quit"})
        self._disconnect()
        try:
            return _reap(self.proc, timeout)
        finally:
            self._stderr.close()

    def stderr_tail(self, lines: int = 10) -> str:
        """The last lines the child wrote on stderr (empty once closed)."""
        if self._stderr.closed:
            return ""
        self._stderr.seek(0)
        text = self._stderr.read().decode(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def _banner(self, timeout: float) -> str:
        """The first line of the child's stdout, within ``timeout``."""
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self.proc.stdout, selectors.EVENT_READ)
            if not selector.select(timeout):
                raise NodeError(f"node {self.name} printed nothing in {timeout:g}s{self._tail()}")
        line = self.proc.stdout.readline().decode(errors="replace").strip()
        if not line.startswith(BANNER):
            self.proc.wait(5)
            raise NodeError(f"node {self.name} did not start{self._tail()}")
        return line

    def _tail(self) -> str:
        """The child's last stderr lines, as a suffix of an error message."""
        tail = self.stderr_tail()
        return f":\n{tail}" if tail else ""

    def _disconnect(self) -> None:
        """Close our socket and the child's stdin (so a child that missed quit ends too)."""
        for closable in (self._reader, self._sock, self.proc.stdin, self.proc.stdout):
            if closable is not None:
                with contextlib.suppress(OSError):
                    closable.close()
        self._reader = self._sock = None


def child_environment() -> dict[str, str]:
    """Our environment, with this cachelab's folder first on PYTHONPATH: the child runs the
    same code as we do, wherever it is started from."""
    here = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)
    chosen = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}  # the runner chose
    return chosen | {"PYTHONPATH": path}


def command(url: str, options: dict[str, Any]) -> list[str]:
    """The child's command line: this interpreter, ``-m cachelab node`` and the options."""
    args = [
        sys.executable,
        "-m",
        "cachelab",
        "node",
        "--url",
        url,
        "--watch-stdin",
        "--name",
        options["name"],
        "--namespace",
        options["namespace"],
        "--strategy",
        options["strategy"],
        "--stripes",
        str(options.get("stripes", 1)),
    ]
    if options.get("heartbeat") is not None:
        args += ["--heartbeat", repr(options["heartbeat"])]
    if options.get("cluster"):
        args.append("--cluster")
    if options.get("strict"):
        args.append("--strict")
    return args


def start_processes(url: str, all_options: list[dict[str, Any]]) -> list[NodeProcess]:
    """Start one child per options, all at once, then connect to each; on any failure,
    end those already started and raise."""
    nodes: list[NodeProcess] = []
    try:
        for options in all_options:
            nodes.append(NodeProcess(url, options))
        for node in nodes:
            node.connect()
    except BaseException:
        for node in nodes:
            node.close()
        raise
    return nodes


def _checked(name: str, reply: Any) -> Reply:
    """The reply, or ``NodeError`` naming the node for an error reply."""
    if not isinstance(reply, dict) or "error" in reply:
        error = reply.get("error") if isinstance(reply, dict) else reply
        raise NodeError(f"node {name}: {error}")
    return reply


def _reap(proc: subprocess.Popen[bytes], timeout: float) -> int:
    """Wait for ``proc``; SIGTERM it after ``timeout``, SIGKILL after as long again."""
    deadline = time.monotonic() + timeout
    for escalate in (None, proc.terminate, proc.kill):
        if escalate is not None:
            escalate()
        try:
            return proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            deadline = time.monotonic() + timeout
    return proc.wait()
