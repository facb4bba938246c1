"""Lost messages, restarts, garbage on the channel, and clean shutdown."""

from __future__ import annotations

import itertools
import json
import threading
from typing import Any

import fakeredis
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cachelab import CacheNode, Cluster, messages
from cachelab.harness.servers import ServerProcess
from cachelab.store import RedisStore
from tests.helpers import AnyNodeFactory, any_nodes, settle, settle_nodes, wait_for


def write_while_subscribers_are_killed(client: redis.Redis, namespace: str, value: Any) -> None:
    """Kill every pub/sub connection and write in the same transaction: the message is lost."""
    store = RedisStore(client, namespace)
    encoded = messages.encode_value(value)
    head = messages.message_head(messages.message_prefix(namespace, "w#0"), "set", "k", None)
    store.meta()  # the script is loaded, and the namespace exists, before the MULTI
    pipe = client.pipeline(transaction=True)
    pipe.client_kill_filter(_type="pubsub")
    pipe.evalsha(*store.write_command("set", "k", encoded, head))
    pipe.execute()


@pytest.mark.needs("versions", "one-namespace")
@pytest.mark.real_redis
def test_a_write_lost_during_a_disconnect_is_never_served(
    real_client: redis.Redis, make_real_node: AnyNodeFactory
) -> None:
    nodes = [make_real_node(name) for name in "abc"]
    nodes[0].set("k", "old")
    assert [n.get("k") for n in nodes] == ["old"] * 3
    write_while_subscribers_are_killed(real_client, "t", "new")
    assert settle_nodes(nodes)
    assert [n.get("k") for n in nodes] == ["new"] * 3
    assert all(n.stats.reconnects >= 1 for n in nodes)


@pytest.mark.needs("one-namespace")
@pytest.mark.real_redis
def test_the_naive_node_keeps_serving_the_lost_write(
    real_client: redis.Redis, make_real_node: AnyNodeFactory
) -> None:
    naive = {"reconnect_flush": False, "gap_detection": False}
    a, b = make_real_node("a", **naive), make_real_node("b", **naive)
    a.set("k", "old")
    assert b.get("k") == "old"
    write_while_subscribers_are_killed(real_client, "t", "new")
    assert settle_nodes([a, b])
    assert b.get("k") == "old"  # silently stale, forever


@pytest.mark.needs("versions", "one-namespace")
@pytest.mark.real_redis
def test_gap_detection_alone_catches_the_lost_write(
    real_client: redis.Redis, make_real_node: AnyNodeFactory
) -> None:
    a, b = make_real_node("a", reconnect_flush=False), make_real_node("b", reconnect_flush=False)
    a.set("k", "old")
    assert b.get("k") == "old"
    write_while_subscribers_are_killed(real_client, "t", "new")
    assert settle_nodes([a, b])
    a.set("other", 1)  # the next message shows the hole in the sequence
    assert settle_nodes([a, b])
    assert b.get("k") == "new"
    assert b.stats.gaps == 1


@pytest.mark.real_redis
def test_nodes_recover_after_the_server_restarts(
    request: pytest.FixtureRequest, spare_server: ServerProcess, flavour: str
) -> None:
    with spare_server.client() as client, any_nodes(request, client, flavour) as make:
        nodes = [make(name) for name in "abc"]
        a, b, _c = nodes
        a.set("k", "before")
        assert [n.get("k") for n in nodes] == ["before"] * 3
        spare_server.restart()  # SIGKILL, no persistence: the restart loses data and sequence
        assert settle_nodes(nodes, timeout=15)
        assert [n.get("k") for n in nodes] == [None] * 3
        b.set("k", "after")
        assert settle_nodes(nodes)
        assert [n.get("k") for n in nodes] == ["after"] * 3
        assert all(n.stats.reconnects >= 1 for n in nodes)


_examples = itertools.count()
garbage = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=100).map(str.encode),
    st.dictionaries(
        st.sampled_from(["p", "v", "ns", "op", "key", "src", "seq", "val", "x"]),
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(),
            st.text(max_size=5),
            st.lists(st.integers(), max_size=3),
        ),
        max_size=9,
    ).map(lambda d: json.dumps(d).encode()),
)


@pytest.mark.needs("versions", "one-namespace")
@given(payloads=st.lists(garbage, min_size=1, max_size=8))
@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_garbage_on_the_channel_is_counted_and_the_node_keeps_working(
    request: pytest.FixtureRequest, client: redis.Redis, flavour: str, payloads: list[bytes]
) -> None:
    namespace = f"fuzz{next(_examples)}"
    with any_nodes(request, client, flavour) as make:
        a, b = make("a", namespace=namespace), make("b", namespace=namespace)
        for payload in payloads:
            client.publish(messages.channel(namespace), payload)
        a.set("k", len(payloads))
        settle(a, b)
        assert b.stats.messages_invalid == len(payloads)
        assert b.get("k") == len(payloads)  # the listener survived and still invalidates


