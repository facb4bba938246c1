"""The node's line protocol: the handler without sockets, then a real ``cachelab node`` process."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fakeredis
import pytest

from cachelab.harness.nodeclient import NodeError, NodeProcess, command, node_options
from cachelab.harness.nodeproc import (
    BANNER,
    MAX_CONNECTIONS,
    MAX_KEYS,
    MAX_LINE,
    LineServer,
    NodeHandler,
)
from cachelab.harness.servers import ServerProcess
from cachelab.history import Recorder
from cachelab.node import CacheNode
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def handler() -> Iterator[NodeHandler]:
    """A handler over a recording node on a fresh fakeredis."""
    recorder = Recorder()
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    node = CacheNode(client, name="a", namespace="t", recorder=recorder)
    handler = NodeHandler(node, recorder)
    yield handler
    handler.close()
    node.close()


def ask(handler: NodeHandler, request: Any) -> dict[str, Any]:
    """One request through the line interface, as a socket would carry it."""
    reply: dict[str, Any] = json.loads(handler.handle_line(json.dumps(request)))
    return reply


def wait_finished(handler: NodeHandler, timeout: float = 20.0) -> dict[str, Any]:
    """Poll ``progress`` until the workload is over."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        progress = ask(handler, {"cmd": "progress"})
        if progress["finished"]:
            return progress
        time.sleep(0.01)
    raise AssertionError("the workload did not finish")


def test_set_get_delete_round_trip(handler: NodeHandler) -> None:
    assert ask(handler, {"cmd": "set", "key": "k", "value": {"x": [1, 2]}}) == {"ok": True}
    assert ask(handler, {"cmd": "get", "key": "k"}) == {"ok": True, "value": {"x": [1, 2]}}
    assert ask(handler, {"cmd": "delete", "key": "k"}) == {"ok": True}
    assert ask(handler, {"cmd": "get", "key": "k"})["value"] is None


def test_read_snapshot_and_stats(handler: NodeHandler) -> None:
    ask(handler, {"cmd": "set", "key": "k", "value": "v"})
    assert ask(handler, {"cmd": "read", "keys": ["k", "nope"]})["values"] == ["v", None]
    entries = ask(handler, {"cmd": "snapshot", "keys": ["k"]})["entries"]
    assert list(entries) == ["k"] and entries["k"][0] == "v" and entries["k"][1] >= 1
    stats = ask(handler, {"cmd": "stats"})
    assert stats["name"] == "a" and stats["pid"] == os.getpid() and stats["coherent"] is True
    assert stats["stats"]["writes"] == 1 and stats["stats"]["hits"] >= 1


def test_sync_publishes_a_marker_the_node_then_has(handler: NodeHandler) -> None:
    assert ask(handler, {"cmd": "sync", "nonce": "n1"})["synced"] is False  # nothing published
    ask(handler, {"cmd": "sync", "nonce": "n1", "publish": True})
    deadline = time.monotonic() + 5
    while not ask(handler, {"cmd": "sync", "nonce": "n1"})["synced"]:
        assert time.monotonic() < deadline, "the marker never came back"
        time.sleep(0.005)


def test_run_records_every_op_and_reports_progress(handler: NodeHandler) -> None:
    workload = {"ops": 300, "threads": 3, "seed": 4, "keys": 10, "read_share": 0.8}
    assert ask(handler, {"cmd": "run", "workload": workload}) == {"ok": True, "started": 300}
    progress = wait_finished(handler)
    assert (progress["done"], progress["errors"], progress["total"]) == (300, 0, 300)
    ops = ask(handler, {"cmd": "history"})["ops"]
    assert len(ops) == 300
    assert {op[1] for op in ops} == {"read", "write"} and {op[0] for op in ops} == {"a"}
    assert all(len(op) == 8 and op[3] <= op[4] and op[7] for op in ops)  # inc: merged later
    assert len(ask(handler, {"cmd": "history", "since": 290})["ops"]) == 10


