"""The strategies side by side on a real server: hit cost, staleness after outside writes,
and the invalidation messages each write costs (default tracking against BCAST).

- hit cost: a local hit under each strategy, as a ratio to ``cachetools.LRUCache.get``
  on the same keys, timed in the same run;
- staleness: an outside writer (a plain redis-py client, no cachelab) writes numbered
  values while tracking nodes read from their own threads; the consistency checker
  judges the history (a value's number is its version) and gives the staleness of the
  stale reads. ``invalidate`` nodes, which nobody tells of outside writes, are measured
  the same way: they are stale until their TTL;
- messages per write: N nodes each read a Zipf sample of keys between the writer's
  writes; the server's invalidations received, per write, in either mode.
"""

from __future__ import annotations

import argparse
import random
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import cachetools
import redis

from benchmarks.core_costs import best
from cachelab import CacheNode, StripedNode, TrackingNode
from cachelab.check import Report, check
from cachelab.driver import phases
from cachelab.harness.servers import ServerProcess
from cachelab.history import READ, WRITE, Op
from cachelab.messages import NO_VALUE, encode_value
from cachelab.sim.workloads import zipf_picker
from cachelab.store import RedisStore

_RATE = 200.0
_PAUSE = 0.0005  # between a reader's reads: a spinning loop would starve the listener of the GIL


def hit_costs(client: redis.Redis, strategies: Sequence[str], keys: int = 1000) -> dict[str, float]:
    """Seconds per hit under each strategy, and ``"cachetools"``'s, on the same keys."""
    names = [f"k{i}" for i in range(keys)]
    lru: cachetools.LRUCache[str, str] = cachetools.LRUCache(maxsize=10_000)
    costs = {}
    for strategy in strategies:
        with _node(client, strategy, ttl=60.0) as node:
            for i, key in enumerate(names):
                client.set(key, str(i))  # what tracking nodes read; the others write their own
                if not isinstance(node, TrackingNode):
                    node.set(key, str(i))
                node.get(key)
                lru[key] = str(i)
            costs[strategy] = best(lambda: [node.get(k) for k in names], number=200) / keys
    costs["cachetools"] = best(lambda: [lru.get(k) for k in names], number=200) / keys
    return costs


def write_costs(
    client: redis.Redis, strategies: Sequence[str], keys: int = 200
) -> dict[str, float]:
    """Seconds per write (a ``set``) under each strategy, and a plain ``SET``'s (``"SET"``),
    with a second node listening in the same process."""
    names = [f"w{i}" for i in range(keys)]
    costs = {}
    for strategy in strategies:
        with _node(client, strategy) as node, _peer(client, node):
            costs[strategy] = best(lambda: [node.set(k, "v") for k in names], number=5) / keys
    costs["SET"] = best(lambda: [client.set(k, "v") for k in names], number=5) / keys
    return costs


@contextmanager
def _peer(client: redis.Redis, node: Any) -> Iterator[Any]:
    """A second node of ``node``'s namespace (a listener that must hear each write)."""
    if isinstance(node, TrackingNode):
        yield None  # a tracking write is a plain SET: nobody listens unless they read
        return
    with CacheNode(client, name="peer", namespace=node.namespace, strategy=node.strategy) as peer:
        yield peer


@contextmanager
def _node(client: redis.Redis, strategy: str, **options: Any) -> Iterator[CacheNode | StripedNode]:
    """One node of ``strategy`` ("tracking-bcast" is tracking with BCAST, "invalidate-x16"
    invalidate over 16 stripes, "-strict" strict=True)."""
    node: CacheNode | StripedNode
    if strategy.endswith("-strict"):
        options["strict"] = True
        strategy = strategy.removesuffix("-strict")
    if strategy.startswith("tracking"):
        node = TrackingNode(client, bcast=strategy.endswith("bcast"), **options)
    elif strategy.endswith("-x16"):
        namespace = f"bench-{secrets.token_hex(3)}"
        name = strategy.removesuffix("-x16")
        node = StripedNode(client, namespace=namespace, strategy=name, stripes=16, **options)
    else:
        namespace = f"bench-{secrets.token_hex(3)}"
        node = CacheNode(client, namespace=namespace, strategy=strategy, **options)
    with node:
        yield node


