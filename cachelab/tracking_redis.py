"""Server-assisted invalidation on Redis: tracked data connections and the redirect listener.

``CLIENT TRACKING ON REDIRECT <id>`` (Redis 6 and later, RESP2) makes the server send
the invalidations of every tracked connection, as pub/sub messages on
``__redis__:invalidate``, to the connection whose id is ``<id>``. Three facts of the
protocol shape this file:

- Tracking belongs to a connection. Every data connection enables it when it connects
  (a connect callback), so a reconnect re-enables it; but the keys the old connection
  read are forgotten by the server, so a *re*connect tells the node to flush.
- The redirect target is a connection id. When the listener's connection is lost, the
  data connections keep redirecting to a dead id and their invalidations are dropped:
  the node flushes, and a new pool is opened for the new id.
- The connections speak RESP2 whatever the caller's client does: on RESP3 the server
  would push invalidations in-band instead of redirecting them to a pub/sub channel.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import redis

from cachelab.bus import NO_RETRY, RedisBus, private_client
from cachelab.errors import CachelabError

log = logging.getLogger(__name__)

INVALIDATE_CHANNEL = "__redis__:invalidate"
_SYNC = "sync:"
_RESP3_ONLY = ("maint_notifications", "orig_")


class TrackingUnsupported(CachelabError, RuntimeError):
    """The server cannot track keys for us (fakeredis, or Redis before 6)."""


class TrackingListener(Protocol):
    """What the redirect listener reports to (a TrackingNode)."""

    def redirect_to(self, client_id: int) -> None:
        """The listener's connection id: tracked connections must redirect here from now."""
        ...

    def invalidated(self, keys: Sequence[bytes | str] | None) -> None:
        """The server says these keys changed (None: the whole database was flushed)."""
        ...

    def marked(self, nonce: str) -> None:
        """A settle marker came back: every invalidation sent before it has been handled."""
        ...

    def maintain(self) -> None:
        """Called between messages."""
        ...

    def subscribed(self, first: bool) -> None:
        """The subscription is (re-)established."""
        ...

    def disconnected(self) -> None:
        """The subscription is down: invalidations are being lost."""
        ...


def resp2_client(client: redis.Redis, **overrides: Any) -> redis.Redis:
    """A client of the same server as ``client`` that speaks RESP2, with its own pool (less
    redis-py 8's RESP3 maintenance push handling)."""
    return private_client(client, drop=_RESP3_ONLY, protocol=2, **overrides)


def require_tracking(client: redis.Redis) -> None:
    """Raise ``TrackingUnsupported`` unless the server knows ``CLIENT TRACKING``."""
    try:
        client.execute_command("CLIENT", "TRACKING", "OFF")  # type: ignore[no-untyped-call]
    except redis.ResponseError as exc:
        raise TrackingUnsupported(
            "strategy 'tracking' needs a real Redis 6+ (or Valkey) server with CLIENT TRACKING; "
            f"this one refuses it ({exc}). fakeredis has no CLIENT TRACKING: use "
            "'invalidate' there, or pass a redis://URL to cachelab.connect()"
        ) from None


IDENTITY_KEY = "cachelab:db-identity"
"""A token that names the database a tracking node reads (made on first use)."""


