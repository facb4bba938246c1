"""A namespace striped over several stripes: one sequence, incarnation and repair each."""

from __future__ import annotations

import threading
import time
import zlib

import fakeredis
import pytest
import redis

from cachelab import AsyncCacheNode, CacheNode, Cluster, StripedNode, StripeMismatch, messages
from cachelab.sampler import Sampler
from cachelab.store import RedisStore
from cachelab.stripes import StripeIndex, stripe_namespace, stripe_of
from tests.helpers import publish_sync, synced

KEYS = [f"k{i}" for i in range(40)]


def keys_by_stripe(stripes: int) -> dict[int, list[str]]:
    """KEYS grouped by their stripe."""
    groups: dict[int, list[str]] = {}
    for key in KEYS:
        groups.setdefault(stripe_of(key, stripes), []).append(key)
    return groups


def test_a_keys_stripe_is_crc32_of_its_utf8_bytes_so_any_language_agrees() -> None:
    assert [stripe_of(k, 16) for k in ("user:1", "user:2", "a", "Straße")] == [2, 8, 3, 1]
    assert stripe_of("Straße", 7) == zlib.crc32("Straße".encode()) % 7
    assert {stripe_of(key, 1) for key in KEYS} == {0}


def test_one_stripe_is_the_plain_namespace_and_more_get_their_own() -> None:
    assert stripe_namespace("ns", 0, 1) == "ns"
    assert [stripe_namespace("ns", s, 3) for s in range(3)] == ["ns#0", "ns#1", "ns#2"]


def test_striped_nodes_stay_coherent_across_every_stripe(client: redis.Redis) -> None:
    with Cluster(3, client=client, stripes=4) as cluster:
        a, b, c = cluster.nodes
        for key in KEYS:
            a.set(key, 1)
            assert b.get(key) == 1 and c.get(key) == 1
        for key in KEYS:
            c.set(key, 2)
        assert cluster.settle(timeout=10)
        assert all(node.get(key) == 2 for node in (a, b) for key in KEYS)
        assert isinstance(b, StripedNode)
        assert {s for s, node in enumerate(b.nodes) if node.snapshot()} == set(range(4))
        assert b.stats.invalidations_received >= len(KEYS)  # the second round, at least


def test_a_gap_on_one_stripe_repairs_that_stripe_only(client: redis.Redis) -> None:
    groups = keys_by_stripe(4)
    with Cluster(2, client=client, namespace="t", stripes=4) as cluster:
        a, b = cluster.nodes
        assert isinstance(b, StripedNode)
        for key in KEYS:
            a.set(key, "v1")
            b.get(key)
        lost, later = groups[1][0], groups[1][1]
        store = RedisStore(client, stripe_namespace("t", 1, 4))
        store.write("set", lost, messages.encode_value("v2"), None)  # its message is lost
        a.set(later, "v3")  # the next message on stripe 1 shows the gap
        assert cluster.settle(timeout=10)
        gaps = [node.stats.gaps for node in b.nodes]
        checked = [node.stats.suspected for node in b.nodes]
        assert gaps == [0, 1, 0, 0]
        assert checked[1] >= len(groups[1]) - 1 and checked[0] == checked[2] == checked[3] == 0
        assert b.get(lost) == "v2" and b.get(later) == "v3"


def test_another_stripe_count_on_the_same_namespace_is_refused(client: redis.Redis) -> None:
    with StripedNode(client, "a", "t", stripes=4):
        with pytest.raises(StripeMismatch, match="striped over 4 stripes, not 8"):
            StripedNode(client, "b", "t", stripes=8)
        with pytest.raises(StripeMismatch, match="striped over 4 stripes"):
            CacheNode(client, "c", "t")


