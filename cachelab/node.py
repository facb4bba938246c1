"""CacheNode: the threaded shell around the protocol core (core.py).

The shell owns what the core must not: one lock, the round trips to Redis, the
listener's callbacks, and user code (loaders, hooks), which always runs outside the
lock and can neither deadlock the node nor kill its thread. The hit path is inlined
here, lock-free. A miss is three phases, each callable on its own so a test or the
simulator can put time between them: ``lookup`` (local only), ``load`` (registers a
ticket, then reads the store) and ``fill`` (the fill guard decides).
"""

from __future__ import annotations

import importlib
import inspect
import secrets
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
from cachelab.coherence import Strategy, strategy_for
from cachelab.contract import Meta, Stamp, Store
from cachelab.core import Flight, NodeCore, ReentrantLoad, Switches
from cachelab.hooks import EventHook, Hooks, Recorder, call_loader
from cachelab.local import Timer
from cachelab.messages import (
    ABSENT,
    NO_VALUE,
    InvalidMessage,
    Message,
    channel,
    decode,
    decode_value,
    encode_value,
    message_head,
    message_prefix,
    value_digest,
)
from cachelab.sampler import Sampler, VerifyThread, sampler_for
from cachelab.shardbus import ShardedBus
from cachelab.shell import (
    NodeFace,
    RefusalLog,
    choose_signer,
    flight_inc,
    local_store,
    private,
    switches_of,
    write_head,
)
from cachelab.stats import NodeStats
from cachelab.store import RedisStore
from cachelab.streambus import StreamBus

