"""The fault matrix: every fault, every strategy, every real server; writes docs/faults.md.

Each cell starts its own server, runs three nodes under a read/write workload from three
threads, injects one fault midway, heals it, then measures:

- **stale reads**: reads the checker finds stale on the recorded history, over the run;
- **stale after settle**: entries any node holds, once ``Cluster.settle()`` returned,
  whose value is not what Redis holds (the promise: 0);
- **recovery**: seconds from the healing to ``settle()`` returning True;
- **hit rate after**: one read of every key on every node after settling (repair keeps
  what did not change warm; a flush would not);
- **checks / replays**: the repair round trips the nodes made, and the stream replays
  that spared them (strategy ``stream``);
- **cost**: the server's work over the cell (``INFO commandstats``: commands, and µs in
  them) beyond that of the same workload with no fault, at the cell's length and number of
  operations; "~0" when no more than the no-fault runs differ among themselves.

``make faults`` runs it all (a few minutes); ``python -m benchmarks.faults --quick`` one
strategy and a few faults; the tests run single cells on small workloads.
"""

from __future__ import annotations

import argparse
import itertools
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import redis

import cachelab
from benchmarks.faults_cost import BASELINE_RUNS, Baseline, Spent, Tally, Work
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
    admin: Tally
    namespace: str
    strategy: str = "invalidate"
    end: float = 0.0  # when the workload stops
    errors: int = 0
    history: list[Op] = field(default_factory=list)  # tracking's own (values are versions)
    numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    began: float = 0.0  # when the server's work began to count
    start: Work = field(default_factory=Work)  # the server's totals then
    banked: Work = field(default_factory=Work)  # its work before a restart zeroed its totals
    # the fault's own write scripts that ran, by whether each carried a message (one more
    # command inside): what they run inside is counted with the nodes' commands
    scripted: Counter[bool] = field(default_factory=Counter)

    @property
    def tracking(self) -> bool:
        """Whether the nodes run strategy "tracking" (plain keys, no versions)."""
        return self.strategy == "tracking"

    def count_from_now(self) -> None:
        """Start counting the server's work."""
        self.began, self.start, self.banked = time.monotonic(), Work.now(self.admin), Work()

    def restart(self) -> None:
        """SIGKILL and restart the server, its work so far banked (a restart zeroes it)."""
        self.banked, self.start = self.banked + Work.now(self.admin) - self.start, Work()
        self.server.restart()  # the same port and directory

    def spent(self) -> Spent:
        """The server's work since counting began, and the workload's operations."""
        ops = len(self.history if self.tracking else self.cluster.history)
        work = self.banked + Work.now(self.admin) - self.start
        return Spent(work, ops, time.monotonic() - self.began)

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
        """``count`` real writes of ``size``-byte values, all but the first in one pipeline
        (the first loads the script where no node has: tracking nodes never use it)."""
        store = self.store()
        prefix = messages.message_prefix(self.namespace, "burst#0")
        writes = [_burst_write(prefix, i, size) for i in range(count)]
        store.write(*writes[0])
        pipe = self.admin.pipeline(transaction=False)
        for write in writes[1:]:
            pipe.evalsha(*store.write_command(*write))
        replies = pipe.execute(raise_on_error=False)  # under a fault some may be refused
        self.scripted[True] += 1 + sum(not isinstance(r, Exception) for r in replies)


def _burst_write(prefix: str, i: int, size: int) -> tuple[str, str, str, str]:
    """The ``i``-th write of a burst: op, key, encoded value, message head."""
    key = KEYS[i % len(KEYS)]
    encoded = messages.encode_value("x" * size + str(i))
    return "set", key, encoded, messages.message_head(prefix, "set", key, encoded)


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
    spent: Spent | None = None

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
    cast(Any, cell.admin).execute_command("DEBUG", "SLEEP", "0.6")  # untyped in redis-py


def _sigstop(cell: Cell) -> None:
    cell.server.pause()
    time.sleep(0.6)
    cell.server.resume()


def _restart(cell: Cell) -> None:
    cell.restart()


