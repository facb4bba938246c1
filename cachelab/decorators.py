"""Decorators: a function's results cached through a node, for every node of its namespace.

``cached(node, key=..., ttl=...)`` (also ``node.cached(...)``) wraps a function so that a
call builds a key from its arguments and returns ``node.get_or_load(key, loader)``, the
loader being the function itself: a local hit costs a dictionary lookup; a miss reads
Redis, where any node's earlier result is found; only when Redis has nothing is the
function called, once per node however many threads miss together (single flight), and
its result stored in Redis for every node. ``wrapper.invalidate(*args)`` drops one call's
entry from Redis and every node.

**Keys are built explicitly, never by hashing objects.** One of:

- ``key="user:{0}"``: ``str.format`` over the arguments, bound to the function's
  signature with defaults applied, so ``f(1)`` and ``f(x=1)`` give one key: ``{0}`` is the
  first positional parameter (``*args`` continue the numbering), ``{name}`` any parameter
  by name (``**kwargs`` too); attributes and items are allowed (``{user.id}``), but every
  field must end on a ``str``, ``int``, ``float``, ``bool`` or ``None``; formatting any
  other object is refused (its ``str()`` may hold an address, or change).
- ``key=callable``: called with the call's arguments exactly as the function gets them
  (``self`` included for a method); it must return a ``str``.
- neither: ``module.qualname(args)``, each argument as JSON, only when every argument is a
  ``str``, ``int``, ``float``, ``bool`` or ``None``; anything else raises ``TypeError``
  asking for ``key=``. A lambda, or a function that closes over variables (each copy its
  factory makes shares one name), has no name of its own: it needs ``key=``.

Every key is checked by cachelab's key rules (1 to 4096 characters, UTF-8 encodable).

**``cached_method``** leaves ``self`` out of the key: two instances calling a method with the
same arguments share one entry, unless the key names the instance, as in
``key="user:{self.id}:{0}"``. Bound, ``obj.method.invalidate(*args)`` and
``obj.method.key(*args)`` take the arguments after ``self``.

**``ttl=``** (seconds) bounds the age of a result, not of a local copy: with a ``ttl``, the
value stored in Redis is ``[written_at, result]`` (``written_at`` from ``clock``, by default
``time.time()``, the wall clock of the node that called the function); a call that finds
an entry ``ttl`` seconds old or older calls the function again and stores the new result
with ``node.set`` (so every other node drops its copy and reloads it from Redis). An
expired result is never returned: a node's threads that find it expired wait for one
refresh, so the function runs once per node and expiry (two nodes that find it expired
together may both run it, and the later write wins). The Redis key itself never expires
(cachelab's write scripts set no expiry), and the node's own ``ttl`` is the separate
backstop of its local copies. Without ``ttl=`` the result is stored as it is and
lives until invalidated. Clocks of different machines should agree to well within the ttl.

**``cache_info()``** gives ``CacheInfo(hits, misses, maxsize, currsize)`` in the style of
``functools.lru_cache``: ``hits`` are the calls of this wrapper in this process served
without calling the function (a local hit, a value another node stored, or a load another
thread ran), ``misses`` the calls that ran it (even if it raised). The local store is the
node's, shared by everything it caches: ``maxsize`` is the node's ``max_entries`` and
``currsize`` the entries it holds, all functions together.

Results must be values cachelab stores (``str``, ``bytes``, ``int``, ``float``, ``bool``,
``None``, JSON lists and dicts); anything else raises ``TypeError`` naming the function. A
function that raises leaves nothing cached, and the error reaches every caller waiting on
that load. A list or dict result is the node's own copy: do not change it in place.

Sync functions go on a sync node (``CacheNode``), ``async def`` functions on an async node
(one whose ``get_or_load`` is a coroutine function, or ``asynchronous=True``); the wrapper
of an ``async def`` is an ``async def``, and so are its ``invalidate``. A mix is refused.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, NamedTuple, ParamSpec, Protocol, TypedDict, TypeVar, cast, overload

from cachelab import validate
from cachelab.callkeys import CallKey, KeySpec
from cachelab.messages import encode_value

__all__ = ["CacheInfo", "Cached", "CachedMethod", "cached", "cached_method"]

P = ParamSpec("P")
R = TypeVar("R")



class CacheInfo(NamedTuple):
    """A decorated function's counts, as ``functools.lru_cache().cache_info()`` gives them."""

    hits: int
    misses: int
    maxsize: int | None
    currsize: int


