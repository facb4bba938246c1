"""AsyncCacheNode: the asyncio shell around the protocol core (core.py).

The same protocol and the same safeguards as ``CacheNode`` (node.py): every rule lives in
``NodeCore``; this shell only awaits the round trips (``AsyncRedisStore``: the same Lua
scripts) and listens through an asyncio task (``AsyncRedisBus``: the same rules as the
threaded bus). Its structure mirrors node.py's: a miss is ``lookup`` (local only),
``load`` (a fill-guard ticket, then the store's read) and ``fill`` (the guard decides);
a write opens a ticket, awaits its script, then ``wrote`` (or ``write_failed``); a
message is ``handle``d, and questioned ones are ``answer``ed with the store's meta.

No lock: every call into the core happens on the event loop's thread, between two
awaits, so no other coroutine can interleave with it; the core's state is only ever
changed by one core call at a time. Round trips happen between core calls, exactly where
the threaded shell releases its lock. Hooks (events, recorder) run after the core call
that queued them, contained (``hooks.Hooks``). Single flight uses an ``asyncio.Future``
per ticket: concurrent misses of one key load it once. A loader may be a plain callable
or an ``async def`` (awaited); if it raises, the ticket is released and the error reaches
the caller and every joiner. If the task leading a load is cancelled, the ticket is
released and its joiners, which were not cancelled, load again (one of them leads).

Strategies: ``none``, ``invalidate`` and ``update``. ``stream`` and ``tracking`` have no
async shell yet: asking for them raises ``ValueError``.
"""

from __future__ import annotations

import asyncio
import inspect
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import redis.asyncio

from cachelab import validate
from cachelab.async_bus import AsyncRedisBus
from cachelab.coherence import Strategy, strategy_for
from cachelab.contract import Meta
from cachelab.core import Flight, NodeCore, Switches
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
from cachelab.store import AsyncRedisStore

__all__ = ["ASYNC_STRATEGIES", "AsyncCacheNode", "settle"]

ASYNC_STRATEGIES = ("none", "invalidate", "update")


