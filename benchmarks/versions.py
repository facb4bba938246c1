"""What protocol v2's checks cost: the v1 node (from git history) against today's, same run.

The v1 package is read from the commit before v2 (``git show``) into a temporary folder
as ``cachelab_v1``, so both versions run in one process against one redis-server, their
calls interleaved round by round (loopback latency drifts with CPU idle states). Each
figure is a ratio to a baseline measured in the same rounds: a hit to
``cachetools.LRUCache.get``, a write to a plain ``SET``.

``python -m benchmarks.versions [REV]`` (also part of ``make bench``).
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import cachetools
import redis

from benchmarks.core_costs import interleaved
from cachelab import CacheNode
from cachelab.harness.servers import ServerProcess

V1 = "1e10595"  # the last commit of protocol v1
KEYS = [f"k{i}" for i in range(1000)]


def load_v1(rev: str, into: Path) -> ModuleType:
    """Import the ``cachelab`` package of ``rev`` as ``cachelab_v1``."""
    files = subprocess.run(
        ["git", "ls-tree", "-r", "--name-only", rev, "cachelab"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    for name in files:
        if not name.endswith(".py"):
            continue
        text = subprocess.run(["git", "show", f"{rev}:{name}"], check=True, capture_output=True)
        source = text.stdout.decode().replace("cachelab.", "cachelab_v1.")
        target = into / name.replace("cachelab/", "cachelab_v1/", 1)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(source)
    sys.path.insert(0, str(into))
    return importlib.import_module("cachelab_v1")


def hits(v1: ModuleType, client: redis.Redis) -> dict[str, float]:
    """A hit (TTL on) in each version, and cachetools.LRUCache.get, per key."""
    lru: cachetools.LRUCache[str, int] = cachetools.LRUCache(maxsize=10_000)
    old = v1.CacheNode(client, name="h1", namespace="bench-v1-hit", ttl=60.0)
    new = CacheNode(client, name="h2", namespace="bench-v2-hit", ttl=60.0)
    for i, key in enumerate(KEYS):
        old.set(key, i)
        new.set(key, i)
        lru[key] = i
    calls: dict[str, Callable[[], object]] = {
        "cachetools.LRUCache.get": lambda: [lru.get(k) for k in KEYS],
        "v1 hit": lambda: [old.get(k) for k in KEYS],
        "v2 hit": lambda: [new.get(k) for k in KEYS],
    }
    try:
        return {name: cost / len(KEYS) for name, cost in interleaved(calls, 20, 50).items()}
    finally:
        old.close()
        new.close()


def writes(v1: ModuleType, client: redis.Redis) -> dict[str, float]:
    """A write in each version, with a listener of its own, and a plain SET."""
    nodes: dict[str, Any] = {
        "v1": v1.CacheNode(client, name="w1", namespace="bench-v1-set"),
        "v2": CacheNode(client, name="w2", namespace="bench-v2-set"),
        "v1 none": v1.CacheNode(client, name="n1", namespace="bench-v1-none", strategy="none"),
        "v2 none": CacheNode(client, name="n2", namespace="bench-v2-none", strategy="none"),
    }
    calls: dict[str, Callable[[], object]] = {"SET": lambda: client.set("plain", "value")}
    for name, node in nodes.items():
        calls[f"{name} set"] = _setter(node)
    calls["v1 set dict"] = lambda: nodes["v1"].set("d", {"a": 1, "b": [1, 2]})
    calls["v2 set dict"] = lambda: nodes["v2"].set("d", {"a": 1, "b": [1, 2]})
    try:
        return interleaved(calls, 40, 200)
    finally:
        for node in nodes.values():
            node.close()


def _setter(node: Any) -> Callable[[], object]:
    """One node's write of a short string."""
    return lambda: node.set("key", "value")


def main() -> None:
    """Print each version's cost as a ratio to the same run's baseline."""
    rev = sys.argv[1] if len(sys.argv) > 1 else V1
    with tempfile.TemporaryDirectory() as tmp, ServerProcess("redis") as server:
        v1 = load_v1(rev, Path(tmp))
        with server.client() as client:
            hit = hits(v1, client)
            write = writes(v1, client)
    base = hit["cachetools.LRUCache.get"]
    print(f"protocol v1 ({rev}) against v2, one process, one redis-server, interleaved")
    for name, cost in hit.items():
        print(f"{name + ':':<26}{cost * 1e9:8.0f} ns   {cost / base:.2f}x cachetools")
    for name, cost in write.items():
        print(f"{name + ':':<26}{cost * 1e6:8.1f} us   {cost / write['SET']:.2f}x SET")


if __name__ == "__main__":
    main()
