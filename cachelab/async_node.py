"""AsyncCacheNode: the asyncio node. Its protocol is the core's plans (plans.py), the same
as ``CacheNode``'s, run by the asyncio driver (async_driver.py), which awaits each round
trip (``AsyncRedisStore``: the same Lua scripts); it listens through an asyncio task
(``AsyncRedisBus``: the same rules as the threaded bus). The node adds the options, the
task, and the inlined hit path.

A loader may be a plain callable or an ``async def`` (awaited); if it raises, the ticket
is released and the error reaches the caller and every joiner. If the task leading a load
is cancelled, the ticket is released and its joiners, which were not cancelled, load
again (one of them leads).

Strategies: ``none``, ``invalidate`` and ``update``. ``stream`` and ``tracking`` have no
asyncio bus yet: asking for them raises ``ValueError``.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Iterable
from typing import Any

import redis.asyncio

from cachelab import validate
from cachelab.async_bus import AsyncRedisBus
from cachelab.async_driver import AsyncDriver
from cachelab.coherence import Strategy
from cachelab.hooks import EventHook, Recorder
from cachelab.listener import NodeListener
from cachelab.local import Timer
from cachelab.messages import ABSENT, channel
from cachelab.shell import NodeFace, RefusalLog, choose_signer, local_store, switches_of
from cachelab.stats import NodeStats
from cachelab.store import AsyncRedisStore
from cachelab.strict import Gate

__all__ = ["ASYNC_STRATEGIES", "AsyncCacheNode", "settle"]

ASYNC_STRATEGIES = ("none", "invalidate", "update")


class AsyncCacheNode(NodeFace):
    """A near cache of one namespace's Redis keys over ``redis.asyncio``: ``CacheNode``'s
    protocol, awaited.

    ``r`` is a ``redis.asyncio.Redis`` client (or ``fakeredis.FakeAsyncRedis``). The
    options are ``CacheNode``'s, with the same defaults and meanings; ``verify``,
    ``bus`` and ``stream_maxlen`` are not offered. ``await node.start()`` (or
    ``async with``) subscribes; ``await node.close()`` cancels the listener task and
    awaits it. ``node.peek(key)`` reads the local copy only, synchronously. ``strict``
    is ``CacheNode``'s: no hit while a message may wait unread (in the socket, in the
    stream reader or parser, or with the listener task).

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
        strict: bool = False,
    ) -> None:
        if not isinstance(r, redis.asyncio.Redis):
            raise TypeError(
                "AsyncCacheNode needs a redis.asyncio.Redis client (or fakeredis.FakeAsyncRedis), "
                f"not {type(r).__name__}; a sync client goes with CacheNode"
            )
        self._name(name, namespace, strategy, timer, recorder)
        namespace = self.namespace
        if self.strategy.name not in ASYNC_STRATEGIES:
            raise ValueError(
                f"AsyncCacheNode supports the strategies {', '.join(map(repr, ASYNC_STRATEGIES))}; "
                f"{self.strategy.name!r} needs the threaded CacheNode"
            )
        validate.strict(strict, self.strategy, None, False, None)
        self._strict = strict
        self._gate: Gate | None = None  # strict=True: the bus's, once started
        switches = switches_of(fill_guard, gap_detection, reconnect_flush, negative_cache, repair)
        self._heartbeat = validate.seconds("heartbeat", heartbeat, optional=True)
        local = local_store(max_entries, ttl, self._timer, tombstones, tombstone_ttl, ordering)
        self._entries = local.data  # the inlined hit path reads this dict directly
        self._hits = 0
        self._client = r
        signer = choose_signer(secret, None, namespace)
        self._store = AsyncRedisStore(r, namespace, signer=signer)
        self._core, plans, hooks = self._assemble(local, switches, True, events, repair_batch)
        self._record = hooks.record
        plans.fence = strict  # see CacheNode
        self._driver = AsyncDriver(self._core, plans, self._store, hooks)
        self._listener = NodeListener(self._driver, namespace, signer, RefusalLog(name, namespace))
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
                strict=self._strict,
            )
            self._gate = bus.gate
            self._core.defer_gaps = self._heartbeat is not None  # see CacheNode._start_bus
            await bus.start(self._listener)  # raises (and leaves no task) if it cannot subscribe
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
            # cachetools.LRUCache.get (benchmarks/async_costs.py). Deliberate duplication,
            # as in cachetools: CacheNode.get inlines the same.
            entry = self._entries.get(key)
            quiet = self._gate is None or self._quiet()
            if entry is not None and entry[2] > self._timer() and quiet:
                self._entries.move_to_end(key)
                self._hits += 1
                value = entry[0]
                return default if value is ABSENT else value
        value = await self._read(key, None)
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
        """The general read: the read plan, then the record."""
        validate.key(key)
        start = self._timer() if self._recorder is not None else 0.0
        plan = self._driver.plans.read(key, loader, _me(), not self._quiet())
        value, version, inc, hit = await self._driver.run(plan)
        if self._recorder is not None:
            self._record("read", key, start, version, hit, inc)
        return value

    # -- writes --------------------------------------------------------------

    async def set(self, key: str, value: Any) -> None:
        """Store ``value`` in Redis and publish the change, atomically; keep it locally."""
        await self._write("set", key, value)

    async def delete(self, key: str) -> None:
        """Delete ``key`` in Redis and on every node; this node caches the absence, so its next
        read answers the default without asking Redis (``invalidate`` caches nothing)."""
        await self._write("del", key, None)

    async def invalidate(self, key: str) -> None:
        """Drop ``key`` from Redis and every node and cache nothing, after you changed its
        source of truth: the next read asks Redis, then ``get_or_load``'s loader (``delete``
        caches the absence)."""
        await self._write("inv", key, None)

    async def _write(self, op: str, key: str, value: Any) -> None:
        """Run the write plan (a cancelled write leaves nothing of its key trusted)."""
        validate.key(key)
        await self._driver.run(self._driver.plans.write(op, key, value, _me()))

    # -- settling (``settle``) ------------------------------------------------------

    async def _publish_sync(self, nonce: str) -> None:
        """Publish a sync marker; a node that has it has handled every earlier message."""
        await self._driver.publish_sync(self.namespace, nonce)

    # -- maintenance ---------------------------------------------------------

    def flush(self) -> None:
        """Drop every local entry (and reject every fill in flight)."""
        self._driver.now(self._core.flush)

    @property
    def stats(self) -> NodeStats:
        """A snapshot of this node's counters."""
        return self._core.stats(self._hits)

    def snapshot(self) -> dict[str, tuple[Any, int]]:
        """Every trusted local entry as ``key -> (value, version)``, for display and tests."""
        return {key: (value, version) for key, value, version in self._core.local.items()}

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
            self._driver.now(self._core.close)

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
            await node._publish_sync(nonce)
        resend = min(deadline, loop.time() + 0.25)
        while loop.time() < resend:
            if all(node._synced(nonce) for node in members):
                return True
            await asyncio.sleep(0.002)
        if loop.time() >= deadline:
            return False


def _me() -> int:
    """Who leads or joins a load: the current task."""
    return id(asyncio.current_task())