def test_a_second_run_waits_for_the_first(handler: NodeHandler) -> None:
    ask(handler, {"cmd": "run", "workload": {"ops": 200_000, "threads": 1}})
    reply = ask(handler, {"cmd": "run", "workload": {"ops": 1}})
    assert "already running" in reply["error"]
    handler.close()  # stops and joins it early
    assert ask(handler, {"cmd": "progress"})["finished"] is True


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("not json", "not a JSON line"),
        ("[1, 2]", "a request is a JSON object"),
        ('{"cmd": "fly"}', "unknown cmd 'fly'"),
        ('{"nocmd": 1}', "unknown cmd None"),
        ('{"cmd": "get"}', "get needs 'key'"),
        ('{"cmd": "get", "key": 7}', "'key' must be a str"),
        ('{"cmd": "set", "key": "k"}', "set needs a 'value'"),
        ('{"cmd": "read", "keys": [1]}', "'keys' must be a list of str"),
        ('{"cmd": "history", "since": -1}', "since must be an int >= 0"),
        ('{"cmd": "run", "workload": {"ops": 1, "color": 2}}', "unknown workload fields: color"),
        ('{"cmd": "run", "workload": {"ops": 1, "read_share": 2}}', "read_share must be between"),
        ('{"cmd": "run", "workload": {"ops": -1}}', "ops must be >= 0"),
        ('{"cmd": "set", "key": "", "value": 1}', "key"),
    ],
)
def test_a_bad_line_gets_an_error_and_the_handler_goes_on(
    handler: NodeHandler, line: str, says: str
) -> None:
    reply = json.loads(handler.handle_line(line))
    assert list(reply) == ["error"] and says in reply["error"]
    assert ask(handler, {"cmd": "get", "key": "k"}) == {"ok": True, "value": None}


def test_quit_sets_the_handler_quitting(handler: NodeHandler) -> None:
    assert ask(handler, {"cmd": "quit"}) == {"ok": True, "bye": True}
    assert handler.quit.is_set()


# -- a real node process (needs a server other processes reach) --------------------------


@pytest.fixture
def node_process(redis_server: ServerProcess) -> Iterator[NodeProcess]:
    """A ``cachelab node`` child on the session's redis-server; always ended."""
    namespace = f"proc-{secrets.token_hex(4)}"
    node = NodeProcess(redis_server.url, node_options("p", namespace, "invalidate"))
    try:
        yield node.connect()
    finally:
        node.close()


@pytest.mark.real_redis
def test_a_node_process_serves_and_quits_cleanly(node_process: NodeProcess) -> None:
    node_process.call({"cmd": "set", "key": "k", "value": 1})
    assert node_process.call({"cmd": "get", "key": "k"})["value"] == 1
    assert node_process.call({"cmd": "stats"})["pid"] == node_process.pid
    with pytest.raises(NodeError, match="unknown cmd"):
        node_process.call({"cmd": "fly"})
    assert node_process.call({"cmd": "get", "key": "k"})["value"] == 1  # still serving
    assert node_process.close() == 0
    assert "Traceback" not in node_process.stderr_tail()


@pytest.mark.real_redis
def test_a_node_process_answers_garbage_and_a_second_connection(
    node_process: NodeProcess,
) -> None:
    with connect(_path_of(node_process)) as raw:
        reader = raw.makefile("rb")
        raw.sendall(b"\xff garbage\n")
        assert "error" in json.loads(reader.readline())
        raw.sendall(b'{"cmd": "get", "key": "k"}\n')
        assert json.loads(reader.readline()) == {"ok": True, "value": None}
        reader.close()


def _path_of(node: NodeProcess) -> str:
    """The socket the node process listens on (its connected socket's peer)."""
    assert node._sock is not None
    return str(node._sock.getpeername())


