"""A counter that starts again: FLUSHALL, an evicted meta, a restart that loses data.
Every reset changes the incarnation, every node notices, and the checker reads the
history across it correctly."""

from __future__ import annotations

import redis

from cachelab import CacheNode, Cluster
from cachelab.check import check
from cachelab.harness.servers import ServerProcess
from cachelab.store import RedisStore
from tests.helpers import NodeFactory, settle

KEYS = [f"k{i}" for i in range(20)]


def test_an_evicted_sequence_counter_is_noticed_and_later_writes_reach_every_node(
    client: redis.Redis, make_node: NodeFactory
) -> None:
    a, b = make_node("a"), make_node("b")
    for key in KEYS:
        a.set(key, "old")
        assert b.get(key) == "old"
    before = RedisStore(client, "t").meta()
    client.delete("{t}:meta")  # what an allkeys-* maxmemory policy may do to it
    for key in KEYS:
        a.set(key, "new")  # versions start again at 1, under a new incarnation
    after = RedisStore(client, "t").meta()
    assert after.inc != before.inc and after.seq == len(KEYS)
    settle(a, b)
    assert [b.get(key) for key in KEYS] == ["new"] * len(KEYS)
    assert b.stats.resets == 1 and a.stats.resets == 1


def test_a_value_that_outlives_its_counter_is_kept_by_repair(
    client: redis.Redis, make_node: NodeFactory
) -> None:
    a, b = make_node("a"), make_node("b")
    a.set("kept", "same")
    a.set("changed", "old")
    assert b.get("kept") == "same" and b.get("changed") == "old"
    client.delete("{t}:meta")
    a.set("changed", "new")
    settle(a, b)
    stats = b.stats
    assert (stats.resets, stats.repair_kept) == (1, 1)  # "changed" went with its message
    assert "changed" not in b.snapshot()
    hits = stats.hits
    assert b.get("kept") == "same" and b.stats.hits == hits + 1
    assert b.get("changed") == "new"


def test_flushall_while_connected_is_noticed(client: redis.Redis, make_node: NodeFactory) -> None:
    a, b = make_node("a"), make_node("b")
    for key in KEYS[:5]:
        a.set(key, "before")
        assert b.get(key) == "before"
    client.flushall()  # our own throwaway server
    a.set(KEYS[0], "after")
    settle(a, b)
    assert b.get(KEYS[0]) == "after"
    assert [b.get(key) for key in KEYS[1:5]] == [None] * 4  # Redis lost them
    assert b.stats.resets == 1


def test_the_checker_reads_a_history_across_a_flushall(client: redis.Redis) -> None:
    with Cluster(3, client=client, record=True) as cluster:
        a, b, c = cluster.nodes
        for i in range(5):
            a.set("k", f"v{i}")
            assert cluster.settle()
            assert b.get("k") == c.get("k") == f"v{i}"
        client.flushall()
        for i in range(3):
            b.set("k", f"w{i}")  # versions 1, 2, 3 of a new incarnation
            assert cluster.settle()
            assert a.get("k") == c.get("k") == f"w{i}"
        report = check(cluster.history)
    assert report.reads == 16 and report.stale_reads == 0
    assert report.monotonic_read_violations == 0 and report.read_your_writes_violations == 0


def test_a_cache_aside_fill_that_stores_a_value_is_recorded_as_a_write(
    client: redis.Redis,
) -> None:
    with Cluster(2, client=client, record=True) as cluster:
        a, b = cluster.nodes
        assert a.get_or_load("k", lambda: "from db") == "from db"
        assert cluster.settle()
        assert b.get("k") == "from db"
        ops = [(op.node, op.op, op.key, op.hit) for op in cluster.history]
        versions = {op.version for op in cluster.history}
    assert ops == [("a", "write", "k", False), ("a", "read", "k", False), ("b", "read", "k", False)]
    assert len(versions) == 1


def test_nodes_and_checker_across_a_restart_that_loses_everything(
    spare_server: ServerProcess,
) -> None:
    with spare_server.client() as client, Cluster(3, client=client, record=True) as cluster:
        a, b, c = cluster.nodes
        for i in range(4):
            a.set("k", f"v{i}")
            assert cluster.settle(timeout=10)
            assert b.get("k") == f"v{i}"
        spare_server.restart()  # SIGKILL, no persistence: data and sequence are lost
        assert cluster.settle(timeout=15)
        assert [n.get("k") for n in cluster.nodes] == [None] * 3
        c.set("k", "after")
        assert cluster.settle(timeout=10)
        assert [n.get("k") for n in cluster.nodes] == ["after"] * 3
        assert all(n.stats.resets == 1 for n in cluster.nodes)
        report = check(cluster.history)
    assert report.stale_reads == 0
    assert report.monotonic_read_violations == 0 and report.read_your_writes_violations == 0


def test_an_older_dump_restored_in_place_is_re_based_on_not_counted_as_forgery(
    real_client: redis.Redis,
) -> None:
    """DEBUG RELOAD of an older dump: the same incarnation, a lower counter, no reconnect."""
    with (
        CacheNode(real_client, "a", "t", heartbeat=None) as a,
        CacheNode(real_client, "b", "t", heartbeat=None) as b,
    ):
        for key in KEYS:
            a.set(key, "saved")
        real_client.save()
        for n in range(10):  # 200 writes the dump will not have
            for key in KEYS:
                a.set(key, f"lost{n}")
        settle(a, b)
        assert [b.get(key) for key in KEYS] == ["lost9"] * len(KEYS)
        real_client.execute_command("DEBUG", "RELOAD", "NOSAVE")  # back to the dump
        assert RedisStore(real_client, "t").meta().seq == len(KEYS)
        for n in range(3):  # numbers 21 to 80, issued a second time
            for key in KEYS:
                a.set(key, f"after{n}")
        settle(a, b)
        assert [b.get(key) for key in KEYS] == ["after2"] * len(KEYS)
        stats = b.stats
        assert (stats.messages_forged, stats.gaps, stats.resets) == (0, 1, 0)
