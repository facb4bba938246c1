"""``cachelab node``: one CacheNode in this OS process, driven over a JSON line protocol.

One JSON object per line in, one per line out, on a Unix socket in a directory of its own
that only this user may enter (0700): no TCP port that any process on the machine could
use to write through the node, with its secret, or make it quit. At most
``MAX_CONNECTIONS`` at once, each request at most ``MAX_LINE`` bytes naming at most
``MAX_KEYS`` keys; never pickle. Every request names its command in ``cmd``;
every reply is ``{"ok": true, ...}`` or ``{"error": "..."}``, and a bad line never ends
the server. The commands:

- ``get`` ``key`` -> ``value``; ``set`` ``key`` ``value``; ``delete`` ``key``
- ``read`` ``keys``: one ``get`` of each (recorded like any read) -> ``values``
- ``stats`` -> ``stats`` (``NodeStats.to_dict()``), ``coherent``, ``name``, ``pid``
- ``snapshot`` [``keys``] -> ``entries``: key -> [value, version] of trusted local entries
- ``sync`` ``nonce`` [``publish``]: publish a sync marker if asked; -> ``synced``, whether
  this node has handled every message published before that marker (``CacheNode.synced``)
- ``run`` ``workload`` (``cachelab.harness.loadgen.Workload``'s fields) starts it on threads;
  ``progress`` -> ``done``, ``errors``, ``total``, ``finished``
- ``history`` [``since``] -> ``ops``: recorded ops from index ``since`` on, each
  ``[node, op, key, start, end, version, hit, inc]`` with ``time.monotonic()`` times
- ``quit``: close the node, join its threads and exit 0 (SIGTERM does the same)

``NodeHandler`` is the protocol without sockets (tests drive it directly); ``LineServer``
serves it on the private socket; ``serve_node`` is the process's main.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from cachelab.errors import CachelabError
from cachelab.harness.loadgen import LoadRun, Workload
from cachelab.history import Recorder
from cachelab.node import CacheNode
from cachelab.stripes import StripedNode

BANNER = "cachelab-node listening on"
"""The first line a node process prints: ``cachelab-node listening on <socket path>``."""
SOCKET_NAME = "node.sock"
MAX_CONNECTIONS = 4
"""Connections served at once (the runner needs one); the next is told so and closed."""
MAX_KEYS = 100_000
"""Keys one ``read`` or ``snapshot`` may name."""
MAX_LINE = 1 << 20
"""The longest request line accepted (a ``set`` of a large value fits)."""

Reply = dict[str, Any]


class ProtocolError(CachelabError, ValueError):
    """A request the protocol cannot carry out: its message is the reply's ``error``."""


