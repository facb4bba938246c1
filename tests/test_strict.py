"""strict=True: no hit while a message the node was sent may wait unread (#17).

Each race is driven, not timed: the test stops a node's listener at a known point (between
rounds, or inside the handling of a message), has a peer write, and reads. A default node
held the same way serves the old value, which is what makes each test able to fail.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import fakeredis
import pytest
import redis

from cachelab import AsyncCacheNode, CacheNode, validate
from cachelab.coherence import strategy_for
from cachelab.messages import channel
from cachelab.strict import Gate, probes
from tests.helpers import AnyNodeFactory, Hold, LoopThread, settle

WAIT = 10.0  # seconds a held listener or a test waits at most, so a failure never hangs


def _filled(make: AnyNodeFactory, **options: Any) -> tuple[Any, Any, Any]:
    """A writer, a strict reader and a default reader, both readers holding k = v1."""
    writer = make("w", strict=True, **options)  # a strict write returns once peers have it
    strict = make("s", strict=True, **options)
    plain = make("d", **options)
    writer.set("k", "v1")
    settle(writer, strict, plain)
    for node in (strict, plain):
        assert node.get("k") == "v1"
    return writer, strict, plain


def _hits(node: Any) -> int:
    return int(node.stats.hits)


def test_a_strict_node_reads_through_while_a_message_waits_in_its_socket(
    make_any_node: AnyNodeFactory,
) -> None:
    writer, strict, plain = _filled(make_any_node)
    hits = _hits(strict)
    assert strict.get("k") == "v1" and _hits(strict) == hits + 1  # quiet: a hit
    with Hold("maintain", strict, plain) as hold:
        hold.reached()
        writer.set("k", "v2")  # returned: its message is in both sockets, unread
        assert plain.get("k") == "v1"  # the default node serves its copy
        assert strict.get("k") == "v2"  # the strict one goes to Redis
        assert _hits(strict) == hits + 1
    settle(writer, strict, plain)
    assert plain.get("k") == strict.get("k") == "v2"
    assert strict.get("k") == "v2" and _hits(strict) >= hits + 2  # hits resume once applied


@pytest.mark.needs("strategies")
def test_a_strict_update_node_does_not_serve_the_value_it_has_not_yet_applied(
    make_any_node: AnyNodeFactory,
) -> None:
    writer, strict, plain = _filled(make_any_node, strategy="update")
    with Hold("maintain", strict, plain) as hold:
        hold.reached()
        writer.set("k", "v2")
        assert (plain.get("k"), strict.get("k")) == ("v1", "v2")
    settle(writer, strict, plain)
    assert strict.get("k") == "v2"


def test_a_strict_node_reads_through_while_its_listener_applies_a_message(
    make_any_node: AnyNodeFactory, flavour: str
) -> None:
    writer, strict, plain = _filled(make_any_node)
    writer.set("other", 1)
    settle(writer, strict, plain)
    assert str(strict.get("other")) == str(plain.get("other")) == "1"  # tracked by the server too
    method = "invalidated" if flavour == "tracking" else "receive"
    with Hold(method, strict, plain) as hold:
        writer.set("other", 2)  # each listener reads this one and stops inside its handling
        hold.reached()
        writer.set("k", "v2")
        assert (plain.get("k"), strict.get("k")) == ("v1", "v2")
    settle(writer, strict, plain)
    assert strict.get("k") == plain.get("k") == "v2"


def test_a_strict_node_reads_through_once_its_subscription_is_killed(
    make_real_node: AnyNodeFactory, real_client: redis.Redis
) -> None:
    writer, strict, plain = _filled(make_real_node)
    with Hold("maintain", strict, plain) as hold:
        hold.reached()
        real_client.client_kill_filter(_type="pubsub")  # every subscriber: its message is lost
        writer.set("k", "v2")
        assert (plain.get("k"), strict.get("k")) == ("v1", "v2")
    settle(writer, strict, plain)
    assert strict.get("k") == plain.get("k") == "v2"
    assert strict.stats.disconnects >= 1


def test_a_killed_subscription_is_reported_at_once_not_resubscribed_silently(
    make_real_node: AnyNodeFactory, real_client: redis.Redis
) -> None:
    # redis-py would reconnect and resubscribe by itself, tens of ms later, and the node
    # never heard of the loss (it counted a resubscription, no disconnect).
    writer, _, plain = _filled(make_real_node)
    real_client.client_kill_filter(_type="pubsub")
    settle(writer, plain)
    assert plain.stats.disconnects >= 1


def test_a_gate_is_closed_until_a_live_subscription_has_been_read() -> None:
    gate = Gate()
    assert not gate.quiet(gate.turn)
    gate.waiting = lambda: False  # a watched connection with nothing waiting
    assert not gate.quiet(gate.turn)  # but no subscription read yet
    connection = _connection(half_read=False)
    gate.leave(connection)
    assert gate.quiet(gate.turn)
    turn = gate.turn
    gate.enter()  # the listener takes a message between a hit's two looks
    assert not gate.quiet(turn)
    gate.leave(connection)
    assert gate.quiet(gate.turn) and gate.turn != turn


def test_a_gate_stays_closed_while_part_of_a_message_is_in_the_parser() -> None:
    gate = Gate()
    gate.waiting = lambda: False
    gate.leave(_connection(half_read=True))
    assert not gate.quiet(gate.turn)
    gate.leave(_connection(half_read=False))
    assert gate.quiet(gate.turn)


def test_a_closed_gate_serves_nothing_until_its_new_connection_is_read() -> None:
    server = fakeredis.FakeServer()
    pubsub = fakeredis.FakeRedis(server=server).pubsub()
    pubsub.subscribe("c")
    gate = Gate()
    gate.watch(pubsub.connection)
    assert gate.waiting()  # the confirmation waits
    while pubsub.get_message(timeout=0) is not None:
        pass
    gate.leave(pubsub.connection)
    assert gate.quiet(gate.turn)
    fakeredis.FakeRedis(server=server).publish("c", "x")
    assert not gate.quiet(gate.turn)
    gate.close()
    assert gate.turn & 1 and gate.waiting()
    pubsub.close()


def test_a_connection_the_gate_cannot_watch_is_refused() -> None:
    with pytest.raises(TypeError, match="strict=True"):
        probes(SimpleNamespace(_sock=object()))


@pytest.mark.parametrize(
    ("strategy", "options", "match"),
    [
        ("none", {}, "pub/sub strategy"),
        ("stream", {}, "pub/sub strategy"),
        ("invalidate", {"stream_maxlen": 100}, "pub/sub strategy"),
        ("invalidate", {"bus": object()}, "gate"),
    ],
)
def test_strict_is_refused_where_there_is_no_pubsub_to_watch(
    strategy: str, options: dict[str, Any], match: str
) -> None:
    r = fakeredis.FakeRedis()
    with pytest.raises(ValueError, match=match):
        CacheNode(r, strategy=strategy, strict=True, **options)
    with pytest.raises(ValueError, match="Redis Cluster"):
        validate.strict(True, strategy_for("invalidate"), None, True, None)
    with pytest.raises(TypeError, match="True or False"):
        CacheNode(r, strict=1)  # type: ignore[arg-type]
    if strategy in ("none", "stream"):
        with pytest.raises(ValueError):
            AsyncCacheNode(fakeredis.FakeAsyncRedis(), strategy=strategy, strict=True)


def test_a_strict_async_peek_answers_the_default_while_a_message_waits(aio: LoopThread) -> None:
    server = fakeredis.FakeServer()

    async def body() -> tuple[Any, Any]:
        r = fakeredis.FakeAsyncRedis(server=server)
        async with AsyncCacheNode(r, name="s", namespace="p", strict=True) as node:
            await node.set("k", 1)
            while node.peek("k") is None:  # its own message applied: the gate opens
                await asyncio.sleep(0.01)
            await fakeredis.FakeAsyncRedis(server=server).publish(channel("p"), b"{}")
            waiting = node.peek("k", "default")  # the listener task has not run since
            await asyncio.sleep(0.05)
            after = node.peek("k", "default")
        await r.aclose()
        return waiting, after

    assert aio.run(body()) == ("default", 1)


def _connection(half_read: bool) -> Any:
    """A stand-in for a redis-py connection whose hiredis reader holds bytes or not."""
    reader = SimpleNamespace(has_data=lambda: half_read)
    return SimpleNamespace(_parser=SimpleNamespace(_reader=reader))


def test_a_strict_write_returns_after_one_more_round_trip(real_client: redis.Redis) -> None:
    # Redis writes the writer's reply before the peers' messages; the PING fence returns
    # only after that loop, so a peer's socket holds the message when the write returns.
    pings = _pings(real_client)
    with CacheNode(real_client, name="s", namespace="f", strict=True, heartbeat=None) as node:
        node.set("k", 1)
        node.delete("k")
        node.invalidate("k")
        assert _pings(real_client) - pings == 3
    with CacheNode(real_client, name="d", namespace="f", heartbeat=None) as node:
        node.set("k", 2)
        assert _pings(real_client) - pings == 3


def _pings(client: redis.Redis) -> int:
    stats = client.info("commandstats").get("cmdstat_ping", {"calls": 0})
    return int(stats["calls"])


def test_a_strict_peek_answers_the_default_while_a_message_waits(
    make_any_node: AnyNodeFactory,
) -> None:
    writer, strict, plain = _filled(make_any_node)
    with Hold("maintain", strict, plain) as hold:
        hold.reached()
        writer.set("k", "v2")
        assert (plain.peek("k"), strict.peek("k", "unsure")) == ("v1", "unsure")
    settle(writer, strict, plain)
    assert strict.get("k") == "v2" and strict.peek("k") == "v2"
