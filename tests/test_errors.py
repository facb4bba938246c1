"""Error paths: a lost reply, a reentrant loader, failing hooks. None may leave a node
trusting what it should not, hang it, or kill its listener thread."""

from __future__ import annotations

import contextvars
import hashlib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import fakeredis
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from cachelab import CacheNode, ReentrantLoad, store
from cachelab.harness.servers import ServerProcess
from cachelab.store import RedisStore
from tests.helpers import AnyNodeFactory, NodeFactory, listener, settle, wait_for
from tests.test_node import redis_value

_FILL_SHA = hashlib.sha1(store._FILL.encode()).hexdigest()


class LosingReplies(fakeredis.FakeRedis):
    """A client that runs its next script call of op ``lose`` ("any": any call), then loses
    the reply, as a client timeout does while the server goes on."""

    lose: str | None = None

    def evalsha(self, sha: str, numkeys: int, *rest: Any) -> Any:
        result = super().evalsha(sha, numkeys, *rest)
        op = "fill" if sha == _FILL_SHA else rest[numkeys + 2] if len(rest) > numkeys + 2 else None
        if self.lose is not None and self.lose in ("any", op):
            self.lose = None
            raise redis.TimeoutError("the reply was lost")
        return result


@pytest.fixture
def lossy() -> Iterator[tuple[LosingReplies, fakeredis.FakeRedis]]:
    """A client that can lose replies, and a plain one, on one fakeredis server."""
    server = fakeredis.FakeServer()
    yield LosingReplies(server=server), fakeredis.FakeRedis(server=server)


@pytest.mark.parametrize("op", ["set", "delete", "invalidate"])
def test_a_write_whose_reply_is_lost_leaves_the_writer_trusting_nothing_of_the_key(
    lossy: tuple[LosingReplies, fakeredis.FakeRedis], op: str
) -> None:
    writer_client, client = lossy
    with (
        CacheNode(writer_client, name="a", namespace="t") as a,
        CacheNode(client, name="b", namespace="t") as b,
    ):
        a.set("k", "old")
        assert a.get("k") == "old" and b.get("k") == "old"
        writer_client.lose = {"set": "set", "delete": "del", "invalidate": "inv"}[op]
        with pytest.raises(redis.TimeoutError):
            getattr(a, op)("k", "new") if op == "set" else getattr(a, op)("k")
        settle(a, b)
        want = "new" if op == "set" else None
        assert redis_value(client, "t", "k") == want  # the write ran
        assert a.get("k") == want and b.get("k") == want


def test_a_cache_aside_fill_whose_reply_is_lost_drops_the_cached_absence(
    lossy: tuple[LosingReplies, fakeredis.FakeRedis],
) -> None:
    writer_client, client = lossy
    with CacheNode(writer_client, name="a", namespace="t") as a:
        assert a.get("k") is None and a.get("k") is None  # the absence is cached: a hit
        writer_client.lose = "fill"
        with pytest.raises(redis.TimeoutError):
            a.get_or_load("k", lambda: "loaded")  # the fill ran, its reply was lost
        assert redis_value(client, "t", "k") == "loaded"
        assert a.get("k") == "loaded"


def test_a_read_whose_reply_is_lost_wakes_its_waiters_with_the_error(
    lossy: tuple[LosingReplies, fakeredis.FakeRedis],
) -> None:
    writer_client, _ = lossy
    with CacheNode(writer_client, name="a", namespace="t", strategy="none") as a:
        writer_client.lose = "any"
        with pytest.raises(redis.TimeoutError):
            a.get("k")
        assert a.get("k") is None  # the next read works: no ticket was left behind


def test_a_write_stalled_past_its_timeout_still_leaves_nothing_stale(
    spare_server: ServerProcess,
) -> None:
    """An outsider's DEBUG SLEEP outlasts the writer's timeout; the write runs after it."""
    writer_client = spare_server.client(socket_timeout=0.2, retry=Retry(NoBackoff(), 0))
    client = spare_server.client()
    with (
        CacheNode(writer_client, name="a", namespace="t", heartbeat=None) as a,
        CacheNode(client, name="b", namespace="t") as b,
    ):
        a.set("k", "old")
        assert a.get("k") == "old" and b.get("k") == "old"
        spare_server.pause()  # the kernel still takes the writer's bytes; nothing runs them
        with pytest.raises(redis.TimeoutError):
            a.set("k", "new")
        spare_server.resume()  # the server reads the script from its socket and runs it
        wait_for(lambda: redis_value(client, "t", "k") == "new", "the stalled write ran")
        settle(a, b)
        assert a.get("k") == "new" and b.get("k") == "new"
    writer_client.close()
    client.close()


def test_a_loader_that_reads_its_own_key_raises_instead_of_hanging(
    make_node: NodeFactory,
) -> None:
    a = make_node("a")
    with pytest.raises(ReentrantLoad, match="'k'"):
        a.get_or_load("k", lambda: a.get("k"))
    assert a.get("k") is None  # nothing was left waiting
    assert a.get_or_load("k", lambda: a.get("other", "fine")) == "fine"  # other keys may