__all__ = ["CacheNode", "EventHook", "Flight", "Recorder", "ReentrantLoad"]


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

    ``verify`` (a fraction of hits in (0, 1], e.g. 0.01; None, the default, is off)
    measures this node's own staleness: that share of hits is checked against the store
    off the hit path, in batches, by a daemon thread (over a Redis client; with another
    Store, such as the simulator's, its owner calls ``verify_pending``). ``stats`` then
    reports ``verified``, ``verified_stale`` and the estimated stale fraction of hits
    (``stale_estimate``) with its 95 % interval (``stale_interval``). A
    ``cachelab.sampler.Sampler`` may be given instead of a fraction, to choose the random
    source, queue size, batch size and interval. ``cachelab.sampler`` says what is stale.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> CacheNode:
        """``CacheNode(r, strategy="tracking")`` is a TrackingNode: the strategy picks the shell."""
        chosen = kwargs.get("strategy", args[3] if len(args) > 3 else None)
        shell = None
        if chosen is not None and cls is CacheNode:
            strategy = strategy_for(chosen)
            if strategy.shell_module is not None:  # its import sets strategy.shell
                importlib.import_module(strategy.shell_module)
            shell = strategy.shell
        node: CacheNode = super().__new__(shell or cls)
        return node

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
    ) -> None:
        validate.name("name", name, 100)
        namespace = validate.namespace(namespace)
        switches = switches_of(fill_guard, gap_detection, reconnect_flush, negative_cache, repair)
        self.name = name
        self.namespace = namespace
        self.id = f"{name}#{secrets.token_hex(4)}"
        self.strategy = strategy_for(strategy)
        self._timer = validate.hook("timer", timer) or time.monotonic
        self._recorder = validate.hook("recorder", recorder)  # the hit path checks it inline
        self._repair_size = validate.count("repair_batch", repair_batch)
        heartbeat = validate.seconds("heartbeat", heartbeat, optional=True)
        local = local_store(
            max_entries, ttl, self._timer, tombstones, tombstone_ttl, ordering, self._evicted
        )
        self._entries = local.data  # the inlined hit path reads this dict directly
        self._hits = 0
        self._sampler = sampler_for(verify, name)
        self._bare = recorder is None and self._sampler is None  # get()'s fastest path
        self._sample_at = self._sampler.gap() if self._sampler is not None else 0
        self._signer = _signer(r, secret, namespace)
        self._stream_maxlen = validate.stream_maxlen(stream_maxlen, self.strategy)
        self._store: Store = self._make_store(r, namespace)
        self._prefix = message_prefix(namespace, self.id)
        ordered = bool(getattr(bus, "ordered", True))
        self._core = NodeCore(self.id, self.strategy, local, switches, ordered)
        self._lock = threading.Lock()
        self._refusals = RefusalLog(name, namespace)
        hooks = Hooks(name, validate.hook("events", events), recorder, self._timer, self._failed)
        self._emit, self._record = hooks.emit, hooks.record
        self._store.meta()  # fails now, clearly, on a secret the namespace does not share
        self._bus = self._start_bus(r, bus, heartbeat)
        self._verifier = self._start_verifier(r)

    def _make_store(self, r: Client | Store, namespace: str) -> Store:
        """The store this node reads and writes through."""
        return _store_for(r, namespace, self._signer, self._stream_maxlen)

    def _start_bus(self, r: Client | Store, bus: Bus | None, heartbeat: float | None) -> Bus | None:
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
                bus = RedisBus(r, channel(self.namespace), name=name, heartbeat=heartbeat)
        bus.start(self)
        return bus

    def _start_verifier(self, r: Client | Store) -> VerifyThread | None:
        """Start the thread that verifies sampled hits (``verify=``, over Redis only)."""
        if self._sampler is None or not isinstance(r, redis.Redis | RedisCluster):
            return None
        name = f"cachelab-verify-{self.name}"
        verifier = VerifyThread(self.verify_pending, self._sampler.interval, name)
        verifier.start()
        return verifier

    # -- read path ---------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        """Return the value of ``key``: a local hit, or load it from Redis and fill."""
        if self._bare:
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
        elif self._recorder is None:  # verify=: the same hit, plus one comparison
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
        """The general read: look up, else load (once per node), and record it."""
        start = self._timer() if self._recorder is not None else 0.0
        with self._lock:
            hit = self._core.lookup(key)
            inc = self._core.seq.inc
        if hit is not None and not (loader is not None and hit[0] is ABSENT):
            value, version, found = hit[0], hit[1], True
            if self._sampler is not None and self._sampler.hit():
                self._sampler.offer(key)
        else:
            flight = self._miss(key, loader)
            if loader is not None and flight.value is ABSENT:  # joined a plain get()
                flight = self._miss(key, loader, join=False)
            value, version, inc, found = flight.value, flight.version, flight_inc(flight), False
        if self._recorder is not None:
            self._record("read", key, start, version, found, inc)
        return value

    def lookup(self, key: str) -> Any:
        """Phase 1: the local value (``ABSENT`` for a cached absence), or ``NO_VALUE``."""
        hit = self.lookup_entry(key)
        return NO_VALUE if hit is None else hit[0]

    def lookup_entry(self, key: str) -> tuple[Any, int] | None:
        """Phase 1 with the version: ``(value, version)``, or None (the simulator records it)."""
        with self._lock:
            return self._core.lookup(key)

    def load(self, key: str) -> Flight:
        """Phase 2: take a fill-guard ticket, then read ``key`` from the store."""
        validate.key(key)
        with self._lock:
            flight = self._open(key, True, threading.get_ident())
        try:
            self._read_into(flight)
        except BaseException as exc:
            self._fail(flight, exc)
            raise
        return flight

    def fill(self, flight: Flight) -> Any:
        """Phase 3: fill the local store unless the guard refuses; return the value."""
        with self._lock:
            self._core.settle(flight)
            events = self._core.take_events()
        _wake(flight)
        self._emit(events)
        return flight.value

    def load_external(self, flight: Flight, loader: Callable[..., Any]) -> Any:
        """Phase 2b of ``get_or_load``: the store had nothing, so store ``loader()``'s value
        unless the key changed since ``load``; return it (``fill`` settles the ticket)."""
        try:
            self._load_external(flight, loader)
        except BaseException as exc:
            self._fail(flight, exc)
            raise
        return flight.value

    def pending(self, key: str) -> Flight | None:
        """The untainted load of ``key`` in flight in this node, if any (single flight)."""
        with self._lock:
            return self._core.pending(key)

    def _miss(self, key: str, loader: Callable[..., Any] | None, join: bool = True) -> Flight:
        """Load ``key`` once per node however many threads miss it together."""
        validate.key(key)
        me = threading.get_ident()
        with self._lock:
            leader = self._core.joinable(key, me, loader is not None) if join else None
            if leader is None:
                flight = self._open(key, True, me)
            else:
                leader.event = leader.event or threading.Event()
                leader.waiters += 1
        if leader is not None:
            return _wait(leader)
        try:
            self._read_into(flight)
            if loader is not None and flight.value is ABSENT:
                self._load_external(flight, loader)
        except BaseException as exc:
            self._fail(flight, exc)
            raise
        self.fill(flight)
        return flight

    def _open(self, key: str, joinable: bool, owner: int) -> Flight:
        """Take a ticket for a load or write of ``key`` (under the lock)."""
        return self._core.open(key, joinable, owner)

    def _read_into(self, flight: Flight) -> None:
        """Read the store into the ticket (one round trip, outside the lock)."""
        reply = self._store.read(flight.key)
        value = ABSENT if reply.value is None else decode_value(reply.value)
        with self._lock:
            self._core.loaded(flight, reply, value)
            events = self._core.take_events()
        self._emit(events)

    def _load_external(self, flight: Flight, loader: Callable[..., Any]) -> None:
        """Cache-aside: call the loader, then store its value unless the key changed."""
        start = self._timer() if self._recorder is not None else 0.0
        with self._core.inside_loader(flight):
            value = call_loader(loader, flight.key)
        try:
            stamp, own = self._fill_store(flight, value)
        except BaseException as exc:  # it may have run: nothing of the key stays trusted
            with self._lock:
                self._core.write_failed(flight, exc)
            _wake(flight)
            raise
        with self._lock:
            stored = self._core.stored(flight, own, stamp)
            events = self._core.take_events()
        self._emit(events)
        if stored and self._recorder is not None:
            self._record("write", flight.key, start, stamp.seq, False, stamp.inc)

    def _fill_store(self, flight: Flight, value: Any) -> tuple[Stamp, Any]:
        """Store a loaded value unless the key changed since ``load``; the stamp and our copy."""
        encoded = encode_value(value)
        assert flight.reply is not None
        head = self._head("set", flight.key, encoded)
        stamp = self._store.fill(flight.key, encoded, flight.reply, head)
        return stamp, private(value, encoded)

    def _fail(self, flight: Flight, error: BaseException) -> None:
        """Release a ticket whose load failed; whoever waits on it gets the error."""
        with self._lock:
            self._core.failed(flight, error)
        _wake(flight)

    # -- write path --------------------------------------------------------

    def set(self, key: str, value: Any) -> None:
        """Store ``value`` in Redis and publish the change, atomically; keep it locally."""
        validate.key(key)
        encoded = encode_value(value)
        self._write("set", key, encoded, private(value, encoded), "write")

    def delete(self, key: str) -> None:
        """Delete ``key`` in Redis and on every node; this node caches the absence, so its next
        read answers the default without asking Redis (``invalidate`` caches nothing)."""
        validate.key(key)
        self._write("del", key, "", ABSENT, "delete")

    def invalidate(self, key: str) -> None:
        """Drop ``key`` from Redis and every node and cache nothing, after you changed its
        source of truth: the next read asks Redis, then ``get_or_load``'s loader (``delete``
        caches the absence)."""
        validate.key(key)
        self._write("inv", key, "", NO_VALUE, "invalidate")

    def _write(self, op: str, key: str, encoded: str, value: Any, record_as: str) -> None:
        """Run the write script, then fill the writer's own cache through the guard."""
        head = self._head(op, key, encoded)
        self._written(key, value, record_as, lambda _: self._store.write(op, key, encoded, head))

    def _written(
        self, key: str, value: Any, record_as: str, send: Callable[[Flight], Stamp]
    ) -> None:
        """The rules of every write around its round trip ``send``: a ticket before, the
        guard after, and nothing of the key trusted if it failed."""
        start = self._timer() if self._recorder is not None else 0.0
        with self._lock:
            flight = self._open(key, False, threading.get_ident())
        try:
            stamp = send(flight)
        except BaseException as exc:
            with self._lock:
                self._core.write_failed(flight, exc)
            _wake(flight)
            raise
        with self._lock:
            self._core.wrote(flight, value, stamp)
            events = self._core.take_events()
        _wake(flight)
        self._emit(events)
        if self._recorder is not None:
            self._record(record_as, key, start, stamp.seq, False, stamp.inc)

    def _head(self, op: str, key: str, encoded: str) -> str:
        """The message a write publishes (``shell.write_head``)."""
        return write_head(self.strategy, self._prefix, op, key, encoded)

    # -- messages (called by the bus) ---------------------------------------

    def receive(self, raw: bytes) -> None:
        """Decode and handle one raw message; a bad one is counted and dropped."""
        try:
            msg = decode(raw, self.namespace, self._signer)
        except InvalidMessage as exc:
            with self._lock:
                self._core.invalid(exc)
            self._refusals.once(exc)
            return
        self.handle(msg)

    def handle(self, msg: Message) -> None:
        """Apply one decoded message, asking the store when the sequence calls for it."""
        with self._lock:
            question = self._core.handle(msg)
            events = self._core.take_events()
        if question:
            self._emit(events)
            meta = self._store.meta()
            with self._lock:
                self._core.answer(msg, meta)
                events = self._core.take_events()
        self._emit(events)
        self.repair()

    def subscribed(self, first: bool, meta: Meta | None = None) -> None:
        """The bus is (re)subscribed: re-base on the store's meta (read now unless the bus
        read it), then repair suspects."""
        meta = self._store.meta() if meta is None else meta
        with self._lock:
            self._core.subscribed(first, meta)
            events = self._core.take_events()
        self._emit(events)
        self.repair()

    def replayed(self) -> None:
        """The stream bus read on up to where the stream stood at its reconnect: trust again
        what the blip held, or repair what a gap makes unsure."""
        with self._lock:
            self._core.replayed()
            events = self._core.take_events()
        self._emit(events)
        self.repair()

    def disconnected(self) -> None:
        """The bus is down: stop trusting and filling the local cache until it is back."""
        with self._lock:
            self._core.disconnected()
            events = self._core.take_events()
        self._emit(events)

    def maintain(self) -> None:
        """Between messages (the bus calls this): finish any repair still owed."""
        self.repair()

    def send_beat(self, beat_channel: str, token: str) -> None:
        """Publish a heartbeat that carries the store's (incarnation, seq)."""
        self._store.mark(beat_channel, message_head(self._prefix, "beat", token, None))

    def synced(self, nonce: str) -> bool:
        """Whether the sync marker ``nonce`` has reached this node, and no repair is owed
        (a marker read in a stream's replay may come before the gap's repair)."""
        core = self._core
        settled = core.coherent and core.synced == nonce and not core.local.suspects
        return not self.strategy.subscribes or settled

    def publish_sync(self, nonce: str) -> None:
        """Publish a sync marker; a node that has it has handled every earlier message."""
        self._store.mark(channel(self.namespace), message_head(self._prefix, "sync", nonce, None))

    # -- repair ----------------------------------------------------------------

    def repair(self) -> None:
        """Revalidate suspect entries against the store, one batch per round trip."""
        while self._core.local.suspects:  # unlocked peek: the batch itself is taken locked
            with self._lock:
                batch = self._core.repair_batch(self._repair_size)
            if batch is None:
                return
            digests = [value_digest(entry[0]) for _, entry in batch.items]
            meta, checks = self._store.check(batch.keys)
            with self._lock:
                self._core.repaired(batch, digests, meta, checks)
                events = self._core.take_events()
            self._emit(events)

    # -- staleness sampling (verify=) ------------------------------------------------

    def _sample(self, key: str) -> None:
        """Queue a sampled hit of the inlined path, and pick the next hit to sample."""
        sampler = self._sampler
        assert sampler is not None
        self._sample_at = self._hits + sampler.gap()
        sampler.offer(key)

    def offer_sample(self, key: str) -> bool:
        """A hit on ``key``: queue it if the sampler picks it (True if queued). For shells
        that look entries up themselves, as the simulator does."""
        sampler = self._sampler
        return sampler is not None and sampler.hit() and sampler.offer(key)

    @property
    def sampler(self) -> Sampler | None:
        """The staleness sampler (``verify=``), or None."""
        return self._sampler

    def verify_pending(self, limit: int | None = None) -> int:
        """Verify one batch of sampled hits (at most ``limit``, default the sampler's batch
        size) in one round trip; return how many were judged.

        The node's thread calls this every ``Sampler.interval`` seconds; the simulator at
        virtual times. A store error is counted (``verify_errors``, and the batch in
        ``verify_dropped``), then raised.
        """
        sampler = self._sampler
        keys = sampler.take(limit) if sampler is not None else ()
        if not keys:
            return 0
        assert sampler is not None
        try:
            meta, checks = self._store.check(keys)
            entries = self._entries
            with self._lock:
                now, inc = self._timer(), self._core.seq.inc
                held = [entries.get(key) for key in keys]
            live = [entry if entry is not None and entry[2] > now else None for entry in held]
            sampler.judge(meta, checks, live, inc, self._digest)
        except BaseException:
            sampler.failed(len(keys))
            raise
        return len(keys)

    def _digest(self, value: Any) -> str:
        """What ``Store.check`` gives for a held ``value``: the SHA-1 of its encoding."""
        return value_digest(value)

    # -- hooks and logs ------------------------------------------------------------

    def _failed(self) -> int:
        """One more hook failure; the count so far."""
        with self._lock:
            self._core.counts["hook_errors"] += 1
            return self._core.counts["hook_errors"]

    def _evicted(self, key: str, version: int) -> None:
        """The local store pushed out its least recently used entry (under the lock)."""
        self._core.events.append(("evict", key, version))

    # -- maintenance ---------------------------------------------------------

    def flush(self) -> None:
        """Drop every local entry (and reject every fill in flight)."""
        with self._lock:
            self._core.flush()
            events = self._core.take_events()
        self._emit(events)

    @property
    def stats(self) -> NodeStats:
        """A snapshot of this node's counters."""
        with self._lock:
            stats = self._core.stats(self._hits)
        if self._sampler is not None:
            stats = replace(stats, **self._sampler.counts())
        return stats

    def snapshot(self) -> dict[str, tuple[Any, int]]:
        """Every trusted local entry as ``key -> (value, version)``, for display and tests."""
        with self._lock:
            return {key: (value, version) for key, value, version in self._core.local.items()}

    @property
    def switches(self) -> Switches:
        """The safeguards this node runs (fill_guard, gap_detection, ...), read-only."""
        return self._core.switches

    @property
    def coherent(self) -> bool:
        """Whether this node currently trusts its local cache (its bus is up)."""
        return self._core.coherent

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
            with self._lock:
                self._core.close()

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


def init_signature(cls: type) -> inspect.Signature:
    """The signature of ``cls(...)`` as ``__init__`` states it (``__new__`` only dispatches)."""
    init = inspect.signature(cls.__init__)  # type: ignore[misc]
    return init.replace(parameters=list(init.parameters.values())[1:])


# help() and the simulator's option list must see __init__'s parameters, not __new__'s.
CacheNode.__signature__ = init_signature(CacheNode)  # type: ignore[attr-defined]


def _wake(flight: Flight) -> None:
    """Wake the threads waiting on a settled ticket."""
    if flight.event is not None:
        flight.event.set()


def _wait(leader: Flight) -> Flight:
    """Wait for another thread's load of the same key."""
    assert leader.event is not None
    leader.event.wait()
    if leader.error is not None:
        raise leader.error
    return leader


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
