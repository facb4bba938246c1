"""The cost of a local hit (vs cachetools.LRUCache.get) and of set (vs a plain SET)."""

from __future__ import annotations

import subprocess
import sys
import timeit
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import cachetools
import redis

from benchmarks.redis_server import redis_server
from cachelab import CacheNode


def best(stmt: Callable[[], object], number: int, repeat: int = 7) -> float:
    """Seconds per call, best of ``repeat`` runs of ``number`` calls."""
    return min(timeit.repeat(stmt, number=number, repeat=repeat)) / number


def hit_ratio(client: redis.Redis) -> tuple[float, float]:
    """A hit with the TTL backstop on, against cachetools.LRUCache.get, same keys."""
    keys = [f"k{i}" for i in range(1000)]
    lru: cachetools.LRUCache[str, int] = cachetools.LRUCache(maxsize=10_000)
    with CacheNode(client, name="bench", namespace="bench-hit", ttl=60.0) as node:
        for i, key in enumerate(keys):
            node.set(key, i)
            lru[key] = i
        ours = best(lambda: [node.get(k) for k in keys], number=200) / len(keys)
    theirs = best(lambda: [lru.get(k) for k in keys], number=200) / len(keys)
    return ours, theirs


def set_ratio(client: redis.Redis) -> tuple[float, float]:
    """node.set (Lua: version, store, publish) against a plain SET; 3 peers in another process."""
    port = client.get_connection_kwargs()["port"]
    with peers(port, "bench-set", 3), CacheNode(client, name="w", namespace="bench-set") as node:
        ours = best(lambda: node.set("key", "value"), number=2000)
    theirs = best(lambda: client.set("bench-plain", "value"), number=2000)
    return ours, theirs


@contextmanager
def peers(port: int, namespace: str, count: int) -> Iterator[None]:
    """Run ``count`` subscribed peer nodes in a child process, as a deployment would."""
    args = [sys.executable, "-m", "benchmarks.peers", str(port), namespace, str(count)]
    child = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        yield
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(30)


def main() -> None:
    """Print both ratios, measured on a throwaway real redis-server."""
    with redis_server() as client:
        ours, theirs = hit_ratio(client)
        print(
            f"local hit (ttl on): {ours * 1e9:7.0f} ns   cachetools.LRUCache.get: "
            f"{theirs * 1e9:7.0f} ns   ratio {ours / theirs:.2f}x (goal <= 1.0x)"
        )
        ours, theirs = set_ratio(client)
        print(
            f"node.set:           {ours * 1e6:7.1f} us   plain SET:               "
            f"{theirs * 1e6:7.1f} us   ratio {ours / theirs:.2f}x (goal <= 1.3x)"
        )


if __name__ == "__main__":
    main()
