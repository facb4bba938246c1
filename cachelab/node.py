"""CacheNode: the threaded node. Its protocol is the core's plans (plans.py), run by a
driver (driver.py) that holds one lock around each step; the node adds the options, the
bus and the verifier's thread, and the inlined, lock-free hit path.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import redis
from redis.cluster import RedisCluster

from cachelab import validate
from cachelab.auth import Signer
from cachelab.backends import Client, client_secret
from cachelab.bus import Bus, RedisBus
from cachelab.coherence import Strategy
from cachelab.contract import Store
from cachelab.core import ReentrantLoad
from cachelab.driver import ThreadDriver
from cachelab.hooks import EventHook, Recorder
from cachelab.listener import NodeListener
from cachelab.local import Timer
from cachelab.messages import ABSENT, channel
from cachelab.sampler import Sampler, VerifyThread, sampler_for
from cachelab.shardbus import ShardedBus
from cachelab.shell import NodeFace, RefusalLog, choose_signer, local_store, switches_of
from cachelab.stats import NodeStats
from cachelab.store import RedisStore
from cachelab.streambus import StreamBus
from cachelab.strict import Gate

__all__ = ["CacheNode", "EventHook", "Recorder", "ReentrantLoad"]


class CacheNode(NodeFace):
    """A near cache of one namespace's Redis keys, kept coherent by versioned messages.

    ``r`` is a redis-py client (``cachelab.connect()``), or any ``Store`` with a ``bus``
    (the simulator's). ``ttl`` (seconds) is the local backstop; ``max_entries`` bounds
    the LRU. The safeguards, all on by default, can each be switched off to show the
    failure they prevent: ``fill_guard`` (reject a fill overtaken by a newer version),
    ``ordering`` (ignore messages not newer than the cached entry), ``tombstones``
    (remember versions of entries that left, for ``tombstone_ttl`` seconds),
    ``gap_detection`` (question messages that skip numbers, repeat them, or carry another
    incarnation) and ``reconnect_flush`` (stop trusting the cache while the subscription
    is down). ``repair`` revalidates what may be stale in batches of ``repair_batch``
    keys instead of flushing it. ``heartbeat`` is the interval of the subscription's
    liveness echo (None: off; a stream reader needs none). ``secret`` authenticates every
    message of the namespace (every node needs the same one). ``recorder`` and ``events``
    are hooks for histories and traces. ``stream_maxlen`` is the cap of the namespace's
    stream (strategy ``"stream"``, default 10,000 entries; a ``"none"`` node writing to a
    stream namespace gives it too): every node of a namespace gives the same one.
    ``strict=True`` serves a hit only while no message the node was sent waits unread
    (in the socket, half read, or read and not yet applied) and its subscription is live;
    otherwise the read goes to Redis. A hit then costs one poll(2) more; docs/protocol.md
    says what it promises. It needs a pub/sub bus on one server (not ``stream``, not a
    Redis Cluster).

    ``verify`` (a fraction of hits in (0, 1], e.g. 0.01; None, the default, is off)
    measures this node's own staleness: that share of hits is checked against the store
    off the hit path, in batches, by a daemon thread (over a Redis client; with another
    Store, such as the simulator's, its owner calls ``verify_pending``). ``stats`` then
    reports ``verified``, ``verified_stale`` and the estimated stale fraction of hits
    (``stale_estimate``) with its 95 % interval (``stale_interval``). A
    ``cachelab.sampler.Sampler`` may be given instead of a fraction, to choose the random
    source, queue size, batch size and interval. ``cachelab.sampler`` says what is stale.
    """

    def __init__(
        self,
        r: Client | Store,
        name: str = "node",
        namespace: str = "cachelab",
        strategy: str | Strategy = "invalidate",
        max_entries: int = 10_000,
        ttl: float | None = None,
        *,
        timer: Timer = time.monotonic,
        fill_guard: bool = True,
        ordering: bool = True,
        tombstones: bool = True,
        tombstone_ttl: float = 60.0,
        gap_detection: bool = True,
        reconnect_flush: bool = True,
        negative_cache: bool = True,
        repair: bool = True,
        repair_batch: int = 256,
        heartbeat: float | None = 1.0,
        secret: bytes | str | None = None,
        recorder: Recorder | None = None,
        events: EventHook | None = None,
        bus: Bus | None = None,
        verify: float | Sampler | None = None,
        stream_maxlen: int | None = None,
        strict: bool = False,
    ) -> None:
        self._name(name, namespace, strategy, timer, recorder)
        validate.strict(strict, self.strategy, stream_maxlen, isinstance(r, RedisCluster), bus)
        namespace = self.namespace
        if not self.strategy.store_versions and not self._numbers_itself:
            raise ValueError(
                f"strategy {self.strategy.name!r} caches plain keys that anyone writes: "
                "build a cachelab.TrackingNode"
            )
        switches = switches_of(fill_guard, gap_detection, reconnect_flush, negative_cache, repair)
        heartbeat = validate.seconds("heartbeat", heartbeat, optional=True)
        local = local_store(max_entries, ttl, self._timer, tombstones, tombstone_ttl, ordering)
        self._entries = local.data  # the inlined hit path reads this dict directly
        self._hits = 0
        self._sampler = sampler_for(verify, name)
        self._lean = recorder is None and self._sampler is None  # a hit records nothing
        self._bare = self._lean and not strict  # get()'s fastest path
        self._sample_at = self._sampler.gap() if self._sampler is not None else 0
        self._signer = _signer(r, secret, namespace)
        self._stream_maxlen = validate.stream_maxlen(stream_maxlen, self.strategy)
        self._store: Store = self._make_store(r, namespace)
        ordered = bool(getattr(bus, "ordered", True))
        self._core, plans, hooks = self._assemble(local, switches, ordered, events, repair_batch)
        plans.fence = strict  # Redis can answer a writer before it writes the peers' messages
        self._driver = ThreadDriver(self._core, plans, self._store, hooks, self._sampler)
        self._record = hooks.record
        self._store.meta()  # fails now, clearly, on a secret the namespace does not share
        refusals = RefusalLog(name, namespace)
        self._listener = self._make_listener(refusals)
        self._bus = self._start_bus(r, bus, heartbeat, strict)
        self._gate: Gate | None = getattr(self._bus, "gate", None) if strict else None
        self._verifier = self._start_verifier(r)

    _numbers_itself = False  # a TrackingNode numbers what it hears (strategy "tracking")

    def _make_store(self, r: Client | Store, namespace: str) -> Store:
        """The store this node reads and writes through."""
        return _store_for(r, namespace, self._signer, self._stream_maxlen)

    def _make_listener(self, refusals: RefusalLog) -> NodeListener:
        """What the bus calls."""
        return NodeListener(self._driver, self.namespace, self._signer, refusals)

    def _start_bus(
        self, r: Client | Store, bus: Bus | None, heartbeat: float | None, strict: bool
    ) -> Bus | None:
        """Subscribe when the strategy listens; return the bus, or None."""
        if not self.strategy.subscribes:
            return None
        if bus is None:
            name = f"cachelab-bus-{self.name}"
            if isinstance(r, RedisCluster):
                bus = ShardedBus(r, channel(self.namespace), name=name, heartbeat=heartbeat)
            elif not isinstance(r, redis.Redis):
                raise TypeError("a bus is required when the store is not a Redis client")
            elif isinstance(self._store, RedisStore) and self._store.stream_maxlen is not None:
                bus = StreamBus(r, self._store, name=f"cachelab-stream-{self.name}")
            else:
                bus = RedisBus(
                    r, channel(self.namespace), name=name, heartbeat=heartbeat, strict=strict
                )
        # A claimed gap can wait for a marker only where heartbeats come (RedisBus hurries one).
        self._core.defer_gaps = heartbeat is not None and isinstance(bus, RedisBus)
        bus.start(self._listener)
        return bus

    def _start_verifier(self, r: Client | Store) -> VerifyThread | None:
        """Start the thread that verifies sampled hits (``verify=``, over Redis only)."""
        if self._sampler is None or not isinstance(r, redis.Redis | RedisCluster):
            return None
        name = f"cachelab-verify-{self.name}"
        verifier = VerifyThread(self._driver.verify_pending, self._sampler.interval, name)
        verifier.start()
        return verifier

    # -- reads ---------------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        """Return the value of ``key``: a local hit, or load it from Redis and fill."""
        # The hit is inlined and lock-free because it is the product: it must cost no more
        # than cachetools.LRUCache.get. Each dict call is atomic; a hit racing an
        # invalidation returns the value it saw, a read ordered before that change. It is
        # deliberate duplication (as in cachetools): AsyncCacheNode.get inlines the same.
        if self._bare or (self._gate is not None and self._lean and self._quiet()):
            try:  # (strict=True: the same hit, once nothing waits unread)
                entry = self._entries[key]
                if entry[2] > self._timer():
                    self._entries.move_to_end(key)
                    self._hits += 1  # may undercount by a few under heavy thread contention
                    value = entry[0]
                    return default if value is ABSENT else value
            except KeyError:  # a miss (or just invalidated): the general path decides
                pass
        elif self._recorder is None and self._gate is None:  # verify=: plus one comparison
            try:
                entry = self._entries[key]
                if entry[2] > self._timer():
                    self._entries.move_to_end(key)
                    hits = self._hits = self._hits + 1
                    if hits >= self._sample_at:
                        self._sample(key)
                    value = entry[0]
                    return default if value is ABSENT else value
            except KeyError:
                pass
        value = self._read(key, None)
        return default if value is ABSENT else value

    def get_or_load(self, key: str, loader: Callable[..., Any]) -> Any:
        """Return the cached value, else Redis's, else ``loader()``'s (stored for all nodes).

        ``loader`` is called with no argument, or with the key if it takes one. It must
        not read ``key`` through this node (that raises ``ReentrantLoad``).
        """
        if not callable(loader):
            raise TypeError(f"loader must be callable, not {type(loader).__name__}")
        return self._read(key, loader)

    def _read(self, key: str, loader: Callable[..., Any] | None) -> Any:
        """The general read: the read plan, then the sample and the record."""
        validate.key(key)
        start = self._timer() if self._recorder is not None else 0.0
        plan = self._driver.plans.read(key, loader, threading.get_ident(), not self._quiet())
        value, version, inc, hit = self._driver.run(plan)
        if hit and self._sampler is not None and self._sampler.hit():
            self._sampler.offer(key)
        if self._recorder is not None:
            self._record("read", key, start, version, hit, inc)
        return value

    def _sample(self, key: str) -> None:
        """Queue a sampled hit of the inlined path, and pick the next hit to sample."""
        sampler = self._sampler
        assert sampler is not None
        self._sample_at = self._hits + sampler.gap()
        sampler.offer(key)

    # -- writes --------------------------------------------------------------

    def set(self, key: str, value: Any) -> None:
        """Store ``value`` in Redis and publish the change, atomically; keep it locally."""
        self._write("set", key, value)

    def delete(self, key: str) -> None:
        """Delete ``key`` in Redis and on every node; this node caches the absence, so its next
        read answers the default without asking Redis (``invalidate`` caches nothing)."""
        self._write("del", key, None)

    def invalidate(self, key: str) -> None:
        """Drop ``key`` from Redis and every node and cache nothing, after you changed its
        source of truth: the next read asks Redis, then ``get_or_load``'s loader (``delete``
        caches the absence)."""
        self._write("inv", key, None)

    def _write(self, op: str, key: str, value: Any) -> None:
        """Run the write plan."""
        validate.key(key)
        self._driver.run(self._driver.plans.write(op, key, value, threading.get_ident()))

    # -- settling (Cluster.settle) ---------------------------------------------

    def _publish_sync(self, nonce: str) -> None:
        """Publish a sync marker; a node that has it has handled every earlier message."""
        self._driver.publish_sync(self.namespace, nonce)

    # -- maintenance ---------------------------------------------------------

    def _failed(self) -> int:
        """One more hook failure (counted under the lock: hooks run on many threads)."""
        with self._driver.lock:
            return super()._failed()

    def flush(self) -> None:
        """Drop every local entry (and reject every fill in flight)."""
        self._driver.now(self._core.flush)

    @property
    def sampler(self) -> Sampler | None:
        """The staleness sampler (``verify=``), or None."""
        return self._sampler

    @property
    def stats(self) -> NodeStats:
        """A snapshot of this node's counters."""
        with self._driver.lock:
            stats = self._core.stats(self._hits)
        if self._sampler is not None:
            stats = replace(stats, **self._sampler.counts())
        return stats

    def snapshot(self) -> dict[str, tuple[Any, int]]:
        """Every trusted local entry as ``key -> (value, version)``, for display and tests."""
        with self._driver.lock:
            return {key: (value, version) for key, value, version in self._core.local.items()}

    def close(self) -> None:
        """Stop listening and verifying, and join their threads. Idempotent."""
        self.stop()
        self.join()

    def stop(self) -> None:
        """Stop listening, without waiting (see ``join``).

        A closed node still reads and writes, through Redis only: with no listener its
        local copies could go stale, so it drops them and stops filling.
        """
        if self._verifier is not None:
            self._verifier.stop()
        if self._bus is not None:
            self._bus.stop()
            self._driver.now(self._core.close)

    def join(self, timeout: float | None = None) -> None:
        """Wait for the listener (and verifier) thread to end."""
        if self._verifier is not None:
            self._verifier.join(timeout)
        if self._bus is not None:
            self._bus.join(timeout)

    def __enter__(self) -> CacheNode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<CacheNode {self.name!r} ns={self.namespace!r} {self.strategy.name}>"


def _signer(r: Client | Store, secret: bytes | str | None, namespace: str) -> Signer | None:
    """The namespace's signer, from ``secret=`` or from ``connect(secret=...)``."""
    given = client_secret(r) if isinstance(r, redis.Redis | RedisCluster) else None
    return choose_signer(secret, given, namespace)


def _store_for(
    r: Client | Store, namespace: str, signer: Signer | None, stream_maxlen: int | None
) -> Store:
    """The store behind ``r``: Redis through the Lua scripts, or a Store as it is."""
    if isinstance(r, RedisCluster) and stream_maxlen is not None:
        raise ValueError(
            "strategy 'stream' does not run on a Redis Cluster yet: its readers follow one "
            "stream on one server; use 'invalidate' or 'update' there"
        )
    if isinstance(r, redis.Redis | RedisCluster):
        return RedisStore(r, namespace, signer=signer, stream_maxlen=stream_maxlen)
    if all(callable(getattr(r, op, None)) for op in ("read", "write", "fill", "meta", "check")):
        return r
    raise TypeError(
        f"expected a redis.Redis client (see cachelab.connect) or a Store, not {type(r).__name__}"
    )
