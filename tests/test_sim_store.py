"""MemoryStore does exactly what RedisStore's Lua scripts do (checked against fakeredis)."""

from __future__ import annotations

import random
from typing import Any

import fakeredis
import pytest

from cachelab.messages import message_head, message_prefix
from cachelab.sim.store import MemoryStore
from cachelab.store import RedisStore

KEYS = ["k0", "k1", "k2"]


def _call(store: Any, rng: random.Random) -> tuple[str, Any]:
    """One random store call, the same on both stores for the same rng state."""
    key, roll = rng.choice(KEYS), rng.random()
    head = (
        message_head(message_prefix("ns", "a#1"), "set", key, None) if rng.random() < 0.7 else None
    )
    if roll < 0.3:
        return "read", store.read(key)
    if roll < 0.6:
        return "write", store.write(rng.choice(["set", "del", "inv"]), key, "[0,1]", head)
    if roll < 0.9:
        return "fill", store.fill(key, "[0,2]", rng.randrange(0, 12), head)
    return "seq", store.seq()


@pytest.mark.parametrize("seed", range(8))
def test_random_calls_give_the_same_answers_and_messages(seed: int) -> None:
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    redis_store = RedisStore(client, "ns")
    pubsub = client.pubsub()
    pubsub.subscribe(redis_store.channel)
    published: list[bytes] = []
    memory = MemoryStore(lambda: 0.0, on_publish=published.append)
    rng_redis, rng_memory = random.Random(seed), random.Random(seed)
    for _ in range(60):
        assert _call(redis_store, rng_redis) == _call(memory, rng_memory)
    heard = [m["data"] for m in iter(lambda: pubsub.get_message(timeout=0.01), None)]
    assert [m for m in heard if m != 1] == published  # 1: the subscribe confirmation
    pubsub.close()


def test_an_absent_key_reads_as_the_current_sequence_number() -> None:
    store = MemoryStore(lambda: 0.0)
    store.write("set", "a", "[0,1]", None)
    store.write("del", "b", "", None)
    assert store.read("b") == (None, 2)
    assert store.read("never") == (None, 2)
    assert store.read("a") == (b"[0,1]", 1)


def test_a_fill_is_refused_after_a_newer_marker_until_the_marker_expires() -> None:
    now = [0.0]
    store = MemoryStore(lambda: now[0], marker_ttl=10.0)
    store.write("inv", "k", "", None)
    assert store.fill("k", "[0,1]", 0, None) == 0
    now[0] = 10.0
    assert store.fill("k", "[0,1]", 0, None) == 2


def test_a_fill_is_refused_when_a_value_is_there() -> None:
    store = MemoryStore(lambda: 0.0)
    store.write("set", "k", "[0,1]", None)
    assert store.fill("k", "[0,2]", 5, None) == 0
    assert store.read("k") == (b"[0,1]", 1)


def test_writes_report_to_the_hook_before_they_publish() -> None:
    seen: list[object] = []
    store = MemoryStore(
        lambda: 0.0, on_write=lambda *call: seen.append(call), on_publish=seen.append
    )
    store.write("set", "k", "[0,1]", "HEAD")
    assert seen == [("set", "k", 1), b"HEAD1}"]


def test_a_restart_loses_data_and_sequence() -> None:
    store = MemoryStore(lambda: 0.0)
    store.write("set", "k", "[0,1]", None)
    store.write("del", "gone", "", None)
    assert store.restart() == ["k"]  # the keys whose values were lost, not the markers
    assert (store.read("k"), store.seq(), len(store)) == ((None, 0), 0, 0)