def connect(path: str) -> socket.socket:
    """A client connection to a node's Unix socket."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(10)
    conn.connect(path)
    return conn


@pytest.mark.real_redis
def test_a_node_process_listens_only_where_its_user_can_reach(node_process: NodeProcess) -> None:
    path = Path(_path_of(node_process))
    assert path.is_socket() and path.parent.stat().st_mode & 0o777 == 0o700
    assert path.parent.stat().st_uid == os.getuid()
    inodes = {int(line.split()[9]) for line in Path("/proc/net/tcp").read_text().splitlines()[1:]}
    fds = Path(f"/proc/{node_process.pid}/fd")
    sockets = {int(os.readlink(fd)[8:-1]) for fd in fds.iterdir()
               if os.readlink(fd).startswith("socket:")}
    listening = [line for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
                 if line.split()[3] == "0A" and int(line.split()[9]) in sockets]
    assert inodes and listening == []  # no TCP port of its own: only its Redis connections
    node_process.close()
    assert not path.parent.exists()  # removed on the way out


@pytest.mark.real_redis
@pytest.mark.parametrize("how", ["sigterm", "stdin-closed"])
def test_a_node_process_ends_cleanly_on_sigterm_or_when_its_runner_goes(
    redis_server: ServerProcess, how: str
) -> None:
    options = node_options("q", "proc-test", "invalidate")
    proc = subprocess.Popen(
        command(redis_server.url, options),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().decode().startswith(BANNER)
        if how == "sigterm":
            proc.send_signal(signal.SIGTERM)
        else:
            proc.stdin.close()
        assert proc.wait(15) == 0
        assert proc.stderr is not None and b"Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_a_node_on_an_unreachable_url_exits_2_with_one_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cachelab", "node", "--url", "redis://127.0.0.1:1/0"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 2
    assert "cannot reach Redis" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.fixture
def line_server(handler: NodeHandler) -> Iterator[socket.socket]:
    """A connection to a LineServer serving ``handler`` on a thread of this process."""
    server = LineServer(handler)
    thread = threading.Thread(target=server.serve, name="test-line-server")
    thread.start()
    try:
        with connect(server.path) as conn:
            yield conn
    finally:
        server.stop()
        thread.join()


def request(conn: socket.socket, line: dict[str, Any]) -> dict[str, Any]:
    """Send one request on ``conn`` and read its reply."""
    conn.sendall(json.dumps(line).encode() + b"\n")
    reply = b""
    while not reply.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            break
        reply += chunk
    return json.loads(reply) if reply else {}


def test_connections_are_bounded_and_a_freed_one_is_served_again(
    handler: NodeHandler, line_server: socket.socket
) -> None:
    path = str(line_server.getpeername())
    held = [line_server] + [connect(path) for _ in range(MAX_CONNECTIONS - 1)]
    assert all(request(c, {"cmd": "get", "key": "k"}) == {"ok": True, "value": None} for c in held)
    with connect(path) as extra, extra.makefile("rb") as refusal:
        assert json.loads(refusal.readline()) == {"error": "too many connections"}
        assert refusal.readline() == b""  # and closed
    held.pop().close()
    wait_for(lambda: _serving() < MAX_CONNECTIONS, "the server ends the freed connection's thread")
    with connect(path) as again:  # the next accept forgets the ended one, and serves this
        assert request(again, {"cmd": "get", "key": "k"}) == {"ok": True, "value": None}
    for conn in held[1:]:
        conn.close()


def _serving() -> int:
    """The LineServer's connection threads alive in this process."""
    return sum(t.name.startswith("cachelab-conn") and t.is_alive() for t in threading.enumerate())


def test_a_request_naming_too_many_keys_is_refused(handler: NodeHandler) -> None:
    reply = ask(handler, {"cmd": "read", "keys": ["k"] * (MAX_KEYS + 1)})
    assert "over 100000" in reply["error"]


def test_an_over_long_line_is_dropped_whole_and_its_tail_never_runs(
    handler: NodeHandler, line_server: socket.socket
) -> None:
    smuggled = json.dumps({"cmd": "set", "key": "smuggled", "value": 1}).encode()
    line_server.sendall(b"A" * (MAX_LINE + 1) + smuggled + b"\n")
    line_server.sendall(json.dumps({"cmd": "get", "key": "smuggled"}).encode() + b"\n")
    with line_server.makefile("rb") as replies:
        assert "longer than" in json.loads(replies.readline())["error"]
        assert json.loads(replies.readline()) == {"ok": True, "value": None}  # in step
    assert ask(handler, {"cmd": "stats"})["stats"]["writes"] == 0


@pytest.mark.real_redis
def test_the_client_refuses_a_request_over_the_line_limit_and_stays_in_step(
    node_process: NodeProcess,
) -> None:
    with pytest.raises(NodeError, match="over the node's line limit"):
        node_process.call({"cmd": "set", "key": "k", "value": "v" * MAX_LINE})
    assert node_process.call({"cmd": "get", "key": "k"}) == {"ok": True, "value": None}