def staleness(
    client: redis.Redis,
    strategy: str = "tracking",
    *,
    writer: str = "plain",
    nodes: int = 4,
    seconds: float = 2.0,
    write_rate: float = 200.0,
    keys: int = 20,
    ttl: float = 1.0,
) -> Report:
    """Writes against nodes reading in threads; the checker's report of the run.

    ``writer`` is who writes: ``"node"``, one more node of ``strategy``; ``"script"``, a
    service that runs cachelab's write script without its message (versioned strategies:
    the next heartbeat's number shows the gap); ``"plain"``, a service that knows nothing
    of cachelab (a plain SET for tracking; for the others, the value replaced in place).
    """
    names = [f"stale:{i}" for i in range(keys)]
    history: list[Op] = [Op("writer", WRITE, key, 0.0, 0.0, 0) for key in names]
    stop = threading.Event()
    namespace = f"bench-{secrets.token_hex(3)}"
    with ExitStack() as stack:
        write = _writer(client, strategy, writer, stack, ttl, namespace)
        for key in names:
            write(key, 0)
        members = [
            stack.enter_context(_reading_node(client, strategy, ttl, namespace))
            for _ in range(nodes)
        ]
        readers = [
            threading.Thread(target=_read_loop, args=(node, names, history, stop, i))
            for i, node in enumerate(members)
        ]
        for reader in readers:
            reader.start()
        _write_loop(write, names, history, seconds, write_rate)
        stop.set()
        for reader in readers:
            reader.join()
    return check(history)


def _writer(
    client: redis.Redis, strategy: str, writer: str, stack: ExitStack, ttl: float, namespace: str
) -> Callable[[str, int], object]:
    """How the writer writes one key (its connections close with ``stack``)."""
    if writer == "node":
        node = stack.enter_context(_reading_node(client, strategy, ttl, namespace))
        return lambda key, number: node.set(key, str(number))
    outside = stack.enter_context(redis.Redis(**_address(client)))
    if strategy.startswith("tracking"):
        if writer != "plain":
            raise ValueError("tracking nodes have no script: their writers are plain or nodes")
        return lambda key, number: outside.set(key, str(number))
    store = RedisStore(outside, namespace)
    if writer == "script":
        return lambda key, number: store.write("set", key, encode_value(str(number)), None)

    def replace(key: str, number: int) -> object:
        if number == 0:  # the first value goes through the script: the key gets a version
            return store.write("set", key, encode_value("0"), None)
        return outside.hset("{" + namespace + "}:k:" + key, "val", encode_value(str(number)))

    return replace


@contextmanager
def _reading_node(
    client: redis.Redis, strategy: str, ttl: float, namespace: str
) -> Iterator[CacheNode]:
    """A node that reads the keys the writer writes."""
    if strategy.startswith("tracking"):
        node: CacheNode = TrackingNode(client, ttl=ttl, bcast=strategy.endswith("bcast"))
    else:
        node = CacheNode(client, namespace=namespace, strategy=strategy, ttl=ttl)
    with node:
        yield node


def _read_loop(
    node: CacheNode, names: list[str], history: list[Op], stop: threading.Event, seed: int
) -> None:
    """Read random keys until stopped (a pause between reads, as a service has); record
    each read with its value as version."""
    rng = random.Random(seed)
    tag = f"n{seed}"
    while not stop.wait(_PAUSE):
        key = rng.choice(names)
        start = time.monotonic()
        value = phases(node, key).lookup(key)
        hit = value is not NO_VALUE
        if not hit:
            value = node.get(key)
        end = time.monotonic()
        history.append(Op(tag, READ, key, start, end, int(value or 0), hit))


def _write_loop(
    write: Callable[[str, int], object],
    names: list[str],
    history: list[Op],
    seconds: float,
    rate: float,
) -> None:
    """Write numbered values at ``rate`` per second for ``seconds``, recording each."""
    rng = random.Random(0)
    deadline = time.monotonic() + seconds
    number = 0
    while time.monotonic() < deadline:
        number += 1
        key = rng.choice(names)
        start = time.monotonic()
        write(key, number)
        history.append(Op("writer", WRITE, key, start, time.monotonic(), number))
        time.sleep(1 / rate)


