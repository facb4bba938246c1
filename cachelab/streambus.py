"""StreamBus: a node reads its namespace's capped Redis Stream on from its last entry id.

Pub/sub is at most once: whatever is published while a subscriber reconnects is gone,
so a reconnect costs a repair (a round trip per ``repair_batch`` cached keys). On the
stream transport the write script appends the very same message to ``{ns}:stream``
(``XADD MAXLEN ~ cap``) instead, and a reader that comes back reads on from the last
entry id it handled: it misses nothing, and the node trusts again what it held, with
no round trip. Only a stream trimmed past that id loses messages, and the first entry
read after it shows it: its number skips (the Sequencer's gap), and the node repairs.

One daemon thread (``ListenerThread``: it never dies, backs off, tells the node when it
ends unbidden), on a connection of its own, named after the bus (``CLIENT LIST`` shows
it), with no redis-py retries (every failure reaches the bus, which reconnects and
says so) and a socket timeout of ``block`` + ``grace`` seconds:

- ``XREAD COUNT batch BLOCK block STREAMS {ns}:stream <last id>``; each entry's ``m``
  field goes to ``listener.receive``. An entry without exactly one ``m`` field is handed
  on as bytes no node decodes: counted invalid and dropped, like garbage on a channel.
- Liveness needs no heartbeat: XREAD BLOCK answers within ``block`` seconds, entries
  or not, so a connection that stays silent past its socket timeout (half-open, or a
  stopped server) fails, and the bus reconnects. The cost: an idle node sends one
  XREAD per ``block`` (it waits on the server, which does no work meanwhile).
- The start: ``store.position()`` reads the store's meta and the stream's last id in
  one script, so the node's sequence starts exactly where its reading does.
- A reconnect: the position again; the node gets its meta (``subscribed(False, meta)``),
  the bus reads on from its last id, and once past the position's last id it calls
  ``listener.replayed()``. A stream whose newest entry is older than the last id (it was
  deleted, or the server came back without it) is read from that newest entry.
- A restart of the stream under a live reader: a write that finds the stream refusing
  entries for good (an outsider's entry holds the last possible id) starts it again, so
  its ids start again too. Idle, at most once per ``END_CHECK`` seconds, the reader
  compares the stream's last generated id (which trimming leaves alone) with its own
  position; behind it, the reader takes the reconnect path above, and the node repairs.

fakeredis supports all of it (XADD inside Lua, XREAD BLOCK, CLIENT KILL ID), so the
tests run the same code on fakeredis, Redis 7.0 and Valkey 8.1.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any, Protocol

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from cachelab.bus import Listener, ListenerThread
from cachelab.contract import Meta, Position
from cachelab.errors import CachelabError

log = logging.getLogger(__name__)

_NOT_A_MESSAGE = b"a stream entry without exactly one 'm' field"
END_CHECK = 1.0
"""Seconds between an idle reader's checks that its stream was not started again."""
_LAST_ID = """
local info = redis.call('XINFO', 'STREAM', KEYS[1])
for i = 1, #info, 2 do if info[i] == 'last-generated-id' then return info[i + 1] end end
return '0-0'
"""
"""The stream's last generated id alone (XINFO's reply also holds two whole entries)."""
_POOL_OWNED = frozenset({"maint_notifications_pool_handler"})  # one per pool, never shared
StreamId = tuple[int, int]


class StreamRestarted(CachelabError, redis.ConnectionError):
    """The stream's ids started again behind the reader: it reads on as after a reconnect."""


class StreamListener(Listener, Protocol):
    """What a stream bus reports to (a CacheNode): a Listener, told of the meta it read."""

    def subscribed(self, first: bool, meta: Meta | None = None) -> None:
        """Reading (again), from ``meta``: read with the position the bus reads from."""
        ...

    def replayed(self) -> None:
        """After a reconnect: every entry up to the stream's end at the reconnect was read."""
        ...


class StreamSource(Protocol):
    """The store a stream bus reads the position of (a RedisStore with a stream)."""

    stream_key: str

    def position(self) -> Position:
        """The meta and the stream's last entry id, read atomically."""
        ...


