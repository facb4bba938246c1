"""The fault matrix: every fault, every strategy, both real servers; writes docs/faults.md.

Each cell starts its own server, runs three nodes under a read/write workload from three
threads, injects one fault midway, heals it, then measures:

- **stale reads**: reads the checker finds stale on the recorded history, over the run;
- **stale after settle**: entries any node holds, once ``Cluster.settle()`` returned,
  whose value is not what Redis holds (the promise: 0);
- **recovery**: seconds from the healing to ``settle()`` returning True;
- **hit rate after**: one read of every key on every node after settling (repair keeps
  what did not change warm; a flush would not);
- **checks / replays**: the repair round trips the nodes made, and the stream replays
  that spared them (strategy ``stream``).

``make faults`` runs it all (a few minutes); ``python -m benchmarks.faults --quick`` one
strategy and a few faults; the tests run single cells on small workloads.
"""

from __future__ import annotations

import argparse
import itertools
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import redis

import cachelab
from cachelab import CacheNode, Cluster, StripedNode, messages, validate
from cachelab.check import check
from cachelab.coherence import strategy_for
from cachelab.driver import phases
from cachelab.harness.servers import KINDS, Kind, ServerProcess, binary, version
from cachelab.history import READ, WRITE, Op
from cachelab.messages import decode_value
from cachelab.store import RedisStore

KEYS = [f"k{i}" for i in range(30)]
STRATEGIES = ("none", "invalidate", "update", "stream", "tracking")
_ERRORS = (redis.RedisError, OSError)


@dataclass(frozen=True)
class Fault:
    """One fault: how to inject it into a running cell, and what its row should say."""

    name: str
    what: str
    inject: Callable[[Cell], None]
    persistence: str | None = None
    by_design: str = ""  # why its stale-after-settle cell may be above 0, and the bound
    ttl: float | None = None  # the nodes' TTL; then the cell checks again once it has passed


@dataclass
class Cell:
    """One run's server, nodes and clients, as a fault sees them."""

    server: ServerProcess
    cluster: Cluster
    admin: redis.Redis
    namespace: str
    strategy: str = "invalidate"
    end: float = 0.0  # when the workload stops
    errors: int = 0
    history: list[Op] = field(default_factory=list)  # tracking's own (values are versions)
    numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def tracking(self) -> bool:
        """Whether the nodes run strategy "tracking" (plain keys, no versions)."""
        return self.strategy == "tracking"

    def store(self) -> RedisStore:
        """The namespace's store as an outsider with the cluster's settings sees it."""
        cap = validate.stream_maxlen(None, strategy_for(self.strategy))
        return RedisStore(self.admin, self.namespace, stream_maxlen=cap)

    def send(self, raw: bytes) -> None:
        """Put raw bytes where the nodes listen: the channel, or the stream."""
        store = self.store()
        if store.stream_maxlen is None:
            self.admin.publish(store.channel, raw)
        else:
            self.admin.xadd(store.stream_key, {"m": raw})

    def write_burst(self, count: int, size: int) -> None:
        """Queue ``count`` real writes of ``size``-byte values in one pipeline."""
        store = self.store()
        pipe = self.admin.pipeline(transaction=False)
        prefix = messages.message_prefix(self.namespace, "burst#0")
        for i in range(count):
            key = KEYS[i % len(KEYS)]
            encoded = messages.encode_value("x" * size + str(i))
            head = messages.message_head(prefix, "set", key, encoded)
            pipe.evalsha(*store.write_command("set", key, encoded, head))
        pipe.execute(raise_on_error=False)  # under a fault some may be refused


@dataclass(frozen=True)
class Result:
    """One cell's figures."""

    kind: str
    strategy: str
    fault: str
    stale_reads: int
    reads: int
    stale_after: int
    recovery: float
    hit_after: float
    errors: int
    notes: dict[str, int] = field(default_factory=dict)
    stale_after_ttl: int | None = None  # for a fault with a TTL: once it has passed

    @property
    def checks(self) -> str:
        """Repair round trips, then stream replays."""
        return f"{self.notes.get('repair_checks', 0)} / {self.notes.get('replays', 0)}"


# -- the faults ---------------------------------------------------------------------------


def _kill_pubsub(cell: Cell) -> None:
    cell.admin.client_kill_filter(_type="pubsub")
    for client in cell.admin.client_list():
        if client.get("name", "").startswith("cachelab-stream-"):  # the stream's readers
            with suppress(redis.ResponseError):
                cell.admin.client_kill_filter(_id=client["id"])