class NodeHandler:
    """The line protocol over one node and its recorder; no sockets, no threads of its own
    but a workload's."""

    def __init__(self, node: CacheNode | StripedNode, recorder: Recorder | None) -> None:
        self.node = node
        self.recorder = recorder
        self.quit = threading.Event()
        self._load: LoadRun | None = None
        self._lock = threading.Lock()  # one workload at a time, whichever connection asks
        self._commands: dict[str, Callable[[dict[str, Any]], Reply]] = {
            "get": self._get,
            "set": self._set,
            "delete": self._delete,
            "read": self._read,
            "stats": self._stats,
            "snapshot": self._snapshot,
            "sync": self._sync,
            "run": self._run,
            "progress": self._progress,
            "history": self._history,
            "quit": self._quit,
        }

    def handle_line(self, line: bytes | str) -> str:
        """One request line in, one reply line out (without the newline); never raises."""
        try:
            request = json.loads(line)
        except ValueError as exc:
            return _dump({"error": f"not a JSON line: {exc}"})
        try:
            return _dump(self.handle(request))
        except Exception as exc:  # a bad request or a store error: say it, serve on
            return _dump({"error": _describe(exc)})

    def handle(self, request: Any) -> Reply:
        """Carry out one decoded request; raises on a bad one."""
        if not isinstance(request, dict):
            raise ProtocolError(f"a request is a JSON object, not {type(request).__name__}")
        name = request.get("cmd")
        command = self._commands.get(name) if isinstance(name, str) else None
        if command is None:
            raise ProtocolError(f"unknown cmd {name!r}; known: {', '.join(self._commands)}")
        return {"ok": True, **command(request)}

    def close(self) -> None:
        """Stop and join a workload still running."""
        with self._lock:
            load, self._load = self._load, None
        if load is not None:
            load.close()

    # -- the commands -------------------------------------------------------------------

    def _get(self, request: dict[str, Any]) -> Reply:
        return {"value": self.node.get(_field(request, "key", str))}

    def _set(self, request: dict[str, Any]) -> Reply:
        if "value" not in request:
            raise ProtocolError("set needs a 'value'")
        self.node.set(_field(request, "key", str), request["value"])
        return {}

    def _delete(self, request: dict[str, Any]) -> Reply:
        self.node.delete(_field(request, "key", str))
        return {}

    def _read(self, request: dict[str, Any]) -> Reply:
        return {"values": [self.node.get(key) for key in _keys(request, "keys")]}

    def _stats(self, request: dict[str, Any]) -> Reply:
        node = self.node
        return {
            "stats": node.stats.to_dict(),
            "coherent": node.coherent,
            "name": node.name,
            "pid": os.getpid(),
        }

    def _snapshot(self, request: dict[str, Any]) -> Reply:
        entries = self.node.snapshot()
        if "keys" in request:
            wanted = set(_keys(request, "keys"))
            entries = {k: e for k, e in entries.items() if k in wanted}
        return {"entries": {key: [value, version] for key, (value, version) in entries.items()}}

    def _sync(self, request: dict[str, Any]) -> Reply:
        nonce = _field(request, "nonce", str)
        if request.get("publish", False) is True:
            self.node._publish_sync(nonce)
        return {"synced": self.node._synced(nonce)}

    def _run(self, request: dict[str, Any]) -> Reply:
        workload = Workload.from_dict(_field(request, "workload", dict))
        with self._lock:
            if self._load is not None and not self._load.finished:
                raise ProtocolError("a workload is already running; wait for it (progress)")
            if self._load is not None:
                self._load.close()
            self._load = LoadRun(self.node, workload).start()
        return {"started": workload.ops}

    def _progress(self, request: dict[str, Any]) -> Reply:
        load = self._load
        if load is None:
            return {"done": 0, "errors": 0, "total": 0, "finished": True, "last_error": None}
        return load.progress()

    def _history(self, request: dict[str, Any]) -> Reply:
        if self.recorder is None:
            raise ProtocolError("this node records no history")
        since = request.get("since", 0)
        if type(since) is not int or since < 0:
            raise ProtocolError(f"since must be an int >= 0, not {since!r}")
        return {"ops": [list(op) for op in self.recorder.history[since:]]}

    def _quit(self, request: dict[str, Any]) -> Reply:
        self.quit.set()
        return {"bye": True}


def _field(request: dict[str, Any], name: str, kind: type) -> Any:
    """``request[name]``, which must be present and of ``kind``."""
    if name not in request:
        raise ProtocolError(f"{request.get('cmd')} needs {name!r}")
    value = request[name]
    if type(value) is not kind:
        raise ProtocolError(f"{name!r} must be a {kind.__name__}, not {type(value).__name__}")
    return value


def _keys(request: dict[str, Any], name: str) -> list[str]:
    """``request[name]``: a list of str."""
    keys: list[Any] = _field(request, name, list)
    if len(keys) > MAX_KEYS:
        raise ProtocolError(f"{name!r} names {len(keys)} keys, over {MAX_KEYS}")
    if not all(type(key) is str for key in keys):
        raise ProtocolError(f"{name!r} must be a list of str")
    return [str(key) for key in keys]


def _dump(reply: Reply) -> str:
    """A reply as one line; bytes values go as text (latin-1), never as pickles."""
    return json.dumps(reply, separators=(",", ":"), default=_text, allow_nan=False)


def _text(value: Any) -> str:
    """What JSON cannot hold, as text."""
    if isinstance(value, bytes):
        return value.decode("latin-1")
    raise TypeError(f"cannot send a {type(value).__name__} as JSON")


def _describe(exc: BaseException) -> str:
    """An error as a reply says it: the message, with the type unless it is ours."""
    return str(exc) if isinstance(exc, ProtocolError) else f"{type(exc).__name__}: {exc}"


