"""CacheNode: the read path (lookup -> load -> fill) and the write path.

A miss is three phases, each callable on its own so a test or the simulator can
put time between them: ``lookup`` (local only), ``load`` (registers a ticket,
then reads the store) and ``fill`` (the fill guard decides). Every message about
a key is recorded on the tickets in flight for it; a fill whose ticket saw a
newer version, or that straddles a flush, is rejected.
"""

from __future__ import annotations

import inspect
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from cachelab.bus import Bus, RedisBus
from cachelab.coherence import Strategy, strategy_for
from cachelab.local import LocalStore, Timer
from cachelab.messages import (
    ABSENT,
    MAX_KEY_CHARS,
    NO_VALUE,
    InvalidMessage,
    Message,
    channel,
    decode,
    decode_value,
    encode,
    encode_value,
    message_head,
    message_prefix,
)
from cachelab.stats import NodeStats
from cachelab.store import RedisStore, Store

Recorder = Callable[[str, str, str, float, float, int, bool], None]
"""Called as ``recorder(node, op, key, start, end, version, hit)`` after each operation."""

EventHook = Callable[[str, str, str, int], None]
"""Called as ``events(node, kind, key, version)``: fill, fill_rejected, evict, flush, gap,
reconnect, disconnect, applied, outdated. ``key`` is "" for node-wide events."""

_MAX_NAMESPACE = 64


@dataclass(eq=False, slots=True)
class Flight:
    """One load in flight: the fill guard's ticket, and the single-flight rendezvous."""

    key: str
    epoch: int
    joinable: bool = True
    seen: int = 0
    value: Any = NO_VALUE
    version: int = 0
    error: BaseException | None = None
    done: bool = False
    waiters: int = 0
    event: threading.Event | None = None


