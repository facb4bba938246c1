"""Shared fixtures: every behaviour test runs on fakeredis and on a real redis-server.

The real server is one this session starts on a free port (pytest-redis), never
6379. Without ``redis-server`` those tests skip with a reason; under ``CI=true`` a
skip anywhere fails the run, so CI cannot pass without the real-Redis half.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Iterator

import fakeredis
import pytest
import redis
from pytest_redis import factories

from cachelab import CacheNode

IN_CI = os.environ.get("CI", "").lower() == "true"
REDIS_SERVER = shutil.which("redis-server")

_PORTS = (20000, 60000)  # any free port there; never the shared server's 6379
redis_server = factories.redis_proc(executable=REDIS_SERVER or "redis-server", port=_PORTS)
spare_redis_server = factories.redis_proc(executable=REDIS_SERVER or "redis-server", port=_PORTS)

NodeFactory = Callable[..., CacheNode]


def require_redis_server() -> None:
    """Skip (or, under CI, fail) when no redis-server binary is installed."""
    if REDIS_SERVER is None:
        reason = "redis-server is not installed; the real-Redis half of the suite needs it"
        if IN_CI:
            pytest.fail(reason + " (and CI=true makes it mandatory)")
        pytest.skip(reason)


@pytest.fixture(params=["fakeredis", "redis"])
def client(request: pytest.FixtureRequest) -> Iterator[redis.Redis]:
    """A client of a fresh fakeredis server, or of this session's real redis-server."""
    if request.param == "fakeredis":
        yield fakeredis.FakeRedis(server=fakeredis.FakeServer())
        return
    require_redis_server()
    proc = request.getfixturevalue("redis_server")
    real = redis.Redis(host=proc.host, port=proc.port)
    real.flushdb()  # our own throwaway server, never a shared one
    yield real
    real.close()


@pytest.fixture
def real_client(request: pytest.FixtureRequest) -> Iterator[redis.Redis]:
    """A client of this session's real redis-server only."""
    require_redis_server()
    proc = request.getfixturevalue("redis_server")
    real = redis.Redis(host=proc.host, port=proc.port)
    real.flushdb()
    yield real
    real.close()


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


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Every test must leave no cachelab thread running."""
    yield
    alive = [t.name for t in threading.enumerate() if t.name.startswith("cachelab")]
    assert not alive, f"threads still running after the test: {alive}"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI=true a skipped test is a failure: the real-Redis half is mandatory."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    skipped = reporter.stats.get("skipped", [])
    if IN_CI and skipped and session.exitstatus == 0:
        reporter.write_line(f"CI=true: {len(skipped)} test(s) skipped; failing the run", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