def messages_per_write(
    client: redis.Redis,
    nodes: int,
    *,
    bcast: bool,
    rounds: int = 20,
    reads: int = 50,
    writes: int = 10,
    keys: int = 1000,
) -> float:
    """Invalidations the server sent per outside write, nodes reading Zipf keys between."""
    prefix = f"mpw{secrets.token_hex(3)}:"
    pick = zipf_picker(keys, 1.0)
    rng = random.Random(1)
    outside = redis.Redis(**_address(client))
    with ExitStack() as stack:
        members = [
            stack.enter_context(TrackingNode(client, name=f"m{i}", prefix=prefix, bcast=bcast))
            for i in range(nodes)
        ]
        for _ in range(rounds):
            for node in members:
                for _ in range(reads):
                    node.get(pick(rng))
            for _ in range(writes):
                outside.set(prefix + pick(rng), "x")
        settle(members)
        told = sum(n.stats.invalidations_received + n.stats.messages_outdated for n in members)
    outside.close()
    return told / (rounds * writes)


def settle(nodes: Sequence[CacheNode], timeout: float = 10.0) -> None:
    """Wait until every node has handled what the server sent it before now."""
    nonce = secrets.token_hex(6)
    for node in nodes:
        node._publish_sync(nonce)
    deadline = time.monotonic() + timeout
    while not all(node._synced(nonce) for node in nodes):
        if time.monotonic() > deadline:
            raise TimeoutError("the nodes did not settle")
        time.sleep(0.002)


def _address(client: redis.Redis) -> dict[str, Any]:
    """Host and port of ``client``'s server."""
    where = client.connection_pool.connection_kwargs
    return {"host": where["host"], "port": where["port"]}


def main(argv: Sequence[str] | None = None) -> None:
    """Print the three tables (a fresh redis-server on a free port)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=("redis", "valkey"), default="redis")
    args = parser.parse_args(argv)
    with ServerProcess(args.kind) as server:
        client = server.client()
        strategies = (
            "none",
            "invalidate",
            "invalidate-x16",
            "update",
            "stream",
            "tracking",
            "tracking-bcast",
        )
        strict = ("invalidate-strict", "update-strict", "tracking-strict")
        _print_hits(hit_costs(client, (*strategies, *strict)))
        _print_writes(write_costs(client, ("invalidate", "update", "tracking", *strict)))
        _print_staleness(client)
        _print_messages(client)
        client.close()


def _print_hits(costs: dict[str, float]) -> None:
    base = costs.pop("cachetools")
    print("hit cost, as a ratio to cachetools.LRUCache.get")
    for strategy, cost in costs.items():
        print(f"  {strategy:<16} {cost / base:5.2f}x  ({cost * 1e9:.0f} ns)")


def _print_writes(costs: dict[str, float]) -> None:
    base = costs.pop("SET")
    print("write cost, as a ratio to a plain SET (a peer node listening)")
    for strategy, cost in costs.items():
        print(f"  {strategy:<18} {cost / base:5.2f}x  ({cost * 1e6:.0f} us)")


STALENESS_RUNS = (
    ("invalidate", "node"),
    ("update", "node"),
    ("stream", "node"),
    ("tracking", "node"),
    ("tracking", "plain"),
    ("tracking-bcast", "plain"),
    ("invalidate", "script"),
    ("invalidate", "plain"),
)


def _print_staleness(client: redis.Redis, seconds: float = 5.0) -> None:
    print(f"staleness ({_RATE:.0f} writes/s on 20 keys, 4 nodes reading, ttl 1 s, {seconds} s)")
    for strategy, writer in STALENESS_RUNS:
        report = staleness(client, strategy, writer=writer, seconds=seconds)
        print(
            f"  {strategy:<15} {writer + ' writer':<14} stale {report.stale_fraction:7.3%} "
            f"of {report.reads} reads, hits {report.hit_rate:.1%}, staleness "
            f"p50 {_ms(report.staleness_p50)}, p99 {_ms(report.staleness_p99)}, "
            f"max {_ms(report.staleness_max)}"
        )


def _print_messages(client: redis.Redis) -> None:
    print("invalidations per write (Zipf reads between outside writes)")
    for nodes in (4, 16, 64):
        default = messages_per_write(client, nodes, bcast=False)
        bcast = messages_per_write(client, nodes, bcast=True)
        print(f"  {nodes:>3} nodes: default {default:6.2f}, BCAST {bcast:6.2f}")


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


if __name__ == "__main__":
    main()
