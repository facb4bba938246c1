"""The decorators: @node.cached and @node.cached_method, sync on every server, async on a fake."""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fakeredis
import mypy.api
import pytest
import redis

from cachelab import AsyncCacheNode, CacheNode
from cachelab.async_node import settle as async_settle
from cachelab.decorators import CacheInfo, cached, cached_method
from cachelab.stats import NodeStats
from tests.helpers import NodeFactory, async_twin, phases, settle


@pytest.fixture
def node() -> Iterator[CacheNode]:
    """One node on a fresh fakeredis server, for the tests of key building alone."""
    with CacheNode(fakeredis.FakeRedis(server=fakeredis.FakeServer()), name="k") as n:
        yield n


class Clock:
    """A wall clock the test moves."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


# -- across nodes, on fakeredis, redis-server and valkey ---------------------------------


def test_a_call_on_one_node_is_served_to_the_other_without_calling(make_node: NodeFactory) -> None:
    a, b = make_node("a"), make_node("b")
    calls: list[int] = []

    def price(item: int) -> int:
        calls.append(item)
        return item * 10

    on_a, on_b = a.cached(key="price:{0}")(price), b.cached(key="price:{0}")(price)
    assert on_a(7) == 70
    assert on_b(7) == 70  # b's miss reads what a stored in Redis
    assert on_b(7) == 70  # and then a local hit
    assert calls == [7]
    assert on_a.cache_info() == CacheInfo(hits=0, misses=1, maxsize=10_000, currsize=1)
    assert on_b.cache_info().hits == 2 and on_b.cache_info().misses == 0
    assert a.stats.misses == 1 and b.stats.hits == 1


def test_invalidate_reaches_every_node(make_node: NodeFactory) -> None:
    a, b = make_node("a"), make_node("b")
    version = {"n": 1}

    def profile(user: int) -> dict[str, int]:
        return {"user": user, "v": version["n"]}

    on_a, on_b = a.cached(key="profile:{0}")(profile), b.cached(key="profile:{0}")(profile)
    assert on_a(1) == on_b(1) == {"user": 1, "v": 1}
    assert on_a(2) == on_b(2) == {"user": 2, "v": 1}
    version["n"] = 2
    on_a.invalidate(1)
    settle(a, b)
    assert "profile:1" not in b.snapshot() and "profile:2" in b.snapshot()
    assert on_b(1) == {"user": 1, "v": 2}  # recomputed on b, then served to a
    assert on_a(1) == {"user": 1, "v": 2}
    assert on_b(2) == {"user": 2, "v": 1}  # another call's entry is untouched


def test_the_node_methods_and_the_functions_are_one_mechanism(make_node: NodeFactory) -> None:
    a = make_node("a")

    @cached(a, key="sq:{0}")
    def square(x: int) -> int:
        return x * x

    @a.cached
    def cube(x: int) -> int:
        return x**3

    assert square(3) == 9 and cube(2) == 8
    assert a.get("sq:3") == 9
    assert a.get(cube.key(2)) == 8


# -- keys ----------------------------------------------------------------------------------


def test_a_format_binds_arguments_to_the_signature_with_defaults(node: CacheNode) -> None:
    @node.cached(key="f:{0}:{1}:{scale}")
    def f(x: int, y: str = "b", *, scale: float = 1.5) -> str:
        return f"{x}{y}{scale}"

    assert f.key(1) == f.key(x=1) == f.key(1, "b") == f.key(1, y="b", scale=1.5) == "f:1:b:1.5"
    assert f.key(2, "c", scale=2) == "f:2:c:2"
    assert f.key(1, y="b") == f.key(1)
    assert f(1) == f(x=1) == "1b1.5"
    assert f.cache_info().misses == 1 and f.cache_info().hits == 1


def test_positional_calls_and_bound_calls_build_the_same_keys(node: CacheNode) -> None:
    # A call giving every parameter positionally skips binding (the fast path): same keys.
    formats = ["p:{0}:{1}", "p:{y}:{x}", "p:{0:>4}|{y!r}", "p:{0}{1}{x}", "constant"]
    for spec in formats:
        f = node.cached(key=spec)(lambda x, y: 0)
        assert f.key(1, "b") == f.key(1, y="b") == f.key(x=1, y="b"), spec
        assert f.key(True, None) == f.key(x=True, y=None), spec
    def pair(x: Any, y: Any) -> int:
        return 0

    plain = node.cached(pair)
    assert plain.key(1.5, "b") == plain.key(y="b", x=1.5)
    with pytest.raises(TypeError, match="is a list"):
        node.cached(key="p:{1}")(lambda x, y: 0)(1, [2])
    with pytest.raises(TypeError, match="argument 'y' is a list"):
        plain(1, [2])


def test_a_format_numbers_varargs_and_names_varkeywords(node: CacheNode) -> None:
    @node.cached(key="v:{0}:{1}:{2}:{mode}")
    def f(a: int, *rest: int, **options: str) -> int:
        return a + sum(rest)

    assert f.key(1, 2, 3, mode="fast") == "v:1:2:3:fast"
    assert f(1, 2, 3, mode="fast") == 6


def test_a_format_refuses_objects_but_takes_their_attributes(node: CacheNode) -> None:
    @dataclass
    class User:
        id: int

    @node.cached(key="u:{0}")
    def whole(user: User) -> int:
        return user.id

    @node.cached(key="u:{0.id}")
    def by_id(user: User) -> int:
        return user.id

    with pytest.raises(TypeError, match=r"key field \{0\} is a User"):
        whole(User(1))
    with pytest.raises(TypeError, match="key field"):
        node.cached(key="u:{0!r}")(by_id.__wrapped__).key(User(1))
    assert by_id.key(User(4)) == "u:4" and by_id(User(4)) == 4


def test_a_key_callable_gets_the_call_as_the_function_does(node: CacheNode) -> None:
    seen: list[tuple[Any, ...]] = []

    def key(x: int, y: int = 0) -> str:
        seen.append((x, y))
        return f"sum:{x}+{y}"

    @node.cached(key=key)
    def add(x: int, y: int = 0) -> int:
        return x + y

    assert add(1, y=2) == 3 and add.key(1, y=2) == "sum:1+2"
    assert seen[0] == (1, 2)
    wrong = node.cached(key=lambda x: x)(lambda x: x)
    with pytest.raises(TypeError, match="returned int, not str"):
        wrong(1)


def test_the_default_key_is_the_qualified_name_and_scalar_arguments(node: CacheNode) -> None:
    @node.cached
    def f(a: str, b: int = 1, *rest: float, flag: bool = False, **kw: None) -> str:
        return a

    prefix = f"{__name__}.{f.__qualname__}"
    assert f.key("x") == f.key(a="x", b=1) == f'{prefix}("x",1,flag=false)'
    assert f.key("x", 2, 0.5, flag=True, z=None) == f'{prefix}("x",2,0.5,flag=true,z=null)'
    assert f.key("1") != f.key(1)  # type: ignore[arg-type]  # JSON tells "1" from 1
    assert f.key(True) != f.key(1)  # type: ignore[arg-type]


@pytest.mark.parametrize("argument", [[1], {"a": 1}, b"x", object(), (1,)])
def test_a_default_key_refuses_anything_but_plain_scalars(node: CacheNode, argument: Any) -> None:
    @node.cached
    def f(x: Any) -> int:
        raise AssertionError("the function ran, though its key was refused")

    with pytest.raises(TypeError, match=r"pass key=.*never hashes"):
        f(argument)


def test_bad_keys_and_bad_specs_are_refused_clearly(node: CacheNode) -> None:
    with pytest.raises(ValueError, match="key format"):
        node.cached(key="u:{0")(lambda x: x)
    with pytest.raises(TypeError, match="key must be a format str or a callable"):
        node.cached(key=3)(lambda x: x)  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="ttl"):
        node.cached(ttl=0)(lambda x: x)
    missing = node.cached(key="u:{1}")(lambda x: x)
    with pytest.raises(ValueError, match="names what the call lacks"):
        missing(1)
    long = node.cached(key=lambda x: "k" * x)(lambda x: x)
    with pytest.raises(ValueError, match="refused: key must have 1 to 4096"):
        long(5000)
    with pytest.raises(ValueError, match="refused"):
        long(0)
    with pytest.raises(TypeError):  # the arguments do not fit the signature
        missing(1, 2)  # type: ignore[call-arg]


def test_an_unstorable_result_names_the_function(node: CacheNode) -> None:
    @node.cached(key="s:{0}")
    def make_set(x: int) -> set[int]:
        return {x}

    with pytest.raises(TypeError, match="make_set returned a value cachelab cannot store"):
        make_set(1)
    assert node.snapshot() == {}


# -- methods -------------------------------------------------------------------------------


def test_cached_method_leaves_self_out_unless_the_key_names_it(make_node: NodeFactory) -> None:
    a = make_node("a")
    calls: list[tuple[int, int]] = []

    class Users:
        def __init__(self, id: int) -> None:
            self.id = id

        @a.cached_method(key="user:{self.id}:{0}")
        def item(self, n: int) -> int:
            calls.append((self.id, n))
            return self.id * 100 + n

        @a.cached_method
        def shared(self, n: int) -> int:
            return -n * len(str(self.id))

    one, two = Users(1), Users(2)
    assert one.item(5) == 105 and two.item(5) == 205 and one.item(5) == 105
    assert one.item.key(5) == "user:1:5" and Users.item(two, 5) == 205
    assert one.shared(3) == two.shared(3) == -3  # one entry: self is not in the default key
    assert one.shared.key(3) == two.shared.key(3) == f"{__name__}.{Users.shared.__qualname__}(3)"
    assert Users.shared.cache_info()[:2] == (1, 1)  # hits, misses
    assert calls == [(1, 5), (2, 5)]
    one.item.invalidate(5)
    assert one.item(5) == 105 and two.item(5) == 205
    assert calls[-1] == (1, 5) and len(calls) == 3
    assert Users.item.cache_info().misses == 3 and Users.item.cache_info().hits == 3
    assert Users.item.__wrapped__.__name__ == "item"


def test_cached_method_needs_a_self(node: CacheNode) -> None:
    with pytest.raises(TypeError, match="has no self parameter"):
        node.cached_method(lambda: 1)


# -- wrapper, errors, concurrency, ttl --------------------------------------------------------


def test_the_wrapper_looks_like_the_function(node: CacheNode) -> None:
    def area(w: int, h: int) -> int:
        """The area."""
        return w * h

    wrapped = node.cached(area)
    assert wrapped.__wrapped__ is area
    assert wrapped.__name__ == "area" and wrapped.__doc__ == "The area."
    assert inspect.signature(wrapped) == inspect.signature(area)
    assert not inspect.iscoroutinefunction(wrapped)


def test_a_function_that_raises_leaves_nothing_cached(make_node: NodeFactory) -> None:
    a = make_node("a")
    attempts: list[int] = []

    @a.cached(key="flaky:{0}")
    def flaky(x: int) -> int:
        attempts.append(x)
        if len(attempts) == 1:
            raise RuntimeError("database down")
        return x

    with pytest.raises(RuntimeError, match="database down"):
        flaky(1)
    assert a.snapshot() == {} and a.get("flaky:1", "nothing") == "nothing"
    assert flaky(1) == 1 and attempts == [1, 1]
    assert flaky.cache_info().misses == 2


def test_two_threads_missing_one_key_call_the_function_once(make_node: NodeFactory) -> None:
    a = make_node("a")
    entered, release = threading.Event(), threading.Event()
    calls: list[int] = []

    @a.cached(key="slow:{0}")
    def slow(x: int) -> int:
        calls.append(x)
        entered.set()
        assert release.wait(30)
        return x * 2

    results: list[int] = []
    first = threading.Thread(target=lambda: results.append(slow(4)))
    first.start()
    assert entered.wait(30)  # the first call is inside the function
    second = threading.Thread(target=lambda: results.append(slow(4)))
    second.start()
    for _ in range(5000):  # the second has joined the first's load
        ticket = phases(a).pending("slow:4")
        if ticket is not None and ticket.waiters == 1:
            break
        threading.Event().wait(0.002)
    else:
        raise AssertionError("the second call never joined the load")
    release.set()
    first.join()
    second.join()
    assert results == [8, 8] and calls == [4]
    assert slow.cache_info()[:2] == (1, 1)


def test_ttl_recomputes_a_result_older_than_ttl_on_every_node(make_node: NodeFactory) -> None:
    a, b = make_node("a"), make_node("b")
    clock = Clock()
    calls: list[float] = []

    def stamp(x: int) -> float:
        calls.append(clock.now)
        return clock.now

    on_a = a.cached(stamp, key="t:{0}", ttl=10, clock=clock)
    on_b = b.cached(stamp, key="t:{0}", ttl=10, clock=clock)
    assert on_a(1) == 1000.0 and a.get("t:1") == [1000.0, 1000.0]  # [written_at, result]
    clock.now += 9.5
    assert on_b(1) == 1000.0 and calls == [1000.0]  # 9.5 s old: still served
    clock.now += 0.5
    assert on_b(1) == 1010.0  # 10 s old: b recomputes it and stores it for every node
    settle(a, b)
    assert on_a(1) == 1010.0 and calls == [1000.0, 1010.0]
    assert on_a.cache_info()[:2] == (1, 1) and on_b.cache_info()[:2] == (1, 1)


def test_ttl_refreshes_once_when_threads_find_it_expired_together(node: CacheNode) -> None:
    clock = Clock()
    calls: list[float] = []

    @node.cached(key="t", ttl=5, clock=clock)
    def value() -> float:
        calls.append(clock.now)
        return clock.now

    value()
    clock.now += 6
    threads = [threading.Thread(target=value) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [1000.0, 1006.0]


def test_an_async_function_on_a_sync_node_is_refused(node: CacheNode) -> None:
    async def fetch(x: int) -> int:
        return x

    with pytest.raises(TypeError, match="async def function: cache it on an async node"):
        node.cached(fetch)
    with pytest.raises(TypeError, match="async def function"):
        cached_method(node, fetch)


# -- async, against a fake with the AsyncCacheNode API ------------------------------------


class FakeAsyncNode:
    """The AsyncCacheNode API over a dict shared by the fakes of one "Redis" (``shared``).

    ``get``, ``set``, ``delete``, ``invalidate`` and ``get_or_load`` are coroutines;
    ``get_or_load`` takes a sync or async loader and runs one load per key at a time (single
    ticket); ``peek`` is sync. Each fake keeps a local copy, dropped by any fake's write.
    Replace ``make_async_node`` by a factory of real ``AsyncCacheNode`` at merge.
    """

    def __init__(self, shared: dict[str, Any], peers: list[FakeAsyncNode], name: str) -> None:
        self.name, self.namespace = name, "t"
        self._shared, self._peers = shared, peers
        self._local: dict[str, Any] = {}
        self._flights: dict[str, asyncio.Future[Any]] = {}
        self._hits = self._misses = 0
        peers.append(self)

    @property
    def stats(self) -> NodeStats:
        return NodeStats(hits=self._hits, misses=self._misses, entries=len(self._local))

    def peek(self, key: str, default: Any = None) -> Any:
        return self._local.get(key, default)

    async def get(self, key: str, default: Any = None) -> Any:
        if key in self._local:
            self._hits += 1
            return self._local[key]
        self._misses += 1
        await asyncio.sleep(0)
        if key in self._shared:
            self._local[key] = self._shared[key]
        return self._local.get(key, default)

    async def get_or_load(self, key: str, loader: Callable[..., Any]) -> Any:
        if key in self._local:
            self._hits += 1
            return self._local[key]
        self._misses += 1
        if key in self._flights:
            return await asyncio.shield(self._flights[key])
        ticket = self._flights[key] = asyncio.get_running_loop().create_future()
        try:
            await asyncio.sleep(0)  # a round trip
            if key in self._shared:
                value = self._shared[key]
            else:
                value = loader()
                if inspect.isawaitable(value):
                    value = await value
                self._shared[key] = value
            self._local[key] = value
            ticket.set_result(value)
            return value
        except BaseException as exc:
            ticket.set_exception(exc)
            ticket.exception()  # retrieved: no "never retrieved" warning without waiters
            raise
        finally:
            del self._flights[key]

    async def set(self, key: str, value: Any) -> None:
        await self._drop(key)
        self._shared[key] = self._local[key] = value

    async def delete(self, key: str) -> None:
        await self._drop(key)

    async def invalidate(self, key: str) -> None:
        await self._drop(key)

    async def _drop(self, key: str) -> None:
        await asyncio.sleep(0)
        self._shared.pop(key, None)
        for peer in self._peers:
            peer._local.pop(key, None)


@pytest.fixture
def make_async_node() -> Callable[[str], FakeAsyncNode]:
    """Async nodes of one namespace on one backend (at merge: real AsyncCacheNode, closed)."""
    shared: dict[str, Any] = {}
    peers: list[FakeAsyncNode] = []
    return lambda name: FakeAsyncNode(shared, peers, name)


def test_async_functions_on_an_async_node(make_async_node: Callable[[str], Any]) -> None:
    a, b = make_async_node("a"), make_async_node("b")
    calls: list[int] = []

    async def fetch(x: int) -> dict[str, int]:
        calls.append(x)
        await asyncio.sleep(0)
        return {"x": x}

    on_a = cached(a, fetch, key="fetch:{0}")
    on_b = cached(b, fetch, key="fetch:{0}")
    assert inspect.iscoroutinefunction(on_a)
    assert inspect.iscoroutinefunction(on_a.invalidate)

    async def scenario() -> None:
        assert await on_a(1) == {"x": 1}
        assert await on_b(x=1) == {"x": 1}
        assert calls == [1]
        assert b.peek("fetch:1") == {"x": 1}
        await on_b.invalidate(1)
        assert a.peek("fetch:1") is None
        assert await on_a(1) == {"x": 1} and calls == [1, 1]
        together = await asyncio.gather(on_a(2), on_a(2), on_a(2))
        assert list(together) == [{"x": 2}] * 3 and calls == [1, 1, 2]

    asyncio.run(scenario())
    assert on_a.cache_info()[:2] == (2, 3) and on_b.cache_info()[:2] == (1, 0)


def test_async_errors_ttl_and_methods(make_async_node: Callable[[str], Any]) -> None:
    a = make_async_node("a")
    clock = Clock()
    calls: list[str] = []

    @cached(a, key="boom:{0}")
    async def boom(x: int) -> int:
        calls.append("boom")
        raise RuntimeError("no")

    class Prices:
        def __init__(self, shop: str) -> None:
            self.shop = shop

        @cached_method(a, key="price:{self.shop}:{0}", ttl=5, clock=clock)
        async def price(self, item: str) -> str:
            calls.append(f"{self.shop}/{item}@{clock.now}")
            return f"{self.shop}:{item}"

    def sync(x: int) -> int:
        return x

    with pytest.raises(TypeError, match="not an async def function, and the node is async"):
        cached(a, sync)

    async def scenario() -> None:
        with pytest.raises(RuntimeError, match="no"):
            await boom(1)
        assert a.peek("boom:1", "gone") == "gone"
        shop = Prices("s")
        assert await shop.price("tea") == "s:tea"
        assert await shop.price("tea") == "s:tea"
        assert a.peek("price:s:tea") == [1000.0, "s:tea"]
        clock.now += 5
        assert await shop.price("tea") == "s:tea"
        await shop.price.invalidate("tea")
        assert a.peek("price:s:tea") is None

    asyncio.run(scenario())
    assert calls == ["boom", "s/tea@1000.0", "s/tea@1005.0"]
    assert Prices.price.cache_info()[:2] == (1, 2)


def test_an_explicit_flag_overrides_the_detection(node: CacheNode) -> None:
    async def fetch() -> int:
        return 1

    with pytest.raises(TypeError, match="not an async def function"):
        cached(node, lambda: 1, asynchronous=True)
    assert inspect.iscoroutinefunction(cached(node, fetch, asynchronous=True))
    with pytest.raises(TypeError, match="asynchronous must be"):
        cached(node, fetch, asynchronous=1)  # type: ignore[call-overload]


def test_a_ttl_refresh_may_call_itself_without_waiting_for_itself(client: redis.Redis) -> None:
    """No lock is held while the function runs: a recursive function refreshes its own
    expired entries (a lock per key, or per stripe of keys, would deadlock here)."""
    now = [0.0]
    with CacheNode(client, name="fib", namespace="deco-fib") as node:

        @node.cached(key="fib:{0}", ttl=10.0, clock=lambda: now[0])
        def fib(n: int) -> int:
            return n if n < 2 else fib(n - 1) + fib(n - 2)

        assert fib(30) == 832040
        now[0] += 11.0  # every entry expired: each refresh recurses into expired ones
        assert fib(30) == 832040
        assert fib.cache_info().misses >= 31 * 2


def test_async_decorators_on_real_async_nodes(client: redis.Redis) -> None:
    """The async scenario above, on two real AsyncCacheNodes (fakeredis and both servers)."""
    calls: list[int] = []

    async def fetch(x: int) -> dict[str, int]:
        calls.append(x)
        await asyncio.sleep(0)
        return {"x": x}

    async def scenario() -> None:
        r = async_twin(client)
        async with (
            AsyncCacheNode(r, name="a", namespace="deco-async") as a,
            AsyncCacheNode(r, name="b", namespace="deco-async") as b,
        ):
            on_a = a.cached(fetch, key="fetch:{0}")
            on_b = b.cached(fetch, key="fetch:{0}")
            assert await on_a(1) == {"x": 1}
            assert await on_b(x=1) == {"x": 1}  # from Redis: not called again
            assert calls == [1]
            assert b.peek("fetch:1") == {"x": 1}
            await on_b.invalidate(1)
            assert await async_settle([a, b])
            assert a.peek("fetch:1") is None
            assert await on_a(1) == {"x": 1} and calls == [1, 1]
            together = await asyncio.gather(on_a(2), on_a(2), on_a(2))
            assert list(together) == [{"x": 2}] * 3 and calls == [1, 1, 2]  # single flight
            assert on_a.cache_info().maxsize == a.max_entries
        await r.aclose()

    asyncio.run(scenario())


def _make_adder(n: int) -> Callable[[int], int]:
    """A closure factory: every adder it makes has the same qualified name."""

    def add(x: int) -> int:
        return x + n

    return add


def test_closures_and_lambdas_need_a_key_since_their_names_are_shared(node: CacheNode) -> None:
    with pytest.raises(ValueError, match=r"add needs key=: it closes over n"):
        node.cached(_make_adder(2))
    with pytest.raises(ValueError, match=r"<lambda> needs key=: a lambda has no name"):
        node.cached(lambda x: x)
    add2 = node.cached(key="add2:{0}")(_make_adder(2))
    add3 = node.cached(key="add3:{0}")(_make_adder(3))
    assert (add2(1), add3(1), add2(1)) == (3, 4, 3)  # their own keys: never each other's results


def test_a_method_calling_super_and_a_function_capturing_nothing_keep_their_default_key(
    node: CacheNode,
) -> None:
    class Base:
        def price(self, n: int) -> int:
            return n

    class Shop(Base):
        @node.cached_method
        def price(self, n: int) -> int:
            return super().price(n) * 2  # a __class__ cell, not a captured variable

    def nested(x: int) -> int:
        return -x

    assert Shop().price(4) == 8 and node.cached(nested)(2) == -2


def test_a_misspelt_option_fails_the_type_check_before_it_runs(tmp_path: Path) -> None:
    # ``**options: Any`` let ``tll=3`` through mypy, to fail only at run time.
    snippet = tmp_path / "typo.py"
    snippet.write_text(
        "import cachelab\n\n\ndef f(node: cachelab.CacheNode) -> None:\n"
        "    node.cached(key='x', tll=3)\n    node.cached_method(ttl=3)\n"
    )
    out, _, status = mypy.api.run([str(snippet), "--no-error-summary"])
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert status == 1 and any('keyword argument "tll"' in line for line in errors)
    assert all(":5:" in line for line in errors), "the correct call must type-check"
