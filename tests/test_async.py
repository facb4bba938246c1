"""What only the asyncio shell has: peek, single flight on futures, cancellation in the
middle of a load or a write, the listener task's life and death, and its argument checks.

The behaviour every node owes (convergence, kills, garbage, the races, forgeries) runs on
both shells through ``make_any_node`` in the other test files. Each test here runs its
coroutine on the ``aio`` loop, which must end with no task pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import fakeredis
import pytest
import redis
import redis.asyncio

from cachelab import AsyncCacheNode, AuthenticationMismatch, ReentrantLoad, messages
from cachelab.async_node import settle
from cachelab.contract import Reply, Stamp
from cachelab.history import Recorder
from cachelab.store import RedisStore
from tests.helpers import LoopThread, async_twin, listener, phases


async def until(condition: Callable[[], bool], what: str) -> None:
    """Let the loop run until ``condition`` holds (bounded; no claim about time)."""
    for _ in range(5000):
        if condition():
            return
        await asyncio.sleep(0.002)
    raise AssertionError(f"never happened: {what}")


async def joined(target: AsyncCacheNode, key: str, waiters: int) -> None:
    """Let the loop run until ``waiters`` tasks wait on ``target``'s load of ``key``."""
    await until(
        lambda: (f := phases(target).pending(key)) is not None and f.waiters == waiters,
        "joiners wait",
    )