class AsyncCacheNode(NodeFace):
    """A near cache of one namespace's Redis keys over ``redis.asyncio``: ``CacheNode``'s
    protocol, awaited.

    ``r`` is a ``redis.asyncio.Redis`` client (or ``fakeredis.FakeAsyncRedis``). The
    options are ``CacheNode``'s, with the same defaults and meanings; ``verify``,
    ``bus`` and ``stream_maxlen`` are not offered. ``await node.start()`` (or
    ``async with``) subscribes; ``await node.close()`` cancels the listener task and
    awaits it. ``node.peek(key)`` reads the local copy only, synchronously.

    A node belongs to the event loop it was started on: call it from that loop's thread
    only (it takes no lock; see the module's docstring).
    """

    def __init__(
        self,
        r: redis.asyncio.Redis,
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
    ) -> None:
        if not isinstance(r, redis.asyncio.Redis):
            raise TypeError(
                "AsyncCacheNode needs a redis.asyncio.Redis client (or fakeredis.FakeAsyncRedis), "
                f"not {type(r).__name__}; a sync client goes with CacheNode"
            )
        validate.name("name", name, 100)
        namespace = validate.namespace(namespace)
        self.strategy = strategy_for(strategy)
        if self.strategy.name not in ASYNC_STRATEGIES:
            raise ValueError(
                f"AsyncCacheNode supports the strategies {', '.join(map(repr, ASYNC_STRATEGIES))}; "
                f"{self.strategy.name!r} needs the threaded CacheNode"
            )
        switches = switches_of(fill_guard, gap_detection, reconnect_flush, negative_cache, repair)
        self.name = name
        self.namespace = namespace
        self.id = f"{name}#{secrets.token_hex(4)}"
        self._timer = validate.hook("timer", timer) or time.monotonic
        self._recorder = validate.hook("recorder", recorder)
        self._repair_size = validate.count("repair_batch", repair_batch)
        self._heartbeat = validate.seconds("heartbeat", heartbeat, optional=True)
        local = local_store(
            max_entries, ttl, self._timer, tombstones, tombstone_ttl, ordering, self._evicted
        )
        self._entries = local.data  # the inlined hit path reads this dict directly
        self._hits = 0
        self._client = r
        self._signer = choose_signer(secret, None, namespace)
        self._store = AsyncRedisStore(r, namespace, signer=self._signer)
        self._prefix = message_prefix(namespace, self.id)
        self._core = NodeCore(self.id, self.strategy, local, switches, ordered=True)
        self._refusals = RefusalLog(name, namespace)
        hooks = Hooks(name, validate.hook("events", events), recorder, self._timer, self._failed)
        self._emit, self._record = hooks.emit, hooks.record
        self._bus: AsyncRedisBus | None = None
        self._started = self._closed = False

    async def start(self) -> None:
        """Check the namespace (a secret it does not share fails here), then subscribe when
        the strategy listens; return once subscribed. Idempotent."""
        if self._started or self._closed:
            return
        await self._store.meta()
        if self.strategy.subscribes:
            bus = AsyncRedisBus(
                self._client,
                channel(self.namespace),
                name=f"cachelab-bus-{self.name}",
                heartbeat=self._heartbeat,
            )
            await bus.start(self)  # raises (and leaves no task) if it cannot subscribe
            self._bus = bus
        self._started = True

    async def __aenter__(self) -> AsyncCacheNode:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- read path ---------------------------------------------------------

    async def get(self, key: str, default: Any = None) -> Any:
        """Return the value of ``key``: a local hit, or load it from Redis and fill."""
        if self._recorder is None:
            # The hit is inlined: it must cost no more than an async wrapper around
            # cachetools.LRUCache.get (benchmarks/async_costs.py).
            entry = self._entries.get(key)
            if entry is not None and entry[2] > self._timer():
                self._entries.move_to_end(key)
                self._hits += 1
                value = entry[0]
                return default if value is ABSENT else value
        value = await self._read(key, None)
        return default if value is ABSENT else value

    def peek(self, key: str, default: Any = None) -> Any:
        """The local value of ``key``, or ``default``: never a round trip, never a load.

        A hit counts in ``stats.hits`` (and is recorded) as ``get``'s would; a miss counts
        nothing, since the load that usually follows it counts it.
        """
        entry = self._entries.get(key)
        if entry is None or not entry[2] > self._timer():
            return default
        self._entries.move_to_end(key)
        self._hits += 1
        if self._recorder is not None:
            self._record("read", key, self._timer(), entry[1], True, self._core.seq.inc)
        value = entry[0]
        return default if value is ABSENT else value

    async def get_or_load(self, key: str, loader: Callable[..., Any]) -> Any:
        """Return the cached value, else Redis's, else ``loader()``'s (stored for all nodes).

        ``loader`` is called with no argument, or with the key if it takes one; a
        coroutine it returns is awaited. It must not read ``key`` through this node in
        the same task (that raises ``ReentrantLoad``).
        """
        if not callable(loader):
            raise TypeError(f"loader must be callable, not {type(loader).__name__}")
        return await self._read(key, loader)

    async def _read(self, key: str, loader: Callable[..., Any] | None) -> Any:
        """The general read: look up, else load (once per node), and record it."""
        start = self._timer() if self._recorder is not None else 0.0
        hit = self._core.lookup(key)
        inc = self._core.seq.inc
        if hit is not None and not (loader is not None and hit[0] is ABSENT):
            value, version, found = hit[0], hit[1], True
        else:
            flight = await self._miss(key, loader)
            if loader is not None and flight.value is ABSENT:  # joined a plain get()
                flight = await self._miss(key, loader, join=False)
            value, version, inc, found = flight.value, flight.version, flight_inc(flight), False
        if self._recorder is not None:
            self._record("read", key, start, version, found, inc)
        return value

    def lookup(self, key: str) -> Any:
        """Phase 1: the local value (``ABSENT`` for a cached absence), or ``NO_VALUE``."""
        hit = self._core.lookup(key)
        return NO_VALUE if hit is None else hit[0]

    async def load(self, key: str) -> Flight:
        """Phase 2: take a fill-guard ticket, then read ``key`` from the store."""
        validate.key(key)
        flight = self._core.open(key, True, _me())
        try:
            await self._read_into(flight)
        except BaseException as exc:
            self._fail(flight, exc)
            raise
        return flight

    def fill(self, flight: Flight) -> Any:
        """Phase 3: fill the local store unless the guard refuses; return the value."""
        self._core.settle(flight)
        events = self._core.take_events()
        _wake(flight)
        self._emit(events)
        return flight.value

    async def load_external(self, flight: Flight, loader: Callable[..., Any]) -> Any:
        """Phase 2b of ``get_or_load``: the store had nothing, so store ``loader()``'s value
        unless the key changed since ``load``; return it (``fill`` settles the ticket)."""
        try:
            await self._load_external(flight, loader)
        except BaseException as exc:
            self._fail(flight, exc)
            raise
        return flight.value

    def pending(self, key: str) -> Flight | None:
        """The untainted load of ``key`` in flight in this node, if any (single flight)."""
        return self._core.pending(key)

    async def _miss(self, key: str, loader: Callable[..., Any] | None, join: bool = True) -> Flight:
        """Load ``key`` once per node however many tasks miss it together."""
        validate.key(key)
        me = _me()
        while True:
            leader = self._core.joinable(key, me, loader is not None) if join else None
            if leader is None:
                break
            if await _joined(leader):
                return leader
            # the leader was cancelled, not us: look again (join another, or lead)
        flight = self._core.open(key, True, me)
        try:
            await self._read_into(flight)
            if loader is not None and flight.value is ABSENT:
                await self._load_external(flight, loader)
        except BaseException as exc:
            self._fail(flight, exc)
            raise
        self.fill(flight)
        return flight

    async def _read_into(self, flight: Flight) -> None:
        """Read the store into the ticket (one round trip)."""
        reply = await self._store.read(flight.key)
        value = ABSENT if reply.value is None else decode_value(reply.value)
        self._core.loaded(flight, reply, value)
        self._emit(self._core.take_events())

    async def _load_external(self, flight: Flight, loader: Callable[..., Any]) -> None:
        """Cache-aside: call (and await) the loader, then store its value unless the key
        changed."""
        start = self._timer() if self._recorder is not None else 0.0
        with self._core.inside_loader(flight):
            value = call_loader(loader, flight.key)
            if inspect.isawaitable(value):
                value = await value
        encoded = encode_value(value)
        assert flight.reply is not None
        head = write_head(self.strategy, self._prefix, "set", flight.key, encoded)
        try:
            stamp = await self._store.fill(flight.key, encoded, flight.reply, head)
        except BaseException as exc:  # it may have run: nothing of the key stays trusted
            self._core.write_failed(flight, exc)
            _wake(flight)
            raise
        stored = self._core.stored(flight, private(value, encoded), stamp)
        self._emit(self._core.take_events())
        if stored and self._recorder is not None:
            self._record("write", flight.key, start, stamp.seq, False, stamp.inc)

    def _fail(self, flight: Flight, error: BaseException) -> None:
        """Release a ticket whose load failed; whoever waits on it gets the error."""
        self._core.failed(flight, error)
        _wake(flight)

    # -- write path --------------------------------------------------------

    async def set(self, key: str, value: Any) -> None:
        """Store ``value`` in Redis and publish the change, atomically; keep it locally."""
        validate.key(key)
        encoded = encode_value(value)
        await self._write("set", key, encoded, private(value, encoded), "write")

    async def delete(self, key: str) -> None:
        """Delete ``key`` in Redis and on every node; this node caches the absence, so its next
        read answers the default without asking Redis (``invalidate`` caches nothing)."""
        validate.key(key)
        await self._write("del", key, "", ABSENT, "delete")

    async def invalidate(self, key: str) -> None:
        """Drop ``key`` from Redis and every node and cache nothing, after you changed its
        source of truth: the next read asks Redis, then ``get_or_load``'s loader (``delete``
        caches the absence)."""
        validate.key(key)
        await self._write("inv", key, "", NO_VALUE, "invalidate")

    async def _write(self, op: str, key: str, encoded: str, value: Any, record_as: str) -> None:
        """Run the write script, then fill the writer's own cache through the guard: a
        ticket before, the guard after, and nothing of the key trusted if it failed (or
        was cancelled: the script may have run)."""
        head = write_head(self.strategy, self._prefix, op, key, encoded)
        start = self._timer() if self._recorder is not None else 0.0
        flight = self._core.open(key, False, _me())
        try:
            stamp = await self._store.write(op, key, encoded, head)
        except BaseException as exc:
            self._core.write_failed(flight, exc)
            _wake(flight)
            raise
        self._core.wrote(flight, value, stamp)
        events = self._core.take_events()
        _wake(flight)
        self._emit(events)
        if self._recorder is not None:
            self._record(record_as, key, start, stamp.seq, False, stamp.inc)

    # -- messages (called by the bus task) -------------------------------------

    async def receive(self, raw: bytes) -> None:
        """Decode and handle one raw message; a bad one is counted and dropped."""
        try:
            msg = decode(raw, self.namespace, self._signer)
        except InvalidMessage as exc:
            self._core.invalid(exc)
            self._refusals.once(exc)
            return
        await self.handle(msg)

    async def handle(self, msg: Message) -> None:
        """Apply one decoded message, asking the store when the sequence calls for it."""
        question = self._core.handle(msg)
        events = self._core.take_events()
        if question:
            self._emit(events)
            meta = await self._store.meta()
            self._core.answer(msg, meta)
            events = self._core.take_events()
        self._emit(events)
        await self.repair()

    async def subscribed(self, first: bool, meta: Meta | None = None) -> None:
        """The bus is (re)subscribed: re-base on the store's meta, then repair suspects."""
        meta = await self._store.meta() if meta is None else meta
        self._core.subscribed(first, meta)
        self._emit(self._core.take_events())
        await self.repair()

    def disconnected(self) -> None:
        """The bus is down: stop trusting and filling the local cache until it is back."""
        self._core.disconnected()
        self._emit(self._core.take_events())

    async def maintain(self) -> None:
        """Between messages (the bus calls this): finish any repair still owed."""
        await self.repair()

    async def send_beat(self, beat_channel: str, token: str) -> None:
        """Publish a heartbeat that carries the store's (incarnation, seq)."""
        await self._store.mark(beat_channel, message_head(self._prefix, "beat", token, None))

    def synced(self, nonce: str) -> bool:
        """Whether the sync marker ``nonce`` has reached this node, and no repair is owed."""
        core = self._core
        settled = core.coherent and core.synced == nonce and not core.local.suspects
        return not self.strategy.subscribes or settled

    async def publish_sync(self, nonce: str) -> None:
        """Publish a sync marker; a node that has it has handled every earlier message."""
        head = message_head(self._prefix, "sync", nonce, None)
        await self._store.mark(channel(self.namespace), head)

    # -- repair ----------------------------------------------------------------

    async def repair(self) -> None:
        """Revalidate suspect entries against the store, one batch per round trip."""
        while self._core.local.suspects:
            batch = self._core.repair_batch(self._repair_size)
            if batch is None:
                return
            digests = [value_digest(entry[0]) for _, entry in batch.items]
            meta, checks = await self._store.check(batch.keys)
            self._core.repaired(batch, digests, meta, checks)
            self._emit(self._core.take_events())

    # -- hooks -----------------------------------------------------------------

    def _failed(self) -> int:
        """One more hook failure; the count so far."""
        self._core.counts["hook_errors"] += 1
        return self._core.counts["hook_errors"]

    def _evicted(self, key: str, version: int) -> None:
        """The local store pushed out its least recently used entry (inside a core call)."""
        self._core.events.append(("evict", key, version))

    # -- maintenance ---------------------------------------------------------

    def flush(self) -> None:
        """Drop every local entry (and reject every fill in flight)."""
        self._core.flush()
        self._emit(self._core.take_events())

    @property
    def stats(self) -> NodeStats:
        """A snapshot of this node's counters."""
        return self._core.stats(self._hits)

    def snapshot(self) -> dict[str, tuple[Any, int]]:
        """Every trusted local entry as ``key -> (value, version)``, for display and tests."""
        return {key: (value, version) for key, value, version in self._core.local.items()}

    @property
    def switches(self) -> Switches:
        """The safeguards this node runs (fill_guard, gap_detection, ...), read-only."""
        return self._core.switches

    @property
    def coherent(self) -> bool:
        """Whether this node currently trusts its local cache (its bus is up)."""
        return self._core.coherent

    @property
    def listener(self) -> asyncio.Task[None] | None:
        """The listener task (None before ``start``, or for strategy ``none``)."""
        return None if self._bus is None else self._bus.task

    async def close(self) -> None:
        """Cancel the listener task and await it. Idempotent.

        A closed node still reads and writes, through Redis only: with no listener its
        local copies could go stale, so it drops them and stops filling.
        """
        if self._closed:
            return
        self._closed = True
        if self._bus is not None:
            await self._bus.stop()
            self._core.close()

    def __repr__(self) -> str:
        return f"<AsyncCacheNode {self.name!r} ns={self.namespace!r} {self.strategy.name}>"


