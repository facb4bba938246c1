"""Anyone who can PUBLISH: forged numbers are checked against the store, and a shared
secret authenticates every message."""

from __future__ import annotations

import logging

import pytest
import redis

import cachelab
from benchmarks.message_cost import server_work
from cachelab import AuthenticationMismatch, CacheNode, Cluster, messages
from cachelab.auth import Signer
from cachelab.store import RedisStore
from tests.helpers import (
    AnyNode,
    AnyNodeFactory,
    Hold,
    NodeFactory,
    listener,
    phases,
    settle,
    settle_nodes,
    wait_for,
)

SECRET = b"a shared secret of the fleet"


def forge(
    client: redis.Redis,
    node: AnyNode,
    key: str,
    seq: int,
    value: object,
    signer: Signer | None = None,
) -> None:
    """Publish a well-formed ``update`` message that no write ever made."""
    inc = store_of(client, node.namespace).meta().inc
    msg = messages.Message(node.namespace, "set", key, "intruder#1", seq, value, inc)
    client.publish(messages.channel(node.namespace), messages.encode(msg, signer))


def store_of(client: redis.Redis, namespace: str) -> RedisStore:
    """A store that reads the namespace's meta, with the secret when the namespace has one."""
    signer = Signer(SECRET, namespace) if namespace.startswith("auth") else None
    return RedisStore(client, namespace, signer=signer)


def current_seq(client: redis.Redis, namespace: str = "t") -> int:
    return store_of(client, namespace).meta().seq


@pytest.mark.needs("versions", "one-namespace")
def test_a_forged_value_at_the_current_number_is_caught_at_once(
    client: redis.Redis, make_any_node: AnyNodeFactory
) -> None:
    a, b = make_any_node("a", strategy="update"), make_any_node("b", strategy="update")
    a.set("k", "real")
    a.set("other", 1)
    assert b.get("k") == "real"
    settle(a, b)
    forge(client, b, "k", current_seq(client), "evil")  # a number b has already received
    settle(a, b)
    assert b.get("k") == "real"
    assert b.stats.messages_forged == 1


@pytest.mark.needs("versions", "one-namespace")
def test_a_forged_leap_ahead_cannot_make_nodes_ignore_later_writes(
    client: redis.Redis, make_any_node: AnyNodeFactory
) -> None:
    a, b = make_any_node("a", strategy="update"), make_any_node("b", strategy="update")
    a.set("k", "v1")
    assert b.get("k") == "v1"
    forge(client, b, "dummy", 10**12, "x")  # numbers the store never issued
    forge(client, b, "k", 10**12 + 1, "evil")
    settle(a, b)
    assert b.get("k") == "v1" and b.stats.messages_forged == 2
    a.set("k", "v2")  # the real next write, at a small number
    settle(a, b)
    assert b.get("k") == "v2"


@pytest.mark.needs("versions", "one-namespace")
def test_without_a_secret_a_guessed_next_number_lasts_until_the_next_real_message(
    client: redis.Redis, make_any_node: AnyNodeFactory
) -> None:
    """The residual risk docs/protocol.md states: update trusts the channel without a secret."""
    a, b = make_any_node("a", strategy="update"), make_any_node("b", strategy="update")
    a.set("k", "real")
    assert b.get("k") == "real"
    forge(client, b, "k", current_seq(client) + 1, "evil")  # guesses the next number
    settle(a, b)  # the settle marker carries the store's seq: b handled one it never issued
    assert b.get("k") == "real"
    assert b.stats.messages_forged == 1


@pytest.mark.needs("versions", "one-namespace")
def test_with_a_secret_every_forgery_is_refused(
    client: redis.Redis, make_any_node: AnyNodeFactory
) -> None:
    options = {"strategy": "update", "secret": SECRET, "namespace": "auth-forged"}
    a, b = make_any_node("a", **options), make_any_node("b", **options)
    a.set("k", "real")
    assert b.get("k") == "real"
    seq = current_seq(client, "auth-forged")
    for forged_seq in (seq, seq + 1, 10**12):
        forge(client, b, "k", forged_seq, "evil")  # no tag at all
    forge(client, b, "k", seq + 1, "evil", Signer(b"a guess at the secret", "auth-forged"))
    assert settle_nodes([a, b])
    assert b.get("k") == "real" and b.stats.messages_forged == 4
    a.set("k", "next")
    assert settle_nodes([a, b]) and b.get("k") == "next"


