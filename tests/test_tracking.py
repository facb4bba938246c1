"""Strategy "tracking": keys anyone writes, invalidated by the server (Redis 7.0 and Valkey 8.1).

Every test here drives the protocol's phases itself and waits on markers, never on luck:
``settle`` sends a PING down each node's invalidation connection and waits for its PONG,
which the server queues after every invalidation it sent before.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import fakeredis
import pytest
import redis

import cachelab
from cachelab import CacheNode, Cluster, TrackingNode, TrackingUnsupported
from cachelab.check import check
from cachelab.harness.servers import ServerProcess
from cachelab.history import READ, WRITE, Op
from cachelab.messages import NO_VALUE
from cachelab.stripes import make_node, node_class
from cachelab.tracking_redis import INVALIDATE_CHANNEL, resp2_client
from tests.helpers import phases, require_server, settle, wait_for

MODES = [pytest.param(False, id="default"), pytest.param(True, id="bcast")]




@pytest.fixture
def outside(real_client: redis.Redis) -> Iterator[redis.Redis]:
    """A plain redis-py client outside cachelab, on the same server."""
    where = real_client.connection_pool.connection_kwargs
    other = redis.Redis(host=where["host"], port=where["port"])
    yield other
    other.close()


@pytest.fixture
def nodes(real_client: redis.Redis) -> Iterator[list[TrackingNode]]:
    """Two default-mode and two BCAST tracking nodes; closed afterwards."""
    made = [
        TrackingNode(real_client, name=name, bcast=bcast)
        for name, bcast in (("a", False), ("b", False), ("c", True), ("d", True))
    ]
    yield made
    for node in made:
        node.close()


def test_fakeredis_is_refused_with_a_clear_error() -> None:
    with pytest.raises(TrackingUnsupported, match="needs a real Redis 6"):
        TrackingNode(fakeredis.FakeRedis())


def test_the_strategy_is_run_by_a_tracking_node_chosen_explicitly(real_client: redis.Redis) -> None:
    with pytest.raises(ValueError, match=r"build a cachelab\.TrackingNode"):
        CacheNode(real_client, name="a", strategy="tracking")
    assert node_class("tracking") is TrackingNode and node_class("stream") is CacheNode
    with make_node(real_client, name="a", strategy="tracking") as node:
        assert type(node) is TrackingNode
        assert "tracking" in cachelab.STRATEGIES


def test_an_outside_writer_is_seen_by_every_node(
    nodes: list[TrackingNode], outside: redis.Redis
) -> None:
    outside.set("k", "v1")
    for node in nodes:
        assert node.get("k") == b"v1"
        assert node.get("k") == b"v1"  # the second read is a local hit
        assert node.stats.hits == 1
    steps = [
        ("SET", lambda: outside.set("k", "v2")),
        ("EXPIRE", lambda: outside.expire("k", 100)),
        ("DEL", lambda: outside.delete("k")),
        ("SET again", lambda: outside.set("k", "v3")),
        ("FLUSHDB", lambda: outside.flushdb()),
    ]
    for step, write in steps:
        write()
        settle(*nodes)
        for node in nodes:
            assert node.get("k") == outside.get("k"), (step, node.name)
            assert node.get("k") == outside.get("k"), (step, node.name)  # cached again


def test_a_key_that_expires_is_dropped(nodes: list[TrackingNode], outside: redis.Redis) -> None:
    outside.set("k", "v", px=50)
    for node in nodes:
        assert node.get("k") == b"v"
    wait_for(lambda: outside.exists("k") == 0, "the key expired in Redis")
    settle(*nodes)
    assert [node.get("k") for node in nodes] == [None] * len(nodes)


def test_nodes_see_each_others_writes(nodes: list[TrackingNode]) -> None:
    a, b, c, _ = nodes
    a.set("k", "1")
    assert [n.get("k") for n in nodes] == [b"1"] * 4
    b.set("k", 2)
    settle(*nodes)
    assert [n.get("k") for n in nodes] == [b"2"] * 4
    c.delete("k")
    settle(*nodes)
    assert [n.get("k", "gone") for n in nodes] == ["gone"] * 4


@pytest.mark.parametrize("bcast", MODES)
def test_an_invalidation_that_overtakes_the_reply_refuses_the_fill(
    real_client: redis.Redis, outside: redis.Redis, bcast: bool
) -> None:
    with TrackingNode(real_client, bcast=bcast) as node:
        outside.set("k", "old")
        ticket = phases(node).load("k")  # the GET has been answered: "old", not yet filled
        outside.set("k", "new")
        settle(node)  # the invalidation is handled before the reply is
        assert phases(node).fill(ticket) == b"old"
        assert node.stats.stale_fills_rejected == 1
        assert phases(node).lookup("k") is NO_VALUE
        assert node.get("k") == b"new"


def test_without_the_fill_guard_the_race_caches_the_old_value(
    real_client: redis.Redis, outside: redis.Redis
) -> None:
    """The control: the same phases with the guard off leave "old" cached for good."""
    with TrackingNode(real_client, fill_guard=False, tombstones=False) as node:
        outside.set("k", "old")
        ticket = phases(node).load("k")
        outside.set("k", "new")
        settle(node)
        phases(node).fill(ticket)
        assert node.get("k") == b"old"


@pytest.mark.parametrize("bcast", MODES)
def test_a_nodes_own_write_overtakes_its_own_load(real_client: redis.Redis, bcast: bool) -> None:
    with TrackingNode(real_client, bcast=bcast) as node:
        node.set("k", "old")
        ticket = phases(node).load("k")
        node.set("k", "new")
        phases(node).fill(ticket)
        assert node.get("k") == b"new"


def test_flushall_is_a_null_message_that_flushes(
    nodes: list[TrackingNode], outside: redis.Redis
) -> None:
    outside.mset({"x": "1", "y": "2"})
    for node in nodes:
        assert (node.get("x"), node.get("y")) == (b"1", b"2")
    outside.flushall()
    settle(*nodes)
    for node in nodes:
        assert node.stats.flushes >= 1
        assert node.stats.entries == 0
        assert (node.get("x"), node.get("y")) == (None, None)


def _client_ids(client: redis.Redis, match: str) -> list[int]:
    """Ids of the server's clients whose name or flags contain ``match``."""
    found = []
    for entry in client.client_list():
        if match in entry.get("name", "") or (match == "tracked" and "t" in entry["flags"]):
            found.append(int(entry["id"]))
    return found


