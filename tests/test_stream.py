"""The stream transport: messages in a capped Redis Stream that each node reads from its
last entry id, so a blip costs a replay (no flush, no repair round trip), and only a stream
trimmed past a node's last id costs a repair. On fakeredis, Redis 7.0 and Valkey 8.1."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import redis

from cachelab import ABSENT, CacheNode, Cluster, StripedNode, messages
from cachelab.auth import Signer
from cachelab.contract import TransportMismatch
from cachelab.store import RedisStore
from tests.helpers import NodeFactory, settle, settle_nodes

SECRET = b"a shared secret of the fleet"
STREAM = "{t}:stream"


class Gate:
    """An events hook that holds the node's bus thread at the first ``kind`` event after
    ``arm()``, until ``release()``: a reader that is down, or slow, for as long as a test
    needs, with no sleep and no luck."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.armed = False
        self.reached = threading.Event()
        self.go = threading.Event()

    def arm(self) -> None:
        self.armed = True

    def __call__(self, node: str, kind: str, key: str, version: int) -> None:
        if self.armed and kind == self.kind:
            self.armed = False
            self.reached.set()
            assert self.go.wait(30), "the test never released the gate"

    def wait(self) -> None:
        assert self.reached.wait(30), f"no {self.kind!r} event"

    def release(self) -> None:
        self.go.set()


def kill_reader(client: redis.Redis, node: CacheNode | StripedNode) -> None:
    """CLIENT KILL the connection of ``node``'s stream reader, found by its name."""
    name = f"cachelab-stream-{node.name}"
    ids = [c["id"] for c in client.client_list() if c.get("name") == name]
    assert len(ids) == 1, f"no single reader connection named {name}: {ids}"
    assert client.client_kill_filter(_id=ids[0]) == 1


def entries(client: redis.Redis, key: str = STREAM) -> list[dict[bytes, bytes]]:
    """Every entry's fields, oldest first."""
    return [fields for _, fields in client.xrange(key)]  # type: ignore[union-attr,misc]


def stale(client: redis.Redis, node: CacheNode) -> list[str]:
    """Keys ``node`` trusts whose value Redis no longer holds."""
    store = RedisStore(client, node.namespace, stream_maxlen=node_cap(node))
    out = []
    for key, (value, _) in node.snapshot().items():
        encoded = store.read(key).value
        held = ABSENT if encoded is None else messages.decode_value(encoded)
        if held != value:
            out.append(key)
    return out


def node_cap(node: CacheNode) -> int | None:
    """The stream cap ``node`` was built with."""
    store = node._store
    assert isinstance(store, RedisStore)
    return store.stream_maxlen


def test_writes_reach_peers_through_the_stream_not_the_channel(
    client: redis.Redis, make_node: NodeFactory
) -> None:
    a, b = make_node("a", strategy="stream"), make_node("b", strategy="stream")
    a.set("k", 1)
    assert b.get("k") == 1 and "k" in b.snapshot()
    a.set("k", 2)
    a.delete("gone")
    settle(a, b)
    assert b.get("k") == 2
    assert b.stats.invalidations_received >= 1
    assert b.stats.messages_invalid == b.stats.messages_forged == 0
    assert client.pubsub_numsub(messages.channel("t")) == [(b"{t}:bus", 0)]  # nobody listens
    ops = [messages.decode(fields[b"m"], "t").op for fields in entries(client)]
    assert ops[:3] == ["set", "set", "del"] and set(ops[3:]) == {"sync"}


@pytest.mark.parametrize("secret", [None, SECRET])
def test_an_entry_is_the_very_message_pubsub_would_carry(
    client: redis.Redis, make_node: NodeFactory, secret: bytes | None
) -> None:
    a = make_node("a", strategy="stream", secret=secret)
    a.set("k", "v")
    (fields,) = entries(client)
    assert list(fields) == [b"m"]
    signer = None if secret is None else Signer(secret, "t")
    meta = RedisStore(client, "t", stream_maxlen=10_000, signer=signer).meta()
    sent = messages.Message("t", "set", "k", a.id, meta.seq, inc=meta.inc)
    assert fields[b"m"] == messages.encode(sent, signer)