def _kill_normal(cell: Cell) -> None:
    cell.admin.client_kill_filter(_type="normal", skipme=True)


def _client_pause(cell: Cell) -> None:
    cell.admin.client_pause(600)
    time.sleep(0.6)


def _debug_sleep(cell: Cell) -> None:
    with cell.server.client() as sleeper:
        cast(Any, sleeper).execute_command("DEBUG", "SLEEP", "0.6")  # untyped in redis-py


def _sigstop(cell: Cell) -> None:
    cell.server.pause()
    time.sleep(0.6)
    cell.server.resume()


def _restart(cell: Cell) -> None:
    cell.server.restart()  # SIGKILL, then the same port and directory


def _restart_after_a_snapshot(cell: Cell) -> None:
    """A snapshot, more writes, then SIGKILL: the restart loses the writes after it."""
    cell.admin.bgsave()
    for _ in range(500):
        if not cell.admin.info("persistence")["rdb_bgsave_in_progress"]:
            break
        time.sleep(0.01)
    time.sleep(0.2)
    cell.server.restart()


def _flushall(cell: Cell) -> None:
    cell.admin.flushall()


def _script_flush(cell: Cell) -> None:
    cell.admin.script_flush()


def _evict(cell: Cell) -> None:
    """Shrink maxmemory under an allkeys policy while writes go on, then lift it."""
    used = int(cell.admin.info("memory")["used_memory"])
    cell.admin.config_set("maxmemory-policy", "allkeys-random")
    cell.admin.config_set("maxmemory", str(used + 16_384))
    store = cell.store()
    for i in range(200):  # one at a time: a pipeline's buffer alone would pass the limit
        with suppress(redis.ResponseError):
            store.write("set", KEYS[i % len(KEYS)], messages.encode_value("x" * 400), None)
    cell.admin.config_set("maxmemory", "0")


def _output_buffer(cell: Cell) -> None:
    """A tiny pub/sub output buffer, then a burst: the server drops the subscribers."""
    cell.admin.config_set("client-output-buffer-limit", "pubsub 4096 0 0")
    cell.write_burst(300, 200)
    time.sleep(0.2)
    cell.admin.config_set("client-output-buffer-limit", "pubsub 33554432 8388608 60")


def _forged(cell: Cell) -> None:
    """Well-formed messages no write made: at the current number, the next one, far ahead."""
    meta = cell.store().meta()
    for seq in (meta.seq, meta.seq + 1, meta.seq + 10**9):
        for key in KEYS[:5]:
            msg = messages.Message(cell.namespace, "set", key, "intruder#1", seq, "evil", meta.inc)
            cell.send(messages.encode(msg))


LAST_ID = "18446744073709551615-18446744073709551615"


def _outsider_stream_entry(cell: Cell) -> None:
    """An entry at the last possible id: every XADD '*' after it is refused."""
    cell.admin.xadd("{" + cell.namespace + "}:stream", {"m": "x"}, id=LAST_ID)


def _swapdb(cell: Cell) -> None:
    """SWAPDB 0 1 with db 1 empty: the namespace vanishes, and nothing announces it."""
    cell.admin.swapdb(0, 1)


def _rollback(cell: Cell) -> None:
    """A snapshot, 0.2 s more writes, then DEBUG RELOAD of it: the same incarnation goes back,
    with no restart and no reconnect."""
    cell.admin.save()
    time.sleep(0.2)
    cast(Any, cell.admin).execute_command("DEBUG", "RELOAD", "NOSAVE")  # untyped in redis-py


def _replayed(cell: Cell) -> None:
    """The last 5 genuine messages published again, three times each (tracking's carry no
    numbers: the server sends them, and nothing is replayed there)."""
    if cell.tracking:
        return
    store = cell.store()
    captured: list[bytes]
    if store.stream_maxlen is not None:
        entries: Any = cell.admin.xrevrange(store.stream_key, count=5)
        captured = [fields[b"m"] for _, fields in reversed(entries) if b"m" in fields]
    else:
        with cell.admin.pubsub() as listener:
            listener.subscribe(store.channel)
            captured = [bytes(m["data"]) for m in _messages(listener, 5)]
    for raw in captured * 3:
        cell.send(raw)