@pytest.mark.needs("versions", "one-namespace")
def test_oversized_and_foreign_messages_are_dropped(
    client: redis.Redis, make_any_node: AnyNodeFactory
) -> None:
    a, b = make_any_node("a"), make_any_node("b")
    foreign = messages.Message("other", "inv", "k", "x", 99)
    client.publish(messages.channel("t"), messages.encode(foreign))
    client.publish(messages.channel("t"), b"{" + b" " * messages.MAX_MESSAGE_BYTES + b"}")
    a.set("k", 1)
    settle(a, b)
    assert b.stats.messages_invalid == 2
    assert b.get("k") == 1


def test_close_leaves_no_thread_and_prints_nothing(
    client: redis.Redis, capfd: pytest.CaptureFixture[str]
) -> None:
    with Cluster(4, client=client) as cluster:
        for i, node in enumerate(cluster.nodes):
            node.set(f"k{i}", i)
            node.get(f"k{(i + 1) % 4}")
        assert cluster.settle()
    alive = [t.name for t in threading.enumerate() if t.name.startswith("cachelab")]
    _out, err = capfd.readouterr()
    assert alive == []
    assert err == ""


@pytest.mark.real_redis
def test_close_while_the_server_is_killing_connections_prints_nothing(
    real_client: redis.Redis, capfd: pytest.CaptureFixture[str]
) -> None:
    for _ in range(5):
        nodes = [CacheNode(real_client, name=f"n{i}", namespace="t") for i in range(3)]
        real_client.client_kill_filter(_type="pubsub")
        for node in nodes:
            node.close()
    alive = [t.name for t in threading.enumerate() if t.name.startswith("cachelab")]
    assert alive == []
    assert capfd.readouterr().err == ""




@pytest.mark.needs("fakeredis", "one-namespace")  # a striped node has a subscription per stripe
def test_while_the_subscription_is_down_nothing_is_served_from_memory(
    request: pytest.FixtureRequest, flavour: str
) -> None:
    server = fakeredis.FakeServer()
    client = fakeredis.FakeRedis(server=server)
    with any_nodes(request, client, flavour) as make:
        a, b = make("a"), make("b")
        a.set("k", 1)
        assert b.get("k") == 1 and "k" in b.snapshot()
        server.connected = False  # every connection now fails, the subscription included
        wait_for(lambda: not b.coherent, "b notices its subscription is down")
        assert b.snapshot() == {}
        server.connected = True
        wait_for(lambda: b.coherent, "b resubscribes")
        assert b.stats.reconnects >= 1
        a.set("k", 2)
        settle(a, b)
        assert b.get("k") == 2


def test_a_node_on_an_unreachable_server_fails_at_once() -> None:
    server = fakeredis.FakeServer()
    server.connected = False
    with pytest.raises(redis.ConnectionError):
        CacheNode(fakeredis.FakeRedis(server=server), name="a", namespace="t")
    assert not [t for t in threading.enumerate() if t.name.startswith("cachelab")]


def test_a_closed_node_reads_through_redis_without_caching(make_any_node: AnyNodeFactory) -> None:
    a, b = make_any_node("a"), make_any_node("b")
    a.set("k", "1")
    assert b.get("k") == "1"
    b.close()
    a.set("k", "2")  # b no longer hears this ...
    assert b.get("k") == "2"  # ... so it must not answer from memory
    assert b.snapshot() == {}


def test_a_silently_deaf_subscription_is_caught_by_the_heartbeat(
    client: redis.Redis, make_any_node: AnyNodeFactory
) -> None:
    # On fakeredis, CLIENT KILL leaves the subscriber deaf without any error, as a
    # half-open TCP connection would: only the heartbeat's missing echo reveals it.
    a, b = make_any_node("a", heartbeat=0.05), make_any_node("b", heartbeat=0.05)
    a.set("k", "old")
    assert b.get("k") == "old"
    client.client_kill_filter(_type="pubsub")
    a.set("k", "new")  # published to nobody
    assert settle_nodes([a, b])
    assert b.get("k") == "new"
    assert b.stats.reconnects >= 1


@pytest.mark.needs("versions", "one-namespace")
def test_losing_the_very_first_message_is_a_gap(
    client: redis.Redis, make_any_node: AnyNodeFactory
) -> None:
    b = make_any_node("b")  # subscribes while the namespace's sequence is still 0
    a = make_any_node("a")
    RedisStore(client, "t").write("set", "k", messages.encode_value(1), None)  # seq 1, unheard
    a.set("x", 2)  # seq 2 shows that 1 is missing
    settle(a, b)
    assert b.stats.gaps == 1


def test_heartbeat_must_be_positive(client: redis.Redis) -> None:
    with pytest.raises(ValueError, match="heartbeat"):
        CacheNode(client, namespace="t", heartbeat=0)