class CacheNode:
    """A near cache of one namespace's Redis keys, kept coherent by versioned messages.

    ``r`` is a redis-py client (``cachelab.connect()``), or any ``Store`` with a ``bus``
    (the simulator's). ``ttl`` (seconds) is the local backstop; ``max_entries`` bounds
    the LRU. The safeguards, all on by default, can each be switched off to show the
    failure they prevent: ``fill_guard`` (reject a fill overtaken by a newer version),
    ``ordering`` (ignore messages not newer than the cached entry), ``tombstones``
    (remember versions of entries that left, for ``tombstone_ttl`` seconds),
    ``gap_detection`` and ``reconnect_flush`` (flush when messages may have been lost).
    ``heartbeat`` is the interval of the subscription's liveness echo (None: off).
    ``recorder`` and ``events`` are hooks for histories and traces.
    """

    def __init__(
        self,
        r: redis.Redis | Store,
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
        heartbeat: float | None = 1.0,
        recorder: Recorder | None = None,
        events: EventHook | None = None,
        bus: Bus | None = None,
    ) -> None:
        _check_name("name", name, 100)
        _check_name("namespace", namespace, _MAX_NAMESPACE)
        self.name = name
        self.namespace = namespace
        self.id = f"{name}#{secrets.token_hex(4)}"
        self.strategy = strategy_for(strategy)
        self.fill_guard = fill_guard
        self.gap_detection = gap_detection
        self.reconnect_flush = reconnect_flush
        self.negative_cache = negative_cache
        self._timer = timer
        self._recorder = recorder
        self._events = events
        self._local = LocalStore(
            max_entries,
            ttl,
            timer=timer,
            tombstones=tombstones,
            tombstone_ttl=tombstone_ttl,
            ordering=ordering,
            on_evict=None if events is None else self._evicted,
        )
        self._entries = self._local.data
        self._hits = 0
        self._misses = 0
        self._store: Store = _store_for(r, namespace)
        self._prefix = message_prefix(namespace, self.id)
        self._lock = threading.Lock()
        self._flights: dict[str, list[Flight]] = {}
        self._epoch = 0
        self._last_seq = 0
        self._coherent = not self.strategy.subscribes
        self._synced = ""
        self._closed = False
        self._counts = dict.fromkeys(NodeStats.COUNTERS, 0)
        self._bus = self._start_bus(r, bus, heartbeat)

    def _start_bus(
        self, r: redis.Redis | Store, bus: Bus | None, heartbeat: float | None
    ) -> Bus | None:
        """Subscribe when the strategy listens; return the bus, or None."""
        if not self.strategy.subscribes:
            return None
        if bus is None:
            if not isinstance(r, redis.Redis):
                raise TypeError("a bus is required when the store is not a Redis client")
            name = f"cachelab-bus-{self.name}"
            bus = RedisBus(r, channel(self.namespace), name=name, heartbeat=heartbeat)
        bus.start(self)
        return bus

    # -- read path ---------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        """Return the value of ``key``: a local hit, or load it from Redis and fill."""
        if self._recorder is None:
            # The hit is inlined and lock-free because it is the product: it must cost no
            # more than cachetools.LRUCache.get. Each dict call is atomic; a hit racing an
            # invalidation returns the value it saw, a read ordered before that change.
            try:
                entry = self._entries[key]
                if entry[2] > self._timer():
                    self._entries.move_to_end(key)
                    self._hits += 1  # may undercount by a few under heavy thread contention
                    value = entry[0]
                    return default if value is ABSENT else value
            except KeyError:  # a miss (or just invalidated): the general path decides
                pass
        value = self._read(key, None)
        return default if value is ABSENT else value

    def get_or_load(self, key: str, loader: Callable[..., Any]) -> Any:
        """Return the cached value, else Redis's, else ``loader()``'s (stored for all nodes).

        ``loader`` is called with no argument, or with the key if it takes one.
        """
        return self._read(key, loader)

    def _read(self, key: str, loader: Callable[..., Any] | None) -> Any:
        """The general read: look up, else load (once per node), and record it."""
        start = self._timer() if self._recorder is not None else 0.0
        hit = self.lookup_entry(key)
        found = hit is not None and not (loader is not None and hit[0] is ABSENT)
        if not found:
            hit = self._miss(key, loader)
            if loader is not None and hit[0] is ABSENT:  # joined a plain get(): ask the loader
                hit = self._miss(key, loader, join=False)
        assert hit is not None
        if self._recorder is not None:
            self._recorder(self.name, "read", key, start, self._timer(), hit[1], found)
        return hit[0]

    def lookup(self, key: str) -> Any:
        """Phase 1: the local value (``ABSENT`` for a cached absence), or ``NO_VALUE``."""
        hit = self.lookup_entry(key)
        return NO_VALUE if hit is None else hit[0]

    def lookup_entry(self, key: str) -> tuple[Any, int] | None:
        """Phase 1 with the version: ``(value, version)``, or None (the simulator records it)."""
        with self._lock:
            hit = self._local.get(key)
            self._hits += hit is not None
            self._misses += hit is None
        return hit

    def load(self, key: str) -> Flight:
        """Phase 2: take a fill-guard ticket, then read ``key`` from the store."""
        _check_key(key)
        flight = self._open(key, joinable=True)
        try:
            self._read_into(flight)
        except BaseException as exc:
            self._close_flight(flight, exc)
            raise
        return flight

    def fill(self, flight: Flight) -> Any:
        """Phase 3: fill the local store unless the guard refuses; return the value."""
        with self._lock:
            self._settle_flight(flight)
        return flight.value

    def load_external(self, flight: Flight, loader: Callable[..., Any]) -> Any:
        """Phase 2b of ``get_or_load``: the store had nothing, so store ``loader()``'s value
        unless the key changed since ``load``; return it (``fill`` settles the ticket)."""
        try:
            self._load_external(flight, loader)
        except BaseException as exc:
            self._close_flight(flight, exc)
            raise
        return flight.value

    def pending(self, key: str) -> Flight | None:
        """The untainted load of ``key`` in flight in this node, if any (single flight)."""
        with self._lock:
            return self._find_joinable(key)

    def _miss(
        self, key: str, loader: Callable[..., Any] | None, join: bool = True
    ) -> tuple[Any, int]:
        """Load ``key`` once per node however many threads miss it together."""
        _check_key(key)
        with self._lock:
            leader = self._find_joinable(key) if join else None
            if leader is None:
                flight = self._open_locked(key, joinable=True)
            else:
                leader.event = leader.event or threading.Event()
                leader.waiters += 1
        if leader is not None:
            return self._wait(leader)
        try:
            self._read_into(flight)
            if loader is not None and flight.value is ABSENT:
                self._load_external(flight, loader)
        except BaseException as exc:
            self._close_flight(flight, exc)
            raise
        self.fill(flight)
        return flight.value, flight.version

    def _find_joinable(self, key: str) -> Flight | None:
        """Under the lock: a load to wait on instead of starting one."""
        for flight in reversed(self._flights.get(key, ())):
            if flight.joinable and not flight.done and self._untainted(flight):
                return flight
        return None

    def _wait(self, leader: Flight) -> tuple[Any, int]:
        """Wait for another thread's load of the same key."""
        assert leader.event is not None
        leader.event.wait()
        if leader.error is not None:
            raise leader.error
        return leader.value, leader.version

    def _read_into(self, flight: Flight) -> None:
        """Read the store into the ticket (one round trip)."""
        encoded, version = self._store.read(flight.key)
        flight.value = ABSENT if encoded is None else decode_value(encoded)
        flight.version = version

    def _load_external(self, flight: Flight, loader: Callable[..., Any]) -> None:
        """Cache-aside: call the loader, then store its value unless the key changed."""
        value = _call_loader(loader, flight.key)
        encoded = encode_value(value)
        fragment = encoded if self.strategy.carries_value else None
        seq = self._store.fill(
            flight.key, encoded, flight.version, self._head("set", flight.key, fragment)
        )
        flight.value = value
        if seq:
            flight.version = seq
            self._count("writes")
        else:  # written since we read: hand back our value, never cache it
            flight.joinable = False
            flight.epoch = -1

    # -- write path --------------------------------------------------------

    def set(self, key: str, value: Any) -> None:
        """Store ``value`` in Redis and publish the change, atomically; keep it locally."""
        _check_key(key)
        encoded = encode_value(value)
        self._write("set", key, encoded, value, "write")

    def delete(self, key: str) -> None:
        """Delete ``key`` everywhere."""
        _check_key(key)
        self._write("del", key, "", ABSENT, "delete")

    def invalidate(self, key: str) -> None:
        """Drop ``key`` from Redis and every node, after you changed its source of truth."""
        _check_key(key)
        self._write("inv", key, "", NO_VALUE, "invalidate")

    def _write(self, op: str, key: str, encoded: str, value: Any, record_as: str) -> None:
        """Run the write script, then fill the writer's own cache through the guard."""
        start = self._timer() if self._recorder is not None else 0.0
        flight = self._open(key, joinable=False)
        fragment = encoded if op == "set" and self.strategy.carries_value else None
        try:
            seq = self._store.write(op, key, encoded, self._head(op, key, fragment))
        except BaseException as exc:
            self._close_flight(flight, exc)
            raise
        with self._lock:
            self._counts["writes"] += 1
            flight.value, flight.version = value, seq
            if value is NO_VALUE or (value is ABSENT and not self.negative_cache):
                self._local.invalidate(key, seq)
                self._finish(flight)
            else:
                self._settle_flight(flight)
        if self._recorder is not None:
            self._recorder(self.name, record_as, key, start, self._timer(), seq, False)

    def _head(self, op: str, key: str, fragment: str | None) -> str | None:
        """The message a write publishes, or None when the strategy is silent."""
        if not self.strategy.subscribes:
            return None
        return message_head(self._prefix, op, key, fragment)

    # -- tickets -----------------------------------------------------------

    def _open(self, key: str, joinable: bool) -> Flight:
        """Register a ticket for ``key``."""
        with self._lock:
            return self._open_locked(key, joinable)

    def _open_locked(self, key: str, joinable: bool) -> Flight:
        """Register a ticket, the lock held."""
        flight = Flight(key, self._epoch, joinable)
        self._flights.setdefault(key, []).append(flight)
        return flight

    def _untainted(self, flight: Flight) -> bool:
        """No message or flush has overtaken this ticket so far."""
        return flight.epoch == self._epoch and flight.seen <= flight.version

    def _settle_flight(self, flight: Flight) -> None:
        """The fill guard: fill unless overtaken, then release the ticket."""
        if flight.done:
            return
        value = flight.value
        if value is ABSENT and not self.negative_cache:
            pass
        elif not self._coherent:
            self._counts["uncached_reads"] += 1
        elif (self.fill_guard and not self._untainted(flight)) or not self._local.fill(
            flight.key, value, flight.version
        ):
            self._counts["stale_fills_rejected"] += 1
            self._emit("fill_rejected", flight.key, flight.version)
        else:
            self._emit("fill", flight.key, flight.version)
        self._finish(flight)

    def _finish(self, flight: Flight) -> None:
        """Release a ticket and wake whoever waits on it."""
        flight.done = True
        tickets = self._flights.get(flight.key)
        if tickets is not None:
            tickets.remove(flight)
            if not tickets:
                del self._flights[flight.key]
        if flight.event is not None:
            flight.event.set()

    def _close_flight(self, flight: Flight, error: BaseException) -> None:
        """Release a ticket whose load failed; whoever waits on it gets the error."""
        with self._lock:
            flight.error = error
            self._finish(flight)

    # -- messages (called by the bus) ---------------------------------------

    def receive(self, raw: bytes) -> None:
        """Decode and handle one raw message; a bad one is counted and dropped."""
        try:
            msg = decode(raw, self.namespace)
        except InvalidMessage:
            self._count("messages_invalid")
            return
        self.handle(msg)

    def handle(self, msg: Message) -> None:
        """Apply one decoded message."""
        with self._lock:
            if msg.op == "sync":
                self._synced = msg.key
                return
            self._track_seq(msg.seq)
            for flight in self._flights.get(msg.key, ()):
                flight.seen = max(flight.seen, msg.seq)
            if msg.src == self.id:
                return
            if self.strategy.apply(self._local, msg):
                self._counts["invalidations_received"] += 1
                self._emit("applied", msg.key, msg.seq)
            else:
                self._counts["messages_outdated"] += 1
                self._emit("outdated", msg.key, msg.seq)

    def _track_seq(self, seq: int) -> None:
        """Gap detection: a skipped sequence number means lost messages, so flush."""
        if self.gap_detection and seq > self._last_seq + 1:
            self._gap(seq)
        self._last_seq = max(self._last_seq, seq)

    def _gap(self, seq: int, forget_floors: bool = False) -> None:
        """Messages were lost (or the server is new): nothing cached can be trusted."""
        self._counts["gaps"] += 1
        self._emit("gap", "", seq)
        self._flush_locked(forget_floors=forget_floors)

    def subscribed(self, first: bool) -> None:
        """The bus is (re)subscribed; after a reconnect, messages may have been lost."""
        seq = self._store.seq()
        with self._lock:
            if self._closed:
                return
            if not first:
                self._counts["reconnects"] += 1
                self._emit("reconnect", "", seq)
                if self.reconnect_flush:
                    self._flush_locked(forget_floors=True)
                elif self.gap_detection and seq != self._last_seq:
                    # Compare sequences instead: writes were missed, or the server is new.
                    self._gap(seq, forget_floors=seq < self._last_seq)
            self._last_seq = seq
            self._coherent = True

    def disconnected(self) -> None:
        """The bus is down: stop trusting and filling the local cache until it is back."""
        with self._lock:
            if self._closed:
                return
            self._counts["disconnects"] += 1
            self._emit("disconnect", "", self._last_seq)
            if self.reconnect_flush:
                self._coherent = False
                self._flush_locked()

    def synced(self, nonce: str) -> bool:
        """Whether the sync marker ``nonce`` has reached this node (or it needs none)."""
        return not self.strategy.subscribes or (self._coherent and self._synced == nonce)

    def publish_sync(self, nonce: str) -> None:
        """Publish a sync marker; a node that has it has handled every earlier message."""
        msg = Message(self.namespace, "sync", nonce, self.id, 0)
        self._store.publish(encode(msg))

    # -- maintenance ---------------------------------------------------------

    def flush(self) -> None:
        """Drop every local entry (and reject every fill in flight)."""
        with self._lock:
            self._flush_locked()

    def _flush_locked(self, forget_floors: bool = False) -> None:
        """Flush, the lock held."""
        self._local.flush(forget_floors=forget_floors)
        self._epoch += 1
        self._counts["flushes"] += 1
        self._emit("flush", "", self._last_seq)

    def _emit(self, kind: str, key: str, version: int) -> None:
        """Tell the ``events`` hook (tracing, animation); it runs under the node lock."""
        if self._events is not None:
            self._events(self.name, kind, key, version)

    def _evicted(self, key: str, version: int) -> None:
        """The local store pushed out its least recently used entry."""
        self._emit("evict", key, version)

    def _count(self, name: str) -> None:
        """Add one to a counter (under the lock: stats stay exact with many threads)."""
        with self._lock:
            self._counts[name] += 1

    @property
    def stats(self) -> NodeStats:
        """A snapshot of this node's counters."""
        with self._lock:
            local = self._local
            return NodeStats.of(self._counts, self._hits, self._misses, local.evictions, len(local))

    def snapshot(self) -> dict[str, tuple[Any, int]]:
        """Every local entry as ``key -> (value, version)``, for display and tests."""
        with self._lock:
            return {key: (value, version) for key, value, version in self._local.items()}

    @property
    def coherent(self) -> bool:
        """Whether this node currently trusts its local cache (its bus is up)."""
        return self._coherent

    def close(self) -> None:
        """Stop listening and join the listener thread. Idempotent."""
        self.stop()
        self.join()

    def stop(self) -> None:
        """Stop listening, without waiting (see ``join``).

        A closed node still reads and writes, through Redis only: with no listener its
        local copies could go stale, so it drops them and stops filling.
        """
        if self._bus is not None:
            self._bus.stop()
            with self._lock:
                self._closed = True
                self._coherent = False
                self._local.flush()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the listener thread to end."""
        if self._bus is not None:
            self._bus.join(timeout)

    def __enter__(self) -> CacheNode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<CacheNode {self.name!r} ns={self.namespace!r} {self.strategy.name}>"


def _store_for(r: redis.Redis | Store, namespace: str) -> Store:
    """The store behind ``r``: Redis through the Lua scripts, or a Store as it is."""
    if isinstance(r, redis.Redis):
        return RedisStore(r, namespace)
    if all(callable(getattr(r, name, None)) for name in ("read", "write", "fill", "seq")):
        return r
    raise TypeError(
        f"expected a redis.Redis client (see cachelab.connect) or a Store, not {type(r).__name__}"
    )


def _check_key(key: str) -> None:
    """Keys are non-empty strings of bounded length."""
    if type(key) is not str:
        raise TypeError(f"key must be str, not {type(key).__name__}")
    if not 0 < len(key) <= MAX_KEY_CHARS:
        raise ValueError(f"key must have 1 to {MAX_KEY_CHARS} characters")


def _check_name(what: str, value: str, limit: int) -> None:
    """Names and namespaces: short, printable, and free of Redis hash-tag braces."""
    if type(value) is not str:
        raise TypeError(f"{what} must be str, not {type(value).__name__}")
    if not 0 < len(value) <= limit or not value.isprintable() or "{" in value or "}" in value:
        raise ValueError(f"{what} must be 1 to {limit} printable characters without braces")


def _call_loader(loader: Callable[..., Any], key: str) -> Any:
    """Call ``loader()``, or ``loader(key)`` when it takes exactly one argument."""
    if not callable(loader):
        raise TypeError(f"loader must be callable, not {type(loader).__name__}")
    try:
        params = inspect.signature(loader).parameters.values()
    except (TypeError, ValueError):
        return loader()
    required = [
        p
        for p in params
        if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    return loader(key) if len(required) == 1 else loader()
