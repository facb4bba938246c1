"""A striped namespace on a real Redis Cluster (3 masters, 3 replicas), under its faults.

Each test starts its own cluster (``real_cluster``: redis-server 7.0 and Valkey 8.1), so
it may fail over, kill and reshard it. After every fault the fleet settles, and then no
node may hold a value Redis does not: 0 stale after settle.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator

import pytest
import redis
from redis.cluster import RedisCluster

import cachelab
from cachelab import Cluster, StripedNode, messages
from cachelab.harness.cluster_servers import ClusterProcess, slot_of
from cachelab.harness.servers import ServerProcess
from cachelab.stripes import stripe_namespace, stripe_of

STRIPES = 8
KEYS = [f"k{i}" for i in range(48)]


@pytest.fixture
def fleet(real_cluster: ClusterProcess) -> Iterator[Cluster]:
    """Three striped nodes on the cluster, every key written and read by each."""
    client = cachelab.connect(real_cluster.seeds, cluster=True)
    with Cluster(3, client=client, namespace="t", stripes=STRIPES) as fleet:
        for key in KEYS:
            fleet.nodes[0].set(key, 0)
        for node in fleet.nodes:
            for key in KEYS:
                node.get(key)
        yield fleet
    client.close()


def stored(client: RedisCluster, key: str) -> object:
    """What Redis holds for ``key`` (its stripe's data key), decoded."""
    namespace = stripe_namespace("t", stripe_of(key, STRIPES), STRIPES)
    raw = client.hget("{" + namespace + "}:k:" + key, "val")
    return messages.ABSENT if raw is None else messages.decode_value(raw)


def assert_no_stale_entry(fleet: Cluster) -> None:
    """Settle, then every node reads what Redis holds, for every key."""
    assert fleet.settle(timeout=30)
    client = fleet.redis
    assert isinstance(client, RedisCluster)
    truth = {key: stored(client, key) for key in KEYS}
    for node in fleet.nodes:
        assert {key: node.get(key, messages.ABSENT) for key in KEYS} == truth, node.name


def stripe_on(cluster: ClusterProcess, owner: object) -> int:
    """A stripe whose slot ``owner`` holds."""
    for stripe in range(STRIPES):
        if cluster.owner(slot_of("{" + stripe_namespace("t", stripe, STRIPES) + "}")) is owner:
            return stripe
    raise AssertionError(f"no stripe on {owner!r}")


def retried(write: Callable[[], None]) -> None:
    """Run a write until it goes through (a fault may fail some: they raise, never lie)."""
    for _ in range(200):
        try:
            write()
            return
        except (redis.RedisError, OSError):
            threading.Event().wait(0.05)
    raise AssertionError("a write never went through")


class Writer:
    """A thread writing random keys from node ``a`` until stopped; failed writes retried."""

    def __init__(self, fleet: Cluster) -> None:
        self.node = fleet.nodes[0]
        self.stop = threading.Event()
        self.written = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        rng = random.Random(7)
        while not self.stop.is_set():
            key = rng.choice(KEYS)
            try:
                self.node.set(key, self.written)
                self.written += 1
            except (redis.RedisError, OSError):
                self.stop.wait(0.01)

    def __enter__(self) -> Writer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)


def test_the_namespace_spreads_over_every_master(
    fleet: Cluster, real_cluster: ClusterProcess
) -> None:
    owners = {
        real_cluster.owner(slot_of("{" + stripe_namespace("t", s, STRIPES) + "}")).port
        for s in range(STRIPES)
    }
    assert len(owners) == 3


def test_concurrent_writers_converge_on_the_cluster(fleet: Cluster) -> None:
    def write(node: StripedNode | cachelab.CacheNode, seed: int) -> None:
        rng = random.Random(seed)
        for i in range(300):
            key = rng.choice(KEYS)
            if rng.random() < 0.5:
                node.set(key, f"{node.name}{i}")
            else:
                node.get(key)

    threads = [threading.Thread(target=write, args=(n, i)) for i, n in enumerate(fleet.nodes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert_no_stale_entry(fleet)


def test_killed_subscriptions_on_every_master_are_repaired(
    fleet: Cluster, real_cluster: ClusterProcess
) -> None:
    with Writer(fleet):
        for master in real_cluster.masters():
            master.client().client_kill_filter(_type="pubsub")
    assert_no_stale_entry(fleet)
    assert all(node.stats.disconnects >= 1 for node in fleet.nodes[1:])


def test_a_manual_failover_while_writing_leaves_nothing_stale(
    fleet: Cluster, real_cluster: ClusterProcess
) -> None:
    master = real_cluster.masters()[0]
    moved = stripe_on(real_cluster, master)
    with Writer(fleet) as writer:
        real_cluster.failover(real_cluster.replica_of(master))
        retried(lambda: fleet.nodes[0].set(KEYS[0], "after"))
    assert writer.written > 0
    assert_no_stale_entry(fleet)
    reader = fleet.nodes[1]
    assert isinstance(reader, StripedNode)
    assert reader.nodes[moved].stats.reconnects >= 1


def test_a_killed_master_loses_writes_and_every_node_notices(
    fleet: Cluster, real_cluster: ClusterProcess
) -> None:
    master = real_cluster.masters()[0]
    replica = real_cluster.replica_of(master)
    stripe = stripe_on(real_cluster, master)
    doomed = [key for key in KEYS if stripe_of(key, STRIPES) == stripe]
    cut_off(replica)  # what the master acknowledges now never reaches its replica
    for key in doomed:
        fleet.nodes[0].set(key, "lost")
    assert fleet.settle(timeout=30)
    for node in fleet.nodes:
        assert all(node.get(key) == "lost" for key in doomed)  # cached, at lost versions
    master.kill()
    real_cluster.wait_stable(lambda: real_cluster.owner(slot_of(_tag(stripe))) is replica)
    replica.client().config_set("masterauth", "")
    assert_no_stale_entry(fleet)
    assert all(stored(fleet.redis, key) != "lost" for key in doomed)  # type: ignore[arg-type]
    for node in fleet.nodes:
        assert isinstance(node, StripedNode)
        noticed = node.nodes[stripe].stats
        assert noticed.gaps + noticed.resets >= 1, node.name


def test_a_slot_migration_while_writing_leaves_nothing_stale(
    fleet: Cluster, real_cluster: ClusterProcess
) -> None:
    source = real_cluster.masters()[0]
    stripe = stripe_on(real_cluster, source)
    target = next(m for m in real_cluster.masters() if m is not source)
    mid_move: list[int] = []
    with Writer(fleet) as writer:
        real_cluster.migrate_slot(
            slot_of(_tag(stripe)), target, during=lambda: mid_move.append(writer.written)
        )
        retried(lambda: fleet.nodes[0].set(KEYS[0], "after"))
    assert real_cluster.owner(slot_of(_tag(stripe))) is target and mid_move
    assert_no_stale_entry(fleet)
    reader = fleet.nodes[1]
    assert isinstance(reader, StripedNode)
    assert reader.nodes[stripe].stats.reconnects >= 1  # the server unsubscribed it


def cut_off(replica: ServerProcess) -> None:
    """Cut the replica's link to its master, and keep it cut (it cannot authenticate)."""
    client = replica.client()
    client.config_set("masterauth", "not-the-password")
    client.client_kill_filter(_type="master")
    while client.info("replication")["master_link_status"] == "up":
        threading.Event().wait(0.01)


def _tag(stripe: int) -> str:
    """The hash tag of ``stripe`` of namespace ``t``."""
    return "{" + stripe_namespace("t", stripe, STRIPES) + "}"