def _messages(listener: Any, count: int) -> list[dict[str, Any]]:
    """Up to ``count`` messages a pub/sub listener hears within a second."""
    heard: list[dict[str, Any]] = []
    deadline = time.monotonic() + 1.0
    while len(heard) < count and time.monotonic() < deadline:
        message = listener.get_message(timeout=0.05)
        if message is not None and message["type"] == "message":
            heard.append(message)
    return heard


def _outside_write(cell: Cell) -> None:
    """Once the workload is over, someone outside cachelab rewrites every key, telling no one.

    For tracking nodes a plain SET. For versioned nodes a write of the value field that
    bypasses the write script (a migration, say): a script write without its message would
    still take a sequence number, and the next heartbeat's would show the gap.
    """
    time.sleep(max(0.0, cell.end - time.monotonic()))
    for key in KEYS:
        value = next(cell.numbers)
        if cell.tracking:
            cell.admin.set(key, str(value))
        else:
            data_key = "{" + cell.namespace + "}:k:" + key
            cell.admin.hset(data_key, "val", messages.encode_value(value))


def _oversized(cell: Cell) -> None:
    """A message over the 1 MiB limit on the channel, and a value too big to ride along."""
    cell.send(b"x" * (2 << 20))
    writer = cell.cluster.nodes[0]
    if not cell.tracking:
        writer.set(KEYS[0], "y" * (1 << 20))
        return
    number, start = next(cell.numbers), time.monotonic()  # its number first: reads parse it
    writer.set(KEYS[0], str(number) + " " * (1 << 20))
    cell.history.append(Op(writer.name, WRITE, KEYS[0], start, time.monotonic(), number))


_TTL = "bounded by the TTL backstop (`ttl=`) or the key's next write"
FAULTS = [
    Fault(
        "kill-pubsub",
        "CLIENT KILL TYPE pubsub, and CLIENT KILL ID of every stream reader",
        _kill_pubsub,
    ),
    Fault("kill-data", "CLIENT KILL TYPE normal (the nodes' data connections)", _kill_normal),
    Fault("client-pause", "CLIENT PAUSE 600 ms (ALL)", _client_pause),
    Fault("debug-sleep", "DEBUG SLEEP 0.6 s (commands time out after 0.5 s)", _debug_sleep),
    Fault("sigstop", "SIGSTOP, 0.6 s, SIGCONT", _sigstop),
    Fault("restart", "SIGKILL and restart, no persistence", _restart),
    Fault("restart-aof", "SIGKILL and restart, AOF appendfsync always", _restart, "aof"),
    Fault(
        "restart-rdb",
        "BGSAVE, 0.2 s more writes, SIGKILL and restart from the snapshot",
        _restart_after_a_snapshot,
        "rdb",
    ),
    Fault("flushall", "FLUSHALL while connected", _flushall),
    Fault("script-flush", "SCRIPT FLUSH", _script_flush),
    Fault(
        "evict",
        "maxmemory just above use, allkeys-random, a burst of writes",
        _evict,
        by_design="a value hash evicted by `maxmemory` publishes nothing: " + _TTL,
    ),
    Fault(
        "output-buffer",
        "a 4 KiB pub/sub output buffer, then a burst (a stream reader's replies are not pub/sub)",
        _output_buffer,
    ),
    Fault(
        "forged",
        "forged update messages (current, next and far numbers), on the channel or the stream",
        _forged,
    ),
    Fault("oversized", "a 2 MiB message (on the channel or the stream), a 1 MiB value", _oversized),
    Fault(
        "outsider-entry",
        "an outsider's XADD at the last possible id on the namespace's stream (strategy "
        "`stream` reads it; for the others it is a key nobody reads)",
        _outsider_stream_entry,
    ),
    Fault("swapdb", "SWAPDB 0 1 with db 1 empty: the namespace vanishes, unannounced", _swapdb),
    Fault(
        "rollback",
        "SAVE, 0.2 s more writes, DEBUG RELOAD NOSAVE: the counter goes back in place",
        _rollback,
    ),
    Fault(
        "replayed",
        "the last 5 genuine messages (or stream entries) published again, three times each",
        _replayed,
    ),
    Fault(
        "outside-write",
        "after the workload, every key rewritten outside cachelab and its scripts, telling no "
        "one (nodes' ttl 1 s)",
        _outside_write,
        by_design="versioned strategies hear only of writes that publish: stale until the "
        + "TTL (`after ttl`: once it passed); tracking hears of them from the server",
        ttl=1.0,
    ),
]
_NONE_WHY = "strategy `none` never listens: " + _TTL


