"""MemoryStore does exactly what RedisStore's Lua scripts do (checked against fakeredis)."""

from __future__ import annotations

import random
import re
from typing import Any

import fakeredis
import pytest

from cachelab.contract import Reply
from cachelab.messages import message_head, message_prefix
from cachelab.sim.store import MemoryStore
from cachelab.store import RedisStore

KEYS = ["k0", "k1", "k2"]


class Incarnations:
    """Names each store's incarnations 0, 1, 2... in order of appearance, to compare them."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}

    def __call__(self, answer: Any) -> Any:
        if isinstance(answer, str) and "-" in answer:  # digests have none
            return self.seen.setdefault(answer, len(self.seen))
        if isinstance(answer, bytes) and b'"inc":"' in answer:
            return re.sub(rb'"inc":"([^"]+)"', lambda m: b"%d" % self(m[1].decode()), answer)
        if isinstance(answer, tuple | list):
            return [self(item) for item in answer]
        return answer


def _call(store: Any, rng: random.Random, forget_meta: Any) -> tuple[str, Any]:
    """One random store call, the same on both stores for the same rng state."""
    key, roll = rng.choice(KEYS), rng.random()
    full = message_head(message_prefix("ns", "a#1"), "set", key, None)
    head = full if rng.random() < 0.7 else None
    if roll < 0.2:
        return "read", store.read(key)
    if roll < 0.45:
        return "write", store.write(rng.choice(["set", "del", "inv"]), key, "[0,1]", head)
    if roll < 0.7:
        inc = store.meta().inc if rng.random() < 0.8 else "another"
        since = Reply(None, rng.randrange(0, 12), inc, 0)
        return "fill", store.fill(key, "[0,2]", since, head)
    if roll < 0.8:
        return "check", store.check(rng.sample(KEYS, 2))
    if roll < 0.95:
        return "mark", store.mark(store.channel if hasattr(store, "channel") else "", head)
    forget_meta()
    return "forget", None


@pytest.mark.parametrize("seed", range(8))
def test_random_calls_give_the_same_answers_and_messages(seed: int) -> None:
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    redis_store = RedisStore(client, "ns")
    pubsub = client.pubsub()
    pubsub.subscribe(redis_store.channel)
    published: list[bytes] = []
    memory = MemoryStore(lambda: 0.0, on_publish=published.append)
    rng_redis, rng_memory = random.Random(seed), random.Random(seed)
    names_redis, names_memory = Incarnations(), Incarnations()
    for _ in range(80):
        got = _call(redis_store, rng_redis, lambda: client.delete(redis_store.meta_key))
        want = _call(memory, rng_memory, memory.forget_meta)
        assert names_redis(got) == names_memory(want)
    heard = [m["data"] for m in iter(lambda: pubsub.get_message(timeout=0.01), None)]
    heard = [m for m in heard if m != 1]  # 1: the subscribe confirmation
    assert [names_redis(m) for m in heard] == [names_memory(m) for m in published]
    assert len(names_memory.seen) > 1  # the runs did lose their meta and start again
    pubsub.close()


def test_an_absent_key_reads_as_the_current_sequence_number() -> None:
    store = MemoryStore(lambda: 0.0)
    store.write("set", "a", "[0,1]", None)
    store.write("del", "b", "", None)
    assert store.read("b") == Reply(None, 2, "sim-1", 2)
    assert store.read("never") == Reply(None, 2, "sim-1", 2)
    assert store.read("a") == Reply(b"[0,1]", 1, "sim-1", 2)


def test_a_fill_is_refused_after_a_newer_marker_until_the_marker_expires() -> None:
    now = [0.0]
    store = MemoryStore(lambda: now[0], marker_ttl=10.0)
    store.write("inv", "k", "", None)
    assert store.fill("k", "[0,1]", Reply(None, 0, "sim-1", 0), None).seq == 0
    now[0] = 10.0
    assert store.fill("k", "[0,1]", Reply(None, 0, "sim-1", 0), None).seq == 2


def test_a_fill_is_refused_when_a_value_is_there_or_the_read_was_another_incarnation() -> None:
    store = MemoryStore(lambda: 0.0)
    store.write("set", "k", "[0,1]", None)
    assert store.fill("k", "[0,2]", Reply(None, 5, "sim-1", 5), None).seq == 0
    assert store.read("k").value == b"[0,1]"
    assert store.fill("other", "[0,2]", Reply(None, 5, "sim-0", 5), None).seq == 0


def test_writes_report_to_the_hook_before_they_publish() -> None:
    seen: list[object] = []
    store = MemoryStore(
        lambda: 0.0, on_write=lambda *call: seen.append(call), on_publish=seen.append
    )
    store.write("set", "k", "[0,1]", "HEAD,")
    assert seen == [("set", "k", 1), b'HEAD,"inc":"sim-1","seq":1}']


def test_a_restart_loses_data_and_sequence_and_starts_a_new_incarnation() -> None:
    store = MemoryStore(lambda: 0.0)
    store.write("set", "k", "[0,1]", None)
    store.write("del", "gone", "", None)
    assert store.restart() == ["k"]  # the keys whose values were lost, not the markers
    assert (store.read("k").value, store.meta(), len(store)) == (None, ("sim-2", 0), 0)


def test_a_value_that_outlives_its_meta_becomes_version_zero_of_the_next() -> None:
    store = MemoryStore(lambda: 0.0)
    for _ in range(3):
        store.write("set", "k", "[0,1]", None)
    store.forget_meta()
    assert store.read("k") == Reply(b"[0,1]", 0, "sim-2", 0)
    assert store.write("set", "k", "[0,2]", None).seq == 1  # newer than the survivor


class _Meddling(fakeredis.FakeRedis):
    """A client during whose every script call another thread learns of a new incarnation."""

    store: RedisStore | None = None

    def evalsha(self, *args: Any) -> Any:
        result = super().evalsha(*args)
        if self.store is not None:
            self.store._known = "learned-meanwhile"  # as another thread's reply would
        return result


def test_a_reply_is_read_against_the_incarnation_its_own_call_sent() -> None:
    client = _Meddling(server=fakeredis.FakeServer())
    store = RedisStore(client, "ns")
    inc = store.meta().inc
    client.store = store
    for _ in range(2):
        store._known = inc
        assert store.write("set", "k", "[0,1]", None).inc == inc
        store._known = inc
        assert store.read("k").inc == inc
        store._known = inc
        assert store.mark("", None).inc == inc


@pytest.mark.parametrize("seed", range(4))
def test_with_a_stream_both_stores_append_the_same_entries(seed: int) -> None:
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    redis_store = RedisStore(client, "ns", stream_maxlen=1000)
    memory = MemoryStore(lambda: 0.0, stream_maxlen=1000)
    rng_redis, rng_memory = random.Random(seed), random.Random(seed)
    names_redis, names_memory = Incarnations(), Incarnations()
    for _ in range(80):
        got = _call(redis_store, rng_redis, lambda: client.delete(redis_store.meta_key))
        want = _call(memory, rng_memory, memory.forget_meta)
        assert names_redis(got) == names_memory(want)
    entries = client.xrange(redis_store.stream_key)
    streamed = [fields[b"m"] for _, fields in entries]  # type: ignore[union-attr,index]
    kept = [raw for _, raw, _ in memory.stream_after(0, memory.stream_end())]
    assert streamed and [names_redis(m) for m in streamed] == [names_memory(m) for m in kept]
    assert client.pubsub_numsub(redis_store.channel) == [(b"{ns}:bus", 0)]


def test_the_memory_stream_keeps_the_last_entries_and_reads_from_an_id() -> None:
    heard: list[bytes] = []
    store = MemoryStore(lambda: 0.0, stream_maxlen=3, on_publish=heard.append)
    for i in range(5):
        store.write("set", f"k{i}", "[0,1]", f"H{i},")
    assert store.stream_end() == 5 and len(heard) == 5  # subscribers of the hook hear all
    assert [entry_id for entry_id, _, _ in store.stream_after(0, 5)] == [3, 4, 5]  # 1, 2 trimmed
    assert [entry_id for entry_id, _, _ in store.stream_after(3, 4)] == [4]
    assert store.stream_after(5, 5) == []
    store.restart()  # the stream goes with the data; its ids go on rising, as time does
    store.write("set", "k", "[0,1]", "H,")
    assert [entry_id for entry_id, _, _ in store.stream_after(5, store.stream_end())] == [6]