def test_striping_a_namespace_in_use_unstriped_is_refused(client: redis.Redis) -> None:
    with CacheNode(client, "a", "t"), pytest.raises(StripeMismatch, match="not striped"):
        StripedNode(client, "b", "t", stripes=2)


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"stripes": 0}, "stripes must be a positive int"),
        ({"stripes": "4"}, "stripes must be a positive int"),
        ({"stripes": 1025}, "stripes must be 1 to 1024"),
        ({"stripes": 2, "strategy": "tracking"}, "does not stripe"),
        ({"stripes": 2, "strategy": "stream"}, "does not stripe"),
        ({"stripes": 2, "namespace": "n" * 60}, "namespace must be 1 to 59"),
        ({"stripes": 2, "max_entries": 0}, "max_entries must be a positive int"),
    ],
)
def test_bad_stripe_options_say_what_is_wrong(
    client: redis.Redis, options: dict[str, object], error: str
) -> None:
    with pytest.raises(ValueError, match=error):
        StripedNode(client, **options)  # type: ignore[arg-type]


def test_the_local_bound_is_shared_out_and_threads_end_on_close(client: redis.Redis) -> None:
    node = StripedNode(client, "a", "t", max_entries=100, stripes=4)
    assert node.max_entries == 100 and all(n.max_entries == 25 for n in node.nodes)
    was = node.coherent
    node.close()
    assert (was, node.coherent) == (True, False)
    assert [t for t in threading.enumerate() if t.name.startswith("cachelab")] == []


def test_one_stripe_is_a_plain_node_namespace_on_one_server(client: redis.Redis) -> None:
    with StripedNode(client, "a", "t") as striped, CacheNode(client, "b", "t") as plain:
        assert striped.stripes == 1
        plain.set("k", 1)
        assert striped.get("k") == 1
        striped.set("k", 2)
        nonce = "n1"
        publish_sync(striped, nonce)
        deadline = time.monotonic() + 10
        while not synced(plain, nonce) and time.monotonic() < deadline:
            time.sleep(0.005)
        assert plain.get("k") == 2


def test_objects_one_node_alone_can_use_are_refused(client: redis.Redis) -> None:
    with pytest.raises(ValueError, match="bus= serves one node"):
        StripedNode(client, "a", "t", stripes=2, bus=object())
    with pytest.raises(ValueError, match="verify= must be a fraction"):
        StripedNode(client, "a", "t", stripes=2, verify=Sampler(0.5))


def test_a_bad_key_says_what_is_wrong_as_a_plain_node_does(client: redis.Redis) -> None:
    with StripedNode(client, "a", "t", stripes=2) as node, CacheNode(client, "b", "u") as plain:
        for key in (123, "\ud800"):
            with pytest.raises((TypeError, ValueError)) as striped_error:
                node.get(key)  # type: ignore[arg-type]
            with pytest.raises((TypeError, ValueError)) as plain_error:
                plain.get(key)  # type: ignore[arg-type]
            assert str(striped_error.value) == str(plain_error.value)


def test_with_a_verify_fraction_each_stripe_samples_its_own_hits(client: redis.Redis) -> None:
    with StripedNode(client, "a", "t", stripes=2, verify=1.0) as node:
        keys = KEYS[:10]
        for key in keys:
            node.set(key, 1)
            node.get(key)
        assert all(n.sampler is not None for n in node.nodes)
        assert node.stats.sampled == len(keys)


def test_the_remembered_stripes_stay_bounded_and_right() -> None:
    index = StripeIndex(16, bound=3)
    for key in KEYS:
        assert index[key] == stripe_of(key, 16)
        assert len(index) <= 3


@pytest.mark.parametrize("namespace", ["users#3", "#", "a#b"])
def test_a_plain_namespace_with_a_hash_is_refused_since_it_would_be_a_stripe(
    namespace: str,
) -> None:
    r = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    with pytest.raises(ValueError, match="stripe i of the striped namespace"):
        CacheNode(r, "a", namespace)
    with pytest.raises(ValueError, match="stripe i of the striped namespace"):
        AsyncCacheNode(fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer()), "a", namespace)
    with pytest.raises(ValueError, match="stripe i of the striped namespace"):
        StripedNode(r, "a", namespace, stripes=4)
    assert r.keys("*") == []  # refused before anything was written


def test_a_striped_namespace_still_makes_its_stripes_and_keeps_them_its_own() -> None:
    r = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    with StripedNode(r, "a", "users", stripes=4) as node:
        assert [n.namespace for n in node.nodes] == [f"users#{s}" for s in range(4)]
        node.set("k", 1)
        assert node.get("k") == 1
