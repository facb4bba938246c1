"""The cost of an AsyncCacheNode hit, against cachetools in the same event loop and run.

``await node.get(k)`` is timed against ``await lru_get(k)``, an ``async def`` wrapper
around ``cachetools.LRUCache.get``, over the same keys, in one event loop, in turn, best
of several rounds each (goal: at most 1.5x). ``node.peek(k)``, the sync hit-only read, is
timed against ``LRUCache.get`` itself; the sync ``CacheNode`` hit is printed for reference.
A hit never touches Redis, so an embedded fakeredis server serves.
"""

from __future__ import annotations

import asyncio
import time
import timeit

import cachetools
import fakeredis
import redis.asyncio

from benchmarks.core_costs import hit_ratio
from cachelab import AsyncCacheNode


async def hit_costs(
    client: redis.asyncio.Redis, keys: int = 1000, number: int = 200, rounds: int = 7
) -> dict[str, float]:
    """Seconds per hit: ``await node.get``, ``await`` the cachetools wrapper, ``node.peek``
    and ``LRUCache.get``, each the best of ``rounds`` runs of ``number`` passes over ``keys``
    keys (all of them hits: the node counts them, and the caller may check ``stats``)."""
    names = [f"k{i}" for i in range(keys)]
    lru: cachetools.LRUCache[str, int] = cachetools.LRUCache(maxsize=10_000)

    async def lru_get(key: str) -> int | None:
        return lru.get(key)

    async with AsyncCacheNode(client, name="bench", namespace="bench-async-hit", ttl=60.0) as node:
        for i, key in enumerate(names):
            await node.set(key, i)
            lru[key] = i

        async def ours() -> None:
            for key in names:
                await node.get(key)

        async def theirs() -> None:
            for key in names:
                await lru_get(key)

        best = {"await node.get": float("inf"), "await async LRUCache.get": float("inf")}
        for _ in range(rounds):  # in turn, so both meet the same conditions
            for name, run in (("await node.get", ours), ("await async LRUCache.get", theirs)):
                start = time.perf_counter()
                for _ in range(number):
                    await run()
                best[name] = min(best[name], (time.perf_counter() - start) / number / keys)
        peek = min(
            timeit.repeat(lambda: [node.peek(k) for k in names], number=number, repeat=rounds)
        )
        plain = min(
            timeit.repeat(lambda: [lru.get(k) for k in names], number=number, repeat=rounds)
        )
        best["node.peek"], best["LRUCache.get"] = peek / number / keys, plain / number / keys
        hits = node.stats.hits
    best["hits"] = hits
    return best


def main() -> None:
    """Print the async hit's ratio (goal <= 1.5x), peek's, and the sync node's for reference."""
    client = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    costs = asyncio.run(hit_costs(client))
    ours, theirs = costs["await node.get"], costs["await async LRUCache.get"]
    print(
        f"async hit:  await node.get {ours * 1e9:6.0f} ns   await async LRUCache.get "
        f"{theirs * 1e9:6.0f} ns   ratio {ours / theirs:.2f}x (goal <= 1.5x)"
    )
    peek, lru = costs["node.peek"], costs["LRUCache.get"]
    print(
        f"peek:       node.peek      {peek * 1e9:6.0f} ns   LRUCache.get             "
        f"{lru * 1e9:6.0f} ns   ratio {peek / lru:.2f}x"
    )
    sync_ours, sync_theirs = hit_ratio(fakeredis.FakeRedis(server=fakeredis.FakeServer()))
    print(
        f"sync hit:   node.get       {sync_ours * 1e9:6.0f} ns   LRUCache.get             "
        f"{sync_theirs * 1e9:6.0f} ns   ratio {sync_ours / sync_theirs:.2f}x (for reference)"
    )


if __name__ == "__main__":
    main()