def test_forged_entries_are_counted_and_dropped(
    client: redis.Redis, make_node: NodeFactory
) -> None:
    a = make_node("a", strategy="stream", secret=SECRET)
    b = make_node("b", strategy="stream", secret=SECRET)
    a.set("k", "real")
    assert b.get("k") == "real"
    inc = RedisStore(client, "t", stream_maxlen=10_000, signer=Signer(SECRET, "t")).meta().inc
    evil = messages.Message("t", "set", "k", "intruder#1", 2, "evil", inc)
    client.xadd(STREAM, {"m": messages.encode(evil)})  # an outsider's XADD, with no tag
    client.xadd(STREAM, {"m": messages.encode(evil, Signer(b"another secret, guessed", "t"))})
    settle(a, b)
    assert b.stats.messages_forged == 2
    assert b.get("k") == "real" and "k" in b.snapshot()  # nothing forged touched it
    a.set("k", "newer")
    settle(a, b)
    assert b.get("k") == "newer"


def test_without_a_secret_a_forged_number_is_checked_against_the_store(
    client: redis.Redis, make_node: NodeFactory
) -> None:
    a, b = make_node("a", strategy="stream"), make_node("b", strategy="stream")
    a.set("k", "real")
    assert b.get("k") == "real"
    meta = RedisStore(client, "t", stream_maxlen=10_000).meta()
    far = messages.Message("t", "inv", "k", "intruder#1", meta.seq + 10**6, inc=meta.inc)
    client.xadd(STREAM, {"m": messages.encode(far)})
    settle(a, b)
    assert b.stats.messages_forged == 1 and b.stats.gaps == 0
    a.set("k", "newer")  # the forged leap did not make b ignore what follows
    settle(a, b)
    assert b.get("k") == "newer"


def test_a_malformed_entry_is_counted_and_dropped_and_the_reader_goes_on(
    client: redis.Redis, make_node: NodeFactory
) -> None:
    a, b = make_node("a", strategy="stream"), make_node("b", strategy="stream")
    a.set("k", 1)
    assert b.get("k") == 1
    client.xadd(STREAM, {"x": "no m field"})
    client.xadd(STREAM, {"m": b"\xff garbage"})
    client.xadd(STREAM, {"m": b"{}", "extra": b"field"})
    client.xadd(STREAM, {"m": b"[1,2,3]"})
    a.set("k", 2)
    settle(a, b)
    assert b.stats.messages_invalid == 4
    assert b.get("k") == 2  # the reader survived, and still invalidates


def test_a_blip_is_replayed_with_no_flush_and_no_repair(
    client: redis.Redis, make_node: NodeFactory
) -> None:
    gate = Gate("disconnect")
    a = make_node("a", strategy="stream")
    b = make_node("b", strategy="stream", events=gate)
    keys = [f"k{i}" for i in range(10)]
    for i, key in enumerate(keys):
        a.set(key, i)
        assert b.get(key) == i
    settle(a, b)
    gate.arm()
    kill_reader(client, b)
    gate.wait()  # b knows its reader is down; its bus thread waits here, off the stream
    a.set("k0", "changed")  # written while b reads nothing
    a.delete("k1")
    assert b.snapshot() == {} and b.stats.suspects == 10  # held: never served meanwhile
    assert b.get("k2") == 2 and b.stats.uncached_reads == 1
    gate.release()
    settle(a, b)
    stats = b.stats
    assert (stats.disconnects, stats.reconnects, stats.replays) == (1, 1, 1)
    assert (stats.flushes, stats.repair_checks, stats.gaps) == (0, 0, 0)
    assert stats.restored == 8 and stats.suspects == 0
    hits = stats.hits
    assert [b.get(key) for key in keys[2:]] == list(range(2, 10))
    assert b.stats.hits == hits + 8  # warm: every unchanged entry a hit, none reloaded
    assert b.get("k0") == "changed" and b.get("k1") is None
    assert stale(client, b) == []


def test_without_reconnect_flush_the_blip_serves_old_values_until_the_replay(
    client: redis.Redis, make_node: NodeFactory
) -> None:
    gate = Gate("disconnect")
    a = make_node("a", strategy="stream")
    b = make_node("b", strategy="stream", events=gate, reconnect_flush=False)
    a.set("k", "old")
    assert b.get("k") == "old"
    settle(a, b)
    gate.arm()
    kill_reader(client, b)
    gate.wait()
    a.set("k", "new")
    assert b.get("k") == "old"  # the switch off: b serves what it cannot vouch for
    gate.release()
    settle(a, b)
    assert b.get("k") == "new"  # yet the replay still brings what it missed
    assert (b.stats.replays, b.stats.repair_checks, b.stats.flushes) == (1, 0, 0)


