"""CacheNode behaviour, on fakeredis and on a real redis-server."""

from __future__ import annotations

import random
import threading
from typing import Any

import pytest
import redis

import cachelab
from cachelab import ABSENT, CacheNode, Cluster, messages
from cachelab.codec import JSON
from cachelab.contract import Reply
from cachelab.harness.servers import ServerProcess
from cachelab.messages import decode_value
from cachelab.store import RedisStore
from tests.helpers import AnyNode, AnyNodeFactory, NodeFactory, phases, settle


def redis_value(client: redis.Redis, namespace: str, key: str) -> Any:
    """What Redis itself holds for ``key`` (None when absent)."""
    encoded = RedisStore(client, namespace).read(key).value
    return None if encoded is None else decode_value(encoded)




@pytest.mark.parametrize("strategy", ["invalidate", "update"])
def test_random_concurrent_traffic_converges_to_redis(client: redis.Redis, strategy: str) -> None:
    keys = [f"k{i}" for i in range(12)]
    with Cluster(4, strategy=strategy, client=client, max_entries=8) as cluster:

        def worker(seed: int) -> None:
            rng = random.Random(seed)
            for _ in range(300):
                node, key = rng.choice(cluster.nodes), rng.choice(keys)
                roll = rng.random()
                if roll < 0.25:
                    node.set(key, rng.choice([seed, str(seed), [seed], {"s": seed}, b"x"]))
                elif roll < 0.3:
                    node.delete(key)
                else:
                    node.get(key)

        threads = [threading.Thread(target=worker, args=(s,)) for s in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert cluster.settle(timeout=10)
        for node in cluster.nodes:
            for key in keys:
                assert node.get(key) == redis_value(client, cluster.namespace, key), (node, key)
        assert sum(n.stats.invalidations_received for n in cluster.nodes) > 0


def test_peek_reads_the_local_copy_only(make_any_node: AnyNodeFactory) -> None:
    a, b = make_any_node("a"), make_any_node("b")
    a.set("k", "v")
    assert b.peek("k", "none") == "none"  # in Redis, not here: peek neither asks nor loads
    assert b.get("k") == "v"
    hits = b.stats.hits
    assert b.peek("k") == "v" and b.stats.hits == hits + 1
    assert b.peek("missing", 0) == 0 and b.stats.hits == hits + 1


@pytest.mark.needs("strategies")
def test_without_coherence_a_peer_serves_the_old_value(make_any_node: AnyNodeFactory) -> None:
    a, b = make_any_node("a", strategy="none"), make_any_node("b", strategy="none")
    a.set("user:1", "alice")
    assert b.get("user:1") == "alice"
    a.set("user:1", "bob")
    assert b.get("user:1") == "alice"  # stale, and nothing will ever tell b
    assert a.get("user:1") == "bob"


@pytest.mark.needs("versions")
def test_with_invalidation_a_peer_sees_the_new_value(make_any_node: AnyNodeFactory) -> None:
    a, b = make_any_node("a"), make_any_node("b")
    a.set("user:1", "alice")
    settle(a, b)
    assert b.get("user:1") == "alice"
    a.set("user:1", "bob")
    settle(a, b)
    assert b.get("user:1") == "bob"
    assert b.stats.invalidations_received == 2  # both writes, each newer than b knew


@pytest.mark.needs("strategies", "versions")
def test_update_strategy_ships_the_value_without_a_reload(make_any_node: AnyNodeFactory) -> None:
    a, b = make_any_node("a", strategy="update"), make_any_node("b", strategy="update")
    a.set("k", 1)
    assert b.get("k") == 1
    misses = b.stats.misses
    a.set("k", {"v": 2})
    settle(a, b)
    assert b.get("k") == {"v": 2}
    assert b.stats.misses == misses


@pytest.mark.needs("typed")
def test_values_round_trip_with_their_types(make_any_node: AnyNodeFactory) -> None:
    a, b = make_any_node("a"), make_any_node("b")
    values: list[Any] = ["s", b"\x00\xff", 7, 2.5, True, None, [1, "x"], {"a": {"b": [None]}}]
    for i, value in enumerate(values):
        a.set(f"k{i}", value)
    for i, value in enumerate(values):
        got = b.get(f"k{i}")
        assert got == value and type(got) is type(value)


def test_missing_keys_give_the_default_and_are_cached_as_absent(
    make_any_node: AnyNodeFactory,
) -> None:
    a, b = make_any_node("a"), make_any_node("b")
    assert b.get("missing") is None
    assert b.get("missing", default="d") == "d"
    assert b.snapshot()["missing"][0] is ABSENT
    a.set("missing", "now here")
    settle(a, b)
    assert b.get("missing") == "now here"


def test_delete_removes_the_key_everywhere(make_any_node: AnyNodeFactory) -> None:
    a, b = make_any_node("a"), make_any_node("b")
    a.set("k", "1")
    assert b.get("k") == "1"
    b.delete("k")
    settle(a, b)
    assert a.get("k") is None and b.get("k") is None


def _stale_set(make_any_node: AnyNodeFactory, **guards: bool) -> tuple[Any, AnyNode]:
    """Drive the stale-set race: a reader loads v1; v2 and its message land; then the fill."""
    reader, writer = make_any_node("reader", **guards), make_any_node("writer")
    writer.set("k", "v1")
    ticket = phases(reader).load("k")  # read from Redis: v1 ... and the reader stalls here
    writer.set("k", "v2")
    settle(reader, writer)  # the invalidation for v2 reaches the reader first
    phases(reader).fill(ticket)  # ... then the slow fill of v1 lands
    return reader.get("k"), reader


def test_stale_set_race_keeps_the_old_value_without_guards(make_any_node: AnyNodeFactory) -> None:
    value, reader = _stale_set(make_any_node, fill_guard=False, tombstones=False)
    assert value == "v1"
    assert reader.stats.stale_fills_rejected == 0


@pytest.mark.parametrize(
    "guards",
    [{}, {"tombstones": False}, {"fill_guard": False}],
    ids=["defaults", "fill-guard-alone", "tombstones-alone"],
)
def test_stale_set_race_is_prevented_by_each_guard(
    make_any_node: AnyNodeFactory, guards: dict[str, bool]
) -> None:
    value, reader = _stale_set(make_any_node, **guards)
    assert value == "v2"
    assert reader.stats.stale_fills_rejected == 1


def _inject(client: redis.Redis, node: AnyNode, op: str, key: str, seq: int, value: Any) -> None:
    """Publish a well-formed message from a foreign source on the node's channel."""
    inc = RedisStore(client, node.namespace).meta().inc
    msg = messages.Message(node.namespace, op, key, "intruder", seq, value, inc)
    client.publish(messages.channel(node.namespace), messages.encode(msg))


@pytest.mark.needs("versions", "one-namespace")
def test_a_late_or_repeated_number_is_taken_for_a_forgery_and_repaired(
    client: redis.Redis, make_any_node: AnyNodeFactory
) -> None:
    a, b = make_any_node("a", strategy="update"), make_any_node("b", strategy="update")
    for v in range(1, 6):
        a.set("k", f"v{v}")
    settle(a, b)
    assert b.get("k") == "v5"
    version = b.snapshot()["k"][1]
    _inject(client, b, "set", "k", version - 2, "older")  # Redis never delivers late ...
    _inject(client, b, "set", "k", version, "forged")  # ... nor twice: someone else published
    settle(a, b)
    assert b.get("k") == "v5"
    assert b.stats.messages_forged == 2
    assert b.stats.messages_outdated == 0


@pytest.mark.needs("versions", "one-namespace")
def test_without_ordering_and_sequence_checks_a_late_message_wins(
    client: redis.Redis, make_any_node: AnyNodeFactory
) -> None:
    naive = {"ordering": False, "gap_detection": False}
    a, b = make_any_node("a", strategy="update"), make_any_node("b", strategy="update", **naive)
    for v in range(1, 6):
        a.set("k", f"v{v}")
    settle(a, b)
    assert b.get("k") == "v5"
    _inject(client, b, "set", "k", b.snapshot()["k"][1] - 2, "older")
    settle(a, b)
    assert b.get("k") == "older"


@pytest.mark.needs("versions", "one-namespace")
@pytest.mark.parametrize("repair", [True, False], ids=["repair", "flush"])
def test_a_sequence_gap_recovers_what_may_be_stale(
    client: redis.Redis, make_any_node: AnyNodeFactory, repair: bool
) -> None:
    a, b = make_any_node("a"), make_any_node("b", repair=repair)
    a.set("x", 1)
    a.set("z", "unchanged")
    assert b.get("x") == 1 and b.get("z") == "unchanged"
    store = RedisStore(client, "t")
    store.write("set", "x", messages.encode_value(2), None)  # a write whose message is lost
    a.set("y", 3)  # the next message reveals the gap
    settle(a, b)
    assert b.stats.gaps == 1
    assert b.get("x") == 2
    stats = b.stats
    if repair:  # x was changed and dropped; z checked and kept: a hit, no reload
        assert (stats.repair_dropped, stats.repair_kept, stats.flushes) == (1, 1, 0)
        hits = stats.hits
        assert b.get("z") == "unchanged" and b.stats.hits == hits + 1
    else:
        assert (stats.repair_checks, stats.flushes) == (0, 1)


@pytest.mark.needs("versions", "one-namespace")
def test_without_gap_detection_the_lost_write_stays_invisible(
    client: redis.Redis, make_any_node: AnyNodeFactory
) -> None:
    a, b = make_any_node("a"), make_any_node("b", gap_detection=False)
    a.set("x", 1)
    assert b.get("x") == 1
    RedisStore(client, "t").write("set", "x", messages.encode_value(2), None)
    a.set("y", 3)
    settle(a, b)
    assert b.get("x") == 1


@pytest.mark.needs("strategies")
def test_ttl_backstop_bounds_staleness_without_messages(make_any_node: AnyNodeFactory) -> None:
    now = [0.0]
    a = make_any_node("a", strategy="none", ttl=5.0, timer=lambda: now[0])
    b = make_any_node("b", strategy="none")
    a.set("k", "old")
    b.set("k", "new")
    now[0] = 4.9
    assert a.get("k") == "old"
    now[0] = 5.0
    assert a.get("k") == "new"


@pytest.mark.needs("one-lru", "own-writes")
def test_lru_keeps_at_most_max_entries(make_any_node: AnyNodeFactory) -> None:
    a = make_any_node("a", max_entries=3)
    for i in range(5):
        a.set(f"k{i}", i)
    assert list(a.snapshot()) == ["k2", "k3", "k4"]
    assert a.stats.evictions == 2


def test_get_or_load_calls_the_loader_once_for_the_whole_cluster(
    make_any_node: AnyNodeFactory,
) -> None:
    a, b = make_any_node("a"), make_any_node("b")
    calls: list[str] = []

    def loader(key: str) -> str:
        calls.append(key)
        return f"db:{key}"

    assert a.get_or_load("u", loader) == "db:u"
    assert b.get_or_load("u", loader) == "db:u"
    assert a.get_or_load("u", lambda: "unused") == "db:u"
    assert calls == ["u"]


def test_invalidate_after_an_external_write_reloads_everywhere(
    make_any_node: AnyNodeFactory,
) -> None:
    a, b = make_any_node("a"), make_any_node("b")
    db = {"u": "old"}
    assert b.get_or_load("u", lambda: db["u"]) == "old"
    db["u"] = "new"
    a.invalidate("u")
    settle(a, b)
    assert b.get_or_load("u", lambda: db["u"]) == "new"


def test_get_or_load_refuses_to_store_a_value_read_before_a_concurrent_change(
    client: redis.Redis, make_node: NodeFactory
) -> None:
    a, b = make_node("a"), make_node("b")
    db = {"u": "old"}

    def slow_loader() -> str:
        value = db["u"]  # read the old row ...
        db["u"] = "new"  # ... a writer changes it and invalidates meanwhile
        b.invalidate("u")
        return value

    assert a.get_or_load("u", slow_loader) == "old"  # its own read, handed back
    assert a.stats.stale_fills_rejected == 1
    assert redis_value(client, "t", "u") is None  # the old row never reached Redis
    settle(a, b)
    assert a.get_or_load("u", lambda: db["u"]) == "new"


def test_concurrent_misses_on_one_key_load_it_once(client: redis.Redis) -> None:
    release, reads = threading.Event(), []

    class SlowStore(RedisStore):
        def read(self, key: str) -> Reply:
            reads.append(key)
            release.wait(10)
            return super().read(key)

    CacheNode(client, name="w", namespace="t", strategy="none").set("k", "v")
    node = CacheNode(SlowStore(client, "t"), name="a", namespace="t", strategy="none")
    results: list[Any] = []
    threads = [threading.Thread(target=lambda: results.append(node.get("k"))) for _ in range(8)]
    for t in threads:
        t.start()
    for _ in range(5000):  # wait until the leader reads and 7 followers wait on it
        ticket = phases(node).pending("k")
        if ticket is not None and ticket.waiters == 7:
            break
        threading.Event().wait(0.002)
    release.set()
    for t in threads:
        t.join()
    assert results == ["v"] * 8
    assert reads == ["k"]


def test_stats_count_hits_and_misses(make_any_node: AnyNodeFactory) -> None:
    a = make_any_node("a")
    a.get("k")
    a.get("k")
    a.get("k")
    stats = a.stats
    assert (stats.hits, stats.misses) == (2, 1)
    assert stats.hit_rate == pytest.approx(2 / 3)
    assert set(stats.to_dict()) >= {
        "hits",
        "misses",
        "hit_rate",
        "invalidations_received",
        "stale_fills_rejected",
        "flushes",
        "messages_ignored",
    }


def test_recording_cluster_yields_a_history(client: redis.Redis) -> None:
    with Cluster(2, client=client, record=True) as cluster:
        a, b = cluster.nodes
        a.set("k", 1)
        b.get("k")
        b.get("k")
        assert cluster.settle()
        ops = [(op.node, op.op, op.hit) for op in cluster.history]
    assert ops == [("a", "write", False), ("b", "read", False), ("b", "read", True)]


def test_context_manager_closes_and_close_is_idempotent(client: redis.Redis) -> None:
    with CacheNode(client, name="a", namespace="t") as node:
        node.set("k", 1)
    node.close()


@pytest.mark.needs("strategies")
def test_a_writer_without_coherence_still_tells_the_listeners(
    make_any_node: AnyNodeFactory,
) -> None:
    silent, listener = make_any_node("a", strategy="none"), make_any_node("b")
    silent.set("k", "old")
    assert listener.get("k") == "old"
    silent.set("k", "new")
    settle(silent, listener)
    assert listener.get("k") == "new"


class _HeldStore(RedisStore):
    """A store whose first read of a key returns only when ``release`` is set."""

    def __init__(self, client: redis.Redis, namespace: str) -> None:
        super().__init__(client, namespace)
        self.reading, self.release, self.held = threading.Event(), threading.Event(), False

    def read(self, key: str) -> Reply:
        reply = super().read(key)  # the value as it is before the write below
        if not self.held:
            self.held = True
            self.reading.set()
            self.release.wait(10)
        return reply


@pytest.mark.parametrize("write", ["set", "invalidate", "delete"])
def test_a_read_after_a_write_never_joins_a_load_that_began_before_it(
    client: redis.Redis, write: str
) -> None:
    CacheNode(client, name="w", namespace="t", strategy="none").set("k", "old")
    store = _HeldStore(client, "t")
    node = CacheNode(store, name="a", namespace="t", strategy="none")
    early: list[Any] = []
    reader = threading.Thread(target=lambda: early.append(node.get("k")))
    reader.start()
    assert store.reading.wait(10)  # the early load has read "old" and is in flight
    if write == "set":
        node.set("k", "new")
    else:
        CacheNode(client, name="db", namespace="t", strategy="none").set("k", "new")
        getattr(node, write)("k")  # after the source of truth changed
    want = {"set": "new", "invalidate": None, "delete": None}[write]
    assert node.get("k") == want  # its own load, not the one begun before the write
    store.release.set()
    reader.join()
    assert early == ["old"]  # the early read was concurrent with the write: fine
    assert node.get("k") == want  # and its late fill was refused


@pytest.mark.needs("typed", "own-writes")
def test_the_writer_keeps_its_own_copy_of_a_mutable_value(make_any_node: AnyNodeFactory) -> None:
    a, b = make_any_node("a"), make_any_node("b")
    profile: dict[str, Any] = {"name": "alice", "tags": ["x"]}
    a.set("k", profile)
    profile["name"] = "mallory"
    profile["tags"].append("y")
    assert a.get("k") == {"name": "alice", "tags": ["x"]} == b.get("k")


@pytest.mark.real_redis
def test_connect_follows_redis_url_when_set_and_the_embedded_server_otherwise(
    redis_server: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    with cachelab.connect() as real:
        assert real.connection_pool.connection_kwargs["port"] == redis_server.port
        assert "redis_version" in real.info("server")
    monkeypatch.delenv("REDIS_URL")
    with cachelab.connect() as embedded:
        assert type(embedded).__module__.startswith("fakeredis")
    assert cachelab.connect(redis_server.url).ping()  # an explicit URL wins, as ever


@pytest.mark.parametrize("step", ["decode", "encode", "digest"])
def test_values_are_decoded_encoded_and_hashed_outside_the_nodes_lock(
    make_node: NodeFactory, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    """Work in proportion to a value's size (a miss's decode, a loader value's encode, a
    repair's hashing) must not hold the lock every other miss, write and message needs."""
    a, b = make_node("a"), make_node("b")
    a.set("k", "v")
    a.set("j", "w")
    assert b.get("j") == "w"
    inside, release = threading.Event(), threading.Event()
    held: list[bool] = []
    codec = JSON
    real = getattr(codec, step)

    def slow(*args: Any) -> Any:
        inside.set()
        release.wait(10)
        return real(*args)

    actions = {
        "decode": lambda: b.get("k"),
        "encode": lambda: b.get_or_load("new", lambda: "loaded"),
        "digest": lambda: phases(b).subscribed(False),  # back: repair what the loss made suspect
    }
    if step == "digest":
        phases(b).disconnected()
    monkeypatch.setattr(codec, step, slow)
    worker = threading.Thread(target=actions[step])
    worker.start()
    assert inside.wait(10)
    lock = b._driver.lock
    held.append(not lock.acquire(blocking=False))
    if not held[-1]:
        lock.release()
    release.set()
    worker.join(10)
    assert held == [False]
