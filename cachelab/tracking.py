"""TrackingNode: a near cache of plain Redis keys that anyone writes, invalidated by Redis.

The server's invalidations (``CLIENT TRACKING``) carry no versions, so the node numbers
what happens to it: each invalidation it hears and each write it makes takes the next
number of its own sequence, and a load is stamped with the number current when it
started. The core's rules then hold unchanged: a load overtaken by anything newer does
not fill (the race where an invalidation, on the listener's connection, overtakes the
read's reply on another), and any later invalidation drops the entry.

Without versions there is nothing to repair against: when the listener's connection is
lost (its redirect id dies with it, and every invalidation meanwhile with it), or a data
connection reconnects (the server forgot what it tracked), the node flushes.

The numbering is the core's policy for this strategy (``Strategy.store_versions`` False),
so this module holds only what is particular to tracking's I/O: the keyspace, the
listener that hears the server and checks the database's identity, and the options.

What the node caches is what its own GET returned: the server tracks a key for a
connection only once that connection read it. So a node's own writes, and the values a
``get_or_load`` loader stores, are not kept: the next read fetches (and tracks) them.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Protocol, cast

import redis
from redis.cluster import RedisCluster

from cachelab import validate
from cachelab.backends import Client
from cachelab.bus import Bus
from cachelab.codec import RawValue
from cachelab.coherence import Strategy, Tracking
from cachelab.contract import KeyState, Meta, Reply, Stamp, Store
from cachelab.driver import ThreadDriver
from cachelab.listener import NodeListener
from cachelab.local import Timer
from cachelab.node import CacheNode
from cachelab.shell import RefusalLog
from cachelab.tracking_redis import TrackedKeys, TrackingBus, require_tracking

_VERSIONED_ONLY = ("gap_detection", "repair", "secret")


class Keyspace(Protocol):
    """Plain keys on a server that tracks what this node reads (TrackedKeys, or the simulator's)."""

    prefix: str

    def read(self, key: str) -> tuple[Any, float | None]:
        """The value of ``key`` as the client decodes it (or None), and the seconds it has
        left in the store (None: no expiry); the server tracks the key from now on."""
        ...

    def set(self, key: str, value: RawValue) -> None:
        """Write ``key``."""
        ...

    def set_if_absent(self, key: str, value: RawValue) -> bool:
        """Write ``key`` unless it exists; whether it was written."""
        ...

    def delete(self, key: str) -> None:
        """Delete ``key``."""
        ...

    def digests(self, keys: Sequence[str]) -> list[str]:
        """SHA-1 of each key's raw value ("" when absent)."""
        ...

    def close(self) -> None:
        """Release what the keyspace holds."""
        ...


class TrackingBusLike(Bus, Protocol):
    """A bus that can also send a settle marker down the node's own subscription."""

    def mark(self, nonce: str) -> None:
        """Ask for a marker that returns after every invalidation sent before it."""
        ...


class KeyspaceStore:
    """The ``Store`` face of a keyspace: no versions, one incarnation per node."""

    def __init__(self, keys: Keyspace, inc: str) -> None:
        self.keys = keys
        self.inc = inc

    def meta(self) -> Meta:
        """This node's own incarnation (no counter lives in Redis)."""
        return Meta(self.inc, 0)

    def fence(self) -> None:
        """The keyspace's fence, if it has one (``RedisStore.fence``)."""
        fence = getattr(self.keys, "fence", None)
        if fence is not None:
            fence()

    def read(self, key: str) -> Reply:
        """GET ``key`` (the node stamps its version), with the seconds it has left."""
        value, left = self.keys.read(key)
        return Reply(value, 0, self.inc, 0, left)

    def write(self, op: str, key: str, encoded: str, head: str | None) -> Stamp:
        """SET or DEL ``key`` (the node stamps the write)."""
        if op == "set":
            self.keys.set(key, encoded)
        else:
            self.keys.delete(key)
        return Stamp(0, self.inc)

    def fill(self, key: str, encoded: str, since: Reply, head: str | None) -> Stamp:
        """SET NX; never a stamp to cache by: the server tracks only what we read."""
        self.keys.set_if_absent(key, encoded)
        return Stamp(0, self.inc)

    def check(self, keys: Sequence[str]) -> tuple[Meta, list[KeyState]]:
        """No versions: the digest of each key's current value."""
        return Meta(self.inc, 0), [(0, digest) for digest in self.keys.digests(keys)]

    def mark(self, channel: str, head: str | None) -> Meta:
        """Markers travel down each node's own subscription instead (``TrackingBus.mark``)."""
        return Meta(self.inc, 0)


class DatabaseIdentity:
    """Whether the database under a node is still the one it read (SWAPDB tells nobody)."""

    def __init__(self, keys: Keyspace, every: float, timer: Timer) -> None:
        self.keys = keys
        self.every = every
        self.timer = timer
        self.known: str | None = None
        self.checked = -math.inf

    def due(self) -> bool:
        """Whether a heartbeat's time passed since the last check."""
        return self.timer() - self.checked >= self.every

    def changed(self) -> bool:
        """Read the identity now; True if another database is under the node."""
        self.checked = self.timer()
        identity = getattr(self.keys, "identity", None)
        now = identity(self.every) if identity is not None else ""
        changed = self.known is not None and now != self.known
        self.known = now
        return changed


class TrackingListener(NodeListener):
    """What the tracking bus calls: the server's invalidations, its markers, its redirects."""

    driver: ThreadDriver

    def __init__(
        self,
        driver: ThreadDriver,
        refusals: RefusalLog,
        keys: Keyspace,
        identity: DatabaseIdentity,
        flush: Callable[[], None],
    ) -> None:
        super().__init__(driver, "", None, refusals)
        self.keys = keys
        self.identity = identity
        self.flush = flush

    def redirect_to(self, client_id: int) -> None:
        """The listener's new connection: track for it from now on."""
        if isinstance(self.keys, TrackedKeys):
            self.keys.redirect(client_id)

    def invalidated(self, keys: Sequence[bytes | str] | None) -> None:
        """The server says ``keys`` changed; None means the database was flushed."""
        core = self.driver.core
        if keys is None:
            self.driver.now(core.flush)
            return
        self.driver.now(partial(core.invalidated_all, _own_keys(keys, self.keys.prefix)))

    def marked(self, nonce: str) -> None:
        """A settle marker came back: first make sure the database is still ours, so that
        a settled node never serves another database's values (SWAPDB)."""
        self.check_database()
        core = self.driver.core
        self.driver.now(lambda: core.marked(nonce))

    def maintain(self) -> None:
        """Between invalidations: check the database's identity once per heartbeat."""
        if self.identity.due():
            self.check_database()
        self.driver.repair()

    def send_beat(self, beat_channel: str, token: str) -> None:
        """Unused: the tracking bus beats with a PING of its own."""

    def check_database(self) -> None:
        """Flush if another database is under the node now."""
        if self.identity.changed():
            self.flush()


class TrackingNode(CacheNode):
    """A near cache of plain string keys under ``prefix``, kept coherent by the server.

    Needs a real Redis 6+ or Valkey server (``TrackingUnsupported`` otherwise). Values are
    what the client's GET returns (bytes, or str with ``decode_responses``); ``set`` takes
    str, bytes, int or float. ``bcast=True`` asks the server to send every change under
    ``prefix`` to every node (BCAST) instead of only the keys each node read. ``noloop``
    (BCAST only, and its default there) spares a connection the invalidations of its own
    writes; in the default mode it would also hide the evictions of the server's tracking
    table that the node's own reads cause, so it is refused there. Other options as CacheNode;
    ``repair``, ``gap_detection`` and ``secret`` need versions, which tracking lacks.
    """

    _numbers_itself = True

    def __init__(
        self,
        r: redis.Redis | Keyspace,
        name: str = "node",
        namespace: str = "cachelab",
        strategy: str | Strategy = "tracking",
        max_entries: int = 10_000,
        ttl: float | None = None,
        *,
        prefix: str = "",
        bcast: bool = False,
        noloop: bool | None = None,
        heartbeat: float | None = 1.0,
        bus: TrackingBusLike | None = None,
        **options: Any,
    ) -> None:
        if not isinstance(strategy, Tracking) and strategy != "tracking":
            raise ValueError(f"TrackingNode runs strategy 'tracking', not {strategy!r}")
        for option in _VERSIONED_ONLY:
            if options.pop(option, None) not in (None, False):
                raise ValueError(f"{option}= needs versions, which strategy 'tracking' lacks")
        if type(prefix) is not str:
            raise TypeError(f"prefix must be str, not {type(prefix).__name__}")
        bcast = validate.flag("bcast", bcast)
        noloop = bcast if noloop is None else validate.flag("noloop", noloop)
        if noloop and not bcast:
            raise ValueError(
                "noloop=True needs bcast=True: in the default mode the server does not tell a "
                "NOLOOP connection when its own read evicts keys from the tracking table, and "
                "those entries would never hear of later writes"
            )
        self._options = (prefix, bcast, noloop)
        self._tracking_bus = bus
        self._identity_every = heartbeat if isinstance(heartbeat, int | float) else 1.0
        super().__init__(
            cast(Any, r), name, namespace, Tracking(), max_entries, ttl,
            heartbeat=heartbeat, bus=bus, gap_detection=False, repair=False, **options,
        )  # fmt: skip
        assert isinstance(self._listener, TrackingListener)
        self._listener.check_database()

    @property
    def bcast(self) -> bool:
        """Whether the server broadcasts every change under the prefix (BCAST mode)."""
        return self._options[1]

    def _make_store(self, r: Client | Store | Keyspace, namespace: str) -> Store:
        """The keyspace, tracked for this node."""
        prefix, bcast, noloop = self._options
        if isinstance(r, redis.Redis):
            require_tracking(r)
            r = TrackedKeys(r, prefix, bcast=bcast, noloop=noloop, on_reconnect=self.flush)
        elif isinstance(r, RedisCluster):
            raise ValueError(
                "strategy 'tracking' does not run on a Redis Cluster: one redirect connection "
                "cannot hear every shard; use 'invalidate' or 'update' there"
            )
        elif not all(callable(getattr(r, op, None)) for op in ("read", "set", "delete", "digests")):
            raise TypeError(f"expected a redis.Redis client or a Keyspace, not {type(r).__name__}")
        self._keys: Keyspace = r  # type: ignore[assignment]
        return KeyspaceStore(self._keys, f"{self.id}:{secrets.token_hex(4)}")

    def _make_listener(self, refusals: RefusalLog) -> NodeListener:
        """The tracking listener, with the database's identity to watch."""
        identity = DatabaseIdentity(self._keys, self._identity_every, self._timer)
        return TrackingListener(self._driver, refusals, self._keys, identity, self.flush)

    def _start_bus(
        self, r: Any, bus: Bus | None, heartbeat: float | None, strict: bool
    ) -> Bus | None:
        """Start the redirect listener (its first connection id sets up the keyspace)."""
        if bus is None:
            if not isinstance(self._keys, TrackedKeys):
                raise TypeError("a bus is required when the keyspace is not a Redis one")
            name = f"cachelab-tracking-{self.name}"
            bus = TrackingBus(r, name=name, heartbeat=heartbeat, strict=strict)
        self._tracking_bus = bus  # type: ignore[assignment]
        bus.start(self._listener)
        return bus

    def _publish_sync(self, nonce: str) -> None:
        """Send a settle marker down this node's own subscription."""
        if self._tracking_bus is not None:
            self._tracking_bus.mark(nonce)

    def close(self) -> None:
        """Stop listening, join the thread, close the tracked connections."""
        super().close()
        self._keys.close()

    def __repr__(self) -> str:
        mode = "bcast" if self.bcast else "default"
        return f"<TrackingNode {self.name!r} prefix={self._keys.prefix!r} {mode}>"


def _own_keys(keys: Sequence[bytes | str], prefix: str) -> list[str]:
    """The node's keys among a message's Redis keys (the prefix stripped, others skipped)."""
    out = []
    for raw in keys:
        try:
            name = raw.decode() if isinstance(raw, bytes) else raw
        except UnicodeDecodeError:
            continue  # no key of ours: ours are valid UTF-8
        if name.startswith(prefix) and len(name) > len(prefix):
            out.append(name[len(prefix) :])
    return out