async def settle(nodes: Iterable[AsyncCacheNode], timeout: float = 5.0) -> bool:
    """True once every node has handled every message published before the call (as
    ``Cluster.settle``: a sync marker, resent every quarter second until the deadline)."""
    members = list(nodes)
    if not members:
        return True
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        nonce = secrets.token_hex(8)
        for node in members if members[0].strategy.own_marker else members[:1]:
            await node.publish_sync(nonce)
        resend = min(deadline, loop.time() + 0.25)
        while loop.time() < resend:
            if all(node.synced(nonce) for node in members):
                return True
            await asyncio.sleep(0.002)
        if loop.time() >= deadline:
            return False


def _me() -> int:
    """Who leads or joins a load: the current task."""
    return id(asyncio.current_task())


def _wake(flight: Flight) -> None:
    """Wake the tasks waiting on a settled ticket."""
    future = flight.event
    if future is not None and not future.done():
        future.set_result(None)


async def _joined(leader: Flight) -> bool:
    """Wait for another task's load of the same key: True when it settled (its error, if
    any, is raised), False when its task was cancelled (the caller loads again).

    The shared future is shielded: cancelling one waiter cancels that waiter only.
    """
    if leader.event is None:
        leader.event = asyncio.get_running_loop().create_future()
    leader.waiters += 1
    future: Awaitable[None] = leader.event
    await asyncio.shield(future)
    if isinstance(leader.error, asyncio.CancelledError):
        return False
    if leader.error is not None:
        raise leader.error
    return True
