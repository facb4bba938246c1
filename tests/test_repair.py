"""Repair instead of a cold cache: after a hint of loss, entries are suspect (never served)
until one batched round trip per ``repair_batch`` keys confirms or drops them."""

from __future__ import annotations

import pytest
import redis

from cachelab import messages
from cachelab.store import RedisStore
from tests.helpers import AnyNode, AnyNodeFactory, phases, settle, settle_nodes, wait_for
from tests.test_failures import write_while_subscribers_are_killed


def _warm(nodes: list[AnyNode], keys: int) -> None:
    """Every node caches ``keys`` keys."""
    for i in range(keys):
        nodes[0].set(f"k{i}", i)
    for node in nodes:
        for i in range(keys):
            assert node.get(f"k{i}") == i


@pytest.mark.needs("versions", "one-namespace")
@pytest.mark.real_redis
def test_a_killed_subscription_is_repaired_and_the_cache_stays_warm(
    real_client: redis.Redis, make_real_node: AnyNodeFactory
) -> None:
    nodes = [make_real_node(name) for name in "abc"]
    _warm(nodes, 50)
    write_while_subscribers_are_killed(real_client, "t", "new")  # key "k"
    assert settle_nodes(nodes)
    for node in nodes:
        stats = node.stats
        assert stats.reconnects >= 1 and stats.flushes == 0
        assert stats.repair_kept == 50 and stats.entries == 50
        hits = stats.hits
        assert [node.get(f"k{i}") for i in range(50)] == list(range(50))
        assert node.stats.hits == hits + 50  # warm: every read a hit, none a reload
        assert node.get("k") == "new"


@pytest.mark.needs("versions", "one-namespace")
@pytest.mark.real_redis
def test_with_repair_off_the_same_blip_turns_every_node_cold(
    real_client: redis.Redis, make_real_node: AnyNodeFactory
) -> None:
    nodes = [make_real_node(name, repair=False) for name in "abc"]
    _warm(nodes, 50)
    write_while_subscribers_are_killed(real_client, "t", "new")
    assert settle_nodes(nodes)
    for node in nodes:
        assert node.stats.flushes >= 1 and node.stats.entries == 0
        assert node.get("k") == "new"


@pytest.mark.needs("versions", "one-namespace")
def test_repair_checks_its_suspects_in_batches(
    client: redis.Redis, make_any_node: AnyNodeFactory
) -> None:
    a, b = make_any_node("a"), make_any_node("b", repair_batch=256, max_entries=1000)
    for i in range(600):
        a.set(f"k{i}", i)
        b.get(f"k{i}")
    changed = [f"k{i}" for i in range(0, 600, 100)]
    store = RedisStore(client, "t")
    for key in changed:
        store.write("set", key, messages.encode_value("changed"), None)  # messages lost
    a.set("reveal", 1)  # the next message shows the gap
    settle(a, b)
    stats = b.stats
    assert (stats.gaps, stats.repair_checks) == (1, 3)  # 600 suspects, 256 a round trip
    assert (stats.repair_kept, stats.repair_dropped) == (600 - len(changed), len(changed))
    assert all(b.get(key) == "changed" for key in changed)


@pytest.mark.needs("versions", "one-namespace")
def test_a_lost_last_message_is_caught_by_the_heartbeat(
    client: redis.Redis, make_any_node: AnyNodeFactory
) -> None:
    a, b = make_any_node("a", heartbeat=0.05), make_any_node("b", heartbeat=0.05)
    a.set("k", "old")
    assert b.get("k") == "old"
    store = RedisStore(client, "t")
    store.write("set", "k", messages.encode_value("new"), None)  # and nothing follows
    wait_for(lambda: b.stats.gaps == 1, "b's heartbeat carries the store's seq")
    assert b.get("k") == "new"


@pytest.mark.needs("versions", "one-namespace")
def test_while_disconnected_suspects_are_never_served_and_repair_waits(
    make_any_node: AnyNodeFactory,
) -> None:
    a, b = make_any_node("a"), make_any_node("b", heartbeat=None)  # nothing else moves b's state
    a.set("k", 1)
    assert b.get("k") == 1
    settle(a, b)  # a's message has reached b: nothing is still on its way
    phases(b).disconnected()  # as the bus reports a lost subscription
    assert b.snapshot() == {} and b.stats.suspects == 1
    phases(b).repair()  # nothing happens while the subscription is down
    assert b.stats.repair_checks == 0 and b.get("k") == 1 and b.stats.uncached_reads == 1
    phases(b).subscribed(False)
    assert b.stats.repair_kept == 1 and "k" in b.snapshot()