class Cached(Protocol[P, R]):
    """What ``cached`` returns: the function, plus ``invalidate``, ``key`` and ``cache_info``.

    For an ``async def`` function the call and ``invalidate`` return awaitables.
    """

    __wrapped__: Callable[P, R]
    __name__: str
    __qualname__: str
    __module__: str
    __doc__: str | None

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> Any: ...

    def key(self, *args: P.args, **kwargs: P.kwargs) -> str: ...

    def cache_info(self) -> CacheInfo: ...


class _Engine:
    """One decorated function: its key (``CallKey``), its counts, and the calls through
    the node."""

    def __init__(
        self,
        node: Any,
        func: Callable[..., Any],
        key: KeySpec,
        ttl: float | None,
        clock: Callable[[], float],
        method: bool,
        asynchronous: bool | None,
    ) -> None:
        if not callable(func):
            raise TypeError(f"cached needs a function, not {type(func).__name__}")
        self.node = node
        self.func = func
        self.name = getattr(func, "__qualname__", repr(func))
        self.asynchronous = _check_kinds(node, func, self.name, asynchronous)
        self.ttl = validate.seconds("ttl", ttl, optional=True)
        self.key = CallKey(func, self.name, key, method)
        self._clock = clock
        self._counts = threading.Lock()
        self.hits = 0
        self.misses = 0
        # Refreshes in flight, by key: the owner (a thread id or a task) and what it sets
        # when done. Nothing holds a lock while the function runs: it may call itself.
        self._refreshing: dict[str, tuple[object, Any]] = {}
        self._guard = threading.Lock()
        self._arefreshing: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[str, tuple[object, asyncio.Event]]
        ] = weakref.WeakKeyDictionary()  # per event loop: its events belong to it

    # -- values ------------------------------------------------------------------

    def _pack(self, result: Any) -> Any:
        """What goes to the store for ``result``: checked now, so the error names the function."""
        try:
            encode_value(result)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"{self.name} returned a value cachelab cannot store ({exc}); results must be "
                f"str, bytes, int, float, bool, None, or JSON lists and dicts"
            ) from exc
        return result if self.ttl is None else [self._clock(), result]

    def _expired(self, stored: Any) -> bool:
        """Whether a stored ``[written_at, result]`` is ``ttl`` old (or not such a pair)."""
        if self.ttl is None:
            return False
        if not _is_pair(stored):
            return True
        return bool(self._clock() - stored[0] >= self.ttl)

    def _unpack(self, key: str, stored: Any) -> Any:
        """The result inside what the node returned."""
        if self.ttl is None:
            return stored
        if not _is_pair(stored):
            raise ValueError(
                f"{self.name}: the entry of {key!r} is not a [written_at, result] pair; "
                f"something else writes that key"
            )
        return stored[1]

    def _count(self, called: bool, served: bool) -> None:
        """A call that ran the function is a miss (raised or not, as in functools); one
        served without running it, a hit; one that failed without running it, neither."""
        with self._counts:
            if called:
                self.misses += 1
            elif served:
                self.hits += 1

    def info(self) -> CacheInfo:
        """The counts of this function, and the node's local store."""
        with self._counts:
            hits, misses = self.hits, self.misses
        maxsize = getattr(self.node, "max_entries", None)
        return CacheInfo(hits, misses, maxsize, self.node.stats.entries)

    # -- calls -------------------------------------------------------------------

    def call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """A sync call: the cached result, else the function's (stored for every node)."""
        key = self.key(args, kwargs)
        called = False

        def load() -> Any:
            nonlocal called
            called = True
            return self._pack(self.func(*args, **kwargs))

        node, served = self.node, False
        try:
            stored = node.get_or_load(key, load)
            while self._expired(stored):
                stored = self._refresh(key, load)
            served = True
        finally:
            self._count(called, served)
        return self._unpack(key, stored)

    def _refresh(self, key: str, load: Callable[[], Any]) -> Any:
        """Recompute an expired result once per node: other threads wait for it, no lock is
        held while the function runs, and a call of the same key from inside it recomputes
        on its own (it would otherwise wait for itself)."""
        me = threading.get_ident()
        with self._guard:
            running = self._refreshing.get(key)
            if running is None or running[0] == me:
                done = threading.Event()
                self._refreshing.setdefault(key, (me, done))
        if running is not None and running[0] != me:
            running[1].wait()
            return self.node.get_or_load(key, load)
        try:
            stored = self.node.get_or_load(key, load)  # another thread may have refreshed it
            if self._expired(stored):
                stored = load()
                self.node.set(key, stored)  # never absent meanwhile: no other load runs
            return stored
        finally:
            if running is None:
                with self._guard:
                    del self._refreshing[key]
                done.set()

    async def acall(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """An async call, on an async node: as ``call``."""
        key = self.key(args, kwargs)
        called = False

        async def load() -> Any:
            nonlocal called
            called = True
            return self._pack(await self.func(*args, **kwargs))

        node, served = self.node, False
        try:
            stored = await node.get_or_load(key, load)
            while self._expired(stored):
                stored = await self._arefresh(key, load)
            served = True
        finally:
            self._count(called, served)
        return self._unpack(key, stored)

    async def _arefresh(self, key: str, load: Callable[[], Any]) -> Any:
        """``_refresh`` for tasks: the owner is the task; the others await its event."""
        me = asyncio.current_task()
        refreshing = self._arefreshing.setdefault(asyncio.get_running_loop(), {})
        running = refreshing.get(key)  # one loop, one thread: no guard needed
        if running is not None and running[0] is not me:
            await running[1].wait()
            return await self.node.get_or_load(key, load)
        done = asyncio.Event()
        if running is None:
            refreshing[key] = (me, done)
        try:
            stored = await self.node.get_or_load(key, load)
            if self._expired(stored):
                stored = await load()
                await self.node.set(key, stored)
            return stored
        finally:
            if running is None:
                del refreshing[key]
                done.set()


def _is_pair(stored: Any) -> bool:
    """A ``[written_at, result]`` pair as ``ttl=`` stores it."""
    return type(stored) is list and len(stored) == 2 and type(stored[0]) in (int, float)


def _check_kinds(node: Any, func: Callable[..., Any], name: str, asynchronous: bool | None) -> bool:
    """Whether the node is async; refuse an async function on a sync node and the reverse."""
    if asynchronous is None:
        asynchronous = inspect.iscoroutinefunction(getattr(node, "get_or_load", None))
    elif type(asynchronous) is not bool:
        raise TypeError(f"asynchronous must be True, False or None, not {asynchronous!r}")
    is_coroutine = inspect.iscoroutinefunction(func)
    if asynchronous and not is_coroutine:
        raise TypeError(f"{name} is not an async def function, and the node is async")
    if is_coroutine and not asynchronous:
        raise TypeError(
            f"{name} is an async def function: cache it on an async node, not a sync one"
        )
    return asynchronous


def _wrap(engine: _Engine, bound: tuple[Any, ...] = ()) -> Any:
    """The wrapper function of ``engine``, with ``bound`` arguments (an instance) first."""
    func = engine.func
    wrapper: Callable[..., Any]
    invalidate: Callable[..., Any]
    if engine.asynchronous:

        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            return await engine.acall(bound + args, kwargs)

        async def async_invalidate(*args: Any, **kwargs: Any) -> None:
            await engine.node.invalidate(engine.key(bound + args, kwargs))

        wrapper, invalidate = async_wrapper, async_invalidate
    else:

        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            return engine.call(bound + args, kwargs)

        def sync_invalidate(*args: Any, **kwargs: Any) -> None:
            engine.node.invalidate(engine.key(bound + args, kwargs))

        wrapper, invalidate = sync_wrapper, sync_invalidate

    def key(*args: Any, **kwargs: Any) -> str:
        return engine.key(bound + args, kwargs)

    functools.update_wrapper(wrapper, func)
    vars(wrapper).update(invalidate=invalidate, key=key, cache_info=engine.info)
    return wrapper


class CachedMethod:
    """What ``cached_method`` returns: a descriptor giving each instance its wrapper.

    ``obj.method(*args)``, ``obj.method.invalidate(*args)``, ``obj.method.key(*args)`` take
    the arguments after ``self``; ``Class.method(obj, *args)`` works too.
    """

    def __init__(self, engine: _Engine) -> None:
        self._engine = engine
        self._unbound = _wrap(engine)
        functools.update_wrapper(self, engine.func)

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self._unbound
        return _wrap(self._engine, (instance,))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._unbound(*args, **kwargs)

    def cache_info(self) -> CacheInfo:
        """The counts of this method, over every instance."""
        return self._engine.info()


class CacheOptions(TypedDict, total=False):
    """The options of ``cached`` and ``cached_method``, as ``node.cached`` takes them."""

    key: KeySpec
    ttl: float | None
    clock: Callable[[], float]
    asynchronous: bool | None


@overload
def cached(
    node: Any,
    func: Callable[P, R],
    *,
    key: KeySpec = None,
    ttl: float | None = None,
    clock: Callable[[], float] = time.time,
    asynchronous: bool | None = None,
) -> Cached[P, R]: ...


@overload
def cached(
    node: Any,
    func: None = None,
    *,
    key: KeySpec = None,
    ttl: float | None = None,
    clock: Callable[[], float] = time.time,
    asynchronous: bool | None = None,
) -> Callable[[Callable[P, R]], Cached[P, R]]: ...


def cached(
    node: Any,
    func: Callable[P, R] | None = None,
    *,
    key: KeySpec = None,
    ttl: float | None = None,
    clock: Callable[[], float] = time.time,
    asynchronous: bool | None = None,
) -> Cached[P, R] | Callable[[Callable[P, R]], Cached[P, R]]:
    """Cache ``func``'s results through ``node`` (see the module's docstring).

    ``@cached(node, key="user:{0}", ttl=60)`` or ``@node.cached(...)``; ``@cached(node)`` and
    ``@node.cached`` take the default key. ``clock`` times ``ttl`` (wall time: the nodes
    compare each other's). ``asynchronous`` overrides the detection of an async node.
    """

    def decorate(f: Callable[P, R]) -> Cached[P, R]:
        engine = _Engine(node, f, key, ttl, clock, False, asynchronous)
        return cast("Cached[P, R]", _wrap(engine))

    return decorate if func is None else decorate(func)


@overload
def cached_method(
    node: Any,
    func: Callable[..., Any],
    *,
    key: KeySpec = None,
    ttl: float | None = None,
    clock: Callable[[], float] = time.time,
    asynchronous: bool | None = None,
) -> CachedMethod: ...


@overload
def cached_method(
    node: Any,
    func: None = None,
    *,
    key: KeySpec = None,
    ttl: float | None = None,
    clock: Callable[[], float] = time.time,
    asynchronous: bool | None = None,
) -> Callable[[Callable[..., Any]], CachedMethod]: ...


def cached_method(
    node: Any,
    func: Callable[..., Any] | None = None,
    *,
    key: KeySpec = None,
    ttl: float | None = None,
    clock: Callable[[], float] = time.time,
    asynchronous: bool | None = None,
) -> CachedMethod | Callable[[Callable[..., Any]], CachedMethod]:
    """As ``cached``, for a method: ``self`` is not part of the key unless the key names it.

    ``@node.cached_method(key="user:{self.id}:{0}")`` keeps one entry per instance id and
    argument; with ``key="rate:{0}"`` or the default key, every instance shares one.
    """

    def decorate(f: Callable[..., Any]) -> CachedMethod:
        return CachedMethod(_Engine(node, f, key, ttl, clock, True, asynchronous))

    return decorate if func is None else decorate(func)