class StreamBus(ListenerThread):
    """A namespace's stream, read by one daemon thread from the last entry id it handled."""

    ordered = True  # one reader, one cursor: entries come in order, each once

    def __init__(
        self,
        client: redis.Redis,
        store: StreamSource,
        *,
        name: str = "cachelab-stream",
        block: float = 0.1,
        batch: int = 128,
        grace: float = 1.0,
        backoff: float = 0.01,
        max_backoff: float = 1.0,
        start_timeout: float = 10.0,
    ) -> None:
        if not block > 0 or not grace > 0 or type(batch) is not int or batch < 1:
            raise ValueError("block and grace must be positive seconds, batch a positive int")
        key = store.stream_key
        target = f"read the stream {key!r}"
        super().__init__(name, block, max_backoff, start_timeout, target, backoff)
        self.client = client
        self.store = store
        self.key = key
        self.block_ms = max(1, round(block * 1000))
        self.batch = batch
        self.timeout = block + grace
        self.last_id = "0-0"  # the last entry handed on (set at the start)
        self._listener: StreamListener | None = None
        self._first = True
        self._until: StreamId | None = None  # the stream's end at the reconnect, until read
        self._reader: redis.Redis | None = None  # touched by the bus thread only
        self._end_checked = time.monotonic()

    def _step(self) -> None:
        """Connect if need be, then hand on one batch of entries (waiting ``block`` at most)."""
        if self._reader is None:
            self._connect()
            self._caught_up()  # nothing missed: the node need not wait a block to hear so
        assert self._reader is not None and self._listener is not None
        reply = self._reader.xread({self.key: self.last_id}, count=self.batch, block=self.block_ms)
        entries = list(_entries(reply))
        for entry_id, fields in entries:
            self.last_id = _text(entry_id)  # before the node sees it: read once, whatever
            self._listener.receive(_message(fields))  # happens (a lost answer: node repairs)
        if not entries and time.monotonic() - self._end_checked >= END_CHECK:
            self._check_end()
        self._caught_up()
        self._maintain()

    def _check_end(self) -> None:
        """Raise ``StreamRestarted`` if the stream's ids started again behind our position."""
        assert self._reader is not None
        self._end_checked = time.monotonic()
        try:
            end = _text(self._reader.eval(_LAST_ID, 1, self.key))
        except redis.ResponseError:  # no such key: deleted, not yet started again
            end = "0-0"
        if _parse_id(end) < _parse_id(self.last_id):
            raise StreamRestarted(f"{self.key} started again at {end}, behind {self.last_id}")

    def _caught_up(self) -> None:
        """After a reconnect, once past the stream's end at that moment: tell the node."""
        if self._until is not None and _parse_id(self.last_id) >= self._until:
            self._until = None
            assert self._listener is not None
            self._listener.replayed()

    def _connect(self) -> None:
        """A reader connection, the position, and the node told where it stands."""
        assert self._listener is not None
        self._reader = _reader(self.client, self.name, self.timeout)
        meta, end = self.store.position()
        if self._first:
            self.last_id = end
            self._listener.subscribed(True, meta)
            self._first = False
            self._started()
            return
        if _parse_id(end) < _parse_id(self.last_id):  # deleted or lost: read what comes next
            self.last_id = end
        self._until = _parse_id(end)
        self._listener.subscribed(False, meta)

    def _drop(self) -> None:
        """Close the reader's connection; errors no longer matter."""
        reader, self._reader = self._reader, None
        if reader is None:
            return
        try:
            reader.close()
            reader.connection_pool.disconnect()
        except Exception:  # the connection may already be gone
            log.debug("closing the reader of %s failed", self.name, exc_info=True)


def _reader(client: redis.Redis, name: str, timeout: float) -> redis.Redis:
    """A client of the same server with one connection of its own: named ``name`` (for
    CLIENT LIST), timing out after ``timeout`` seconds, and retrying nothing itself.

    One connection held for good (``single_connection_client``), not one taken from a pool
    per command: a pool would replace a killed idle connection unseen. That would lose
    nothing here (the next XREAD reads from the last id all the same), but the bus reports
    every loss of its connection, so the node's counters and trace tell the truth.
    """
    pool = client.connection_pool
    kwargs = {k: v for k, v in pool.connection_kwargs.items() if k not in _POOL_OWNED}
    kwargs.update(
        socket_timeout=timeout, client_name=_client_name(name), retry=Retry(NoBackoff(), 0)
    )
    own = redis.ConnectionPool(connection_class=pool.connection_class, **kwargs)
    return redis.Redis(connection_pool=own, single_connection_client=True)


def _client_name(name: str) -> str:
    """``name`` as CLIENT SETNAME takes it: printable ASCII without spaces."""
    return "".join(c if "!" <= c <= "~" else "_" for c in name)


def _entries(reply: Any) -> Iterator[tuple[Any, Any]]:
    """The ``(id, fields)`` of an XREAD reply (RESP2: a list of pairs; RESP3: a map)."""
    if not reply:
        return
    streams = reply.values() if isinstance(reply, dict) else (item[1] for item in reply)
    for entries in streams:
        yield from entries


def _message(fields: Any) -> bytes:
    """An entry's message: its one ``m`` field, else bytes no node decodes."""
    if isinstance(fields, dict) and len(fields) == 1:
        for name, value in fields.items():
            if name in (b"m", "m") and isinstance(value, bytes):
                return value
            if name in (b"m", "m") and isinstance(value, str):  # decode_responses=True
                return value.encode("utf-8", "surrogatepass")
    return _NOT_A_MESSAGE


def _parse_id(entry_id: str) -> StreamId:
    """A stream entry id ``ms-seq`` as a pair that compares as Redis orders ids."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _text(raw: bytes | str) -> str:
    """An id as str, whatever the client's decode_responses."""
    return raw.decode("ascii") if isinstance(raw, bytes) else raw