class TrackedKeys:
    """The data side: a pool whose every connection tracks what it reads for one listener."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        *,
        bcast: bool,
        noloop: bool,
        on_reconnect: Callable[[], None],
    ) -> None:
        self.prefix = prefix
        self._template = client
        self._options = _tracking_options(prefix, bcast, noloop)
        self._on_reconnect = on_reconnect
        self._client: redis.Redis | None = None
        self._retired: list[redis.Redis] = []
        self._redirect = 0
        self._lock = threading.Lock()
        self._plain: redis.Redis | None = None  # untracked, for the identity (bus thread)
        self._closed = False

    def redirect(self, client_id: int) -> None:
        """Track for the listener ``client_id`` from now on, on fresh connections."""
        fresh = resp2_client(self._template)
        fresh.connection_pool.make_connection = _with_callback(  # type: ignore[method-assign]
            fresh.connection_pool.make_connection, self._connected
        )
        with self._lock:
            old, self._client, self._redirect = self._client, fresh, client_id
            if old is not None:
                self._retired.append(old)
        if old is not None:  # in-ticket commands finish on it; their fills are refused
            old.connection_pool.disconnect(inuse_connections=False)

    @property
    def client(self) -> redis.Redis:
        """The current tracked client (raises before the listener has subscribed once).

        Once closed, the client the node was given, untracked: a closed node still reads
        and writes through Redis, and caches nothing.
        """
        client = self._client
        if client is None:
            if self._closed:
                return self._template
            raise redis.ConnectionError("tracking is not set up yet: no listener")
        return client

    def read(self, key: str) -> tuple[Any, float | None]:
        """GET and PTTL ``key`` in one round trip on a tracked connection."""
        with self.client.pipeline(transaction=False) as pipe:
            pipe.get(self.prefix + key)
            pipe.pttl(self.prefix + key)
            value, left_ms = pipe.execute()
        return value, (left_ms / 1000 if left_ms >= 0 else None)

    def fence(self) -> None:
        """A PING on the data connection (``RedisStore.fence``)."""
        self.client.ping()

    def set(self, key: str, value: str | bytes) -> None:
        """SET ``key``."""
        self.client.set(self.prefix + key, value)

    def set_if_absent(self, key: str, value: str | bytes) -> bool:
        """SET ``key`` NX: whether it was stored."""
        return bool(self.client.set(self.prefix + key, value, nx=True))

    def delete(self, key: str) -> None:
        """DEL ``key``."""
        self.client.delete(self.prefix + key)

    def identity(self, timeout: float) -> str:
        """This database's token (``IDENTITY_KEY``, made on first use), in one round trip.

        SWAPDB puts another database under the node, and no invalidation says so: the
        token then differs (another one, or a new one where there was none). Read on an
        untracked connection of its own, within ``timeout`` seconds: a server that does
        not answer raises, so the listener that asks stops trusting instead of hanging.
        """
        if self._plain is None:
            self._plain = resp2_client(
                self._template, socket_timeout=timeout, socket_connect_timeout=timeout
            )
        with self._plain.pipeline(transaction=False) as pipe:
            pipe.set(IDENTITY_KEY, secrets.token_hex(8), nx=True)
            pipe.get(IDENTITY_KEY)
            _, token = pipe.execute()
        return _text(token) if token is not None else ""

    def digests(self, keys: Sequence[str]) -> list[str]:
        """SHA-1 of each key's current value ("" when absent), in one MGET."""
        values = self.client.mget([self.prefix + key for key in keys])
        return [_digest(value) for value in values]

    def close(self) -> None:
        """Close every connection this object opened."""
        with self._lock:
            clients = [*self._retired, *([self._client] if self._client else [])]
            clients += [self._plain] if self._plain is not None else []
            self._retired, self._client, self._plain = [], None, None
            self._closed = True
        for client in clients:
            client.connection_pool.disconnect()

    def _connected(self, connection: Any) -> None:
        """Each (re)connect: enable tracking; after a reconnect, what it tracked is gone."""
        options = ("ON", "REDIRECT", self._redirect, *self._options)
        connection.send_command("CLIENT", "TRACKING", *options)
        reply = connection.read_response()
        if reply not in (b"OK", "OK"):
            raise redis.ConnectionError(f"CLIENT TRACKING refused: {reply!r}")
        if getattr(connection, "_cachelab_tracked", False):
            self._on_reconnect()
        connection._cachelab_tracked = True