async def cancel(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and see it end cancelled."""
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def node(r: redis.asyncio.Redis, name: str = "a", **options: Any) -> AsyncCacheNode:
    """A node of namespace "t"."""
    options.setdefault("namespace", "t")
    return AsyncCacheNode(r, name=name, **options)


def held_reads(target: AsyncCacheNode) -> tuple[list[str], asyncio.Event]:
    """Make ``target``'s store reads answer only once the returned event is set (with what
    they read before waiting); list the keys read."""
    reads: list[str] = []
    release = asyncio.Event()
    read = target._store.read

    async def slow(key: str) -> Reply:
        reply = await read(key)  # the value as it is now ...
        reads.append(key)
        await release.wait()  # ... handed back only once released
        return reply

    target._store.read = slow  # type: ignore[method-assign]
    return reads, release


@contextlib.asynccontextmanager
async def held(
    r: redis.asyncio.Redis,
) -> AsyncIterator[tuple[AsyncCacheNode, list[str], asyncio.Event]]:
    """Node "a", whose store reads of "k" (set to "v" by another node) wait for the event."""
    async with node(r, "w", strategy="none") as w, node(r, "a") as a:
        await w.set("k", "v")
        assert await settle([a])  # w's message reached a: it cannot taint a's loads later
        reads, release = held_reads(a)
        yield a, reads, release


def test_peek_reads_the_local_copy_only(aio: LoopThread, async_client: redis.asyncio.Redis) -> None:
    async def body() -> None:
        now = [0.0]
        clock = {"ttl": 5.0, "timer": lambda: now[0]}
        async with node(async_client, "a") as a, node(async_client, "b", **clock) as b:
            await a.set("k", {"v": 1})
            assert b.peek("k") is None and b.peek("k", "d") == "d"  # a miss loads nothing
            assert (b.stats.hits, b.stats.misses) == (0, 0)  # ... and counts nothing
            assert await b.get("k") == {"v": 1}  # the load that follows counts the miss
            assert b.peek("k") == {"v": 1} and b.stats.hits == 1
            assert await b.get("missing", "d") == "d"
            assert b.peek("missing", "d") == "d"  # a cached absence: the default
            assert b.stats.hits == 2
            now[0] = 6.0  # past the TTL: no longer a hit
            assert b.peek("k", "gone") == "gone"

    aio.run(body())


def test_peek_and_get_hits_make_no_round_trip(
    aio: LoopThread, async_client: redis.asyncio.Redis
) -> None:
    async def body() -> None:
        async with node(async_client, "a", strategy="none") as a:
            await a.set("k", 1)
            calls: list[str] = []
            run = a._store._run

            async def counted(call: Any) -> Any:
                calls.append(call.script)
                return await run(call)

            a._store._run = counted  # type: ignore[method-assign]
            assert a.peek("k") == 1 and await a.get("k") == 1
            assert a.peek("other") is None
            assert calls == []
            assert await a.get("other") is None
            assert calls == ["read"]

    aio.run(body())


def test_concurrent_misses_on_one_key_load_it_once(
    aio: LoopThread, async_client: redis.asyncio.Redis
) -> None:
    async def body() -> None:
        async with held(async_client) as (a, reads, release):
            tasks = [asyncio.create_task(a.get("k")) for _ in range(8)]
            await joined(a, "k", 7)
            release.set()
            assert await asyncio.gather(*tasks) == ["v"] * 8
            assert reads == ["k"]
            assert phases(a).pending("k") is None

    aio.run(body())


def test_a_loader_that_raises_releases_the_ticket_and_every_joiner_gets_its_error(
    aio: LoopThread, async_client: redis.asyncio.Redis
) -> None:
    async def body() -> None:
        async with node(async_client, "a") as a:
            release = asyncio.Event()

            async def failing() -> str:
                await release.wait()
                raise LookupError("the database is down")

            leader = asyncio.create_task(a.get_or_load("k", failing))
            joiners = [asyncio.create_task(a.get_or_load("k", failing)) for _ in range(3)]
            await joined(a, "k", 3)
            release.set()
            results = await asyncio.gather(leader, *joiners, return_exceptions=True)
            assert all(isinstance(r, LookupError) for r in results), results
            assert phases(a).pending("k") is None  # no ticket left behind
            assert await a.get_or_load("k", lambda: "loaded") == "loaded"
            assert a.peek("k") == "loaded"

    aio.run(body())


def test_a_sync_loader_is_called_and_an_async_one_awaited(
    aio: LoopThread, async_client: redis.asyncio.Redis
) -> None:
    async def body() -> None:
        async with node(async_client, "a") as a, node(async_client, "b") as b:

            async def fetch(key: str) -> str:
                await asyncio.sleep(0)
                return f"db:{key}"

            assert await a.get_or_load("x", fetch) == "db:x"
            assert await a.get_or_load("y", lambda: 7) == 7
            assert await b.get_or_load("x", lambda: "unused") == "db:x"  # stored for all
            with pytest.raises(TypeError, match="callable"):
                await a.get_or_load("z", "not a loader")  # type: ignore[arg-type]

    aio.run(body())


def test_cancelling_the_leader_mid_load_releases_the_ticket_and_a_joiner_loads_again(
    aio: LoopThread, async_client: redis.asyncio.Redis
) -> None:
    async def body() -> None:
        async with node(async_client, "a") as a, node(async_client, "b") as b:
            started = asyncio.Event()
            calls: list[str] = []

            async def never(key: str) -> str:
                calls.append("leader")
                started.set()
                await asyncio.Event().wait()  # the database hangs
                return "unreachable"

            def quick() -> str:
                calls.append("joiner")
                return "fresh"

            leader = asyncio.create_task(a.get_or_load("k", never))
            await started.wait()
            joiner = asyncio.create_task(a.get_or_load("k", quick))
            await joined(a, "k", 1)
            await cancel(leader)
            assert await joiner == "fresh"  # not cancelled itself: it led a load of its own
            assert calls == ["leader", "joiner"]
            assert phases(a).pending("k") is None and a.peek("k") == "fresh"
            assert await b.get("k") == "fresh"  # the joiner's value reached the store

    aio.run(body())


def test_cancelling_a_joiner_leaves_the_leader_and_the_other_joiners_alone(
    aio: LoopThread, async_client: redis.asyncio.Redis
) -> None:
    async def body() -> None:
        async with held(async_client) as (a, reads, release):
            leader = asyncio.create_task(a.get("k"))
            joiners = [asyncio.create_task(a.get("k")) for _ in range(2)]
            await joined(a, "k", 2)
            await cancel(joiners[0])
            release.set()
            assert await leader == "v" and await joiners[1] == "v"
            assert reads == ["k"] and a.peek("k") == "v"

    aio.run(body())


def test_cancelling_a_plain_read_mid_load_fills_nothing(
    aio: LoopThread, async_client: redis.asyncio.Redis
) -> None:
    async def body() -> None:
        async with held(async_client) as (a, reads, _release):
            task = asyncio.create_task(a.get("k"))
            await until(lambda: reads == ["k"], "the read is in flight")
            await cancel(task)
            assert phases(a).pending("k") is None and a.snapshot() == {}
            del a._store.read  # reads answer at once again
            assert await a.get("k") == "v"

    aio.run(body())


@pytest.mark.parametrize("how", ["cancelled", "lost"])
def test_a_write_without_its_reply_leaves_the_writer_trusting_nothing_of_the_key(
    aio: LoopThread, async_client: redis.asyncio.Redis, how: str
) -> None:
    async def body() -> None:
        async with node(async_client, "a") as a, node(async_client, "b") as b:
            await a.set("k", "old")
            assert await a.get("k") == "old" and await b.get("k") == "old"
            write = a._store.write
            ran = asyncio.Event()

            async def unanswered(op: str, key: str, encoded: str, head: str | None) -> Stamp:
                await write(op, key, encoded, head)  # the script ran ...
                ran.set()
                if how == "lost":
                    raise redis.TimeoutError("the reply was lost")
                await asyncio.Event().wait()  # ... and its reply never comes back
                raise AssertionError("unreachable")

            a._store.write = unanswered  # type: ignore[method-assign]
            task = asyncio.create_task(a.set("k", "new"))
            await ran.wait()
            if how == "cancelled":
                await cancel(task)
            else:
                with pytest.raises(redis.TimeoutError):
                    await task
            assert "k" not in a.snapshot()
            assert await settle([a, b])
            assert await a.get("k") == "new" and await b.get("k") == "new"

    aio.run(body())


def test_a_loader_that_reads_its_own_key_raises_instead_of_hanging(
    aio: LoopThread, async_client: redis.asyncio.Redis
) -> None:
    async def body() -> None:
        async with node(async_client, "a") as a:

            async def reentrant() -> Any:
                return await a.get("k")

            with pytest.raises(ReentrantLoad, match="'k'"):
                await a.get_or_load("k", reentrant)
            assert phases(a).pending("k") is None and await a.get("k") is None

    aio.run(body())


def test_a_loader_whose_child_task_reads_its_key_raises_instead_of_hanging(
    aio: LoopThread, async_client: redis.asyncio.Redis
) -> None:
    async def body() -> None:
        async with node(async_client, "a") as a:

            async def gathers() -> Any:
                (value,) = await asyncio.gather(a.get("k"))  # a child task of the loader
                return value

            with pytest.raises(ReentrantLoad, match="'k'"):
                await asyncio.wait_for(a.get_or_load("k", gathers), 60)  # never a hang
            assert phases(a).pending("k") is None and await a.get("k") is None
            assert await a.get_or_load("k", lambda: "fine") == "fine"

    aio.run(body())


def test_close_cancels_the_listener_leaves_no_task_and_prints_nothing(
    aio: LoopThread, async_client: redis.asyncio.Redis, capfd: pytest.CaptureFixture[str]
) -> None:
    async def body() -> None:
        nodes = [node(async_client, f"n{i}") for i in range(4)]
        for n in nodes:
            await n.start()
        listeners = [n.listener for n in nodes]
        assert all(task is not None and not task.done() for task in listeners)
        for i, n in enumerate(nodes):
            await n.set(f"k{i}", i)
            await n.get(f"k{(i + 1) % 4}")
        assert await settle(nodes)
        for n in nodes:
            await n.close()
            await n.close()  # idempotent
        assert all(task is not None and task.done() for task in listeners)
        assert asyncio.all_tasks() == {asyncio.current_task()}
        await nodes[0].set("k0", "after")  # a closed node reads and writes through Redis
        assert await nodes[0].get("k0") == "after" and nodes[0].snapshot() == {}

    aio.run(body())
    assert capfd.readouterr().err == ""


@pytest.mark.real_redis
def test_close_while_the_server_is_killing_connections_prints_nothing(
    aio: LoopThread, real_client: redis.Redis, capfd: pytest.CaptureFixture[str]
) -> None:
    twin = async_twin(real_client)

    async def body() -> None:
        for _ in range(5):
            nodes = [node(twin, f"n{i}") for i in range(3)]
            for n in nodes:
                await n.start()
            await twin.client_kill_filter(_type="pubsub")
            for n in nodes:
                await n.close()
        assert asyncio.all_tasks() == {asyncio.current_task()}
        await twin.aclose()

    aio.run(body())
    assert capfd.readouterr().err == ""


def test_a_listener_task_that_meets_an_unexpected_error_logs_it_and_listens_again(
    aio: LoopThread, async_client: redis.asyncio.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    async def body() -> None:
        async with node(async_client, "a") as a, node(async_client, "b") as b:
            await a.set("k", 1)
            assert await b.get("k") == 1
            repair = listener(b).maintain
            broken = [True]

            async def once() -> None:
                if broken.pop() if broken else False:
                    raise RuntimeError("a bug in the listener")
                await repair()

            listener(b).maintain = once
            await until(lambda: not broken and b.coherent, "b fails once, then resubscribes")
            assert b.stats.disconnects == 1 and b.stats.reconnects == 1
            await a.set("k", 2)
            assert await settle([a, b]) and await b.get("k") == 2

    with caplog.at_level(logging.ERROR, logger="cachelab.async_bus"):
        aio.run(body())
    assert "a bug in the listener" in caplog.text


def test_a_listener_task_that_dies_takes_the_nodes_trust_with_it(
    aio: LoopThread, async_client: redis.asyncio.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    async def body() -> None:
        async with node(async_client, "a") as a, node(async_client, "b") as b:
            await a.set("k", 1)
            assert await b.get("k") == 1

            async def die() -> None:
                raise SystemExit("a hook called sys.exit")  # BaseException: not contained

            listener(b).maintain = die
            await until(lambda: not b.coherent, "b stops trusting its cache")
            task = b.listener
            assert task is not None
            # trust goes first; closing the PubSub may then await I/O (redis-py 8.2 does)
            await until(task.done, "the listener task ends")
            assert b.snapshot() == {}
            await a.set("k", 2)
            assert await b.get("k") == 2  # read through Redis, never from memory

    with caplog.at_level(logging.ERROR, logger="cachelab.async_bus"):
        aio.run(body())
    assert "is ending" in caplog.text


def test_garbage_is_counted_and_the_task_keeps_listening(
    aio: LoopThread, client: redis.Redis, async_client: redis.asyncio.Redis
) -> None:
    async def body() -> None:
        async with node(async_client, "a") as a, node(async_client, "b") as b:
            for payload in (b"", b"\xff\xfe", b"{}", b'{"p":"cachelab","v":99}', b"[1,2]"):
                await async_client.publish(messages.channel("t"), payload)
            await a.set("k", "v")
            assert await settle([a, b])
            assert b.stats.messages_invalid == 5
            listener = b.listener
            assert listener is not None and not listener.done()
            assert await b.get("k") == "v"

    aio.run(body())


@pytest.mark.parametrize("fault", ["server-down", "no-pubsub"])
def test_a_node_that_cannot_subscribe_fails_at_start_with_no_task_left(
    aio: LoopThread, fault: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = fakeredis.FakeServer()
    r = fakeredis.FakeAsyncRedis(server=server)

    async def refuse(*channels: object) -> None:
        raise redis.ConnectionError("no pub/sub here")

    async def body() -> None:
        a = node(r, "a")
        if fault == "server-down":
            server.connected = False
        else:  # the store answers, the subscription fails
            monkeypatch.setattr(redis.asyncio.client.PubSub, "subscribe", refuse)
        with pytest.raises(redis.ConnectionError):
            await a.start()
        assert asyncio.all_tasks() == {asyncio.current_task()}
        await a.close()
        await r.aclose()

    aio.run(body())


def test_nodes_refuse_a_namespace_whose_secret_they_do_not_share(
    aio: LoopThread, async_client: redis.asyncio.Redis
) -> None:
    async def body() -> None:
        secret = b"a shared secret of the fleet"
        async with node(async_client, "a", namespace="auth", secret=secret) as a:
            await a.set("k", 1)
            with pytest.raises(AuthenticationMismatch, match="give this node the secret"):
                await node(async_client, "b", namespace="auth").start()
            async with node(async_client, "c", namespace="auth", secret=secret) as c:
                assert await c.get("k") == 1

    aio.run(body())


def test_the_recorder_sees_hits_misses_peeks_and_writes(
    aio: LoopThread, async_client: redis.asyncio.Redis
) -> None:
    recorder = Recorder()

    async def body() -> None:
        async with node(async_client, "a", recorder=recorder) as a:
            await a.set("k", 1)
            await a.get("k")
            await a.get("x")
            a.peek("k")

    aio.run(body())
    ops = [(op.node, op.op, op.key, op.hit) for op in recorder.history]
    assert ops == [
        ("a", "write", "k", False),
        ("a", "read", "k", True),
        ("a", "read", "x", False),
        ("a", "read", "k", True),
    ]


def test_the_async_store_shares_the_scripts_and_the_namespace_with_the_sync_one(
    aio: LoopThread, client: redis.Redis, async_client: redis.asyncio.Redis
) -> None:
    async def body() -> None:
        async with node(async_client, "a", strategy="none") as a:
            await a.set("k", [1, "x"])
        encoded = RedisStore(client, "t").read("k").value
        assert encoded is not None and messages.decode_value(encoded) == [1, "x"]

    aio.run(body())


@pytest.mark.parametrize("strategy", ["stream", "tracking"])
def test_strategies_without_an_async_shell_are_refused_by_name(
    async_client: redis.asyncio.Redis, strategy: str
) -> None:
    with pytest.raises(ValueError, match="'none', 'invalidate', 'update'"):
        node(async_client, strategy=strategy)


def test_a_sync_client_and_bad_options_are_refused(
    client: redis.Redis, async_client: redis.asyncio.Redis
) -> None:
    with pytest.raises(TypeError, match=r"redis\.asyncio\.Redis"):
        AsyncCacheNode(client, name="a")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="heartbeat"):
        node(async_client, heartbeat=0)
    for option in ("events", "recorder", "timer"):
        with pytest.raises(TypeError, match=option):
            AsyncCacheNode(async_client, **{option: 5})  # type: ignore[arg-type]


@pytest.mark.parametrize("write", ["set", "invalidate", "delete"])
def test_a_read_after_a_write_never_joins_a_load_that_began_before_it(
    aio: LoopThread, async_client: redis.asyncio.Redis, write: str
) -> None:
    async def body() -> None:
        async with held(async_client) as (a, reads, release), node(async_client, "db") as db:
            early = asyncio.create_task(a.get("k"))
            await until(lambda: reads == ["k"], "the early load is in flight")
            if write == "set":
                await a.set("k", "new")
            else:
                await db.set("k", "new")  # the source of truth changed ...
                await getattr(a, write)("k")  # ... and the node is told
            want = {"set": "new", "invalidate": None, "delete": None}[write]
            del a._store.read  # reads answer at once again
            assert await a.get("k") == want  # its own load, not the one begun before
            release.set()
            assert await early == "v"  # the early read was concurrent with the write: fine
            assert await a.get("k") == want  # and its late fill was refused

    aio.run(body())


def test_get_or_load_refuses_to_store_a_value_read_before_a_concurrent_change(
    aio: LoopThread, client: redis.Redis, async_client: redis.asyncio.Redis
) -> None:
    async def body() -> None:
        async with node(async_client, "a") as a, node(async_client, "b") as b:
            db = {"u": "old"}

            async def slow_loader() -> str:
                value = db["u"]  # read the old row ...
                db["u"] = "new"  # ... a writer changes it and invalidates meanwhile
                await b.invalidate("u")
                return value

            assert await a.get_or_load("u", slow_loader) == "old"  # its own read, handed back
            assert a.stats.stale_fills_rejected == 1
            assert RedisStore(client, "t").read("u").value is None  # the old row stayed out
            assert await settle([a, b])
            assert await a.get_or_load("u", lambda: db["u"]) == "new"

    aio.run(body())
