"""Flush against repair against a stream replay, on a real redis-server: one blip.

A reader node holds 10,000 warm entries and reads them in a loop from two threads;
a writer node changes a few keys a second. At ``t = 0`` the server kills every pub/sub
connection (on the stream strategy: each stream reader's connection, by CLIENT KILL ID).
The figures, per mode, all from one run:

- the reader's hit rate in the first 100 ms and the first 1 s after the kill, and in
  the second after that;
- the round trips its recovery cost: repair checks (each up to ``repair_batch`` keys),
  or, after a flush, the reloads a cold cache needs; on the stream, the entries the
  replay trusted again with no round trip (``restored``);
- stale reads over the whole run, counted by the checker on the recorded history, split
  at the kill: a read that starts between a write and its message's arrival is stale by
  the checker's definition, kill or no kill.

``python -m benchmarks.repair`` (also part of ``make bench``).
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass

import redis

from cachelab import CacheNode, Cluster, NodeStats, StripedNode
from cachelab.check import check, stale_reads
from cachelab.harness.servers import ServerProcess
from cachelab.history import Op

Node = CacheNode | StripedNode

ENTRIES = 10_000
READERS = 2
WRITES_PER_SECOND = 20
BEFORE, AFTER = 0.5, 2.5  # seconds of reading around the kill


@dataclass(frozen=True)
class Recovery:
    """What one mode did around the kill."""

    mode: str
    hit_100ms: float
    hit_1s: float
    hit_next_1s: float
    cold_ms: int
    repair_checks: int
    keys_checked: int
    restored: int
    reloads: int
    stale_before: int
    stale_after: int
    staleness_max: float
    reads: int


def run(client: redis.Redis, mode: str) -> Recovery:
    """Warm, read around a kill of every subscription, and measure.

    ``mode``: ``flush`` (pub/sub, repair=False), ``repair`` (pub/sub) or ``stream``.
    """
    strategy = "stream" if mode == "stream" else "invalidate"
    repair = mode != "flush"
    with Cluster(
        2, client=client, strategy=strategy, record=True, repair=repair, max_entries=ENTRIES
    ) as cluster:
        reader, writer = cluster.nodes
        keys = [f"k{i}" for i in range(ENTRIES)]
        for key in keys:
            writer.set(key, key)
        for key in keys:
            reader.get(key)
        assert cluster.settle(timeout=30)
        before = reader.stats
        kill_at = _read_around_a_kill(client, reader, writer, keys)
        assert cluster.settle(timeout=30)
        after = reader.stats
        history = cluster.history
    return _measure(mode, history, kill_at, before, after)


def _read_around_a_kill(
    client: redis.Redis, reader: Node, writer: Node, keys: list[str]
) -> float:
    """Read from ``READERS`` threads; write now and then; kill the subscriptions midway."""
    stop = threading.Event()

    def read(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            reader.get(rng.choice(keys))

    def write() -> None:
        rng = random.Random(99)
        while not stop.wait(1 / WRITES_PER_SECOND):
            writer.set(rng.choice(keys), rng.random())

    threads = [threading.Thread(target=read, args=(i,)) for i in range(READERS)]
    threads.append(threading.Thread(target=write))
    for thread in threads:
        thread.start()
    time.sleep(BEFORE)
    kill_at = time.monotonic()
    client.client_kill_filter(_type="pubsub")
    for listener in client.client_list():
        if listener.get("name", "").startswith("cachelab-stream-"):
            client.client_kill_filter(_id=listener["id"])
    time.sleep(AFTER)
    stop.set()
    for thread in threads:
        thread.join()
    return kill_at


def _measure(
    mode: str, history: list[Op], kill_at: float, before: NodeStats, after: NodeStats
) -> Recovery:
    """Hit rates in windows after the kill, recovery cost, and the checker's stale reads."""
    reads = [op for op in history if op.op == "read" and op.node == "a"]

    def hit_rate(start: float, end: float) -> float:
        window = [op.hit for op in reads if kill_at + start <= op.start < kill_at + end]
        return sum(window) / len(window) if window else float("nan")

    b, a = before, after
    report = check(history)
    stale = [op for op, _ in stale_reads(history) if op.node == "a"]
    return Recovery(
        mode=mode,
        hit_100ms=hit_rate(0.0, 0.1),
        hit_1s=hit_rate(0.0, 1.0),
        hit_next_1s=hit_rate(1.0, 2.0),
        cold_ms=sum(10 for i in range(100) if hit_rate(i / 100, (i + 1) / 100) < 0.5),
        repair_checks=a.repair_checks - b.repair_checks,
        keys_checked=a.suspected - b.suspected,
        restored=a.restored - b.restored,
        reloads=a.misses - b.misses,
        stale_before=sum(op.start < kill_at for op in stale),
        stale_after=sum(op.start >= kill_at for op in stale),
        staleness_max=report.staleness_max,
        reads=len(reads),
    )


def main() -> None:
    """Every mode on one throwaway redis-server: flush, repair, stream."""
    with ServerProcess("redis") as server, server.client() as client:
        results = [run(client, mode) for mode in ("flush", "repair", "stream")]
    print(f"one blip (CLIENT KILL); a reader with {ENTRIES} warm entries, {READERS} threads")
    print(
        f"{'mode':<8}{'hit 0-100ms':>12}{'hit 0-1s':>10}{'hit 1-2s':>10}{'cold ms':>9}"
        f"{'checks':>8}{'keys':>7}{'restored':>9}{'misses':>8}{'stale before/after':>20}"
        f"{'max':>9}{'reads':>9}"
    )
    for r in results:
        stale = f"{r.stale_before}/{r.stale_after}"
        print(
            f"{r.mode:<8}{r.hit_100ms:>12.1%}{r.hit_1s:>10.1%}{r.hit_next_1s:>10.1%}"
            f"{r.cold_ms:>9}{r.repair_checks:>8}{r.keys_checked:>7}{r.restored:>9}{r.reloads:>8}"
            f"{stale:>20}{r.staleness_max * 1e3:>7.1f}ms{r.reads:>9}"
        )
    print("cold ms: 10 ms windows after the kill with under half the reads hits")
    print("keys: entries made suspect (held, on the stream); restored: trusted again by a replay")
    print("stale: reads the checker finds stale before and after the kill (max staleness)")


if __name__ == "__main__":
    main()