@pytest.mark.parametrize("bcast", MODES)
def test_a_lost_redirect_connection_flushes_and_tracks_again(
    real_client: redis.Redis, outside: redis.Redis, bcast: bool
) -> None:
    with TrackingNode(real_client, name="a", bcast=bcast) as node:
        outside.set("k", "v1")
        assert node.get("k") == b"v1"
        for client_id in _client_ids(outside, "cachelab-tracking-a"):
            outside.client_kill_filter(_id=str(client_id))
        wait_for(lambda: node.stats.reconnects >= 1 and node.coherent, "a new subscription")
        assert node.stats.flushes >= 1
        assert phases(node).lookup("k") is NO_VALUE  # nothing heard meanwhile is trusted
        assert node.get("k") == b"v1"
        outside.set("k", "v2")  # must reach the node through its new redirect
        settle(node)
        assert node.get("k") == b"v2"


def test_a_data_connection_that_reconnects_tracks_again_and_flushes(
    real_client: redis.Redis, outside: redis.Redis
) -> None:
    with TrackingNode(real_client, name="a") as node:
        outside.set("k", "v1")
        assert node.get("k") == b"v1"
        assert node.get("other", None) is None
        for client_id in _client_ids(outside, "tracked"):
            outside.client_kill_filter(_id=str(client_id))
        flushes = node.stats.flushes
        assert node.get("j", None) is None  # a round trip: the connection comes back
        assert node.stats.flushes == flushes + 1  # what the old connection tracked is gone
        assert node.get("k") == b"v1"  # read, and tracked, on the new connection
        outside.set("k", "v2")
        settle(node)
        assert node.get("k") == b"v2"