# -- one cell -----------------------------------------------------------------------------


def run_cell(
    kind: Kind, strategy: str, fault: Fault, *, seconds: float = 1.2, fault_at: float = 0.4
) -> Result:
    """Start a server, run the workload, inject ``fault`` at ``fault_at``, heal, measure."""
    with ServerProcess(kind, persistence=fault.persistence) as server:  # type: ignore[arg-type]
        client = cachelab.connect(server.url, timeout=0.5)
        admin = server.client()
        options: dict[str, Any] = {"heartbeat": 0.2, "ttl": fault.ttl}
        record = strategy != "tracking"
        try:
            with Cluster(3, client=client, strategy=strategy, record=record, **options) as cluster:
                end = time.monotonic() + seconds
                cell = Cell(server, cluster, admin, cluster.namespace, strategy, end)
                with _workload(cell, seconds):
                    time.sleep(fault_at)
                    fault.inject(cell)
                    healed = time.monotonic()
                    settled = cluster.settle(timeout=20)  # while the workload goes on
                    recovery = time.monotonic() - healed if settled else float("inf")
                return _measure(kind, strategy, fault, cell, recovery)
        finally:
            client.close()
            admin.close()


@contextmanager
def _workload(cell: Cell, seconds: float) -> Iterator[None]:
    """Reads and writes from one thread per node, for ``seconds`` in all."""
    stop = threading.Event()
    end = time.monotonic() + seconds

    def work(node: CacheNode, seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set() and time.monotonic() < end:
            key = rng.choice(KEYS)
            try:
                _step(cell, node, key, rng.random() < 0.3)
            except _ERRORS:
                cell.errors += 1
                time.sleep(0.01)

    threads = [threading.Thread(target=work, args=(n, i)) for i, n in enumerate(cell.cluster.nodes)]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        for thread in threads:
            thread.join()
        stop.set()


def _step(cell: Cell, node: CacheNode, key: str, write: bool) -> None:
    """One read or write; tracking's are recorded here, each value its own version."""
    if not cell.tracking:
        node.set(key, random.randrange(10**6)) if write else node.get(key)
        return
    start = time.monotonic()
    if write:
        number = next(cell.numbers)
        node.set(key, number)
        cell.history.append(Op(node.name, WRITE, key, start, time.monotonic(), number))
    else:
        value = node.get(key)
        version = 0 if value is None else int(value)
        cell.history.append(Op(node.name, READ, key, start, time.monotonic(), version))


def _measure(kind: str, strategy: str, fault: Fault, cell: Cell, recovery: float) -> Result:
    """Settle, then compare every node's entries with Redis, and read everything once."""
    if not cell.cluster.settle(timeout=20):
        recovery = float("inf")
    stale_after = _stale_entries(cell)
    stale_after_ttl = None
    if fault.ttl is not None:
        time.sleep(fault.ttl)
        stale_after_ttl = _stale_entries(cell)
    hits = _hit_rate(cell.cluster.nodes)
    report = check(cell.history if cell.tracking else cell.cluster.history)
    stats = [n.stats for n in cell.cluster.nodes]
    return Result(
        kind,
        strategy,
        fault.name,
        report.stale_reads,
        report.reads,
        stale_after,
        recovery,
        hits,
        cell.errors,
        {
            name: sum(getattr(s, name) for s in stats)
            for name in ("messages_forged", "resets", "repair_checks", "replays")
        },
        stale_after_ttl,
    )


def _stale_entries(cell: Cell) -> int:
    """Entries some node would serve (its hit path checks the TTL) that Redis no longer holds."""
    truth = _redis_values(cell)
    return sum(
        phases(node, key).lookup(key) not in (cachelab.NO_VALUE, truth.get(key, cachelab.ABSENT))
        for node in cell.cluster.nodes
        for key in KEYS
    )


def _redis_values(cell: Cell) -> dict[str, Any]:
    """What Redis holds now, key by key (absent keys are left out)."""
    if cell.tracking:
        return {key: value for key in KEYS if (value := cell.admin.get(key)) is not None}
    store = cell.store()
    values = {}
    for key in KEYS:
        encoded = store.read(key).value
        if encoded is not None:
            values[key] = decode_value(encoded)
    return values


def _hit_rate(nodes: list[CacheNode | StripedNode]) -> float:
    """Read every key once on every node; the share served from the local cache."""
    before = sum(n.stats.hits for n in nodes)
    for node in nodes:
        for key in KEYS:
            with suppress(*_ERRORS):
                node.get(key)
    return (sum(n.stats.hits for n in nodes) - before) / (len(nodes) * len(KEYS))


# -- the table ----------------------------------------------------------------------------


def markdown(results: list[Result], kinds: dict[Kind, str]) -> str:
    """docs/faults.md: the matrix, and what its cells mean."""
    lines = [
        "# The fault matrix",
        "",
        "Generated by `make faults` (`benchmarks/faults.py`); do not edit by hand. Servers: "
        + ", ".join(f"{kind} {ver}" for kind, ver in kinds.items())
        + ".",
        "",
        "Each cell: a private server, three nodes (heartbeat 0.2 s, command timeout 0.5 s) and "
        "one thread per node doing 70 % reads and 30 % writes over 30 keys for 1.2 s; the fault "
        "at 0.4 s. **Stale reads**: the checker, over the run (a read that starts between a "
        "write and its message's arrival counts too). **Stale after settle**: entries some node "
        "would serve after `Cluster.settle()` returned whose value Redis no longer holds; the "
        "promise is 0. **After ttl**: the same, once the nodes' TTL has passed (faults that "
        "set one). Strategy `tracking` caches plain keys (each value its own version for the "
        "checker). **Recovery**: from the healing to `settle()` returning. **Hits after**: one "
        "read of every key on every node, after settling. **Checks / replays**: the repair round "
        "trips of the three nodes over the run, and the stream replays (strategy `stream`: a "
        "reconnect reads on from the last entry id, and costs no check unless the stream was "
        "trimmed past it).",
        "",
        "| server | fault | strategy | stale reads | stale after settle | after ttl | recovery "
        "| hits after | checks / replays | errors |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        recovery = f"{r.recovery * 1000:.0f} ms" if r.recovery != float("inf") else "never"
        after_ttl = "" if r.stale_after_ttl is None else f"**{r.stale_after_ttl}**"
        lines.append(
            f"| {r.kind} | {r.fault} | {r.strategy} | {r.stale_reads} of {r.reads} "
            f"| **{r.stale_after}** | {after_ttl} | {recovery} | {r.hit_after:.0%} | {r.checks} "
            f"| {r.errors} |"
        )
    lines += ["", "## The faults", ""]
    lines += [f"- **{f.name}**: {f.what}." for f in FAULTS]
    lines += ["", "## Cells above 0 after settle, by design", ""]
    lines += [f"- **{f.name}**: {f.by_design}." for f in FAULTS if f.by_design]
    lines += [f"- every fault: {_NONE_WHY}.", ""]
    lines += _misses(results)
    return "\n".join(lines)


def _misses(results: list[Result]) -> list[str]:
    """Cells that broke the promise without a stated reason (there should be none)."""
    reasons = {f.name for f in FAULTS if f.by_design}
    broken = [
        r for r in results if r.stale_after and r.strategy != "none" and r.fault not in reasons
    ]
    if not broken:
        return ["Every other cell holds 0 stale entries after settle.", ""]
    rows = [f"- {r.kind} / {r.fault} / {r.strategy}: {r.stale_after}" for r in broken]
    return ["## Cells that broke the promise", "", *rows, ""]


def main() -> None:
    """Run the matrix and write docs/faults.md."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one strategy, four faults")
    parser.add_argument("--out", default="docs/faults.md")
    args = parser.parse_args()
    faults = FAULTS[:4] if args.quick else FAULTS
    strategies = ("invalidate",) if args.quick else STRATEGIES
    kinds: dict[Kind, str] = {kind: version(kind) or "?" for kind in KINDS if binary(kind)}
    results = []
    for kind in kinds:
        for fault in faults:
            for strategy in strategies:
                result = run_cell(kind, strategy, fault)
                print(
                    f"{kind:6} {fault.name:14} {strategy:10} stale after settle "
                    f"{result.stale_after}, stale reads {result.stale_reads}",
                    flush=True,
                )
                results.append(result)
    Path(args.out).write_text(markdown(results, kinds))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