def test_a_write_without_a_message_during_a_blip_is_a_gap_at_the_replay(
    client: redis.Redis, make_node: NodeFactory
) -> None:
    gate = Gate("disconnect")
    a = make_node("a", strategy="stream")
    b = make_node("b", strategy="stream", events=gate)
    a.set("k", "old")
    assert b.get("k") == "old"
    settle(a, b)
    gate.arm()
    kill_reader(client, b)
    gate.wait()
    store = RedisStore(client, "t", stream_maxlen=10_000)
    store.write("set", "k", messages.encode_value("new"), None)  # a number, and no entry
    gate.release()
    settle(a, b)
    assert (b.stats.replays, b.stats.gaps, b.stats.restored) == (1, 1, 0)
    assert b.stats.repair_dropped == 1
    assert b.get("k") == "new"


def test_a_stream_trimmed_past_the_last_id_is_detected_and_repaired(
    client: redis.Redis, make_node: NodeFactory
) -> None:
    gate = Gate("applied")
    a = make_node("a", strategy="stream", stream_maxlen=10)
    b = make_node("b", strategy="stream", stream_maxlen=10, events=gate)
    keys = [f"k{i}" for i in range(5)]
    for key in keys:
        a.set(key, 0)
        assert b.get(key) == 0
    settle(a, b)
    gate.arm()
    a.set("x", 0)
    gate.wait()  # b's reader has taken x's entry and waits there: a slow consumer
    seen = RedisStore(client, "t", stream_maxlen=10).meta().seq
    for i in range(300):
        a.set(keys[i % 2], i + 1)  # k0 and k1 change; the stream is trimmed far past x
    oldest = messages.decode(entries(client)[0][b"m"], "t")
    assert oldest.seq > seen + 1  # the entries right after b's last id are gone
    gate.release()
    settle(a, b)
    stats = b.stats
    assert stats.gaps == 1 and stats.repair_checks >= 1 and stats.flushes == 0
    assert stats.repair_kept == 3  # k2..k4; of k0 and k1, the first entry read drops one
    assert [b.get(key) for key in keys] == [299, 300, 0, 0, 0]
    assert stale(client, b) == []


def test_the_cap_bounds_the_stream(client: redis.Redis, make_node: NodeFactory) -> None:
    a = make_node("a", strategy="stream", stream_maxlen=50)
    for i in range(1000):
        a.set(f"k{i % 7}", i)
    # MAXLEN ~ trims whole radix-tree nodes (up to 100 entries each): about the cap, not exactly
    assert 50 <= client.xlen(STREAM) <= 150


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "10"])
def test_stream_maxlen_must_be_a_positive_int(client: redis.Redis, bad: Any) -> None:
    with pytest.raises(ValueError, match="stream_maxlen must be a positive int"):
        CacheNode(client, namespace="t", strategy="stream", stream_maxlen=bad)
    with pytest.raises(ValueError, match="stream_maxlen must be a positive int"):
        RedisStore(client, "t", stream_maxlen=bad)


def test_stream_maxlen_is_refused_where_it_would_mean_nothing(client: redis.Redis) -> None:
    with pytest.raises(ValueError, match="stream_maxlen is for strategy 'stream'"):
        CacheNode(client, namespace="t", strategy="invalidate", stream_maxlen=100)


def test_every_node_of_a_namespace_needs_the_same_transport(
    client: redis.Redis, make_node: NodeFactory
) -> None:
    a = make_node("a", strategy="stream", stream_maxlen=100)
    with pytest.raises(TransportMismatch, match="streams with stream_maxlen=100"):
        CacheNode(client, name="b", namespace="t", strategy="invalidate")
    with pytest.raises(TransportMismatch, match="streams with stream_maxlen=100"):
        CacheNode(client, name="b", namespace="t", strategy="stream")  # the default cap
    with CacheNode(client, name="c", namespace="other", strategy="none") as plain:
        plain.set("k", 1)  # creates a pub/sub namespace
    with pytest.raises(TransportMismatch, match="uses pub/sub"):
        CacheNode(client, name="c", namespace="other", strategy="stream")
    writer = make_node("w", strategy="none", stream_maxlen=100)  # a writer that never listens
    assert a.get("k") is None
    writer.set("k", "from a none node")
    settle(a)
    assert a.get("k") == "from a none node"