def test_tracking_table_evictions_invalidate_unchanged_keys(
    real_client: redis.Redis, outside: redis.Redis
) -> None:
    old = str(real_client.config_get("tracking-table-max-keys")["tracking-table-max-keys"])
    real_client.config_set("tracking-table-max-keys", 4)
    try:
        with TrackingNode(real_client) as node:
            outside.mset({f"k{i}": str(i) for i in range(20)})
            for i in range(20):
                assert node.get(f"k{i}") == str(i).encode()
            settle(node)
            stats = node.stats
            assert stats.invalidations_received >= 16  # nothing changed, yet the server said so
            assert stats.entries <= 4
            assert [node.get(f"k{i}") for i in range(20)] == [str(i).encode() for i in range(20)]
    finally:
        real_client.config_set("tracking-table-max-keys", old)


@pytest.mark.parametrize("noloop", [False, True])
def test_why_noloop_is_refused_in_the_default_mode(real_client: redis.Redis, noloop: bool) -> None:
    """The server itself: a NOLOOP connection is not told of evictions its own reads cause."""
    listener = resp2_client(real_client)
    pubsub = listener.pubsub()
    pubsub.subscribe(INVALIDATE_CHANNEL)
    assert pubsub.get_message(timeout=5)["type"] == "subscribe"
    listener_id = int(listener.client_list(_type="pubsub")[0]["id"])
    pool = resp2_client(real_client).connection_pool
    data = redis.Redis(connection_pool=pool, single_connection_client=True)
    data.execute_command(
        "CLIENT", "TRACKING", "ON", "REDIRECT", listener_id, *(["NOLOOP"] if noloop else [])
    )
    old = str(real_client.config_get("tracking-table-max-keys")["tracking-table-max-keys"])
    real_client.config_set("tracking-table-max-keys", 2)
    try:
        for i in range(10):
            data.get(f"k{i}")
        pubsub.ping("done")
        heard = []
        while (message := pubsub.get_message(timeout=5))["type"] != "pong":
            heard += message["data"]
        # 10 keys read, room for 2: 8 evictions. Under NOLOOP only one caused by another
        # connection's command (the PING) is told; the ones our own GETs caused are not.
        assert len(heard) <= 1 if noloop else len(heard) == 8
    finally:
        real_client.config_set("tracking-table-max-keys", old)
        pubsub.close()
        data.close()
        listener.close()


def test_a_prefix_limits_what_is_cached_and_heard(
    real_client: redis.Redis, outside: redis.Redis
) -> None:
    with TrackingNode(real_client, prefix="app:", bcast=True) as node:
        outside.set("app:k", "1")
        outside.set("k", "other")
        assert node.get("k") == b"1"  # the node's key "k" is Redis's "app:k"
        outside.set("k", "changed")  # not under the prefix: BCAST does not send it
        outside.set("app:k", "2")
        settle(node)
        assert node.stats.invalidations_received == 1
        assert node.get("k") == b"2"


def test_get_or_load_stores_without_caching_what_it_did_not_read(
    real_client: redis.Redis, outside: redis.Redis
) -> None:
    with TrackingNode(real_client) as node:
        assert node.get_or_load("k", lambda: "loaded") == "loaded"
        assert outside.get("k") == b"loaded"
        assert phases(node).lookup("k") is NO_VALUE
        # The loader's SET invalidates the read that missed; once that has come, a fill
        # stays (it may otherwise come after the fill below and drop it: not a hit then).
        settle(node)
        assert node.get("k") == b"loaded"
        assert node.get("k") == b"loaded"
        assert node.stats.hits == 1


def test_the_heartbeat_pings_the_invalidation_connection() -> None:
    require_server("redis")
    with (
        ServerProcess("redis") as server,
        TrackingNode(server.client(), heartbeat=0.05) as node,
    ):
        probe = server.client()
        wait_for(
            lambda: any(
                entry["cmd"] == "ping" and "cachelab-tracking" in entry["name"]
                for entry in probe.client_list()
            ),
            "a PING on the invalidation connection",
        )
        server.pause()  # deaf without an error: only the missing PONG tells
        try:
            wait_for(lambda: not node.coherent, "the node to stop trusting its cache")
        finally:
            server.resume()
        wait_for(lambda: node.coherent and node.stats.reconnects >= 1, "a new subscription")
        probe.close()


