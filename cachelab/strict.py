"""The strict mode's gate: a hit is served only while nothing the node was sent waits unread.

A message can wait in three places: in the socket (bytes the kernel holds), in the parser
(bytes read but not yet a whole message), or with the listener (read but not yet applied).
The listener keeps ``turn`` odd from the moment it starts to read until what it read is
applied and no byte is left over, and while it has no live subscription at all. A hit
reads ``turn``, looks up its entry, asks the socket whether a byte waits, then reads
``turn`` again: a message that was in the socket when the read began is either still
there, or was taken by a listener whose turn the hit sees change. A dead connection reads
as a waiting byte (its end of file), so a killed subscription is seen at once.
"""

from __future__ import annotations

import select
import socket
from collections.abc import Callable
from typing import Any

Probe = Callable[[], bool]  # True when a byte or message may be waiting unread


def _waiting() -> bool:
    """No connection to ask: assume a message waits."""
    return True


def _buffered(connection: Any) -> bool:
    """Whether redis-py's parser holds bytes of a message not yet whole (hiredis or not)."""
    parser = getattr(connection, "_parser", None)
    reader = getattr(parser, "_reader", None)
    if reader is not None and hasattr(reader, "has_data"):
        return bool(reader.has_data())
    buffer = getattr(parser, "_buffer", None)
    if buffer is not None and hasattr(buffer, "unread_bytes"):
        return bool(buffer.unread_bytes())
    return reader is not None or buffer is not None  # a parser we can't read: assume bytes


def _socket_probe(sock: Any) -> tuple[Probe, Callable[[float], bool]]:
    """A probe and a wait over a real socket, by poll(2) (select can't take fds >= 1024).
    The listener waits on a poll object of its own: two threads can't use one at once."""
    fd = sock.fileno()
    shared, listener = select.poll(), select.poll()
    shared.register(fd, select.POLLIN)
    listener.register(fd, select.POLLIN)

    def waiting() -> bool:
        try:
            return bool(shared.poll(0))
        except RuntimeError:  # another reader is polling the shared object right now
            own = select.poll()
            own.register(fd, select.POLLIN)
            return bool(own.poll(0))

    return waiting, lambda timeout: bool(listener.poll(timeout * 1000))


def _queue_probe(connection: Any) -> tuple[Probe, Callable[[float], bool]]:
    """fakeredis: whole messages wait in the fake socket's queue; its can_read only looks."""
    sock = connection._sock

    def waiting() -> bool:
        responses = sock.responses
        return responses is None or not responses.empty()

    return waiting, lambda timeout: bool(connection.can_read(timeout=timeout))


def probes(connection: Any) -> tuple[Probe, Callable[[float], bool]]:
    """The probe (is anything waiting?) and the wait (block until something may be) for
    a redis-py connection, real or fakeredis."""
    sock = getattr(connection, "_sock", None)
    if isinstance(sock, socket.socket):
        return _socket_probe(sock)
    if sock is not None and hasattr(sock, "responses"):
        return _queue_probe(connection)
    raise TypeError(f"strict=True can't watch a connection of type {type(connection).__name__}")


def async_probe(connection: Any) -> Probe:
    """The probe for a ``redis.asyncio`` connection (real or fakeredis): bytes can also
    wait in the stream reader, where the event loop put them for the listener task."""
    sock = getattr(connection, "_sock", None)
    if sock is not None and hasattr(sock, "responses"):
        return _queue_probe(connection)[0]
    stream = connection._reader
    raw = connection._writer.get_extra_info("socket")
    if stream is None or raw is None:
        raise TypeError(f"strict=True can't watch {type(connection).__name__}: no socket")
    in_socket = _socket_probe(raw)[0]

    def waiting() -> bool:
        unread = getattr(stream, "_buffer", True)  # asyncio keeps it private: assume bytes
        return bool(unread) or stream.at_eof() or _buffered(connection) or in_socket()

    return waiting


class Gate:
    """What the hit path of a strict node asks, and what its listener keeps up to date."""

    def __init__(self) -> None:
        self.turn = 1  # odd: no live subscription yet, or the listener is reading
        self.waiting: Probe = _waiting
        self._wait: Callable[[float], bool] = lambda timeout: False

    def quiet(self, turn: int) -> bool:
        """Whether a hit that read ``turn`` before its lookup may be served."""
        return not turn & 1 and not self.waiting() and self.turn == turn

    def watch(self, connection: Any) -> None:
        """A new connection (not yet subscribed): watch its socket from now on."""
        self.close()
        self.waiting, self._wait = probes(connection)

    def watch_async(self, connection: Any) -> None:
        """The same for the asyncio bus, whose task reads by awaiting (no ``wait``)."""
        self.close()
        self.waiting = async_probe(connection)

    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds until something may be waiting (listener only)."""
        return self._wait(timeout)

    def enter(self) -> None:
        """The listener starts to read: hits stop until it has applied what it read."""
        if not self.turn & 1:
            self.turn += 1

    def leave(self, connection: Any) -> None:
        """The listener applied all it read; hits resume unless part of a message waits."""
        if self.turn & 1 and not _buffered(connection):
            self.turn += 1

    def close(self) -> None:
        """The connection is gone (or going): no hit until a new one is live."""
        self.enter()
        self.waiting, self._wait = _waiting, lambda timeout: False