class TrackingBus(RedisBus):
    """The redirect target: a RESP2 subscription to ``__redis__:invalidate``, with PINGs.

    The heartbeat is a PING on the subscription itself: its PONG comes back after every
    invalidation the server queued before it, so a PING also settles (``mark``).
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        name: str = "cachelab-tracking",
        heartbeat: float | None = 1.0,
        poll: float = 0.05,
        strict: bool = False,
    ) -> None:
        super().__init__(
            client, INVALIDATE_CHANNEL, name=name, heartbeat=heartbeat, poll=poll, strict=strict
        )
        self._marks: deque[str] = deque(maxlen=64)
        self._tracker: TrackingListener | None = None

    def start(self, listener: Any) -> None:
        """Start the thread and wait for the first subscription."""
        self._tracker = listener
        super().start(listener)

    def mark(self, nonce: str) -> None:
        """Ask for a settle marker (sent by the listener thread, which owns the connection)."""
        self._marks.append(nonce)

    def _private(self, client: redis.Redis) -> redis.Redis:
        """RESP2 (the redirect target subscribes), a pool of its own, no retry, a name."""
        tag = f"{self.name}-{secrets.token_hex(4)}"
        return resp2_client(client, retry=NO_RETRY, client_name=tag)

    def _subscribe(self) -> None:
        """A fresh connection: learn its id, hand it to the node, then subscribe."""
        assert self._own is not None
        pool = self._own.connection_pool
        connection = pool.get_connection()
        try:
            connection.send_command("CLIENT", "ID")  # type: ignore[no-untyped-call]
            client_id = int(connection.read_response())
        except BaseException:
            pool.release(connection)
            raise
        self._pubsub = self._own.pubsub()
        self._pubsub.connection = connection  # its id is the redirect target
        self.subscription.restart()
        assert self._tracker is not None
        self._tracker.redirect_to(client_id)
        self._pubsub.subscribe(self.channel)

    def _beat(self) -> None:
        """Send a PING when a beat is due, and any settle markers asked for."""
        token = self.heartbeat.due()
        if token is not None:
            self._pubsub.ping(token)
        while self._marks and self._ready.is_set():
            self._pubsub.ping(_SYNC + self._marks.popleft())

    def _dispatch(self, message: dict[str, Any] | None) -> None:
        """Hand invalidations, PONGs and confirmations to the node."""
        if message is None or self._tracker is None:
            return
        kind = message["type"]
        if kind == "message":
            self._tracker.invalidated(_keys(message["data"]))
        elif kind == "pong":
            self._ponged(_text(message["data"]))
        elif kind == "subscribe":
            self._confirmed(self._tracker)

    def _ponged(self, data: str) -> None:
        """A PONG: our heartbeat, or a settle marker."""
        assert self._tracker is not None
        if data.startswith(_SYNC):
            self._tracker.marked(data[len(_SYNC) :])
        else:
            self.heartbeat.answer(data)


def _keys(data: Any) -> Sequence[bytes | str] | None:
    """The keys of an invalidation (None for a flush); anything else is no key at all."""
    if data is None:
        return None
    if isinstance(data, list):
        return [key for key in data if isinstance(key, (bytes, str))]
    if isinstance(data, (bytes, str)):  # someone PUBLISHed on the channel: take it as one key
        return [data]
    return []


def _tracking_options(prefix: str, bcast: bool, noloop: bool) -> tuple[str, ...]:
    """The options after ``CLIENT TRACKING ON REDIRECT <id>``."""
    options: tuple[str, ...] = ()
    if bcast:
        options = ("BCAST", "PREFIX", prefix) if prefix else ("BCAST",)
    return (*options, "NOLOOP") if noloop else options


def _with_callback(make: Callable[[], Any], callback: Callable[[Any], None]) -> Callable[[], Any]:
    """A pool's ``make_connection`` whose connections call ``callback`` on every connect."""

    def make_connection() -> Any:
        connection = make()
        connection.register_connect_callback(callback)
        return connection

    return make_connection


def _digest(value: Any) -> str:
    """SHA-1 of a raw value ("" when absent)."""
    if value is None:
        return ""
    raw = value.encode() if isinstance(value, str) else bytes(value)
    return hashlib.sha1(raw).hexdigest()


def _text(data: bytes | str) -> str:
    """PONG payloads as str."""
    return data.decode(errors="replace") if isinstance(data, bytes) else data
