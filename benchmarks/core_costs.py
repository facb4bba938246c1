"""The cost of a local hit (vs cachetools.LRUCache.get) and of set (vs a plain SET).

The hit is timed without staleness sampling (the default) and with ``verify=0.01``.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import timeit
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

import cachetools
import redis

from cachelab import CacheNode
from cachelab.harness.servers import ServerProcess
from cachelab.store import RedisStore


def best(stmt: Callable[[], object], number: int, repeat: int = 7) -> float:
    """Seconds per call, best of ``repeat`` runs of ``number`` calls."""
    return min(timeit.repeat(stmt, number=number, repeat=repeat)) / number


def hit_ratio(client: redis.Redis, verify: float | None = None) -> tuple[float, float]:
    """A hit with the TTL backstop on, against cachetools.LRUCache.get, same keys.

    ``verify``: the node samples that share of its hits for verification (its thread
    checks them against Redis meanwhile, as in production).
    """
    keys = [f"k{i}" for i in range(1000)]
    lru: cachetools.LRUCache[str, int] = cachetools.LRUCache(maxsize=10_000)
    namespace = "bench-hit" if verify is None else "bench-hit-verify"
    with CacheNode(client, name="bench", namespace=namespace, ttl=60.0, verify=verify) as node:
        for i, key in enumerate(keys):
            node.set(key, i)
            lru[key] = i
        ours = best(lambda: [node.get(k) for k in keys], number=200) / len(keys)
    theirs = best(lambda: [lru.get(k) for k in keys], number=200) / len(keys)
    return ours, theirs


def set_costs(client: redis.Redis, rounds: int = 40, number: int = 200) -> dict[str, float]:
    """Seconds per write, from the bare protocol up to a node with peers in another process.

    - ``SET``: the baseline, a plain redis-py SET;
    - ``script``: the write script alone (version, store, no subscriber);
    - ``node, no listener``: node.set with strategy "none" (client-side overhead);
    - ``node, own listener``: node.set; its own listener thread receives the message;
    - ``node, 3 peers``: as above, with 3 peer nodes listening in another process.

    Loopback latency here swings with how busy the CPUs are (idle cores sleep deeper),
    so every candidate is timed in each round, all under the same conditions, and each
    keeps its best round.
    """
    store = RedisStore(client, "bench-script")
    port = client.get_connection_kwargs()["port"]
    with (
        peers(port, "bench-set", 3),
        CacheNode(client, name="w", namespace="bench-none", strategy="none") as silent,
        CacheNode(client, name="w", namespace="bench-own") as alone,
        CacheNode(client, name="w", namespace="bench-set") as watched,
    ):
        calls: dict[str, Callable[[], object]] = {
            "SET": lambda: client.set("bench-plain", "value"),
            "script": lambda: store.write("set", "key", '[0,"value"]', None),
            "node, no listener": lambda: silent.set("key", "value"),
            "node, own listener": lambda: alone.set("key", "value"),
            "node, 3 peers": lambda: watched.set("key", "value"),
        }
        return interleaved(calls, rounds, number)


def listener_floor(client: redis.Redis, rounds: int = 40, number: int = 200) -> dict[str, float]:
    """What any in-process subscriber thread costs a publisher in CPython, whatever it does.

    A PUBLISH that no one hears, one heard by a thread that only recv()s the raw socket,
    and one heard by a redis-py PubSub thread: the differences are the thread wake-up
    and GIL hand-off, then redis-py's per-message work, which node.set pays for its own
    message.
    """
    port = client.get_connection_kwargs()["port"]
    with _raw_listener(port, "floor-raw"), _redis_py_listener(client, "floor-py"):
        calls: dict[str, Callable[[], object]] = {
            "PUBLISH, unheard": lambda: client.publish("floor-none", "x"),
            "PUBLISH, raw thread": lambda: client.publish("floor-raw", "x"),
            "PUBLISH, redis-py": lambda: client.publish("floor-py", "x"),
        }
        return interleaved(calls, rounds, number)


def interleaved(
    calls: dict[str, Callable[[], object]], rounds: int, number: int
) -> dict[str, float]:
    """Best seconds per call of each candidate, timed in turn in every round."""
    best_of = dict.fromkeys(calls, float("inf"))
    for _ in range(rounds):
        for name, call in calls.items():
            best_of[name] = min(best_of[name], best(call, number=number, repeat=1))
    return best_of


@contextmanager
def _raw_listener(port: int, channel: str) -> Iterator[None]:
    """A thread subscribed on a bare socket that reads and discards."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(f"SUBSCRIBE {channel}\r\n".encode())
    sock.recv(1024)
    sock.settimeout(0.05)

    def step() -> None:
        with suppress(TimeoutError):
            sock.recv(65536)

    with sock, _looping(step):
        yield


@contextmanager
def _redis_py_listener(client: redis.Redis, channel: str) -> Iterator[None]:
    """A thread reading a redis-py PubSub, as RedisBus does, doing nothing else."""
    pubsub = client.pubsub()
    pubsub.subscribe(channel)
    try:
        with _looping(lambda: pubsub.get_message(timeout=0.05)):
            yield
    finally:
        pubsub.close()


@contextmanager
def _looping(step: Callable[[], object]) -> Iterator[None]:
    """Call ``step`` in a thread, again and again, until the block ends."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            step()

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


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
    with ServerProcess("redis") as server, server.client() as client:
        for verify, label, note in (
            (None, "local hit (ttl on):", "goal <= 1.0x"),
            (0.01, "  with verify=0.01:", "1 hit in 100 sampled"),
        ):
            ours, theirs = hit_ratio(client, verify)
            print(
                f"{label} {ours * 1e9:7.0f} ns   cachetools.LRUCache.get: "
                f"{theirs * 1e9:7.0f} ns   ratio {ours / theirs:.2f}x ({note})"
            )
        costs = set_costs(client)
        for name, cost in costs.items():
            ratio = cost / costs["SET"]
            print(f"{name + ':':<20}{cost * 1e6:7.1f} us   ratio to a plain SET {ratio:.2f}x")
        print("(goal for node.set: <= 1.3x a plain SET)")
        floor = listener_floor(client)
        for name, cost in floor.items():
            ratio = cost / floor["PUBLISH, unheard"]
            print(
                f"{name + ':':<20}{cost * 1e6:7.1f} us   ratio to an unheard PUBLISH {ratio:.2f}x"
            )


if __name__ == "__main__":
    main()