def test_cluster_settles_tracking_nodes(real_client: redis.Redis) -> None:
    with Cluster(3, client=real_client, strategy="tracking") as cluster:
        a = cluster.nodes[0]
        for node in cluster.nodes:
            assert node.get("k") is None
        a.set("k", "1")
        assert cluster.settle()
        assert [node.get("k") for node in cluster.nodes] == [b"1"] * 3


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"prefix": 1}, TypeError),
        ({"bcast": 1}, TypeError),
        ({"noloop": "yes"}, TypeError),
        ({"noloop": True}, ValueError),  # default mode: NOLOOP hides tracking-table evictions
        ({"repair": True}, ValueError),
        ({"gap_detection": True}, ValueError),
        ({"secret": "x" * 16}, ValueError),
    ],
)
def test_bad_options_fail_clearly(
    real_client: redis.Redis, options: dict[str, object], error: type[Exception]
) -> None:
    with pytest.raises(error):
        TrackingNode(real_client, **options)  # type: ignore[arg-type]


def test_values_are_plain_strings(real_client: redis.Redis) -> None:
    with TrackingNode(real_client) as node:
        for value in ({"a": 1}, [1], None, True):
            with pytest.raises(TypeError, match="plain Redis strings"):
                node.set("k", value)
        node.set("i", 5)
        node.set("f", 1.5)
        node.set("b", b"\x00\xff")
        assert (node.get("i"), node.get("f"), node.get("b")) == (b"5", b"1.5", b"\x00\xff")


def test_close_joins_the_listener_and_closes_connections(real_client: redis.Redis) -> None:
    node = TrackingNode(real_client, name="z")
    node.get("k")
    node.close()
    assert not _client_ids(real_client, "cachelab-tracking-z")


def test_an_entry_ends_when_its_key_expires_in_redis(
    real_client: redis.Redis, outside: redis.Redis
) -> None:
    """Redis's expiry cycle may invalidate late; the entry does not wait for it."""
    now = [1000.0]
    with TrackingNode(real_client, timer=lambda: now[0]) as node:
        outside.set("k", "v", ex=100)
        outside.set("forever", "v")
        assert node.get("k") == node.get("forever") == b"v"
        now[0] += 99.0
        assert phases(node).lookup("k") == b"v"
        now[0] += 2.0  # past the key's expiry by the node's clock, counted from the request
        assert phases(node).lookup("k") is NO_VALUE
        assert phases(node).lookup("forever") == b"v"


def test_the_checker_finds_no_stale_read_once_each_outside_write_settled(
    nodes: list[TrackingNode], outside: redis.Redis
) -> None:
    """Outside writes numbered as versions; every node reads after each settles: 0 stale."""
    history = [Op("outside", WRITE, key, 0.0, 0.0, 0) for key in ("x", "y")]
    outside.mset({"x": "0", "y": "0"})
    clock = itertools.count(1)
    for number in range(1, 21):
        key = "x" if number % 3 else "y"
        start = float(next(clock))
        outside.set(key, str(number))
        history.append(Op("outside", WRITE, key, start, float(next(clock)), number))
        settle(*nodes)
        for node in nodes:
            for read in ("x", "y"):
                begin = float(next(clock))
                value = int(node.get(read))
                history.append(Op(node.name, READ, read, begin, float(next(clock)), value))
    report = check(history)
    assert report.reads == 20 * len(nodes) * 2
    assert report.stale_reads == 0


def test_a_recorded_cluster_refuses_tracking(real_client: redis.Redis) -> None:
    with pytest.raises(ValueError, match="record=True needs versions"):
        Cluster(1, client=real_client, strategy="tracking", record=True)


@pytest.mark.parametrize("bcast", MODES)
def test_swapdb_which_the_server_never_announces_is_noticed_by_settle(
    real_client: redis.Redis, outside: redis.Redis, bcast: bool
) -> None:
    where = real_client.connection_pool.connection_kwargs
    db1 = redis.Redis(host=where["host"], port=where["port"], db=1)
    db1.flushdb()
    node = TrackingNode(real_client, name="a", bcast=bcast)
    try:
        outside.set("k", "db0")
        db1.set("k", "db1")
        assert node.get("k") == b"db0"
        outside.swapdb(0, 1)  # no invalidation for this: only the identity token tells
        settle(node)
        assert node.get("k") == b"db1" and node.stats.flushes == 1
        outside.swapdb(0, 1)  # and back
        settle(node)
        assert node.get("k") == b"db0" and node.stats.flushes == 2
    finally:
        node.close()
        db1.flushdb()
        db1.close()