def _restart_after_a_snapshot(cell: Cell) -> None:
    """A snapshot, more writes, then SIGKILL: the restart loses the writes after it."""
    cell.admin.bgsave()
    for _ in range(500):
        if not cell.admin.info("persistence")["rdb_bgsave_in_progress"]:
            break
        time.sleep(0.01)
    time.sleep(0.2)
    cell.restart()


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
            cell.scripted[False] += 1
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
NOTHING = Fault(
    "nothing",
    "no fault: the baselines' own cell, and the control row, measured against them like any "
    "other (its cost should read ~0)",
    lambda cell: None,
)
FAULTS = [
    NOTHING,
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
NONE_WHY = "strategy `none` never listens: " + _TTL


# -- one cell -----------------------------------------------------------------------------


def run_cell(
    kind: Kind,
    strategy: str,
    fault: Fault,
    *,
    seconds: float = 1.2,
    fault_at: float = 0.4,
    idle: bool = False,
    server: ServerProcess | None = None,
) -> Result:
    """Start a server, run the workload, inject ``fault`` at ``fault_at``, heal, measure.

    ``idle``: the nodes run but nobody reads or writes. ``server``: run on it instead of a
    server of the cell's own (a test's spare one; the fault's persistence is then its own).
    """
    with _server(kind, fault, server) as live:
        client = cachelab.connect(live.url, timeout=0.5)
        admin = Tally(host=live.host, port=live.port)
        options: dict[str, Any] = {"heartbeat": 0.2, "ttl": fault.ttl}
        record = strategy != "tracking"
        try:
            with Cluster(3, client=client, strategy=strategy, record=record, **options) as cluster:
                end = time.monotonic() + seconds
                cell = Cell(live, cluster, admin, cluster.namespace, strategy, end)
                return _run(cell, fault, seconds, fault_at, idle)
        finally:
            client.close()
            admin.close()


@contextmanager
def _server(kind: Kind, fault: Fault, server: ServerProcess | None) -> Iterator[ServerProcess]:
    """``server`` if given, else a fresh one with the fault's persistence."""
    if server is not None:
        yield server
        return
    with ServerProcess(kind, persistence=fault.persistence) as own:  # type: ignore[arg-type]
        yield own


def _run(cell: Cell, fault: Fault, seconds: float, fault_at: float, idle: bool) -> Result:
    """The workload (none if ``idle``) with ``fault`` at ``fault_at``; then the figures."""
    cell.count_from_now()
    with _workload(cell, seconds, _rest if idle else _step):
        time.sleep(fault_at)
        sent = _inject(cell, fault)
        healed = time.monotonic()
        settled = cell.cluster.settle(timeout=20)  # while the workload goes on
        recovery = time.monotonic() - healed if settled else float("inf")
    return _measure(fault, cell, recovery, sent)


def _inject(cell: Cell, fault: Fault) -> Counter[str]:
    """Inject ``fault``; the commands it sent, by name."""
    cell.admin.sent.clear()
    fault.inject(cell)
    return Counter(cell.admin.sent)


def _own_work(cell: Cell, sent: Counter[str]) -> Work:
    """What the fault's own commands cost the server, which is not the fault's cost.

    Each is priced at its name's mean µs on the server (DEBUG SLEEP's 0.6 s, SAVE's
    snapshot), since commandstats cannot tell who sent one. Called once the workload is over.
    """
    inside = sum(count * _script_insides(cell, said) for said, count in cell.scripted.items())
    stats = cell.admin.info("commandstats")
    usec = sum(
        count * float(stats.get(f"cmdstat_{name}", {}).get("usec_per_call", 0.0))
        for name, count in sent.items()
    )
    return Work(sum(sent.values()) + inside, usec)


def _script_insides(cell: Cell, message: bool) -> int:
    """How many commands a write script runs inside, from ten in a scratch namespace (the
    fault's own scripts' are counted with the nodes', and are not its cost either); with
    no workload running, only a heartbeat could land among them, which the rounding drops."""
    store = RedisStore(cell.admin, "faults-scratch", stream_maxlen=cell.store().stream_maxlen)
    encoded = messages.encode_value("x" * 200)
    prefix = messages.message_prefix("faults-scratch", "scratch#0")
    head = messages.message_head(prefix, "set", "k", encoded) if message else None
    store.write("set", "k", encoded, head)  # the first creates the scratch namespace
    before = Work.now(cell.admin)
    for _ in range(10):
        store.write("set", "k", encoded, head)
    return round(((Work.now(cell.admin) - before).commands - 1) / 10) - 1  # 1: the INFO


Step = Callable[[Cell, CacheNode, str, bool], None]


@contextmanager
def _workload(cell: Cell, seconds: float, step: Step) -> Iterator[None]:
    """Reads and writes from one thread per node, for ``seconds`` in all."""
    stop = threading.Event()
    end = time.monotonic() + seconds

    def work(node: CacheNode, seed: int) -> None:
        rng = random.Random(seed)  # the same keys, reads and writes in every cell
        while not stop.is_set() and time.monotonic() < end:
            key = rng.choice(KEYS)
            try:
                step(cell, node, key, rng.random() < 0.3)
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


def _rest(cell: Cell, node: CacheNode, key: str, write: bool) -> None:
    """An idle cell's step: nothing, for 10 ms."""
    time.sleep(0.01)


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


def _measure(fault: Fault, cell: Cell, recovery: float, sent: Counter[str]) -> Result:
    """Settle, then compare every node's entries with Redis, and read everything once."""
    if not cell.cluster.settle(timeout=20):
        recovery = float("inf")
    spent = cell.spent()  # before the reads below, which are the measurement's own
    spent = replace(spent, work=spent.work - _own_work(cell, sent))
    stale_after, stale_after_ttl = _stale_after(cell, fault)
    hits = _hit_rate(cell.cluster.nodes)
    report = check(cell.history if cell.tracking else cell.cluster.history)
    return Result(
        cell.server.kind,
        cell.strategy,
        fault.name,
        report.stale_reads,
        report.reads,
        stale_after,
        recovery,
        hits,
        cell.errors,
        _notes(cell),
        stale_after_ttl,
        spent,
    )


def _stale_after(cell: Cell, fault: Fault) -> tuple[int, int | None]:
    """Stale entries now, and (a fault with a TTL) once the TTL has passed."""
    now = _stale_entries(cell)
    if fault.ttl is None:
        return now, None
    time.sleep(fault.ttl)
    return now, _stale_entries(cell)


def _notes(cell: Cell) -> dict[str, int]:
    """The nodes' counters the table reports, summed."""
    stats = [n.stats for n in cell.cluster.nodes]
    names = ("messages_forged", "resets", "repair_checks", "replays")
    return {name: sum(getattr(s, name) for s in stats) for name in names}


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


# -- the run ------------------------------------------------------------------------------


def on_server(
    kind: Kind, faults: Sequence[Fault], strategies: Sequence[str]
) -> tuple[list[Result], dict[tuple[str, str], Baseline]]:
    """Every cell on one kind of server, and its baselines: an idle run per strategy, then
    a no-fault run per strategy before each of ``BASELINE_RUNS`` slices of the faults (so
    that a drift in the machine's load over the run widens their spread)."""
    idle = {s: _spent(run_cell(kind, s, NOTHING, idle=True)) for s in strategies}
    runs: dict[str, list[Spent]] = {s: [] for s in strategies}
    results = []
    for i in range(BASELINE_RUNS):
        for strategy in strategies:
            runs[strategy].append(_spent(run_cell(kind, strategy, NOTHING)))
        part = faults[i * len(faults) // BASELINE_RUNS : (i + 1) * len(faults) // BASELINE_RUNS]
        results += [_cell(kind, strategy, fault) for fault in part for strategy in strategies]
    return results, {(kind, s): Baseline(idle[s], tuple(runs[s])) for s in strategies}


def _spent(result: Result) -> Spent:
    """A run's server work (run_cell always measures it)."""
    assert result.spent is not None
    return result.spent


def _cell(kind: Kind, strategy: str, fault: Fault) -> Result:
    """One cell of the matrix, its line printed as it ends."""
    result = run_cell(kind, strategy, fault)
    print(
        f"{kind:6} {fault.name:14} {strategy:10} stale after settle "
        f"{result.stale_after}, stale reads {result.stale_reads}",
        flush=True,
    )
    return result


def main() -> None:
    """Run the matrix and write docs/faults.md."""
    from benchmarks.faults_report import markdown  # it reads this module's faults

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one strategy, the first four rows")
    parser.add_argument("--out", default="docs/faults.md")
    args = parser.parse_args()
    faults = FAULTS[:4] if args.quick else FAULTS
    strategies = ("invalidate",) if args.quick else STRATEGIES
    kinds: dict[Kind, str] = {kind: version(kind) or "?" for kind in KINDS if binary(kind)}
    results: list[Result] = []
    baselines: dict[tuple[str, str], Baseline] = {}
    for kind in kinds:
        cells, found = on_server(kind, faults, strategies)
        results += cells
        baselines.update(found)
    Path(args.out).write_text(markdown(results, kinds, baselines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