def finishes(call: Callable[[], Any]) -> Any:
    """Run ``call`` on a thread and return its result; fail (not hang) if it never ends."""
    result: list[Any] = []
    worker = threading.Thread(target=lambda: result.append(call()), name="test-worker")
    worker.start()
    worker.join(60)  # a deadlock detector, not a timing claim: the call takes milliseconds
    assert not worker.is_alive(), "deadlocked: the call never returned"
    return result[0]


def test_a_loader_whose_own_thread_reads_its_key_gets_the_store_value_not_a_deadlock(
    make_node: NodeFactory,
) -> None:
    a = make_node("a")
    seen: list[Any] = []

    def loader() -> str:
        reader = threading.Thread(target=lambda: seen.append(a.get("k", "absent")))
        reader.start()
        reader.join()  # the loader waits for its reader, which must not wait for the loader
        return "loaded"

    assert finishes(lambda: a.get_or_load("k", loader)) == "loaded"
    assert seen == ["absent"] and a.get("k") == "loaded"


def test_a_loader_whose_copied_context_loads_its_key_gets_a_clear_error(
    make_node: NodeFactory,
) -> None:
    a = make_node("a")
    errors: list[BaseException] = []

    def child() -> None:
        try:
            a.get_or_load("k", lambda: "inner")
        except ReentrantLoad as exc:
            errors.append(exc)

    def loader() -> str:
        context = contextvars.copy_context()  # what asyncio.to_thread does
        worker = threading.Thread(target=context.run, args=(child,))
        worker.start()
        worker.join()
        return "outer"

    assert finishes(lambda: a.get_or_load("k", loader)) == "outer"
    assert len(errors) == 1 and "'k'" in str(errors[0])


def test_a_hook_that_raises_on_every_event_is_counted_and_never_hangs_the_node(
    make_any_node: AnyNodeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    def explode(node: str, kind: str, key: str, version: int) -> None:
        raise RuntimeError(f"hook fails on {kind}")

    a, b = make_any_node("a"), make_any_node("b", events=explode)
    a.set("k", "1")
    with caplog.at_level(logging.DEBUG, logger="cachelab.node"):
        results: list[Any] = []
        threads = [threading.Thread(target=lambda: results.append(b.get("k"))) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        a.set("k", "2")
        settle(a, b)
        assert results == ["1"] * 4 and b.get("k") == "2"
    assert b.stats.hook_errors >= 2  # the fill, the applied message
    assert "hook fails on fill" in caplog.text


def test_a_hook_may_read_the_node_it_reports_on(make_node: NodeFactory) -> None:
    seen: list[int] = []
    holder: list[CacheNode] = []

    def watch(node: str, kind: str, key: str, version: int) -> None:
        seen.append(holder[0].stats.entries)  # the node's lock is free here

    a = make_node("a")
    holder.append(make_node("b", events=watch))
    a.set("k", 1)
    assert holder[0].get("k") == 1
    settle(a, holder[0])
    assert seen and holder[0].stats.hook_errors == 0


def test_a_hook_that_raises_on_disconnect_does_not_kill_the_listener() -> None:
    server = fakeredis.FakeServer()
    client = fakeredis.FakeRedis(server=server)

    def explode(node: str, kind: str, key: str, version: int) -> None:
        if kind == "disconnect":
            raise RuntimeError("no")

    with (
        CacheNode(client, name="a", namespace="t") as a,
        CacheNode(client, name="b", namespace="t", events=explode, heartbeat=0.05) as b,
    ):
        a.set("k", 1)
        assert b.get("k") == 1
        server.connected = False
        wait_for(lambda: not b.coherent, "b notices")
        server.connected = True
        wait_for(lambda: b.coherent, "b resubscribes")
        wait_for(lambda: a.coherent, "a resubscribes too (else it never hears the settle marker)")
        a.set("k", 2)
        settle(a, b)
        assert b.get("k") == 2
        assert b.stats.hook_errors >= 1
        assert any(t.name == "cachelab-bus-b" for t in threading.enumerate())


def test_a_recorder_that_raises_is_contained(make_any_node: AnyNodeFactory) -> None:
    def broken(*op: object) -> None:
        raise ValueError("recorder down")

    a = make_any_node("a", recorder=broken)
    a.set("k", "1")
    assert a.get("k") == "1"
    assert a.stats.hook_errors == 2


def test_a_listener_thread_that_dies_takes_the_nodes_trust_with_it(
    make_node: NodeFactory,
) -> None:
    a, b = make_node("a"), make_node("b")
    a.set("k", 1)
    assert b.get("k") == 1

    def die() -> None:
        raise SystemExit("a hook called sys.exit")  # BaseException: not contained

    listener(b).maintain = die
    wait_for(lambda: not b.coherent, "b stops trusting its cache")
    assert b.snapshot() == {}
    a.set("k", 2)
    assert b.get("k") == 2  # read through Redis, never from memory


def test_hooks_must_be_callable(client: redis.Redis) -> None:
    for option in ("events", "recorder", "timer"):
        with pytest.raises(TypeError, match=option):
            CacheNode(client, name="a", namespace="t", **{option: 5})  # type: ignore[arg-type]
    assert RedisStore(client, "t").meta().seq == 0
    assert client.keys("{t}:k:*") == []