def test_close_joins_the_reader_and_prints_nothing(
    client: redis.Redis, capfd: pytest.CaptureFixture[str]
) -> None:
    with Cluster(3, client=client, strategy="stream") as cluster:
        for i, node in enumerate(cluster.nodes):
            node.set(f"k{i}", i)
            node.get(f"k{(i + 1) % 3}")
        assert cluster.settle()
        kill_reader(client, cluster.nodes[1])
    alive = [t.name for t in threading.enumerate() if t.name.startswith("cachelab")]
    assert alive == [] and capfd.readouterr().err == ""


@pytest.mark.real_redis
def test_nodes_recover_after_a_restart_that_loses_the_stream(spare_server: Any) -> None:
    with spare_server.client() as client, Cluster(3, client=client, strategy="stream") as cluster:
        a, b, _c = cluster.nodes
        a.set("k", "before")
        assert [n.get("k") for n in cluster.nodes] == ["before"] * 3
        spare_server.restart()  # SIGKILL, no persistence: meta, values and stream are gone
        assert cluster.settle(timeout=15)
        assert [n.get("k") for n in cluster.nodes] == [None] * 3
        b.set("k", "after")
        assert cluster.settle(timeout=10)
        assert [n.get("k") for n in cluster.nodes] == ["after"] * 3
        assert all(n.stats.reconnects >= 1 and n.stats.flushes == 0 for n in cluster.nodes)


LAST_ID = "18446744073709551615-18446744073709551615"


@pytest.mark.parametrize("outsider", ["last-id", "not-a-stream"])
def test_an_outsiders_entry_neither_breaks_writes_nor_deafens_readers(
    client: redis.Redis, make_node: NodeFactory, outsider: str
) -> None:
    a, b = make_node("a", strategy="stream"), make_node("b", strategy="stream")
    a.set("k", "v1")
    assert b.get("k") == "v1"
    if outsider == "last-id":
        client.xadd(STREAM, {"m": "x"}, id=LAST_ID)  # every later XADD '*' is refused
    else:
        client.delete(STREAM)
        client.set(STREAM, "x")  # XADD and XREAD answer WRONGTYPE
    for n in range(2, 6):
        a.set("k", f"v{n}")  # the script starts the stream again; it never raises
    # b's reader finds the stream's end behind it and reads on from there (a marker sent
    # meanwhile is skipped with the rest, and repaired as a gap: settle sends it again)
    assert settle_nodes([a, b])
    assert b.get("k") == "v5" and stale(client, b) == []
    assert [messages.decode(f[b"m"], "t").key for f in entries(client)][:4] == ["k"] * 4


@pytest.mark.real_redis
def test_a_write_the_server_refuses_changes_nothing(real_client: redis.Redis) -> None:
    """Under maxmemory with noeviction the stream entry, a write, is refused first."""
    with CacheNode(real_client, "a", "t", strategy="stream") as a:
        _refused_write_changes_nothing(real_client, a)


def _refused_write_changes_nothing(real_client: redis.Redis, a: CacheNode) -> None:
    """Write under OOM; the store's meta, stream and value are as they were."""
    a.set("k", "old")
    before = (RedisStore(real_client, "t", stream_maxlen=node_cap(a)).meta(), entries(real_client))
    policy = str(real_client.config_get("maxmemory-policy")["maxmemory-policy"])
    real_client.config_set("maxmemory-policy", "noeviction")
    real_client.config_set("maxmemory", "1")
    try:
        with pytest.raises(redis.ResponseError, match="OOM"):
            a.set("k", "new")
    finally:
        real_client.config_set("maxmemory", "0")
        real_client.config_set("maxmemory-policy", policy)
    store = RedisStore(real_client, "t", stream_maxlen=node_cap(a))
    assert (store.meta(), entries(real_client)) == before
    assert messages.decode_value(store.read("k").value or b"") == "old"


@pytest.mark.parametrize("strategy", ["update", "stream"])
def test_a_data_key_an_outsider_made_a_string_is_written_and_told_as_one(
    client: redis.Redis, make_node: NodeFactory, strategy: str
) -> None:
    """Otherwise HSET fails after the counter moved (and, on a stream, after peers were told)."""
    a, b = make_node("a", strategy=strategy), make_node("b", strategy=strategy)
    a.set("k", "v1")
    assert b.get("k") == "v1"
    client.set("{t}:k:k", "an outsider's string")
    a.set("k", "v2")  # never raises
    settle(a, b)
    store = RedisStore(client, "t", stream_maxlen=node_cap(a))
    assert messages.decode_value(store.read("k").value or b"") == "v2"
    assert b.get("k") == "v2" and stale(client, b) == []