def test_nodes_refuse_a_namespace_whose_secret_they_do_not_share(client: redis.Redis) -> None:
    with CacheNode(client, name="a", namespace="auth", secret=SECRET) as a:
        a.set("k", 1)
        with pytest.raises(AuthenticationMismatch, match="give this node the secret"):
            CacheNode(client, name="b", namespace="auth")
        with pytest.raises(AuthenticationMismatch, match="another secret"):
            CacheNode(client, name="b", namespace="auth", secret=b"not the right secret")
    with CacheNode(client, name="c", namespace="plain") as c:
        c.set("k", 1)
        with pytest.raises(AuthenticationMismatch, match="not authenticated"):
            CacheNode(client, name="d", namespace="plain", secret=SECRET)


def test_an_unauthenticated_node_refuses_authenticated_messages_clearly(
    client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    with CacheNode(client, name="b", namespace="t") as b:
        msg = messages.Message("t", "inv", "k", "a#1", 1, inc="i")
        raw = messages.encode(msg, Signer(SECRET, "t"))
        with caplog.at_level(logging.WARNING, logger="cachelab.node"):
            listener(b).receive(raw)
            listener(b).receive(raw)
        assert b.stats.messages_forged == 2
        assert caplog.text.count("authenticated, and this node has no secret") == 1


def test_connect_carries_the_secret_to_every_node_on_the_client() -> None:
    client = cachelab.connect(secret=SECRET)
    with Cluster(2, client=client) as cluster:
        a, b = cluster.nodes
        a.set("k", 1)
        assert b.get("k") == 1
        with pytest.raises(AuthenticationMismatch):
            CacheNode(cachelab.connect(), name="x", namespace=cluster.namespace)
        with pytest.raises(ValueError, match="differs"):
            CacheNode(client, name="y", namespace=cluster.namespace, secret=b"some other secret")


@pytest.mark.parametrize("secret", [b"short", 42, ""])
def test_a_weak_or_odd_secret_is_refused(client: redis.Redis, secret: object) -> None:
    with pytest.raises((TypeError, ValueError), match="secret"):
        CacheNode(client, name="a", namespace="t", secret=secret)  # type: ignore[arg-type]


def test_a_v1_message_is_refused_counted_and_named_in_the_log(
    client: redis.Redis, make_node: NodeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = make_node("a"), make_node("b")
    v1 = b'{"p":"cachelab","v":1,"ns":"t","src":"old#1","op":"inv","key":"k","seq":99}'
    with caplog.at_level(logging.WARNING, logger="cachelab.node"):
        client.publish(messages.channel("t"), v1)
        settle(a, b)
    assert b.stats.messages_invalid == 1
    assert "protocol version 1; this node speaks 2" in caplog.text


def test_the_acl_recipe_of_the_protocol_doc_keeps_other_clients_off_the_channel(
    real_client: redis.Redis,
) -> None:
    real_client.execute_command(
        "ACL", "SETUSER", "cachelab", "on", ">pw-node", "~{shop}:*", "&{shop}:bus*",
        "+@read", "+@write", "+@pubsub", "+@scripting", "+@connection", "+time",
    )  # fmt: skip
    real_client.execute_command(
        "ACL", "SETUSER", "app", "on", ">pw-app", "~*", "resetchannels", "&app:*", "+@all"
    )
    kwargs = real_client.connection_pool.connection_kwargs
    host, port = kwargs["host"], kwargs["port"]
    nodes = redis.Redis(host=host, port=port, username="cachelab", password="pw-node")
    app = redis.Redis(host=host, port=port, username="app", password="pw-app")
    try:
        with Cluster(2, client=nodes, namespace="shop") as cluster:
            cluster.nodes[0].set("k", 1)
            assert cluster.nodes[1].get("k") == 1 and cluster.settle()
        with pytest.raises(redis.exceptions.NoPermissionError):
            app.publish("{shop}:bus", b"forged")
    finally:
        nodes.close()
        app.close()
        real_client.execute_command("ACL", "DELUSER", "cachelab", "app")


@pytest.mark.real_redis
def test_a_replayed_genuine_message_costs_a_question_not_a_revalidation_of_every_entry(
    real_client: redis.Redis,
) -> None:
    """A captured authenticated message, republished unchanged: the HMAC holds, the number
    repeats. Each node asks the store once and rechecks at most the one key it named."""
    namespace, entries = "auth-replay", 300
    listener = real_client.pubsub()
    listener.subscribe(messages.channel(namespace))
    options = {"namespace": namespace, "secret": SECRET, "heartbeat": None}
    with (
        CacheNode(real_client, "a", **options) as a,  # type: ignore[arg-type]
        CacheNode(real_client, "b", **options) as b,  # type: ignore[arg-type]
        CacheNode(real_client, "c", **options) as c,  # type: ignore[arg-type]
    ):
        for i in range(entries):
            a.set(f"k{i}", "x" * 4096)
        assert all(node.get(f"k{i}") for node in (b, c) for i in range(entries))
        captured = None
        while captured is None or captured["type"] != "message":
            captured = listener.get_message(timeout=5)
        settle(a, b, c)
        before = [node.stats for node in (a, b, c)]
        calls = server_work(real_client)[0]  # scripts run so far
        real_client.publish(messages.channel(namespace), captured["data"])
        settle(a, b, c)  # publishes one sync marker: one script call of a's
        after = [node.stats for node in (a, b, c)]
        pairs = list(zip(after, before, strict=True))
        assert [s.messages_forged - t.messages_forged for s, t in pairs] == [1] * 3
        assert all(s.suspected - t.suspected <= 1 for s, t in pairs)  # was every entry
        assert server_work(real_client)[0] - calls <= 1 + 3 * 2  # a question and a check each
        assert all(len(node.snapshot()) >= entries - 1 for node in (b, c))
    listener.close()



@pytest.mark.needs("versions", "one-namespace")
def test_a_forged_gap_waits_for_the_numbers_it_claims_and_costs_no_repair(
    client: redis.Redis, make_any_node: AnyNodeFactory
) -> None:
    """Without a secret, a forgery can claim a number the store issued before the genuine
    message reaches a node: that looked like a gap, and cost every entry a revalidation."""
    a, b = make_any_node("a"), make_any_node("b")
    for i in range(20):
        a.set(f"k{i}", i)
    assert [b.get(f"k{i}") for i in range(20)] == list(range(20))
    settle(a, b)
    with Hold("maintain", b) as hold:
        hold.reached()
        a.set("k1", "new1")
        a.set("k2", "new2")  # both genuine messages wait in b's socket
        inc, seq = store_of(client, "t").meta()
        phases(b).handle(messages.Message("t", "set", "k7", "intruder#1", seq, None, inc))
        assert (b.stats.gaps_deferred, b.stats.gaps, b.stats.suspected) == (1, 0, 0)
    settle(a, b)  # the two genuine messages came, in order: no gap
    stats = b.stats
    assert (stats.gaps, stats.suspected, stats.repair_checks) == (0, 0, 0)
    assert (b.get("k1"), b.get("k2"), b.get("k7")) == ("new1", "new2", 7)


@pytest.mark.needs("versions", "one-namespace")
def test_a_claimed_gap_that_is_true_is_repaired_after_a_hurried_heartbeat(
    client: redis.Redis, make_any_node: AnyNodeFactory
) -> None:
    a, b = make_any_node("a"), make_any_node("b", heartbeat=60.0)
    a.set("k", "old")
    assert b.get("k") == "old"
    settle(a, b)
    store_of(client, "t").write("set", "k", messages.encode_value("outside"), None)  # no message
    a.set("other", 1)  # its number skips the silent write's: b defers, then beats at once
    wait_for(lambda: b.stats.gaps == 1, "a heartbeat long before its 60 s interval")
    assert b.stats.gaps_deferred == 1
    settle(a, b)
    assert b.get("k") == "outside"


def test_a_strict_node_reads_through_while_a_claimed_gap_is_in_doubt(
    client: redis.Redis,
) -> None:
    with CacheNode(client, "b", namespace="t", strict=True, heartbeat=60.0) as b:
        store = store_of(client, "t")
        store.write("set", "k", messages.encode_value("old"), None)
        assert b.get("k") == "old" and b.get("k") == "old"
        with Hold("maintain", b) as hold:  # no heartbeat can settle the doubt meanwhile
            hold.reached()
            store.write("set", "k", messages.encode_value("new"), None)  # a number, no message
            inc, seq = store.meta()
            phases(b).handle(messages.Message("t", "inv", "x", "intruder#1", seq, None, inc))
            assert b.stats.gaps_deferred == 1  # nothing waits in the socket: only the doubt
            assert b.get("k") == "new"