class LineServer:
    """Serves a ``NodeHandler`` on a Unix socket in a new 0700 directory, a thread per
    connection (at most ``MAX_CONNECTIONS``).

    ``serve()`` returns on ``quit``, on ``stop()`` (a signal handler may call it), or when
    ``watch`` (a readable file, such as stdin) reaches its end: the runner holds our
    stdin, so a node never outlives the runner that started it.
    """

    def __init__(self, handler: NodeHandler) -> None:
        self.handler = handler
        self.directory = Path(tempfile.mkdtemp(prefix="cachelab-node-"))  # made 0700
        self.path = str(self.directory / SOCKET_NAME)
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.path)
        self._listener.listen(MAX_CONNECTIONS)
        self._stop = threading.Event()
        self._conns: list[tuple[socket.socket, threading.Thread]] = []

    def stop(self) -> None:
        """Make ``serve()`` return soon (safe from a signal handler)."""
        self._stop.set()

    def serve(self, watch: Any = None) -> None:
        """Accept and serve connections until asked to stop; then close them all."""
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ, "accept")
            if watch is not None:
                selector.register(watch, selectors.EVENT_READ, "watch")
            try:
                while not (self._stop.is_set() or self.handler.quit.is_set()):
                    for key, _ in selector.select(timeout=0.1):
                        self._ready(key.data, watch)
            finally:
                self._close()

    def _ready(self, what: str, watch: Any) -> None:
        """A new connection, or news on the watched file."""
        if what == "accept":
            conn, _ = self._listener.accept()
            self._prune()
            if len(self._conns) >= MAX_CONNECTIONS:
                with contextlib.suppress(OSError), conn:
                    conn.sendall(_dump({"error": "too many connections"}).encode() + b"\n")
                return
            thread = threading.Thread(
                target=self._serve_conn, args=(conn,), name=f"cachelab-conn-{len(self._conns)}"
            )
            self._conns.append((conn, thread))
            thread.start()
        elif not os.read(watch.fileno(), 4096):  # end of file: our runner is gone
            self.stop()

    def _serve_conn(self, conn: socket.socket) -> None:
        """Answer each line of one connection until it closes, or ``quit``."""
        with contextlib.suppress(OSError), conn.makefile("rb") as reader:
            for line in _lines(reader):
                reply = self._reply(line)
                conn.sendall(reply.encode() + b"\n")
                if self.handler.quit.is_set():
                    return

    def _reply(self, line: bytes | None) -> str:
        """The reply to one raw line (too long a line is refused, not parsed)."""
        if line is None:
            return _dump({"error": f"line longer than {MAX_LINE} bytes"})
        return self.handler.handle_line(line)

    def _prune(self) -> None:
        """Forget the connections whose client has gone (joined and closed)."""
        live = []
        for conn, thread in self._conns:
            if thread.is_alive():
                live.append((conn, thread))
            else:
                thread.join()
                conn.close()
        self._conns = live

    def _close(self) -> None:
        """Close and remove the listener, end every connection, and join their threads."""
        self._listener.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)
            self.directory.rmdir()
        for conn, _ in self._conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in readline
        for conn, thread in self._conns:
            thread.join()
            conn.close()


def _lines(reader: IO[bytes]) -> Iterator[bytes | None]:
    """Each line of ``reader``, or None for one over ``MAX_LINE``, which is read to its end
    and dropped whole: its tail must never run as a request of its own."""
    while line := reader.readline(MAX_LINE + 1):
        if len(line) <= MAX_LINE:
            yield line
            continue
        while not line.endswith(b"\n") and (line := reader.readline(1 << 16)):
            pass
        yield None


def serve_node(node: CacheNode | StripedNode, recorder: Recorder | None, watch_stdin: bool) -> int:
    """The node process's main: print the banner, serve until quit or SIGTERM, close."""
    handler = NodeHandler(node, recorder)
    try:
        server = LineServer(handler)
        previous = signal.signal(signal.SIGTERM, lambda *_: server.stop())
        try:
            print(f"{BANNER} {server.path}", flush=True)
            server.serve(sys.stdin if watch_stdin else None)
        finally:
            signal.signal(signal.SIGTERM, previous)
    finally:
        handler.close()
        node.close()
    return 0
